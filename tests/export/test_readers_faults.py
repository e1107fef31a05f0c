"""The periodic reader while its collector hangs (accepts requests and never answers):
delta collections made by force_flush() or shutdown() during a hung export are not
discarded, and with a spool, shutdown returns within its timeout and leaves everything
undelivered in the spool. Measured as measurements recorded vs received."""
import threading
import time
from collections import Counter as Tally

import pytest
from opentelemetry.metrics import Counter

import otelmetrics
from otelmetrics.export import AggregationTemporality, MetricExportResult, MetricExporter, PeriodicExportingMetricReader
from otelmetrics.export.otlp import OTLPMetricExporter
from faulty_servers import Collector

DELTA = {Counter: AggregationTemporality.DELTA}
ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_TIMEOUT",
       "OTELMETRICS_EXPORTER_QUEUE_BYTES", "OTELMETRICS_EXPORTER_SPOOL_DIR", "OTEL_METRIC_EXPORT_INTERVAL",
       "OTEL_METRIC_EXPORT_TIMEOUT")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


class Device:
    """A provider whose periodic reader exports delta counters to ``exporter``;
    ``record`` adds 1 per measurement and tallies what it recorded."""

    def __init__(self, exporter, interval_ms, timeout_ms):
        self.reader = PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms,
                                                    export_timeout_millis=timeout_ms)
        self.provider = otelmetrics.MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)
        self.counter = self.provider.get_meter("device").create_counter("samples")
        self.recorded = Tally()

    def record(self, n):
        for i in range(n):
            sensor = "s%d" % (i % 4)
            self.counter.add(1, {"sensor": sensor})
            self.recorded[("samples", (("sensor", sensor),))] += 1


def test_force_flush_during_a_hung_export_loses_no_delta_data():
    with Collector() as collector:
        exporter = OTLPMetricExporter(collector.url, timeout=1, preferred_temporality=DELTA)
        device = Device(exporter, interval_ms=200, timeout_ms=1000)
        collector.hang.set()
        flushes = []
        end = time.monotonic() + 4
        while time.monotonic() < end:
            device.record(700)
            flushes.append(device.provider.force_flush(timeout_millis=300))
        hung = collector.hung
        collector.recover()
        # Delivered by the periodic exports once the collector answers again.
        deadline = time.monotonic() + 15
        while collector.sums() != device.recorded and time.monotonic() < deadline:
            time.sleep(0.1)
        device.provider.shutdown(timeout_millis=5000)
        recorded, received = sum(device.recorded.values()), sum(collector.sums().values())
        print("force_flush x%d during a hang (%d requests hung): recorded %d, received %d, "
              "backlog dropped %d" % (len(flushes), hung, recorded, received, device.reader._backlog.dropped))
        assert hung >= 3 and not all(flushes)
        assert collector.sums() == device.recorded
        assert device.reader._backlog.dropped == 0


def test_shutdown_during_a_hung_export_leaves_everything_in_the_spool(tmp_path):
    """README: "Shutdown with an unreachable collector returns within its timeout and leaves
    the undelivered data in the spool." """
    with Collector() as collector:
        collector.hang.set()
        exporter = OTLPMetricExporter(collector.url, timeout=30, spool_dir=str(tmp_path),
                                      preferred_temporality=DELTA)
        device = Device(exporter, interval_ms=100, timeout_ms=30_000)
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            device.record(400)
            time.sleep(0.02)
        assert collector.hung >= 1          # the periodic export hangs
        start = time.monotonic()
        device.provider.shutdown(timeout_millis=3000)
        took = time.monotonic() - start
        spooled = exporter.stats()["spooled_requests"]
        collector.recover()
        replay = OTLPMetricExporter(collector.url, timeout=10, spool_dir=str(tmp_path))
        assert replay.force_flush() is True
        replay.shutdown()
        recorded, received = sum(device.recorded.values()), sum(collector.sums().values())
        print("shutdown(3 s) during a hung export: returned in %.2f s, %d requests spooled; "
              "recorded %d, received after replay %d" % (took, spooled, recorded, received))
        assert took < 3.3
        assert spooled >= 1 and exporter.stats()["requests_dropped_shutdown"] == 0
        assert collector.sums() == device.recorded


class Stuck(MetricExporter):
    """An exporter whose first export blocks until released; it keeps what it is given."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()
        self.batches = []
        self.first = True

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        if self.first:
            self.first = False
            self.release.wait(30)
        self.batches.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis=10_000):
        return True

    def shutdown(self, timeout_millis=30_000, **kwargs):
        self.release.set()


def test_the_backlog_is_bounded_and_counts_what_it_drops():
    exporter = Stuck()
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    reader._backlog.limit = 3
    provider = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    counter = provider.get_meter("m").create_counter("c")
    counter.add(1)
    blocked = threading.Thread(target=reader.collect)
    blocked.start()
    while exporter.first:
        time.sleep(0.01)
    for _ in range(5):                       # 5 collections wait; the 2 oldest are dropped
        counter.add(1)
        reader.force_flush(timeout_millis=50)
    assert reader._backlog.dropped == 2 and reader._backlog.dropped_points == 2
    exporter.release.set()
    blocked.join(5)
    assert len(exporter.batches) == 4        # the hung one, then the 3 that waited, in order
    provider.shutdown()
