"""The OTLP/HTTP transport: POSTs request bodies to the endpoint over one kept-alive
``http.client`` connection (TLS, with a client certificate for mTLS, when the endpoint
is https) and reports each try as an ``otlp_protocol.Outcome``.

- ``send`` never raises: a connection, TLS or HTTP error is a RETRYABLE outcome. A
  kept-alive connection the server has closed since the last request is retried once,
  at once, on a fresh connection (the request may not have reached the server).
- A response body is read in one place, ``_read_body``, and at most ``MAX_RESPONSE_BYTES``
  of it; a longer one is cut and its connection dropped.
- Not thread-safe, except ``abort``: the exporter calls it with its export lock held.
"""
from __future__ import annotations

import http.client
import logging
import socket
import ssl
import time
from typing import Mapping, Optional, Tuple
from urllib.parse import urlsplit

from otelmetrics import _env
from otelmetrics.export.otlp_protocol import RETRYABLE, Outcome, http_outcome

_logger = logging.getLogger("otelmetrics.export.otlp")

MAX_RESPONSE_BYTES = 1 << 20


def tls_context(settings: _env.OTLPSettings, fall_back: bool) -> ssl.SSLContext:
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

    def __init__(self, settings: _env.OTLPSettings, tls_fall_back: bool) -> None:
        if settings.protocol == _env.GRPC:
            raise ValueError("OTLPMetricExporter protocol 'grpc': this is the OTLP/HTTP exporter; "
                             "otelmetrics.export.grpc.OTLPMetricExporter speaks OTLP/gRPC")
        url = urlsplit(settings.endpoint)
        if url.path in ("", "/"):
            _logger.warning("OTLP endpoint %s has no path; receivers expect %s",
                            settings.endpoint, _env.METRICS_PATH)
        self._host = url.hostname
        self._port = url.port
        self._path = (url.path or "/") + ("?" + url.query if url.query else "")
        self._ssl_context: Optional[ssl.SSLContext] = (
            tls_context(settings, tls_fall_back) if url.scheme == "https" else None)
        # How to read a response body whose Content-Type says neither JSON nor protobuf.
        self._json_responses = settings.protocol == _env.JSON
        self._conn: Optional[http.client.HTTPConnection] = None

    def send(self, body: bytes, headers: Mapping[str, str], timeout: float) -> Outcome:
        start = time.monotonic()
        reused = self._conn is not None and self._conn.sock is not None
        try:
            response = self._post(body, headers, timeout)
        except Exception as e:  # OSError, http.client.HTTPException, ssl errors
            self.close()
            timeout -= time.monotonic() - start
            if not reused or timeout <= 0:
                return _connection_error(e)
            # A kept-alive connection the server has since closed: once more, on a fresh one.
            try:
                response = self._post(body, headers, timeout)
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
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._ssl_context is not None:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=timeout, context=self._ssl_context)
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        return self._conn

    def _post(self, body: bytes, headers: Mapping[str, str], timeout: float) -> Tuple[int, str, dict, bytes]:
        """One request on the kept-alive connection: (status, reason, headers with
        lower-case names, body). Raises on a transport error."""
        conn = self._connection(timeout)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
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
