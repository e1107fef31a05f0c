"""Export-side figures against opentelemetry-sdk in the same run.

    python benchmarks/bench_export.py [--series 2000] [--repeat 30] [--wheel] [--pip-footprint]

- encode: 2000 series (half counter, half histogram, 3 attributes each) to the bytes
  of an ExportMetricsServiceRequest; ours vs the reference's
  ``encode_metrics(...).SerializeToString()``, best of ``--repeat``.
- bytes on the wire: protobuf, protobuf + gzip, OTLP/JSON.
- footprint: the installed distributions the OTLP exporter needs (ours: otelmetrics +
  opentelemetry-api and its requirements; the reference: opentelemetry-exporter-otlp-proto-http
  and everything it requires), counted and sized from their installed files;
  ``--wheel`` also builds our wheel and reports its size.
- OTLP/gRPC (when grpcio is installed): per export, the request bytes (gRPC frames them
  with 5 more) and the time to make them, ours (``RequestEncoder``, no protobuf runtime)
  against the reference gRPC exporter's ``encode_metrics`` + ``SerializeToString``; one
  whole export to a grpcio server in this process, both exporters, best of ``--repeat``;
  the installed size of our ``grpc`` extra (grpcio and what it requires) against
  opentelemetry-exporter-otlp-proto-grpc and everything it requires. ``--pip-footprint``
  also ``pip install --target``s each into a temporary directory and sizes it (``du``).
- import time: ``import otelmetrics`` (and with the exporter) against a bare
  ``import opentelemetry.metrics`` and the reference SDK, each in a fresh process,
  median of ``--imports`` runs.
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata


def _record(provider, series: int) -> None:
    meter = provider.get_meter("bench", "1.0")
    counter = meter.create_counter("http.server.requests")
    histogram = meter.create_histogram("http.server.duration", unit="ms")
    for i in range(series // 2):
        attrs = {"http.route": "/api/v1/item/%d" % i, "http.method": "GET", "http.status_code": 200 + i % 5}
        counter.add(i + 1, attrs)
        histogram.record(i * 0.37, attrs)


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _collected(series: int):
    """(the reference's MetricsData, ours) for the same ``series`` measurements."""
    from opentelemetry.sdk.metrics import MeterProvider as RefProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader as RefReader

    import otelmetrics
    from otelmetrics.export import InMemoryMetricReader

    ref_reader = RefReader()
    _record(RefProvider(metric_readers=[ref_reader]), series)
    reader = InMemoryMetricReader()
    _record(otelmetrics.MeterProvider(metric_readers=[reader]), series)
    return ref_reader.get_metrics_data(), reader.get_metrics_data()


def bench_encode(series: int, repeat: int) -> list:
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    from otelmetrics._native import encode_request
    from otelmetrics.export.otlp_json import encode_request_json

    ref_data, data = _collected(series)

    ref_t = _best(lambda: encode_metrics(ref_data).SerializeToString(), max(3, repeat // 5))
    ours_t = _best(lambda: encode_request(data), repeat)
    ours_ref_t = _best(lambda: encode_request(ref_data), repeat)
    body = encode_request(data)
    ref_body = encode_metrics(ref_data).SerializeToString()
    rows = [
        ("encode %d series: reference" % series, "%.2f ms" % (ref_t * 1e3), ""),
        ("encode %d series: otelmetrics" % series, "%.3f ms" % (ours_t * 1e3), "%.0fx faster" % (ref_t / ours_t)),
        ("  (our encoder on the reference's data)", "%.3f ms" % (ours_ref_t * 1e3),
         "%.0fx faster" % (ref_t / ours_ref_t)),
        ("wire: protobuf (reference / ours)", "%d B / %d B" % (len(ref_body), len(body)), ""),
        ("wire: protobuf + gzip", "%d B" % len(gzip.compress(body, 6)), ""),
        ("wire: OTLP/JSON, + gzip", "%d B, %d B" % (len(encode_request_json(data)),
                                                    len(gzip.compress(encode_request_json(data), 6))), ""),
    ]
    return rows


def _closure(root: str) -> dict:
    """{distribution name: Distribution} for ``root`` and everything it requires (no extras)."""
    seen: dict = {}
    todo = [root]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = dist
        for req in dist.requires or ():
            if "extra ==" in req:
                continue
            marker = req.split(";", 1)[1] if ";" in req else None
            if marker and not _marker_holds(marker):
                continue
            todo.append(re.split(r"[\s<>=!~;\[(]", req.strip(), maxsplit=1)[0])
    return seen


def _marker_holds(marker: str) -> bool:
    try:
        from packaging.markers import Marker

        return Marker(marker).evaluate()
    except Exception:
        return True


def _dist_bytes(dist) -> int:
    total = 0
    for f in dist.files or ():
        p = dist.locate_file(f)
        if os.path.isfile(p) and "__pycache__" not in str(f):
            total += os.path.getsize(p)
    return total


def _file_bytes(path: str, strip: bool) -> int:
    if not (strip and path.endswith(".so") and shutil.which("strip")):
        return os.path.getsize(path)
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "x.so")
        shutil.copy(path, copy)
        subprocess.run(["strip", "--strip-debug", copy], check=True)
        return os.path.getsize(copy)


def _package_bytes(strip: bool) -> int:
    """Our package as a wheel would carry it (the install here is editable); with
    ``strip``, the extension modules without debug info (built with -g0 or stripped)."""
    import otelmetrics

    root = os.path.dirname(otelmetrics.__file__)
    total = 0
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        total += sum(_file_bytes(os.path.join(dirpath, f), strip) for f in files if not f.endswith(".pyc"))
    return total


def bench_footprint(build_wheel: bool) -> list:
    ours = _closure("otelmetrics")
    deps_bytes = sum(_dist_bytes(d) for k, d in ours.items() if k != "otelmetrics")
    ours_bytes, stripped_bytes = (deps_bytes + _package_bytes(False), deps_bytes + _package_bytes(True))
    ref = _closure("opentelemetry-exporter-otlp-proto-http")
    ref_bytes = sum(_dist_bytes(d) for d in ref.values())
    rows = [
        ("installed with OTLP exporter: reference", "%d dists, %.1f MB" % (len(ref), ref_bytes / 1e6),
         ", ".join(sorted(ref))[:70] + "..."),
        ("installed with OTLP exporter: otelmetrics", "%d dists, %.2f MB" % (len(ours), ours_bytes / 1e6),
         ", ".join(sorted(ours))),
        ("  the same, extension modules without debug info", "%.2f MB" % (stripped_bytes / 1e6), ""),
    ]
    if build_wheel:
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with tempfile.TemporaryDirectory() as out:
            subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, here],
                           check=True, capture_output=True)
            for name in os.listdir(out):
                rows.append(("wheel " + name, "%.0f KB" % (os.path.getsize(os.path.join(out, name)) / 1e3), ""))
    return rows


def _grpc_server():
    """A grpcio server on 127.0.0.1 answering every OTLP Export with an empty response."""
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(2))
    handler = grpc.unary_unary_rpc_method_handler(lambda request, context: b"")
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.metrics.v1.MetricsService", {"Export": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, "http://127.0.0.1:%d" % port


def bench_grpc(series: int, repeat: int) -> list:
    try:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as RefExporter

        from otelmetrics.export.grpc import OTLPMetricExporter
    except ImportError as e:
        return [("OTLP/gRPC", "skipped", "needs grpcio and opentelemetry-exporter-otlp-proto-grpc: %s" % e)]
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics

    ref_data, data = _collected(series)
    server, url = _grpc_server()
    try:
        ours = OTLPMetricExporter(url, timeout=10)
        ref = RefExporter(endpoint=url, insecure=True, timeout=10)
        ref_body = encode_metrics(ref_data).SerializeToString()
        (body,) = ours._encoder.bodies(data)
        ref_encode = _best(lambda: encode_metrics(ref_data).SerializeToString(), max(3, repeat // 5))
        ours_encode = _best(lambda: list(ours._encoder.bodies(data)), repeat)
        ref_export = _best(lambda: ref.export(ref_data), max(3, repeat // 5))
        ours_export = _best(lambda: ours.export(data), repeat)
        ours.shutdown()
        ref.shutdown()
    finally:
        server.stop(0)
    return [
        ("gRPC request bytes per export (reference / ours)", "%d B / %d B" % (len(ref_body), len(body)),
         "gzip (grpc-encoding): %d B" % len(gzip.compress(body, 6))),
        ("gRPC encode per export: reference", "%.2f ms" % (ref_encode * 1e3), ""),
        ("gRPC encode per export: otelmetrics", "%.3f ms" % (ours_encode * 1e3),
         "%.0fx faster" % (ref_encode / ours_encode)),
        ("gRPC export to a local server: reference", "%.2f ms" % (ref_export * 1e3), ""),
        ("gRPC export to a local server: otelmetrics", "%.2f ms" % (ours_export * 1e3),
         "%.1fx faster" % (ref_export / ours_export)),
    ]


def bench_grpc_footprint(pip_install: bool) -> list:
    ours = _closure("grpcio")
    ref = _closure("opentelemetry-exporter-otlp-proto-grpc")
    if "grpcio" not in ours:
        return [("OTLP/gRPC footprint", "skipped", "grpcio is not installed")]
    rows = [
        ("installed for OTLP/gRPC: reference exporter", "%d dists, %.1f MB" % (
            len(ref), sum(_dist_bytes(d) for d in ref.values()) / 1e6), ", ".join(sorted(ref))[:70] + "..."),
        ("installed for OTLP/gRPC: our grpc extra", "%d dists, %.1f MB" % (
            len(ours), sum(_dist_bytes(d) for d in ours.values()) / 1e6),
         ", ".join(sorted(ours)) + " (on top of otelmetrics)"),
    ]
    if pip_install:
        for what, reqs in (("reference exporter", ["opentelemetry-exporter-otlp-proto-grpc"]),
                           ("otelmetrics + grpc extra", ["opentelemetry-api", "grpcio"])):
            with tempfile.TemporaryDirectory() as target:
                subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--only-binary=:all:",
                                "--no-compile", "--target", target] + reqs, check=True, capture_output=True)
                dists = [n for n in os.listdir(target) if n.endswith(".dist-info")]
                du = subprocess.run(["du", "-sk", target], check=True, capture_output=True, text=True)
                kb = int(du.stdout.split()[0])
                extra = _package_bytes(True) / 1e3 if what.startswith("otelmetrics") else 0
                rows.append(("pip install --target, du: " + what, "%d dists, %.1f MB" % (
                    len(dists) + (1 if extra else 0), (kb + extra) / 1e3), " ".join(reqs)))
    return rows


def _import_ms(module: str, runs: int) -> float:
    code = "import time; t = time.perf_counter(); import %s; print(time.perf_counter() - t)" % module
    # Bytecode is cached as an installed wheel's would be (a warm-up run writes it), so
    # that our editable sources are not recompiled in every run while site-packages are not.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    samples = []
    for _ in range(runs + 1):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
        samples.append(float(out.stdout.strip()) * 1e3)
    return statistics.median(samples[1:])


def bench_imports(runs: int) -> list:
    bare = _import_ms("opentelemetry.metrics", runs)
    rows = [("import opentelemetry.metrics (bare API)", "%.1f ms" % bare, "1.00x")]
    modules = ["otelmetrics", "otelmetrics.export.otlp", "opentelemetry.sdk.metrics",
               "opentelemetry.exporter.otlp.proto.http.metric_exporter"]
    if importlib.util.find_spec("grpc") is not None:
        modules += ["otelmetrics.export.grpc", "opentelemetry.exporter.otlp.proto.grpc.metric_exporter"]
    for module in modules:
        ms = _import_ms(module, runs)
        rows.append(("import " + module, "%.1f ms" % ms, "%.2fx" % (ms / bare)))
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--imports", type=int, default=9, help="fresh processes per import measurement")
    ap.add_argument("--wheel", action="store_true", help="also build the wheel and report its size")
    ap.add_argument("--pip-footprint", action="store_true",
                    help="also pip install the OTLP/gRPC closures into temporary directories and size them")
    args = ap.parse_args(argv)
    rows = (bench_encode(args.series, args.repeat) + bench_grpc(args.series, args.repeat)
            + bench_footprint(args.wheel) + bench_grpc_footprint(args.pip_footprint) + bench_imports(args.imports))
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print("%-*s  %-*s  %s" % (w0, "what", w1, "value", "vs reference / note"))
    print("-" * (w0 + w1 + 30))
    for name, value, note in rows:
        print("%-*s  %-*s  %s" % (w0, name, w1, value, note))


if __name__ == "__main__":
    main()
