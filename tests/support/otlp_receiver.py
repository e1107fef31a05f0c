"""Test helpers for the OTLP tests: a scripted OTLP/HTTP receiver on 127.0.0.1 that
decodes every request with the official opentelemetry-proto classes, and a tiny CA
that issues server and client certificates for the TLS tests. No tests here."""
from __future__ import annotations

import datetime
import gzip
import http.server
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from typing import List, Optional

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    delay: float = 0.0          # seconds to stall before answering


@dataclass
class Received:
    path: str
    headers: dict
    raw: bytes                  # as sent (possibly gzip)
    body: bytes                 # decompressed

    def request(self) -> ExportMetricsServiceRequest:
        return ExportMetricsServiceRequest.FromString(self.body)


class OTLPServer:
    """Answers with the scripted ``replies`` in order, then 200 with an empty body."""

    def __init__(self, port: int = 0, tls: Optional[ssl.SSLContext] = None):
        self.replies: List[Reply] = []
        self.received: List[Received] = []
        self.connections = 0
        self.release = threading.Event()   # cuts a stalled reply short at teardown
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"   # keep-alive

            def setup(self):
                outer.connections += 1
                super().setup()

            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(n)
                body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                outer.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                               raw, body))
                reply = outer.replies.pop(0) if outer.replies else Reply()
                if reply.delay:
                    outer.release.wait(reply.delay)
                self.send_response(reply.status)
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

        self._serve(Handler, port, tls)

    def _serve(self, handler, port: int, tls: Optional[ssl.SSLContext]) -> None:
        """Serve ``handler`` on 127.0.0.1:``port`` (0: any) on a daemon thread."""
        self.httpd = _QuietServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        scheme = "https" if tls is not None else "http"
        self.url = "%s://127.0.0.1:%d/v1/metrics" % (scheme, self.port)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class _QuietServer(http.server.ThreadingHTTPServer):
    """Says nothing when a client left before its answer was written (a client that gave
    up on a stalled reply): socketserver would print a traceback to stderr, from a
    thread that may outlive the test, into the output another test captures."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def free_port() -> int:
    """A loopback port nobody listens on (right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- certificates

class TinyCA:
    """A CA plus a server certificate for 127.0.0.1 and a client certificate, as PEM files,
    made with the cryptography package, else with the openssl command."""

    def __init__(self, directory: str):
        try:
            import cryptography  # noqa: F401
        except ImportError:
            self._with_openssl(directory)
        else:
            self._with_cryptography(directory)

    def _with_openssl(self, directory: str):
        def run(*args):
            subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

        def path(name):
            return os.path.join(directory, name)

        curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run("req", "-x509", *curve, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
            "-subj", "/CN=otelmetrics test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        for cn, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
                        ("client", "extendedKeyUsage=clientAuth\n")):
            with open(path(cn + ".ext"), "w") as f:
                f.write("basicConstraints=CA:FALSE\n" + ext)
            run("req", *curve, "-keyout", cn + ".key", "-out", cn + ".csr", "-subj", "/CN=" + cn)
            run("x509", "-req", "-in", cn + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", cn + ".pem", "-days", "1", "-extfile", cn + ".ext")
        self.ca_file = path("ca.pem")
        self.server_cert, self.server_key = path("server.pem"), path("server.key")
        self.client_cert, self.client_key = path("client.pem"), path("client.key")

    def _with_cryptography(self, directory: str):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        now = datetime.datetime.now(datetime.timezone.utc)

        def name(cn):
            return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

        def write(path, data):
            with open(path, "wb") as f:
                f.write(data)
            return path

        def key_pem(key):
            return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())

        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (x509.CertificateBuilder().subject_name(name("otelmetrics test CA")).issuer_name(name("otelmetrics test CA"))
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False,
                                           encipher_only=False, decipher_only=False), critical=True)
              .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
        self.ca_file = write(os.path.join(directory, "ca.pem"), ca.public_bytes(serialization.Encoding.PEM))

        def issue(cn, usage, san):
            key = ec.generate_private_key(ec.SECP256R1())
            builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
                       .public_key(key.public_key()).serial_number(x509.random_serial_number())
                       .not_valid_before(now - datetime.timedelta(minutes=5))
                       .not_valid_after(now + datetime.timedelta(days=1))
                       .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                       .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                       .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                      critical=False))
            if san:
                builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
            cert = builder.sign(ca_key, hashes.SHA256())
            cert_file = write(os.path.join(directory, cn + ".pem"), cert.public_bytes(serialization.Encoding.PEM))
            key_file = write(os.path.join(directory, cn + ".key"), key_pem(key))
            return cert_file, key_file

        self.server_cert, self.server_key = issue(
            "server", ExtendedKeyUsageOID.SERVER_AUTH,
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
        self.client_cert, self.client_key = issue("client", ExtendedKeyUsageOID.CLIENT_AUTH, [])

    def server_context(self, require_client_cert: bool) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.server_cert, self.server_key)
        if require_client_cert:
            ctx.load_verify_locations(self.ca_file)
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx
