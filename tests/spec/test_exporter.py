"""Spec: MetricExporter, Push Metric Exporter (Export(batch), ForceFlush, Shutdown),
MetricProducer (Produce batch), MetricFilter."""
import io
import threading
import time

import pytest

import otelmetrics
from opentelemetry.metrics import Observation

from otelmetrics.export import (
    AttributesFilterResult,
    ConsoleMetricExporter,
    InMemoryMetricReader,
    MetricFilter,
    MetricFilterResult,
    MetricExporter,
    MetricExportResult,
    MetricProducer,
    MetricsData,
    PeriodicExportingMetricReader,
)

from _spec_util import RecordingExporter, metrics_of
from _util import points, provider


def one_collection():
    mp, r = provider()
    mp.get_meter("lib", "1.0", "https://schema").create_counter("c").add(1)
    return r.get_metrics_data()


def exporters():
    from otelmetrics.export import OTLPMetricExporter
    return [ConsoleMetricExporter(out=io.StringIO()),
            OTLPMetricExporter(endpoint="http://127.0.0.1:9/v1/metrics", timeout=1)]


# -- MetricExporter / Push Metric Exporter: interface -------------------------------

def test_push_metric_exporter__interface_export_forceflush_shutdown():
    for name in ("export", "force_flush", "shutdown"):
        assert name in MetricExporter.__abstractmethods__
    with pytest.raises(TypeError):
        MetricExporter()


# -- Export(batch) ------------------------------------------------------------------

def test_export_batch__exporter_sees_the_meter_of_each_point():
    exporter = RecordingExporter()
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    mp = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    mp.get_meter("lib", "1.0", "https://schema", {"k": "v"}).create_counter("c").add(1)
    mp.force_flush()
    (sm,) = exporter.exports[0].resource_metrics[0].scope_metrics
    assert (sm.scope.name, sm.scope.version, sm.scope.schema_url) == ("lib", "1.0", "https://schema")
    assert [m.name for m in sm.metrics] == ["c"]
    mp.shutdown()


def test_export_batch__result_is_success_or_failure():
    data = one_collection()
    assert ConsoleMetricExporter(out=io.StringIO()).export(data) is MetricExportResult.SUCCESS

    class Broken(io.StringIO):
        def write(self, s):
            raise OSError("disk full")

    assert ConsoleMetricExporter(out=Broken()).export(data) is MetricExportResult.FAILURE


def test_export_batch__sdk_does_not_retry_a_failed_export():
    exporter = RecordingExporter(result=MetricExportResult.FAILURE)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    mp = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    mp.get_meter("m").create_counter("c").add(1)
    assert mp.force_flush() is False
    assert len(exporter.exports) == 1
    mp.shutdown()


def test_export_batch__not_blocking_indefinitely():
    # The OTLP exporter gives up at its timeout against a server that never answers.
    import socket
    from otelmetrics.export import OTLPMetricExporter

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    try:
        exp = OTLPMetricExporter(endpoint="http://127.0.0.1:%d/v1/metrics" % srv.getsockname()[1], timeout=0.3)
        t0 = time.monotonic()
        assert exp.export(one_collection()) is MetricExportResult.FAILURE
        assert time.monotonic() - t0 < 3.0
        exp.shutdown()
    finally:
        srv.close()


# -- ForceFlush (exporter) -----------------------------------------------------------

def test_forceflush__exporter_reports_status():
    for exp in exporters():
        assert exp.force_flush(timeout_millis=100) is True
        exp.shutdown()


# -- Shutdown (exporter) -------------------------------------------------------------

def test_shutdown__export_after_exporter_shutdown_fails():
    data = one_collection()
    for exp in exporters():
        exp.shutdown()
        t0 = time.monotonic()
        assert exp.export(data) is MetricExportResult.FAILURE
        assert time.monotonic() - t0 < 1.0


def test_shutdown__exporter_shutdown_called_once_by_the_sdk():
    exporter = RecordingExporter()
    mp = otelmetrics.MeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter, 3_600_000)],
                                   shutdown_on_exit=False)
    mp.shutdown()
    mp.shutdown()
    assert exporter.shutdowns == 1


# -- MetricProducer ------------------------------------------------------------------

class BridgeProducer(MetricProducer):
    def __init__(self, fail=False):
        self.fail = fail
        self.mp, self.r = provider()
        self.mp.get_meter("bridge.scope").create_counter("bridged").add(2)

    def produce(self, timeout_millis=10_000):
        if self.fail:
            raise RuntimeError("source unavailable")
        return self.r.get_metrics_data()


def test_metricproducer__interface_and_produce_batch():
    assert "produce" in MetricProducer.__abstractmethods__
    data = BridgeProducer().produce()
    assert isinstance(data, MetricsData)
    (sm,) = data.resource_metrics[0].scope_metrics
    assert sm.scope.name == "bridge.scope"       # one scope identifying the producer


def test_produce_batch__collected_with_the_sdk_and_failures_isolated():
    r = InMemoryMetricReader(metric_producers=[BridgeProducer(fail=True), BridgeProducer()])
    mp = otelmetrics.MeterProvider(metric_readers=[r], shutdown_on_exit=False)
    mp.get_meter("m").create_counter("own").add(1)
    assert sorted(m.name for m in metrics_of(r.get_metrics_data())) == ["bridged", "own"]


# -- MetricFilter (Development) --------------------------------------------------------

class _KeepEven(MetricFilter):
    """Drops stream "dropped", keeps "kept", and of "partial" only even k."""

    def __init__(self):
        self.metric_calls = []

    def test_metric(self, scope, name, kind, unit):
        self.metric_calls.append((scope.name, name, kind.__name__, unit))
        return {"dropped": MetricFilterResult.DROP, "partial": MetricFilterResult.ACCEPT_PARTIAL}.get(
            name, MetricFilterResult.ACCEPT)

    def test_attributes(self, scope, name, kind, unit, attributes):
        return AttributesFilterResult.ACCEPT if attributes.get("k", 0) % 2 == 0 else AttributesFilterResult.DROP


def test_metricfilter__reader_applies_test_metric_and_test_attributes():
    f = _KeepEven()
    calls = []
    r = InMemoryMetricReader(metric_filter=f)
    mp = otelmetrics.MeterProvider(metric_readers=[r], shutdown_on_exit=False)
    m = mp.get_meter("m")
    for name in ("kept", "dropped", "partial"):
        c = m.create_counter(name, unit="1")
        for k in range(4):
            c.add(1, {"k": k})
    m.create_observable_gauge("dropped_gauge_is_kept", callbacks=[lambda o: [Observation(1)]])
    m.create_observable_gauge("dropped", callbacks=[lambda o: calls.append(1) or [Observation(1)]])
    got = {n: sorted(p.attributes["k"] for p in pts) if n != "dropped_gauge_is_kept" else len(pts)
           for n, pts in points(r).items()}
    assert got == {"kept": [0, 1, 2, 3], "partial": [0, 2], "dropped_gauge_is_kept": 1}
    assert ("m", "partial", "Sum", "1") in f.metric_calls
    assert calls == []        # a dropped observable's callback is not even run


def test_metricfilter__applies_to_metric_producers():
    inner = InMemoryMetricReader()
    other = otelmetrics.MeterProvider(metric_readers=[inner], shutdown_on_exit=False)
    c = other.get_meter("bridge").create_counter("partial")
    for k in range(4):
        c.add(1, {"k": k})
    data = inner.get_metrics_data()

    class Producer(MetricProducer):
        def produce(self, timeout_millis=10_000):
            return data

    r = InMemoryMetricReader(metric_producers=[Producer()], metric_filter=_KeepEven())
    otelmetrics.MeterProvider(metric_readers=[r], shutdown_on_exit=False)
    assert sorted(p.attributes["k"] for p in points(r)["partial"]) == [0, 2]


def test_metricfilter__a_failing_filter_keeps_the_data(caplog):
    class Broken(MetricFilter):
        def test_metric(self, *a):
            raise RuntimeError("bad filter")

    r = InMemoryMetricReader(metric_filter=Broken())
    mp = otelmetrics.MeterProvider(metric_readers=[r], shutdown_on_exit=False)
    mp.get_meter("m").create_counter("c").add(1)
    assert points(r)["c"][0].value == 1


def test_metricfilter__must_be_a_filter():
    with pytest.raises(TypeError, match="metric_filter"):
        InMemoryMetricReader(metric_filter=object())


# -- Concurrency (MetricExporter) --------------------------------------------------------

def test_concurrency__exporter_forceflush_and_shutdown_concurrently():
    for exp in exporters():
        errors = []

        def run(fn):
            try:
                fn(timeout_millis=500)
            except Exception as e:  # pragma: no cover - the failure being tested for
                errors.append(e)

        threads = [threading.Thread(target=run, args=(f,)) for f in (exp.force_flush, exp.shutdown) * 4]
        for t in threads:
            t.start()
        for t in threads:
            t.join(5)
        assert not errors and not any(t.is_alive() for t in threads)
