"""Prometheus scrape figures: ours against opentelemetry-exporter-prometheus and
prometheus_client's own registry, in the same run.

    python benchmarks/bench_prometheus.py [--series 2000] [--repeat 20]

- scrape: one scrape's body for ``--series`` series (half counter, half histogram with
  the default buckets, 3 attributes each), collection included, best of ``--repeat``:
  ours (``PrometheusMetricReader.exposition``), opentelemetry-sdk with
  opentelemetry-exporter-prometheus (``generate_latest`` of its registry), and
  prometheus_client's own Counter/Histogram (``generate_latest``).
- bytes per scrape: text 0.0.4, OpenMetrics, and gzip of the text.
- recording with a scraper: ns per ``Counter.add`` (3 attributes, existing series) with
  no scraper, with an HTTP scraper every second, and with one scraping back to back.
"""
from __future__ import annotations

import argparse
import gzip
import threading
import time
import urllib.request

from opentelemetry.exporter.prometheus import PrometheusMetricReader as RefReader
from opentelemetry.sdk.metrics import MeterProvider as RefProvider
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Counter as PCounter
from prometheus_client import Histogram as PHistogram
from prometheus_client.openmetrics.exposition import generate_latest as generate_latest_om

import otelmetrics
from bench_export import _best     # this directory is on sys.path when run as a script
from otelmetrics.export import PrometheusMetricReader, start_http_server


def _attrs(i: int) -> dict:
    return {"route": "/api/%d" % (i % 50), "method": ("GET", "POST", "PUT", "DELETE")[i % 4], "shard": str(i)}


def _fill(meter, n: int) -> None:
    c = meter.create_counter("http.requests", unit="{request}", description="requests")
    h = meter.create_histogram("http.duration", unit="ms", description="latency")
    for i in range(n // 2):
        c.add(i + 1, _attrs(i))
        h.record(i % 1000, _attrs(i))


def _client_registry(n: int) -> CollectorRegistry:
    reg = CollectorRegistry()
    c = PCounter("http_requests", "requests", ["route", "method", "shard"], registry=reg)
    h = PHistogram("http_duration_milliseconds", "latency", ["route", "method", "shard"], registry=reg,
                   buckets=(0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000))
    for i in range(n // 2):
        a = _attrs(i)
        c.labels(**a).inc(i + 1)
        h.labels(**a).observe(i % 1000)
    return reg


def _add_ns(counter, seconds: float = 1.0) -> float:
    a = _attrs(7)
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in range(1000):
            counter.add(1, a)
        n += 1000
        dt = time.perf_counter() - t0
        if dt >= seconds:
            return dt / n * 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    n, repeat = args.series, args.repeat

    reader = PrometheusMetricReader(registry=None)
    provider = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    _fill(provider.get_meter("bench", "1.0"), n)

    ref_registry = CollectorRegistry()
    ref_provider = RefProvider(metric_readers=[RefReader(registry=ref_registry)], shutdown_on_exit=False)
    _fill(ref_provider.get_meter("bench", "1.0"), n)

    client_registry = _client_registry(n)

    print("one scrape of %d series (collection included), best of %d:" % (n, repeat))
    rows = [
        ("otelmetrics", lambda: reader.exposition(), lambda: reader.exposition(openmetrics=True)),
        ("opentelemetry-exporter-prometheus", lambda: generate_latest(ref_registry),
         lambda: generate_latest_om(ref_registry)),
        ("prometheus_client registry", lambda: generate_latest(client_registry),
         lambda: generate_latest_om(client_registry)),
    ]
    for name, text, om in rows:
        t = _best(text, repeat)
        body = text()
        print("  %-36s %7.1f ms   text %7d B   OpenMetrics %7d B   gzip %6d B"
              % (name, t * 1e3, len(body), len(om()), len(gzip.compress(body, 6))))

    counter = provider.get_meter("bench", "1.0").create_counter("http.requests", unit="{request}",
                                                                 description="requests")
    print("Counter.add (existing series, 3 attributes):")
    print("  no scraper                      %6.0f ns" % _add_ns(counter))
    server = start_http_server(0, "127.0.0.1", reader=reader)
    url = "http://127.0.0.1:%d/metrics" % server.port
    stop = threading.Event()
    scrapes = [0]

    def scraper(interval: float) -> None:
        while not stop.is_set():
            urllib.request.urlopen(url, timeout=10).read()
            scrapes[0] += 1
            stop.wait(interval)

    for label, interval in (("scraped every 1 s", 1.0), ("scraped back to back", 0.0)):
        stop.clear()
        scrapes[0] = 0
        t = threading.Thread(target=scraper, args=(interval,), daemon=True)
        t.start()
        ns = _add_ns(counter, 3.0)
        stop.set()
        t.join()
        print("  %-31s %6.0f ns   (%d scrapes)" % (label, ns, scrapes[0]))
    server.stop()
    provider.shutdown()
    ref_provider.shutdown()


if __name__ == "__main__":
    main()
