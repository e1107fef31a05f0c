"""Misbehaving OTLP/HTTP receivers on 127.0.0.1 for the fault tests: a collector that can
hang (accept a request and never answer) and that refuses requests over a size with 413,
and a raw socket server whose connections a test script drives byte by byte. No tests here."""
from __future__ import annotations

import gzip
import http.server
import socket
import threading
import time
from collections import Counter as Tally
from typing import Callable, List, Optional, Tuple

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from otlp_receiver import OTLPServer


class Collector(OTLPServer):
    """Accepts OTLP/HTTP protobuf requests and keeps the decoded ones it answered 200.

    ``hang`` set: a request is read and never answered (held until ``recovered`` or the
    client goes away), and not kept: the client must send it again. ``limit``: a body
    (as sent) longer than this is answered 413 and not kept."""

    def __init__(self, port: int = 0, limit: Optional[int] = None) -> None:
        self.hang = threading.Event()
        self.recovered = threading.Event()
        self.release = self.recovered       # what OTLPServer.close sets
        self.limit = limit
        self.accepted: List[ExportMetricsServiceRequest] = []
        self.sizes: List[int] = []          # bodies as sent, of every request read
        self.hung = 0
        self.refused = 0
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer._lock:
                    outer.sizes.append(len(raw))
                if outer.hang.is_set():
                    with outer._lock:
                        outer.hung += 1
                    outer.recovered.wait(60)
                    self.close_connection = True
                    return
                if outer.limit is not None and len(raw) > outer.limit:
                    with outer._lock:
                        outer.refused += 1
                    self._answer(413)
                    return
                body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                request = ExportMetricsServiceRequest.FromString(body)
                with outer._lock:
                    outer.accepted.append(request)
                self._answer(200)

            def _answer(self, status):
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._serve(Handler, port, None)

    def recover(self) -> None:
        self.hang.clear()
        self.recovered.set()

    def sums(self) -> Tally:
        """Delta sums per (metric, attributes) over what was accepted."""
        total: Tally = Tally()
        with self._lock:
            accepted = list(self.accepted)
        for request in accepted:
            for rm in request.resource_metrics:
                for sm in rm.scope_metrics:
                    for m in sm.metrics:
                        assert m.WhichOneof("data") == "sum" and m.sum.aggregation_temporality == 1
                        for p in m.sum.data_points:
                            key = tuple(sorted((kv.key, kv.value.string_value) for kv in p.attributes))
                            total[(m.name, key)] += p.as_int
        return total

class RawServer:
    """Runs ``script(connection)`` on a thread for every connection it accepts; counts them.
    ``host``: the loopback address to listen on ("::1" for IPv6)."""

    def __init__(self, script: Callable[[socket.socket], None], host: str = "127.0.0.1") -> None:
        self.script = script
        self.connections = 0
        self.stop = threading.Event()
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.url = "http://%s:%d/v1/metrics" % ("[%s]" % host if ":" in host else host, self.port)
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            threading.Thread(target=self._run, args=(conn,), daemon=True).start()

    def _run(self, conn: socket.socket) -> None:
        try:
            with conn:
                self.script(conn)
        except OSError:
            pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_message(conn: socket.socket) -> Optional[Tuple[List[str], bytes]]:
    """One HTTP request with a Content-Length body, read whole: (head lines, body), or
    None when the client left."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return lines, body


def read_request(conn: socket.socket) -> bytes:
    """One request read whole: its head, b"" when the client left."""
    message = read_message(conn)
    return "\r\n".join(message[0]).encode("latin-1") if message else b""


def dripping(head: bytes, piece: bytes, seconds: float = 20.0, every: float = 0.05) -> Callable:
    """A RawServer script: after the request, ``head`` at once, then ``piece`` every
    ``every`` seconds for ``seconds`` (an answer that never ends in time)."""
    def script(conn: socket.socket) -> None:
        if read_message(conn):
            conn.sendall(head)
            for _ in range(int(seconds / every)):
                conn.sendall(piece)
                time.sleep(every)
    return script
