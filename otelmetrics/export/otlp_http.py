"""The OTLP/HTTP transport: POSTs request bodies to the endpoint over one kept-alive
``http.client`` connection (TLS, with a client certificate for mTLS, when the endpoint
is https) and reports each try as an ``otlp_protocol.Outcome``.

- ``send`` never raises: a connection, TLS or HTTP error is a RETRYABLE outcome. A
  kept-alive connection the server has closed since the last request is retried once,
  at once, on a fresh connection (the request may not have reached the server).
- ``send``'s timeout is a deadline for all of it, whatever the server does: connecting
  and the TLS handshake get what is left of it, the body goes out in pieces and the
  response comes in reads, each waiting no longer than what is left (a server dripping
  its answer a byte at a time cannot stretch a try).
- A response body is read in one place, ``_read_body``, and at most ``MAX_RESPONSE_BYTES``
  of it; a longer one is cut and its connection dropped.
- Not thread-safe, except ``abort``: the exporter calls it with its export lock held.
"""
from __future__ import annotations

import functools
import http.client
import io
import logging
import socket
import ssl
import time
from typing import Mapping, Optional, Tuple
from urllib.parse import urlsplit

from otelmetrics import _env
from otelmetrics.export import otlp_settings
from otelmetrics.export.otlp_protocol import RETRYABLE, Outcome, http_outcome

_logger = logging.getLogger("otelmetrics.export.otlp")

MAX_RESPONSE_BYTES = 1 << 20
_SEND_PIECE = 64 * 1024     # the body goes out in pieces, the deadline checked before each


class _Deadline:
    """When the request in progress on a connection must be done (``time.monotonic()``)."""

    at = 0.0

    def left(self) -> float:
        """Seconds left; socket.timeout once there are none."""
        left = self.at - time.monotonic()
        if left <= 0:
            raise socket.timeout("the export deadline passed")
        return left


class _DeadlineReader(io.RawIOBase):
    """A socket's input for one response: each read waits only as long as the deadline
    allows. Holds the socket file the response opened, so that the socket stays open
    while the response is read, as http.client expects."""

    def __init__(self, sock: socket.socket, file, deadline: _Deadline) -> None:
        super().__init__()
        self._sock, self._file, self._deadline = sock, file, deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        self._sock.settimeout(self._deadline.left())
        return self._sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


class _Response(http.client.HTTPResponse):
    def __init__(self, sock, *args, deadline: _Deadline, **kwargs) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp = io.BufferedReader(_DeadlineReader(sock, self.fp, deadline))


class _DeadlineConnection:
    """Mixed into http.client's connections: every step of a request within ``deadline``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = _Deadline()
        self.response_class = functools.partial(_Response, deadline=self.deadline)
        self._create_connection = self._connect

    def _connect(self, address, timeout, source_address=None) -> socket.socket:
        sock = socket.create_connection(address, self.deadline.left(), source_address)
        sock.settimeout(self.deadline.left())   # what the TLS handshake, if any, may take
        return sock

    def send(self, data) -> None:
        view = memoryview(data)
        for start in range(0, max(len(view), 1), _SEND_PIECE):
            if self.sock is not None:
                self.sock.settimeout(self.deadline.left())
            super().send(view[start:start + _SEND_PIECE])


class _HTTPConnection(_DeadlineConnection, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_DeadlineConnection, http.client.HTTPSConnection):
    pass


def tls_context(settings: otlp_settings.OTLPSettings, fall_back: bool) -> ssl.SSLContext:
    """CA file and client certificate as configured; with ``fall_back`` (they came from
    the environment) an unusable file is a warning and the system's CAs are used,
    otherwise a ValueError that says what to change."""
    try:
        ctx = ssl.create_default_context(cafile=settings.certificate_file)
        if settings.client_certificate_file:
            ctx.load_cert_chain(settings.client_certificate_file, settings.client_key_file)
        return ctx
    except (OSError, ssl.SSLError) as e:
        if not fall_back:
            raise ValueError("OTLPMetricExporter: cannot load the TLS certificate or key: %s" % e) from e
        _logger.warning("OTEL_EXPORTER_OTLP_[METRICS_]CERTIFICATE / CLIENT_CERTIFICATE / CLIENT_KEY: "
                        "cannot load %s; using the system's CAs without a client certificate", e)
        return ssl.create_default_context()


class HttpTransport:
    """``otlp_protocol.Transport`` over HTTP/1.1. ``tls_fall_back``: see ``tls_context``."""

    def __init__(self, settings: otlp_settings.OTLPSettings, tls_fall_back: bool) -> None:
        if settings.protocol == _env.GRPC:
            raise ValueError("OTLPMetricExporter protocol 'grpc': this is the OTLP/HTTP exporter; "
                             "otelmetrics.export.grpc.OTLPMetricExporter speaks OTLP/gRPC")
        url = urlsplit(settings.endpoint)
        if url.path in ("", "/"):
            _logger.warning("OTLP endpoint %s has no path; receivers expect %s",
                            settings.endpoint, otlp_settings.METRICS_PATH)
        self._host = url.hostname
        self._port = url.port
        self._path = (url.path or "/") + ("?" + url.query if url.query else "")
        self._ssl_context: Optional[ssl.SSLContext] = (
            tls_context(settings, tls_fall_back) if url.scheme == "https" else None)
        # How to read a response body whose Content-Type says neither JSON nor protobuf.
        self._json_responses = settings.protocol == _env.JSON
        self._conn: Optional[_HTTPConnection] = None
        self._aborted = False

    def send(self, body: bytes, headers: Mapping[str, str], timeout: float) -> Outcome:
        deadline = time.monotonic() + timeout
        self._aborted = False
        reused = self._conn is not None and self._conn.sock is not None
        try:
            response = self._post(body, headers, deadline)
        except Exception as e:  # OSError, http.client.HTTPException, ssl errors
            self.close()
            if not reused or self._aborted or time.monotonic() >= deadline:
                return _connection_error(e)
            # A kept-alive connection the server has since closed: once more, on a fresh one.
            try:
                response = self._post(body, headers, deadline)
            except Exception as e:
                self.close()
                return _connection_error(e)
        return http_outcome(*response, json_default=self._json_responses)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def abort(self) -> None:
        # Shutting the socket down (not closing it) wakes a thread blocked on it.
        self._aborted = True
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _connection(self) -> _HTTPConnection:
        if self._conn is None:
            if self._ssl_context is not None:
                self._conn = _HTTPSConnection(self._host, self._port, context=self._ssl_context)
            else:
                self._conn = _HTTPConnection(self._host, self._port)
        return self._conn

    def _post(self, body: bytes, headers: Mapping[str, str], deadline: float) -> Tuple[int, str, dict, bytes]:
        """One request on the kept-alive connection, done by ``deadline``: (status, reason,
        headers with lower-case names, body). Raises on a transport error."""
        conn = self._connection()
        conn.deadline.at = deadline
        conn.request("POST", self._path, body=body, headers=headers)
        response = conn.getresponse()
        payload = self._read_body(response)
        return response.status, response.reason, {k.lower(): v for k, v in response.getheaders()}, payload

    def _read_body(self, response: http.client.HTTPResponse) -> bytes:
        """The response body, at most MAX_RESPONSE_BYTES; the connection is dropped when
        the body was longer or the server will close it."""
        payload = response.read(MAX_RESPONSE_BYTES + 1)
        if len(payload) > MAX_RESPONSE_BYTES or not response.isclosed():
            payload = payload[:MAX_RESPONSE_BYTES]
            self.close()
        elif response.will_close:
            self.close()
        return payload


def _connection_error(error: Exception) -> Outcome:
    return Outcome(RETRYABLE, "connection error: %s" % (error or type(error).__name__))
