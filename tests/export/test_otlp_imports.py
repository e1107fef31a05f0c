"""The exporter runs on the standard library alone: importing and using it loads
no protobuf runtime, requests, grpc or the reference SDK (checked in a fresh process)."""
import json
import subprocess
import sys

from _util import NEUTRAL_CWD

SCRIPT = r"""
import http.server, json, sys, threading

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
url = "http://127.0.0.1:%d/v1/metrics" % srv.server_address[1]

import otelmetrics
from otelmetrics.export import InMemoryMetricReader, OTLPMetricExporter

results = []
for protocol, compression in (("http/protobuf", "gzip"), ("http/json", "none")):
    reader = InMemoryMetricReader()
    provider = otelmetrics.MeterProvider(metric_readers=[reader])
    meter = provider.get_meter("m")
    meter.create_counter("c").add(1, {"k": "v"})
    meter.create_histogram("h").record(2.5)
    exporter = OTLPMetricExporter(url, protocol=protocol, compression=compression, timeout=5)
    results.append(exporter.export(reader.get_metrics_data()).name)
    exporter.shutdown()
    provider.shutdown()
provider = otelmetrics.configure(exporter="otlp", endpoint=url, set_global=False)
provider.shutdown()
srv.shutdown()
banned = ("google.protobuf", "requests", "grpc", "opentelemetry.sdk", "opentelemetry.proto",
          "opentelemetry.exporter")
loaded = sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in banned))
print(json.dumps({"results": results, "loaded": loaded}))
"""


def test_exporter_imports_only_the_standard_library():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, cwd=NEUTRAL_CWD)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["results"] == ["SUCCESS", "SUCCESS"]
    assert report["loaded"] == []


def test_importing_otelmetrics_does_not_load_the_http_stack():
    code = ("import sys, otelmetrics, otelmetrics.export; "
            "print(sorted(m for m in ('http.client', 'ssl', 'gzip', 'otelmetrics.export.otlp') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=NEUTRAL_CWD)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# A server of socket and threading alone: http.server would load what is checked for.
LEAN_SCRIPT = r"""
import socket, sys, threading

def serve(listener):
    while True:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if b"\r\n\r\n" not in data:
                    break
                head, _, data = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(data) < length:
                    data += conn.recv(65536)
                data = data[length:]
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n"
                             b"Content-Length: 0\r\n\r\n")

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(8)
threading.Thread(target=serve, args=(listener,), daemon=True).start()
url = "http://127.0.0.1:%d/v1/metrics" % listener.getsockname()[1]

import otelmetrics
from otelmetrics.export import InMemoryMetricReader

# What otelmetrics and opentelemetry-api load themselves (on Python 3.9, importlib.metadata
# loads email and urllib.parse) is not the exporter's doing, nor what recording and
# collecting load (the exemplar sampler imports opentelemetry.trace, which with
# typing_extensions before 4.16 imports asyncio, and asyncio ssl): a first round without
# an exporter loads those.
reader = InMemoryMetricReader()
provider = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
provider.get_meter("m").create_counter("c").add(1, {"k": "v"})
provider.get_meter("m").create_histogram("h").record(2.5)
reader.get_metrics_data()
provider.shutdown()
already = set(sys.modules)
from otelmetrics.export import OTLPMetricExporter

results = []
for compression in ("none", "gzip"):
    reader = InMemoryMetricReader()
    provider = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    meter = provider.get_meter("m")
    meter.create_counter("c").add(1, {"k": "v"})
    meter.create_histogram("h").record(2.5)
    exporter = OTLPMetricExporter(url, compression=compression, timeout=5)
    results.append(exporter.export(reader.get_metrics_data()).name)
    exporter.shutdown()
    provider.shutdown()
loaded = sorted(m for m in set(sys.modules) - already if m.split(".")[0] in sys.argv[1:])
# The control: an https endpoint does load ssl.
OTLPMetricExporter("https://127.0.0.1:1/v1/metrics")
print(" ".join(results), "|", " ".join(loaded), "|", "ssl" in sys.modules)
"""

# What the OTLP/HTTP path no longer loads for an http:// endpoint (protobuf, gzip or not).
NOT_LOADED = ("ssl", "_ssl", "http", "email", "urllib", "ipaddress", "gzip", "json", "random", "base64",
              "datetime", "calendar", "unicodedata")


def test_an_http_exporter_loads_no_ssl_http_client_email_or_the_rest():
    out = subprocess.run([sys.executable, "-c", LEAN_SCRIPT, *NOT_LOADED], capture_output=True, text=True,
                         timeout=60, cwd=NEUTRAL_CWD)
    assert out.returncode == 0, out.stderr
    results, loaded, control = out.stdout.strip().splitlines()[-1].split("|")
    assert results.split() == ["SUCCESS", "SUCCESS"]
    assert loaded.split() == []
    assert control.strip() == "True"
