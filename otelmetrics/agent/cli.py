"""``otelmetrics-agent``: export this host's metrics to the console or over OTLP.

    otelmetrics-agent                                   # JSON on stdout every 10 s
    otelmetrics-agent --exporter otlp --endpoint http://collector:4318

The standard OTEL_* variables apply (OTEL_METRICS_EXPORTER, OTEL_METRIC_EXPORT_INTERVAL,
OTEL_EXPORTER_OTLP_*, OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME); options given on
the command line win over them.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import List, Optional
from urllib.parse import urlsplit

import otelmetrics
from otelmetrics import _env, export
from otelmetrics.agent.host import HostMetrics
from otelmetrics.agent.resource import agent_resource
from otelmetrics.export import ConsoleMetricExporter, MetricExporter, MetricExportResult

DEFAULT_INTERVAL_SECONDS = 10.0


class StopAfter(MetricExporter):
    """Passes the first ``count`` exports to ``exporter``, then sets ``done``; the
    ones after (the flush at shutdown) are dropped, so exactly ``count`` go out.
    ``failures`` counts those the exporter did not deliver."""

    def __init__(self, exporter: MetricExporter, count: int, done: threading.Event) -> None:
        super().__init__(getattr(exporter, "_preferred_temporality", None),
                         getattr(exporter, "_preferred_aggregation", None))
        self._exporter = exporter
        self._left = count
        self._done = done
        self.failures = 0

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        if self._left <= 0:
            return MetricExportResult.SUCCESS
        self._left -= 1
        result = MetricExportResult.FAILURE
        try:
            result = self._exporter.export(metrics_data, timeout_millis=timeout_millis)
            return result
        finally:
            if result is not MetricExportResult.SUCCESS:
                self.failures += 1
            if self._left == 0:
                self._done.set()

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._exporter.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        self._exporter.shutdown(timeout_millis)


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError("must be greater than 0")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="otelmetrics-agent",
        description="Export this host's CPU, memory, disk, filesystem, network, process, "
                    "temperature and Raspberry Pi throttling metrics with OpenTelemetry.",
        epilog="OTEL_* environment variables apply; options given here win over them.")
    p.add_argument("--exporter", choices=("console", "otlp"),
                   help="where metrics go: JSON on stdout, or OTLP/HTTP "
                        "(default: OTEL_METRICS_EXPORTER, else console; otlp if --endpoint is given)")
    p.add_argument("--endpoint", metavar="URL",
                   help="OTLP/HTTP collector, e.g. http://collector:4318 (/v1/metrics is added when "
                        "the URL has no path); default: OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT, "
                        "else http://localhost:4318")
    p.add_argument("--interval", type=_positive(float), metavar="SECONDS",
                   help="seconds between exports (default: OTEL_METRIC_EXPORT_INTERVAL, else %g)"
                        % DEFAULT_INTERVAL_SECONDS)
    p.add_argument("--count", type=_positive(int), metavar="N",
                   help="stop after N exports, with exit status 1 if any failed "
                        "(default: run until SIGINT or SIGTERM, then flush and exit 0)")
    p.add_argument("--root", default="/", metavar="PATH",
                   help="where the host's /proc and /sys are, e.g. /host in a container that "
                        "mounts the host's root there (default: /)")
    return p


def _endpoint_url(endpoint: str) -> str:
    # Like OTEL_EXPORTER_OTLP_ENDPOINT, a bare collector address gets the metrics path.
    url = _env.normalize_endpoint(endpoint)
    return url.rstrip("/") + _env.METRICS_PATH if urlsplit(url).path in ("", "/") else url


def _exporter_name(args) -> Optional[str]:
    if args.exporter:
        return args.exporter
    if args.endpoint:
        return "otlp"
    if _env.env(_env.OTEL_METRICS_EXPORTER) is None:
        return "console"
    names = _env.metrics_exporters()
    return names[0] if names else None


def _exporter(name: str, endpoint: Optional[str]) -> MetricExporter:
    if name == "otlp":
        return export.OTLPMetricExporter(endpoint=_endpoint_url(endpoint) if endpoint else None)
    return ConsoleMetricExporter()


def _interval_millis(args) -> float:
    if args.interval is not None:
        return args.interval * 1e3
    if _env.env(_env.OTEL_METRIC_EXPORT_INTERVAL) is not None:
        return _env.export_interval_millis()
    return DEFAULT_INTERVAL_SECONDS * 1e3


def main(argv: Optional[List[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(format="otelmetrics-agent: %(levelname)s: %(message)s")

    if not os.path.isdir(os.path.join(args.root, "proc")):
        print("otelmetrics-agent: no proc directory under --root %s" % args.root, file=sys.stderr)
        return 2
    name = _exporter_name(args)
    if name is None:
        print("otelmetrics-agent: OTEL_METRICS_EXPORTER=none leaves nothing to export to; "
              "choose --exporter console or otlp", file=sys.stderr)
        return 2
    try:
        exporter = _exporter(name, args.endpoint)
    except ValueError as e:  # a bad endpoint, certificate path, ...
        print("otelmetrics-agent: %s" % e, file=sys.stderr)
        return 2

    done = threading.Event()
    if args.count:
        exporter = StopAfter(exporter, args.count, done)
    interval = _interval_millis(args)
    provider = otelmetrics.configure(resource=agent_resource(args.root), exporter=[exporter],
                                     export_interval_millis=interval, set_global=False,
                                     shutdown_on_exit=False)
    meter = provider.get_meter("otelmetrics.agent", otelmetrics.__version__)
    # Half an interval: each file is read once per collection, and afresh for the next.
    HostMetrics(meter, root=args.root, max_age=interval / 2e3)

    previous = {signum: signal.signal(signum, lambda *_: done.set())
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        done.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        provider.shutdown()  # with --count this flush is dropped; otherwise it is the last export
    # With --count the exit status says whether every export was delivered (a connectivity check).
    return 1 if isinstance(exporter, StopAfter) and exporter.failures else 0
