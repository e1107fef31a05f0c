"""Side-by-side benchmark: otelmetrics vs opentelemetry-sdk (and prometheus_client).

    python benchmarks/bench.py            # full run (~1 min)
    python benchmarks/bench.py --quick    # fewer iterations

Absolute times depend on the machine and its load; the ratios, measured in the
same process a few milliseconds apart, are what to compare between runs. Every
figure is the best of several repeats (the least disturbed one).
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc

ATTRS = {"http.request.method": "GET", "http.response.status_code": 200, "http.route": "/api/v1/items"}
SERIES = 2000


def best_ns(fn, n: int, repeat: int) -> float:
    """Best per-call time of ``fn(n)`` (which loops n times itself), in ns."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        fn(n)
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


def loop_overhead(n: int, repeat: int) -> float:
    def f(n):
        for _ in range(n):
            pass
    return best_ns(f, n, repeat)


# -- the SDKs under test -----------------------------------------------------------

def ours():
    import otelmetrics
    from otelmetrics.export import InMemoryMetricReader
    from otelmetrics.view import ExponentialBucketHistogramAggregation, View

    r = InMemoryMetricReader()
    views = [View(instrument_name="expo", aggregation=ExponentialBucketHistogramAggregation())]
    return otelmetrics.MeterProvider(metric_readers=[r], views=views, shutdown_on_exit=False), r


def reference():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

    r = InMemoryMetricReader()
    views = [View(instrument_name="expo", aggregation=ExponentialBucketHistogramAggregation())]
    return MeterProvider(metric_readers=[r], views=views, shutdown_on_exit=False), r


def _has_expo() -> bool:
    try:
        import otelmetrics._native.aggregations  # noqa: F401
        return True
    except ImportError:
        return False


def record_cases(make, n, repeat, bound=True):
    provider, _ = make()
    meter = provider.get_meter("bench")
    counter = meter.create_counter("c")
    hist = meter.create_histogram("h")
    attrs = dict(ATTRS)
    out = {}

    def add_attrs(n, add=counter.add, a=attrs):
        for _ in range(n):
            add(1, a)

    def add_plain(n, add=counter.add):
        for _ in range(n):
            add(1)

    def record(n, rec=hist.record, a=attrs):
        for i in range(n):
            rec(123.4, a)

    out["counter.add(1, 3 attrs)"] = best_ns(add_attrs, n, repeat)
    out["counter.add(1)"] = best_ns(add_plain, n, repeat)
    out["histogram.record(v, 3 attrs)"] = best_ns(record, n, repeat)
    if _has_expo() or make is reference:
        expo = meter.create_histogram("expo")
        values = [1.5 ** (i % 60) * 0.001 for i in range(1024)]

        def expo_record(n, rec=expo.record, a=attrs, v=values):
            for i in range(n):
                rec(v[i & 1023], a)
        out["exponential histogram record (3 attrs)"] = best_ns(expo_record, max(n // 4, 1000), repeat)
    if bound and hasattr(counter, "bind"):
        handle = counter.bind(attrs)

        def bound_add(n, add=handle.add):
            for _ in range(n):
                add(1)
        out["bound handle add(1)"] = best_ns(bound_add, n, repeat)
    provider.shutdown()
    return out


def prometheus_cases(n, repeat):
    try:
        import prometheus_client as pc
    except ImportError:
        return {}
    reg = pc.CollectorRegistry()
    c = pc.Counter("c", "c", list(k.replace(".", "_") for k in ATTRS), registry=reg)
    h = pc.Histogram("h", "h", list(k.replace(".", "_") for k in ATTRS), registry=reg)
    labels = {k.replace(".", "_"): v for k, v in ATTRS.items()}
    plain = pc.Counter("p", "p", registry=reg)
    child = c.labels(**labels)

    def add_attrs(n):
        for _ in range(n):
            c.labels(**labels).inc(1)

    def add_plain(n, inc=plain.inc):
        for _ in range(n):
            inc(1)

    def record(n):
        for _ in range(n):
            h.labels(**labels).observe(123.4)

    def bound_add(n, inc=child.inc):
        for _ in range(n):
            inc(1)
    return {
        "counter.add(1, 3 attrs)": best_ns(add_attrs, n, repeat),
        "counter.add(1)": best_ns(add_plain, n, repeat),
        "histogram.record(v, 3 attrs)": best_ns(record, n, repeat),
        "bound handle add(1)": best_ns(bound_add, n, repeat),
    }


def series_attrs():
    return [{"device": "sensor-%d" % i, "site": "plant-%d" % (i % 7), "kind": "temp"} for i in range(SERIES)]


def memory_per_series(make) -> float:
    """Bytes per series for one counter + one histogram, 2000 series each,
    counting only what the SDK allocates (the attribute dicts pre-exist)."""
    attrs = series_attrs()
    gc.collect()
    tracemalloc.start()
    provider, reader = make()
    meter = provider.get_meter("mem")
    counter = meter.create_counter("c")
    hist = meter.create_histogram("h")
    counter.add(1, attrs[0])
    hist.record(1.0, attrs[0])
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for a in attrs[1:]:
        counter.add(1, a)
        hist.record(3.0, a)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    provider.shutdown()
    return (after - before) / (SERIES - 1)


def collect_time(make, repeat) -> float:
    """ms to collect one counter with 2000 series into MetricsData."""
    provider, reader = make()
    counter = provider.get_meter("col").create_counter("c")
    for a in series_attrs():
        counter.add(1, a)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        data = reader.get_metrics_data()
        best = min(best, (time.perf_counter_ns() - t0) / 1e6)
    assert len(data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points) >= SERIES - 1
    provider.shutdown()
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations")
    args = ap.parse_args(argv)
    n, repeat = (20_000, 3) if args.quick else (200_000, 5)
    import opentelemetry.sdk.version as refv

    loop = loop_overhead(n, repeat)
    mine = record_cases(ours, n, repeat)
    ref = record_cases(reference, max(n // 20, 2000), repeat, bound=False)
    prom = prometheus_cases(max(n // 4, 2000), repeat)

    print("otelmetrics vs opentelemetry-sdk %s (and prometheus_client), Python %s"
          % (refv.__version__, sys.version.split()[0]))
    print("per-call times include the benchmark loop (~%.0f ns)\n" % loop)
    head = "%-40s %12s %12s %10s %12s %10s" % ("operation", "otelmetrics", "otel-sdk", "speedup",
                                                 "prometheus", "vs prom")
    print(head)
    print("-" * len(head))
    for op, t in mine.items():
        r = ref.get(op)
        p = prom.get(op)
        print("%-40s %9.0f ns %9s %10s %12s %10s" % (
            op, t,
            "%.0f ns" % r if r else "n/a",
            "%.1fx" % (r / t) if r else "",
            "%.0f ns" % p if p else "n/a",
            "%.1fx" % (p / t) if p else ""))
    for op in ref:
        if op not in mine:
            print("%-40s %12s %9.0f ns   (not built yet)" % (op, "n/a", ref[op]))

    mem_mine, mem_ref = memory_per_series(ours), memory_per_series(reference)
    col_mine, col_ref = collect_time(ours, repeat), collect_time(reference, repeat)
    print()
    print("%-40s %9.0f B  %9.0f B  %9.1fx smaller" % ("memory per series (sum + histogram)",
                                                      mem_mine, mem_ref, mem_ref / mem_mine))
    print("%-40s %9.3f ms %9.3f ms %9.1fx" % ("collect 2000 series", col_mine, col_ref,
                                              col_ref / col_mine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
