"""The OTLP/HTTP transport: POSTs request bodies to the endpoint over one kept-alive
connection (TLS, with a client certificate for mTLS, when the endpoint is https) and
reports each try as an ``otlp_protocol.Outcome``. It speaks HTTP/1.1 itself, over
``socket``: ``http.client`` would load ``ssl`` (libssl and libcrypto) and ``email`` into
every process, several MB on a small device; ``ssl`` is imported here only for an https
endpoint.

- ``send`` never raises: a connection, TLS or HTTP error, and a malformed response, is a
  RETRYABLE outcome; a request that cannot be written (a header, checked by
  ``otlp_settings.header_problem``, or an endpoint path or host HTTP/1.1 cannot carry) is
  PERMANENT, as it would be on every try, and nothing is sent. A kept-alive connection
  the server has closed since the last request is retried once, at once, on a fresh
  connection (the request may not have reached the server).
- ``send``'s timeout is a deadline for all of it, whatever the server does: the name
  lookup, connecting and the TLS handshake get what is left of it, the body goes out in
  pieces and the response comes in reads, each waiting no longer than what is left (a
  server dripping its answer a byte at a time cannot stretch a try).
- The request: ``POST <path> HTTP/1.1`` with Host (and the port when it is not the
  scheme's), ``Accept-Encoding: identity``, Content-Length and the exporter's headers.
- The response: the status line and headers (names case-insensitive; of a repeated one
  the last value, as ``http.client`` gave them), after any 1xx interim responses; a body
  framed by Content-Length, by ``Transfer-Encoding: chunked`` (trailers read and
  dropped) or by the end of the connection; none for 204 and 304. HTTP/1.0 and
  ``Connection: close`` end the connection after the response, as does a body framed by
  its end. Status, header and chunk-size lines are bounded (``MAX_HEAD_BYTES`` in all,
  ``MAX_HEADERS`` lines), so that a hostile server cannot make it allocate without bound.
- A response body is read in one place, ``_read_body``, and at most ``MAX_RESPONSE_BYTES``
  of it; a longer one is cut and its connection dropped.
- A host name is looked up (``getaddrinfo``) in a thread of its own, which ``send``
  waits for no longer than its deadline: a resolver that does not answer (DNS down on a
  device's network) costs a try its timeout, not the resolver's (which ``abort`` could not
  wake either). One lookup at a time: a later try waits for the one still running rather
  than starting another. An IP address is not looked up.
- Not thread-safe, except ``abort`` (it shuts the socket down, which wakes a blocked
  ``send``, and wakes one waiting for a lookup): the exporter calls it with its export
  lock held.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import List, Mapping, Optional, Tuple

from otelmetrics import _env
from otelmetrics.export import otlp_settings
from otelmetrics.export.otlp_protocol import PERMANENT, RETRYABLE, Outcome, http_outcome

_logger = logging.getLogger("otelmetrics.export.otlp")

MAX_RESPONSE_BYTES = 1 << 20
MAX_HEAD_BYTES = 64 * 1024  # a response's status line and headers, or its chunked trailers, in all
MAX_HEADERS = 100           # header lines of a response (or trailer lines), as http.client allows
_SEND_PIECE = 64 * 1024     # the body goes out in pieces, the deadline checked before each
_RECV_PIECE = 64 * 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Headers that frame the body: ours, never the configured ones.
_FRAMING = frozenset(("content-length", "transfer-encoding"))


class MalformedResponse(Exception):
    """The server's answer is not HTTP/1.x as this client reads it."""


class _Closed(Exception):
    """The server closed the connection before the response began."""


class _Connection:
    """One socket to the endpoint (a TLS one for https) and what was received on it and
    not yet read. Every wait ends by ``deadline`` (``time.monotonic()``)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.deadline = 0.0
        self._buffer = bytearray()

    def left(self) -> float:
        """Seconds left; socket.timeout once there are none."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("the export deadline passed")
        return left

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, head: bytes, body: bytes) -> None:
        """The request head and body, in pieces: each may take only what is left."""
        first = max(0, _SEND_PIECE - len(head))
        self._send(head + body[:first])       # one segment for a small request
        view = memoryview(body)
        for start in range(first, len(view), _SEND_PIECE):
            self._send(view[start:start + _SEND_PIECE])

    def _send(self, piece) -> None:
        self.sock.settimeout(self.left())
        self.sock.sendall(piece)

    def _fill(self) -> bool:
        """Receive what the server sent next; False at the end of the connection."""
        self.sock.settimeout(self.left())
        data = self.sock.recv(_RECV_PIECE)
        self._buffer += data
        return bool(data)

    @property
    def pending(self) -> int:
        """Bytes received and not read (after a response: more than it said it had)."""
        return len(self._buffer)

    def readline(self, limit: int, what: str) -> bytes:
        """One line without its CRLF (or LF); MalformedResponse when it is longer than
        ``limit`` or the connection ends within it, _Closed when it ends before it."""
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end >= 0:
                break
            if len(self._buffer) > limit + 1:      # the line and a CR, and still no LF
                raise MalformedResponse("%s longer than %d bytes" % (what, limit))
            start = len(self._buffer)
            if not self._fill():
                if not self._buffer:
                    raise _Closed()
                raise MalformedResponse("the connection ended within the %s" % what)
        line = bytes(self._buffer[:end])
        del self._buffer[:end + 1]
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > limit:
            raise MalformedResponse("%s longer than %d bytes" % (what, limit))
        return line

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes (at least one); b"" at the end of the connection."""
        if not self._buffer and not self._fill():
            return b""
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data


def tls_context(settings: otlp_settings.OTLPSettings, fall_back: bool) -> "ssl.SSLContext":  # noqa: F821
    """CA file and client certificate as configured; with ``fall_back`` (they came from
    the environment) an unusable file is a warning and the system's CAs are used,
    otherwise a ValueError that says what to change."""
    # Deferred on purpose: ssl loads libssl and libcrypto (about 4 MB of a small device's
    # memory); only an https endpoint (or OTLP/gRPC's TLS) needs it.
    import ssl

    try:
        ctx = ssl.create_default_context(cafile=settings.certificate_file)
        if settings.client_certificate_file:
            ctx.load_cert_chain(settings.client_certificate_file, settings.client_key_file)
        return ctx
    except OSError as e:   # ssl.SSLError is one
        if not fall_back:
            raise ValueError("OTLPMetricExporter: cannot load the TLS certificate or key: %s" % e) from e
        _logger.warning("OTEL_EXPORTER_OTLP_[METRICS_]CERTIFICATE / CLIENT_CERTIFICATE / CLIENT_KEY: "
                        "cannot load %s; using the system's CAs without a client certificate", e)
        return ssl.create_default_context()


class _Lookup:
    """One ``getaddrinfo`` of a host, in a daemon thread: ``done`` is set with ``addresses``
    or ``error``, and ``wake`` (the transport's) is set too."""

    def __init__(self, host, port: int, wake: threading.Event) -> None:
        self.done = threading.Event()
        self.addresses: list = []
        self.error: Optional[Exception] = None
        self._wake = wake
        threading.Thread(target=self._run, args=(host, port), name="otelmetrics-lookup", daemon=True).start()

    def _run(self, host, port: int) -> None:
        try:
            self.addresses = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except Exception as e:   # socket.gaierror, or a UnicodeError for a name idna refuses
            self.error = e
        finally:
            self.done.set()
            self._wake.set()


class HttpTransport:
    """``otlp_protocol.Transport`` over HTTP/1.1. ``tls_fall_back``: see ``tls_context``."""

    def __init__(self, settings: otlp_settings.OTLPSettings, tls_fall_back: bool) -> None:
        if settings.protocol == _env.GRPC:
            raise ValueError("OTLPMetricExporter protocol 'grpc': this is the OTLP/HTTP exporter; "
                             "otelmetrics.export.grpc.OTLPMetricExporter speaks OTLP/gRPC")
        url = otlp_settings.split_endpoint(settings.endpoint)
        if url.target == "/" or url.target.startswith("/?"):
            _logger.warning("OTLP endpoint %s has no path; receivers expect %s",
                            settings.endpoint, otlp_settings.METRICS_PATH)
        self._host = url.host
        self._port = url.port if url.port is not None else _DEFAULT_PORTS[url.scheme]
        self._target = url.target
        host = "[%s]" % url.host if ":" in url.host else url.host
        self._host_header = host if url.port in (None, _DEFAULT_PORTS[url.scheme]) else "%s:%d" % (host, url.port)
        self._ssl_context = tls_context(settings, tls_fall_back) if url.scheme == "https" else None
        # How to read a response body whose Content-Type says neither JSON nor protobuf.
        self._json_responses = settings.protocol == _env.JSON
        self._unconnected()

    def _unconnected(self) -> None:
        """The state of a transport that has sent nothing yet (at start, and in a forked child)."""
        self._conn: Optional[_Connection] = None
        self._sock: Optional[socket.socket] = None    # the socket in use, for abort()
        self._aborted = False
        self._lookup: Optional[_Lookup] = None         # the host's lookup, until its answer is used
        self._wake = threading.Event()                 # a lookup finished, or abort()

    def send(self, body: bytes, headers: Mapping[str, str], timeout: float) -> Outcome:
        deadline = time.monotonic() + timeout
        try:
            head = self._head(headers, len(body))
        except ValueError as e:   # the same on every try: not worth retrying, nor keeping
            return Outcome(PERMANENT, "the request cannot be sent: %s" % e)
        self._aborted = False
        reused = self._conn is not None
        try:
            response = self._post(head, body, deadline)
        except Exception as e:  # OSError (ssl errors too), MalformedResponse
            self.close()
            if not reused or self._aborted or time.monotonic() >= deadline:
                return _connection_error(e)
            # A kept-alive connection the server has since closed: once more, on a fresh one.
            try:
                response = self._post(head, body, deadline)
            except Exception as e:
                self.close()
                return _connection_error(e)
        return http_outcome(*response, json_default=self._json_responses)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        self._sock = None
        if conn is not None:
            conn.close()

    def abort(self) -> None:
        # Shutting the socket down (not closing it) wakes a thread blocked on it.
        self._aborted = True
        self._wake.set()
        sock = self._sock
        if sock is not None:
            try:
                # socket's own shutdown, also of a TLS socket: SSLSocket.shutdown would drop
                # its TLS state under a thread still in the handshake or a read.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def leave_to_parent(self) -> None:
        # The child's copy of the socket is closed (the parent's connection stays open: a
        # TCP connection ends with its last descriptor); a lookup the parent was waiting
        # for has no thread here.
        self.close()
        self._unconnected()

    # ------------------------------------------------------------ the connection

    def _connection(self, deadline: float) -> _Connection:
        if self._conn is None:
            self._conn = self._connect(deadline)
        self._conn.deadline = deadline
        return self._conn

    def _connect(self, deadline: float) -> _Connection:
        """A connection to the first address of the host that answers, TLS-wrapped for
        https, by ``deadline``; each address tried gets what is left of it."""
        conn = _Connection(None)   # type: ignore[arg-type]  (its socket comes below)
        conn.deadline = deadline
        error: Optional[Exception] = None
        for family, kind, proto, _, address in self._addresses(deadline):
            sock = socket.socket(family, kind, proto)
            self._sock = sock
            try:
                if self._aborted:
                    raise OSError("aborted")
                sock.settimeout(conn.left())
                sock.connect(address)
                break
            except OSError as e:
                sock.close()
                self._sock = None
                error = e
                if self._aborted or time.monotonic() >= deadline:
                    raise
        else:
            raise error or OSError("getaddrinfo returned no address for %s" % self._host)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # as http.client does
        except OSError:
            pass
        if self._ssl_context is not None:
            try:
                sock.settimeout(conn.left())   # what the TLS handshake may take
                sock = self._ssl_context.wrap_socket(sock, server_hostname=self._host,
                                                     do_handshake_on_connect=False)
                self._sock = sock              # abort() wakes the handshake too
                if self._aborted:
                    raise OSError("aborted")
                sock.do_handshake()
            except BaseException:
                sock.close()
                self._sock = None
                raise
        conn.sock = sock
        return conn

    def _addresses(self, deadline: float) -> list:
        """The host's addresses, by ``deadline``: an IP address at once, a name from its
        lookup (the one still running from an earlier try, else a new one)."""
        # An ASCII host as bytes: as a str, getaddrinfo would encode it with the idna codec,
        # which loads stringprep and unicodedata.
        host = self._host.encode("ascii") if self._host.isascii() else self._host
        try:
            return socket.getaddrinfo(host, self._port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
        except (socket.gaierror, UnicodeError):
            pass   # a name
        lookup = self._lookup
        if lookup is None:
            lookup = self._lookup = _Lookup(host, self._port, self._wake)
        while True:
            self._wake.clear()
            if lookup.done.is_set():
                break
            if self._aborted:
                raise OSError("aborted while looking up %s" % self._host)
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("the lookup of %s did not finish in time" % self._host)
            self._wake.wait(left)
        self._lookup = None
        if lookup.error is not None:
            raise lookup.error
        return lookup.addresses

    # ------------------------------------------------------------ one request

    def _head(self, headers: Mapping[str, str], length: int) -> bytes:
        """The request line and headers, as http.client wrote them: Host and
        Accept-Encoding unless configured, our Content-Length, then the headers given.
        ValueError for a header, path or host that cannot be sent as it is."""
        names = {name.lower() for name in headers}
        lines = ["POST %s HTTP/1.1" % self._target]
        if "host" not in names:
            lines.append("Host: " + self._host_header)
        if "accept-encoding" not in names:
            lines.append("Accept-Encoding: identity")
        lines.append("Content-Length: %d" % length)
        for name, value in headers.items():
            if name.lower() in _FRAMING:
                continue
            name, value = str(name), str(value)
            problem = otlp_settings.header_problem(name, value)
            if problem:
                raise ValueError("header %r cannot be sent: %s" % (name, problem))
            lines.append("%s: %s" % (name, value))
        lines.append("\r\n")
        # Hosts beyond ASCII go out as IDNA; a target beyond ASCII cannot be sent.
        if not self._host_header.isascii() and "host" not in names:
            lines[1] = "Host: " + self._host_header.encode("idna").decode("ascii")
        if any(c in self._target for c in " \r\n\t\0") or not self._target.isascii():
            raise ValueError("the endpoint's path %r cannot be sent: it has spaces, control or "
                             "non-ASCII characters (percent-encode them)" % self._target)
        return "\r\n".join(lines).encode("latin-1")

    def _post(self, head: bytes, body: bytes, deadline: float) -> Tuple[int, str, dict, bytes]:
        """One request (``head``, from ``_head``, and ``body``) on the kept-alive connection,
        done by ``deadline``: (status, reason, headers with lower-case names, body). Raises on
        a transport error."""
        conn = self._connection(deadline)
        conn.send(head, body)
        try:
            version, status, reason, fields = _read_head(conn)
        except _Closed:
            raise ConnectionResetError("the server closed the connection without a response") from None
        names = {name for name, _ in fields}
        values = dict(fields)      # the last of a repeated header, as http.client gave them
        tokens = _tokens(value for name, value in fields if name == "connection")
        will_close = "close" in tokens or (version == 10 and "keep-alive" not in tokens
                                           and "keep-alive" not in names)
        payload = self._read_body(conn, status, fields, names, will_close)
        return status, reason, values, payload

    def _read_body(self, conn: _Connection, status: int, fields: List[Tuple[str, str]], names: set,
                   will_close: bool) -> bytes:
        """The response body, at most MAX_RESPONSE_BYTES; the connection is dropped when
        the body was longer, or ended the connection, or the server will close it."""
        if status in (204, 304):
            parts, complete = [], True
        elif "transfer-encoding" in names:
            codings = _tokens(value for name, value in fields if name == "transfer-encoding")
            if codings and codings[-1] == "chunked":
                parts, complete = _read_chunked(conn)
            else:   # framed by the end of the connection (RFC 9112, 6.3)
                parts, complete = _read_to_end(conn), False
            # A Content-Length beside Transfer-Encoding is ignored, and the connection not reused.
            will_close = will_close or "content-length" in names
        elif "content-length" in names:
            lengths = {value.strip() for name, value in fields if name == "content-length"
                       for value in value.split(",")}
            if len(lengths) != 1 or not next(iter(lengths)).isdigit():
                raise MalformedResponse("Content-Length %r" % ", ".join(sorted(lengths)))
            length = int(lengths.pop())
            parts, complete = _read_exactly(conn, min(length, MAX_RESPONSE_BYTES)), length <= MAX_RESPONSE_BYTES
        else:
            parts, complete = _read_to_end(conn), False
        if not complete or will_close or conn.pending:
            self.close()
        return b"".join(parts)


def _tokens(values) -> List[str]:
    """The comma-separated tokens of header values, lower-case, in order."""
    return [token.strip().lower() for value in values for token in value.split(",") if token.strip()]


def _read_head(conn: _Connection) -> Tuple[int, int, str, List[Tuple[str, str]]]:
    """(HTTP version as 10 or 11, status, reason, [(lower-case name, value)]) of the
    final response, after any interim (1xx) ones."""
    while True:
        line = conn.readline(MAX_HEAD_BYTES, "status line").decode("iso-8859-1")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/"):
            raise MalformedResponse("status line %r" % line[:100])
        version, status = parts[0], parts[1]
        reason = parts[2].strip() if len(parts) > 2 else ""
        if version in ("HTTP/1.0", "HTTP/0.9"):
            number = 10
        elif version.startswith("HTTP/1."):
            number = 11
        else:
            raise MalformedResponse("protocol %r" % version[:20])
        if len(status) != 3 or not status.isdigit() or not status.isascii() or status[0] == "0":
            raise MalformedResponse("status line %r" % line[:100])
        code = int(status)
        fields = _read_fields(conn, "header")
        if code == 101:
            raise MalformedResponse("101 Switching Protocols, which nothing asked for")
        if code >= 200:
            return number, code, reason, fields
        # 100 Continue, 102, 103 Early Hints: interim, the final response follows.


def _read_fields(conn: _Connection, what: str) -> List[Tuple[str, str]]:
    """Header (or trailer) lines up to the empty one: [(lower-case name, value)], a
    folded line joined to the one before; MAX_HEADERS lines and MAX_HEAD_BYTES at most."""
    fields: List[Tuple[str, str]] = []
    budget = MAX_HEAD_BYTES
    for _ in range(MAX_HEADERS + 1):
        line = conn.readline(max(budget, 0), what + " line")
        if not line:
            return fields
        budget -= len(line) + 2
        text = line.decode("iso-8859-1")
        if text[0] in " \t":
            if not fields:
                raise MalformedResponse("%s continuation line without a %s" % (what, what))
            name, value = fields[-1]
            fields[-1] = (name, (value + " " + text.strip(" \t")).strip(" \t"))
            continue
        name, colon, value = text.partition(":")
        if not colon or not name or name != name.strip() or " " in name or "\t" in name:
            raise MalformedResponse("%s line %r" % (what, text[:100]))
        fields.append((name.lower(), value.strip(" \t")))
    raise MalformedResponse("more than %d %s lines" % (MAX_HEADERS, what))


def _read_exactly(conn: _Connection, size: int) -> List[bytes]:
    parts, got = [], 0
    while got < size:
        part = conn.read(min(size - got, _RECV_PIECE))
        if not part:
            raise MalformedResponse("the connection ended %d bytes into a body of %d" % (got, size))
        parts.append(part)
        got += len(part)
    return parts


def _read_to_end(conn: _Connection) -> List[bytes]:
    """The body up to the end of the connection, or its first MAX_RESPONSE_BYTES."""
    parts, got = [], 0
    while got < MAX_RESPONSE_BYTES:
        part = conn.read(min(MAX_RESPONSE_BYTES - got, _RECV_PIECE))
        if not part:
            break
        parts.append(part)
        got += len(part)
    return parts


def _read_chunked(conn: _Connection) -> Tuple[List[bytes], bool]:
    """A chunked body: (its parts, True) when it ended within MAX_RESPONSE_BYTES (its
    trailers read and dropped), else (its first MAX_RESPONSE_BYTES, False)."""
    parts: List[bytes] = []
    got = 0
    while True:
        line = conn.readline(MAX_HEAD_BYTES, "chunk size line")
        size_text = line.split(b";", 1)[0].strip(b" \t")
        try:
            if not size_text or size_text.startswith((b"-", b"+", b"0x", b"0X")) or b"_" in size_text:
                raise ValueError
            size = int(size_text, 16)
        except ValueError:
            raise MalformedResponse("chunk size line %r" % line[:100]) from None
        if size == 0:
            _read_fields(conn, "trailer")
            return parts, True
        take = min(size, MAX_RESPONSE_BYTES - got)
        parts += _read_exactly(conn, take)
        got += take
        if take < size:
            return parts, False
        if conn.readline(2, "chunk end"):
            raise MalformedResponse("a chunk longer than its size line says")


def _connection_error(error: Exception) -> Outcome:
    if isinstance(error, MalformedResponse):
        return Outcome(RETRYABLE, "connection error: malformed response: %s" % error)
    return Outcome(RETRYABLE, "connection error: %s" % (error or type(error).__name__))
