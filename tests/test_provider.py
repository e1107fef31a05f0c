"""MeterProvider: meter configurator / MeterConfig, Instrument enabled, MetricProducers
collected with the SDK (spec sections MeterConfigurator / MeterConfig, Instrument
enabled, MetricProducer); stats(): dropped measurements by reason, overflow per stream,
and the counters of the readers' exporters (exports, requests queued, dropped, bytes
kept); the SDK's self-metrics; Diagnostics, its counted and rate-limited warnings."""
import io
import logging
import time

import pytest
from opentelemetry.metrics import Observation

import otelmetrics
from otelmetrics import _provider
from otelmetrics.export import (
    ConsoleMetricExporter,
    InMemoryMetricReader,
    MetricExporter,
    MetricExportResult,
    MetricProducer,
    MetricsData,
    PeriodicExportingMetricReader,
)
from otelmetrics.view import DropAggregation, View

from _util import points
from export.test_otlp_queue import UNAVAILABLE, Gateway, clean_env, exporter_for, server  # noqa: F401
from otlp_receiver import Reply, free_port


def make(**kw):
    r = InMemoryMetricReader(metric_producers=kw.pop("metric_producers", ()))
    return otelmetrics.MeterProvider(metric_readers=[r], shutdown_on_exit=False, **kw), r


def test_meter_configurator_disables_meters_by_pattern():
    mp, r = make(meter_configurator={"noisy.*": False})
    quiet = mp.get_meter("noisy.lib").create_counter("q")
    loud = mp.get_meter("app").create_counter("a")
    quiet.add(1)
    loud.add(1)
    assert set(points(r)) == {"a"}
    assert not quiet.enabled() and loud.enabled()


def test_meter_configurator_callable_and_meter_config():
    mp, r = make(meter_configurator=lambda scope: otelmetrics.MeterConfig(enabled=scope.version != "0.0"))
    c = mp.get_meter("x", "0.0").create_counter("c")
    assert not c.enabled()
    assert mp.get_meter("x", "1.0").create_counter("c").enabled()


def test_meter_configurator_that_raises_keeps_meters_enabled():
    def boom(scope):
        raise RuntimeError("bad config")

    mp, r = make(meter_configurator=boom)
    assert mp.get_meter("x").create_counter("c").enabled()


def test_bad_meter_configurator_fails_fast():
    with pytest.raises(TypeError, match="meter_configurator"):
        make(meter_configurator=42)


def test_enabled_false_when_every_view_drops():
    mp, r = make(views=[View(instrument_name="dropped", aggregation=DropAggregation())])
    m = mp.get_meter("m")
    assert not m.create_counter("dropped").enabled()
    assert m.create_counter("kept").enabled()
    assert m.create_observable_gauge("g", callbacks=[]).enabled()
    mp.shutdown()
    assert not m.create_counter("late").enabled()   # created after shutdown: inert


def test_enabled_false_after_shutdown():
    mp, r = make()
    c = mp.get_meter("m").create_counter("c")
    assert c.enabled()
    mp.shutdown()
    assert not c.enabled()


class StaticProducer(MetricProducer):
    def __init__(self, data):
        self.data = data

    def produce(self, timeout_millis=10_000):
        return self.data


def test_metric_producers_are_collected_with_the_sdk():
    other_r = InMemoryMetricReader()
    other = otelmetrics.MeterProvider(metric_readers=[other_r], shutdown_on_exit=False)
    other.get_meter("bridge").create_counter("bridged").add(4)
    bridged = other_r.get_metrics_data()

    class Failing(MetricProducer):
        def produce(self, timeout_millis=10_000):
            raise RuntimeError("bridge down")

    mp, r = make(metric_producers=[StaticProducer(bridged), Failing(), StaticProducer(None)])
    mp.get_meter("m").create_counter("own").add(1)
    got = points(r)
    assert got["own"][0].value == 1 and got["bridged"][0].value == 4
    # Producers alone (nothing recorded in the SDK) still export.
    mp2, r2 = make(metric_producers=[StaticProducer(bridged)])
    assert isinstance(r2.get_metrics_data(), MetricsData)


# -- stats(): drops by reason, overflow per stream, the counters of the readers' exporters --

EXPORTER_KEYS = {
    "exports_succeeded", "exports_failed", "requests_sent", "requests_replayed", "requests_queued",
    "requests_rejected", "requests_dropped_queue_full", "requests_dropped_shutdown", "queued_requests",
    "queued_bytes", "spooled_requests", "spooled_bytes", "spool_write_errors", "spool_files_skipped",
}


def test_diagnostics_count_every_event_and_warn_once_an_interval_with_the_tally(caplog, monkeypatch):
    d = _provider.Diagnostics()
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        for _ in range(50):
            d.note("a", "thing %s failed", "A")
        d.note(("b", 1), "other")
        assert [r.getMessage() for r in caplog.records] == ["thing A failed (1 time(s))", "other (1 time(s))"]
        monkeypatch.setattr(_provider, "WARN_INTERVAL_S", 0.05)
        time.sleep(0.06)
        d.note("a", "thing %s failed", "A")        # the 49 held back, and this one
        d.note(("b", 1), "other")
    assert [r.getMessage()[:40] for r in caplog.records[2:]] == ["thing A failed (50 time(s) in the last 0",
                                                                 "other (1 time(s) in the last 0 s)"]
    assert d.counts == {"a": 51, ("b", 1): 2}


def test_drops_and_overflow_without_an_exporter():
    reader = InMemoryMetricReader()
    provider = otelmetrics.MeterProvider(
        metric_readers=[reader], shutdown_on_exit=False,
        views=[View(instrument_name="conns", aggregation_cardinality_limit=3)])
    meter = provider.get_meter("m")
    counter = meter.create_counter("requests")
    counter.add(float("nan"))
    counter.add("seven")
    counter.add(-1)
    counter.add(1, {"ok": None})          # kept, without the attribute

    def broken(options):
        raise RuntimeError("sensor unplugged")

    meter.create_observable_gauge("temp", callbacks=[broken])
    conns = meter.create_up_down_counter("conns")
    for i in range(10):
        conns.add(1, {"peer": i})         # 2 series of their own, 8 into the overflow series
    reader.get_metrics_data()

    stats = provider.stats()
    by_reason = stats["dropped_by_reason"]
    assert by_reason["dropped: NaN or infinite value"] == 1
    assert by_reason["dropped: non-numeric value"] == 1
    assert by_reason["dropped: negative value on a monotonic instrument"] == 1
    assert sum(n for r, n in by_reason.items() if r.startswith("kept without")) == 1
    assert by_reason["callback error"] == 1
    assert stats["dropped"]["requests: dropped: non-numeric value"] == 1
    assert stats["overflowed"] == 8 and stats["overflowed_by_stream"] == {"conns": 8}
    assert not EXPORTER_KEYS & set(stats)      # no exporter keeps counters here
    provider.shutdown()


def test_exporter_counters_are_added_up_over_readers(server):
    down = exporter_for("http://127.0.0.1:%d/v1/metrics" % free_port())
    exporters = (exporter_for(server.url), down, ConsoleMetricExporter(out=io.StringIO()))
    provider = otelmetrics.MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(e, export_interval_millis=3_600_000) for e in exporters],
        shutdown_on_exit=False)
    counter = provider.get_meter("m").create_counter("packets")
    counter.add(5)
    for reader in provider._readers:
        reader.collect(timeout_millis=2_000)
    stats = provider.stats()
    assert EXPORTER_KEYS <= set(stats)
    assert stats["exports_succeeded"] == 1 and stats["exports_failed"] == 1
    assert stats["requests_sent"] == 1 and stats["requests_queued"] == 1
    assert stats["queued_requests"] == 1 and stats["queued_bytes"] == down.stats()["queued_bytes"] > 0
    assert stats["dropped_by_reason"] == {} and stats["overflowed"] == 0
    provider.shutdown(timeout_millis=1_000)
    stats = provider.stats()
    assert stats["requests_dropped_shutdown"] == 1 and stats["queued_bytes"] == 0


def test_a_queue_full_and_a_rejection_show_in_the_provider(server):
    server.replies[:] = [UNAVAILABLE, UNAVAILABLE]
    gw = Gateway(exporter_for(server.url, max_queue_bytes=1))
    gw.record(1)
    gw.export()
    server.replies[:] = [Reply(400)]
    gw.record(1)
    gw.export()
    stats = gw.provider.stats()
    assert stats["requests_dropped_queue_full"] == 1 and stats["requests_rejected"] == 1
    assert stats["exports_failed"] == 2
    gw.close()


class Broken(MetricExporter):
    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis=10_000):
        return True

    def shutdown(self, timeout_millis=30_000, **kwargs):
        pass

    def stats(self):
        raise RuntimeError("no counters today")


def test_an_exporter_whose_stats_fail_does_not_break_the_provider(caplog):
    provider = otelmetrics.MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(Broken(), export_interval_millis=3_600_000)],
        shutdown_on_exit=False)
    provider.get_meter("m").create_counter("c").add(float("inf"))
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        stats = provider.stats()
    assert stats["dropped_by_reason"] == {"dropped: NaN or infinite value": 1}
    assert "no counters today" in caplog.text
    provider.shutdown()


def test_observable_overflow_is_counted_too():
    reader = InMemoryMetricReader()
    provider = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False,
                                         views=[View(instrument_name="cpu", aggregation_cardinality_limit=2)])
    provider.get_meter("m").create_observable_gauge(
        "cpu", callbacks=[lambda o: [Observation(1.0, {"core": i}) for i in range(4)]])
    reader.get_metrics_data()
    assert provider.stats()["overflowed_by_stream"] == {"cpu": 3}
    provider.shutdown()


def test_self_metrics_report_drops_and_overflow():
    import otelmetrics


    reader = InMemoryMetricReader(default_cardinality_limit=3)
    mp = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False, self_metrics=True)
    c = mp.get_meter("app").create_counter("c")
    c.add(-1)
    for i in range(5):
        c.add(1, {"k": i})
    data = reader.get_metrics_data()
    own = {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics
           if sm.scope.name == "otelmetrics" for m in sm.metrics}
    dropped = {p.attributes["reason"]: p.value for p in own["otelmetrics.measurements.dropped"].data.data_points}
    assert dropped == {"dropped: negative value on a monotonic instrument": 1}
    (ov,) = own["otelmetrics.measurements.overflowed"].data.data_points
    assert ov.attributes == {"metric": "c"} and ov.value == 3


# -- add_metric_reader / remove_metric_reader (opentelemetry-sdk's semantics) --------

def _points(reader, name):
    data = reader.get_metrics_data()
    if data is None:
        return []
    return [p for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
            if m.name == name for p in m.data.data_points]


def test_a_reader_added_later_sees_instruments_made_before_it_and_their_bound_handles():
    first = InMemoryMetricReader()
    provider = otelmetrics.MeterProvider(metric_readers=[first], shutdown_on_exit=False)
    meter = provider.get_meter("m")
    counter, histogram = meter.create_counter("c"), meter.create_histogram("h")
    gauge = meter.create_observable_gauge("g", callbacks=[lambda options: [Observation(7)]])
    handle = counter.bind({"k": "v"})
    counter.add(1)
    handle.add(10)
    later = InMemoryMetricReader()
    provider.add_metric_reader(later)
    counter.add(2)
    handle.add(20)
    histogram.record(5.0)
    assert {tuple(p.attributes.items()): p.value for p in _points(later, "c")} == {(): 2, (("k", "v"),): 20}
    assert [p.count for p in _points(later, "h")] == [1]
    assert [p.value for p in _points(later, "g")] == [7]
    assert {tuple(p.attributes.items()): p.value for p in _points(first, "c")} == {(): 3, (("k", "v"),): 30}


def test_removing_a_reader_stops_its_collection_and_shuts_it_down():
    keep, gone = InMemoryMetricReader(), InMemoryMetricReader()
    provider = otelmetrics.MeterProvider(metric_readers=[keep, gone], shutdown_on_exit=False)
    counter = provider.get_meter("m").create_counter("c")
    handle = counter.bind({"k": "v"})
    counter.add(1)
    provider.remove_metric_reader(gone)
    counter.add(2)
    handle.add(5)
    assert gone.get_metrics_data() is None            # shut down: nothing collected any more
    assert gone.shutdown() is False                   # already shut down by the removal
    assert sorted(p.value for p in _points(keep, "c")) == [3, 5]
    assert provider._pipeline._outs.get(id(gone)) is None


def test_adding_a_reader_of_another_provider_raises_and_twice_warns(caplog):
    reader = InMemoryMetricReader()
    one = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    other = otelmetrics.MeterProvider(shutdown_on_exit=False)
    with pytest.raises(ValueError, match="another MeterProvider"):
        other.add_metric_reader(reader)
    assert other._readers == []
    one.add_metric_reader(reader)
    assert "registered already" in caplog.text and one._readers == [reader]
    with pytest.raises(TypeError, match="MetricReader"):
        one.add_metric_reader(object())
