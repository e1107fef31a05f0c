"""Spec: MetricReader, MetricReader operations (Collect, Shutdown), Periodic exporting
MetricReader (and its ForceFlush); then readers on a provider: independence,
registration, the periodic reader's timing, flush and shutdown."""
from __future__ import annotations

import threading
import time

import pytest
from opentelemetry.metrics import Observation

import otelmetrics
from otelmetrics import export as om_export
from otelmetrics.export import (
    AggregationTemporality,
    InMemoryMetricReader,
    MetricExportResult,
    MetricProducer,
    MetricReader,
    PeriodicExportingMetricReader,
)
from otelmetrics.view import ExponentialBucketHistogramAggregation

from _sdk_helpers import DELTA as SIDE_DELTA
from _sdk_helpers import OURS, first_value, make_sdk, series, temporality_map, total
from _sdk_helpers import RecordingExporter as TimedExporter   # keeps each export with its time
from _spec_util import RecordingExporter, metrics_of
from _util import ALL_DELTA, points, provider

DELTA, CUMULATIVE = AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE
HOUR = 3_600_000


def periodic_provider(exporter, **kw):
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=kw.pop("interval", HOUR), **kw)
    return otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False), reader


# -- MetricReader ------------------------------------------------------------------

def test_metricreader__aggregation_and_temporality_come_from_the_exporter():
    exporter = RecordingExporter(preferred_temporality={otelmetrics.Counter: DELTA},
                                 preferred_aggregation={otelmetrics.Histogram: ExponentialBucketHistogramAggregation()})
    mp, reader = periodic_provider(exporter)
    m = mp.get_meter("m")
    m.create_counter("c").add(1)
    m.create_histogram("h").record(1)
    m.create_up_down_counter("u").add(1)
    mp.force_flush()
    got = {x.name: x.data for x in metrics_of(exporter.exports[0])}
    assert got["c"].aggregation_temporality == DELTA
    assert got["u"].aggregation_temporality == CUMULATIVE      # default: cumulative
    assert type(got["h"]).__name__ == "ExponentialHistogram"
    mp.shutdown()


def test_metricreader__defaults_cumulative_default_aggregation_limit_2000():
    r = InMemoryMetricReader()
    for kind in (otelmetrics.Counter, otelmetrics.ObservableGauge, otelmetrics.Histogram):
        assert r._temporality_for(kind) == CUMULATIVE
        assert r._cardinality_limit_for(kind) == 2000
        assert type(r._aggregation_for(kind)).__name__ == "DefaultAggregation"


def test_metricreader__periodic_reader_accepts_a_default_cardinality_limit():
    reader = PeriodicExportingMetricReader(RecordingExporter(), export_interval_millis=HOUR,
                                           default_cardinality_limit=5)
    reader.shutdown()   # no reader thread left running into later tests (a fork would restart it)


@pytest.mark.parametrize("kind", ["counter", "observable_counter"])
def test_metricreader__output_in_configured_temporality(kind):
    # sync counter: delta -> cumulative; async counter: cumulative observations -> delta.
    for temporality, expected in ((DELTA, [5, 5, 5]), (CUMULATIVE, [5, 10, 15])):
        r = InMemoryMetricReader(preferred_temporality={otelmetrics.Counter: temporality,
                                                        otelmetrics.ObservableCounter: temporality})
        mp = otelmetrics.MeterProvider(metric_readers=[r], shutdown_on_exit=False)
        m = mp.get_meter("m")
        total = [0]
        if kind == "counter":
            c = m.create_counter("x")
            tick = lambda: c.add(5)
        else:
            m.create_observable_counter("x", [lambda o: [Observation(total[0])]])
            tick = lambda: None
        got = []
        for _ in range(3):
            total[0] += 5
            tick()
            got.append(points(r, "x")[0].value)
        assert got == expected, temporality


def test_metricreader__persistence_across_collections():
    r_cum, r_delta = InMemoryMetricReader(), InMemoryMetricReader(preferred_temporality=ALL_DELTA)
    mp = otelmetrics.MeterProvider(metric_readers=[r_cum, r_delta], shutdown_on_exit=False)
    m = mp.get_meter("m")
    observe = [True]
    m.create_counter("sync").add(1)
    m.create_observable_gauge("async", [lambda o: [Observation(1)] if observe[0] else []])
    assert sorted(points(r_cum)) == sorted(points(r_delta)) == ["async", "sync"]
    observe[0] = False
    assert sorted(points(r_cum)) == ["sync"]      # cumulative sync: repeated without new measurements
    assert sorted(points(r_delta)) == []          # delta: only what was recorded since


def test_metricreader__start_repeats_for_cumulative_advances_for_delta_end_is_collect_time():
    r_cum, r_delta = InMemoryMetricReader(), InMemoryMetricReader(preferred_temporality=ALL_DELTA)
    mp = otelmetrics.MeterProvider(metric_readers=[r_cum, r_delta], shutdown_on_exit=False)
    c = mp.get_meter("m").create_counter("c")
    cum, delta = [], []
    for _ in range(3):
        c.add(1)
        before = time.time_ns()
        cum.append(points(r_cum, "c")[0])
        delta.append(points(r_delta, "c")[0])
        after = time.time_ns()
        assert before <= cum[-1].time_unix_nano <= after and before <= delta[-1].time_unix_nano <= after
    assert len({p.start_time_unix_nano for p in cum}) == 1
    assert [p.start_time_unix_nano for p in delta[1:]] == [p.time_unix_nano for p in delta[:-1]]


def test_metricreader__multiple_readers_without_side_effects():
    r1, r2 = InMemoryMetricReader(preferred_temporality=ALL_DELTA), InMemoryMetricReader(preferred_temporality=ALL_DELTA)
    mp = otelmetrics.MeterProvider(metric_readers=[r1, r2], shutdown_on_exit=False)
    c = mp.get_meter("m").create_counter("c")
    c.add(1)
    a = points(r1, "c")[0]
    c.add(1)
    a2 = points(r1, "c")[0]
    b = points(r2, "c")[0]        # r2's interval still starts at creation and holds both
    assert b.value == 2 and a2.value == 1
    assert b.start_time_unix_nano < a.time_unix_nano and a2.start_time_unix_nano == a.time_unix_nano


def test_metricreader__not_registered_on_two_providers():
    r = InMemoryMetricReader()
    mp = otelmetrics.MeterProvider(metric_readers=[r], shutdown_on_exit=False)
    with pytest.raises(ValueError, match="one provider"):
        otelmetrics.MeterProvider(metric_readers=[r], shutdown_on_exit=False)
    with pytest.raises(ValueError):
        otelmetrics.MeterProvider(metric_readers=[InMemoryMetricReader()] + [InMemoryMetricReader()] * 2,
                                  shutdown_on_exit=False)
    assert mp is not None


def test_metricreader__responds_to_provider_forceflush_and_shutdown():
    calls = []

    class Reader(MetricReader):
        def _receive_metrics(self, metrics_data, timeout_millis=10_000, **kw):
            calls.append("receive")

        def force_flush(self, timeout_millis=10_000):
            calls.append("flush")
            return super().force_flush(timeout_millis)

        def shutdown(self, timeout_millis=30_000, **kw):
            calls.append("shutdown")
            return True

    mp = otelmetrics.MeterProvider(metric_readers=[Reader()], shutdown_on_exit=False)
    mp.get_meter("m").create_counter("c").add(1)
    assert mp.force_flush() and mp.shutdown()
    assert calls == ["flush", "receive", "shutdown"]


# -- Collect -----------------------------------------------------------------------

def test_collect__triggers_callbacks_and_invokes_producers():
    class Producer(MetricProducer):
        def produce(self, timeout_millis=10_000):
            other, r = provider()
            other.get_meter("bridge").create_counter("bridged").add(4)
            return r.get_metrics_data()

    r = InMemoryMetricReader(metric_producers=[Producer()])
    mp = otelmetrics.MeterProvider(metric_readers=[r], shutdown_on_exit=False)
    calls = []
    mp.get_meter("m").create_observable_gauge("g", [lambda o: calls.append(1) or [Observation(1)]])
    assert sorted(m.name for m in metrics_of(r.get_metrics_data())) == ["bridged", "g"]
    assert calls == [1]


def test_collect__reports_success_or_failure():
    mp, r = provider()
    mp.get_meter("m").create_counter("c").add(1)
    assert r.collect() is True


def test_collect__after_shutdown_returns_failure_and_does_not_export():
    exporter = RecordingExporter()
    mp, reader = periodic_provider(exporter)
    mp.get_meter("m").create_counter("c").add(1)
    mp.shutdown()
    n = len(exporter.exports)
    assert reader.collect() is False
    assert len(exporter.exports) == n


def test_collect__after_shutdown_in_memory_reader_returns_nothing():
    mp, r = provider()
    mp.get_meter("m").create_counter("c").add(1)
    mp.shutdown()
    assert r.get_metrics_data() is None


# -- Shutdown (MetricReader) -------------------------------------------------------

def test_shutdown__periodic_reader_status_once_and_bounded():
    block = threading.Event()
    exporter = RecordingExporter(block=block)
    mp, reader = periodic_provider(exporter)
    mp.get_meter("m").create_counter("c").add(1)
    t0 = time.monotonic()
    assert reader.shutdown(timeout_millis=200) is False     # timed out on the hanging export
    assert time.monotonic() - t0 < 2.0
    block.set()
    assert reader.shutdown() is False                       # only once
    assert exporter.shutdowns == 1


def test_shutdown__in_memory_reader_reports_status():
    r = InMemoryMetricReader()
    otelmetrics.MeterProvider(metric_readers=[r], shutdown_on_exit=False)
    assert r.shutdown() is True
    assert r.shutdown() is False


# -- Periodic exporting MetricReader -------------------------------------------------

def test_periodic_exporting_metricreader__defaults_60s_interval_30s_timeout(monkeypatch):
    monkeypatch.delenv("OTEL_METRIC_EXPORT_INTERVAL", raising=False)
    monkeypatch.delenv("OTEL_METRIC_EXPORT_TIMEOUT", raising=False)
    r = PeriodicExportingMetricReader(RecordingExporter())
    try:
        assert r._interval_s == 60.0 and r._timeout_ms == 30_000
    finally:
        r.shutdown()


def test_periodic_exporting_metricreader__export_never_concurrent():
    exporter = RecordingExporter(delay=0.02)
    mp, reader = periodic_provider(exporter, interval=5)
    mp.get_meter("m").create_counter("c").add(1)
    threads = [threading.Thread(target=reader.collect) for _ in range(4)]
    threads += [threading.Thread(target=mp.force_flush) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    mp.shutdown()
    assert len(exporter.exports) >= 6 and exporter.max_active == 1


def test_periodic_exporting_metricreader__collect_by_other_callers_exports():
    exporter = RecordingExporter()
    mp, reader = periodic_provider(exporter)
    mp.get_meter("m").create_counter("c").add(1)
    reader.collect()
    assert len(exporter.exports) == 1
    mp.shutdown()


# -- ForceFlush (periodic reader) ----------------------------------------------------

def test_forceflush__periodic_reader_collects_exports_and_flushes_the_exporter():
    exporter = RecordingExporter()
    mp, reader = periodic_provider(exporter)
    mp.get_meter("m").create_counter("c").add(1)
    assert reader.force_flush() is True
    assert len(exporter.exports) == 1 and exporter.flushes == 1
    mp.shutdown()


def test_forceflush__periodic_reader_error_status_and_timeout():
    exporter = RecordingExporter(result=MetricExportResult.FAILURE)
    mp, reader = periodic_provider(exporter)
    mp.get_meter("m").create_counter("c").add(1)
    assert reader.force_flush() is False
    exporter.result, exporter.block = MetricExportResult.SUCCESS, threading.Event()
    t0 = time.monotonic()
    assert reader.force_flush(timeout_millis=150) is False
    assert time.monotonic() - t0 < 2.0
    exporter.block.set()
    mp.shutdown()


# -- Readers on a provider: independence, registration, periodic timing, flush, shutdown ----

@pytest.fixture
def exporters():
    """Exporters made by a test; their long sleeps end at teardown."""
    made = []
    yield lambda **kw: made.append(TimedExporter(**kw)) or made[-1]
    for e in made:
        e.release.set()


# -- several readers -------------------------------------------------------------

def test_readers_on_one_provider_are_independent():
    delta = om_export.InMemoryMetricReader(preferred_temporality=temporality_map(OURS, SIDE_DELTA))
    cumulative = om_export.InMemoryMetricReader()
    provider = otelmetrics.MeterProvider(metric_readers=[delta, cumulative], shutdown_on_exit=False)
    meter = provider.get_meter("m")
    counter = meter.create_counter("c")
    level = [10]
    meter.create_observable_counter("o", callbacks=[lambda options: [Observation(level[0])]])

    counter.add(5)
    d1 = delta.get_metrics_data()
    assert (first_value(d1, "c"), first_value(d1, "o")) == (5, 10)
    counter.add(3)
    level[0] = 25
    c1 = cumulative.get_metrics_data()
    assert (first_value(c1, "c"), first_value(c1, "o")) == (8, 25)
    level[0] = 30
    d2 = delta.get_metrics_data()
    # The cumulative collection in between did not reset the delta reader's state.
    assert (first_value(d2, "c"), first_value(d2, "o")) == (3, 20)
    d1_end = series(d1)[("c", ())][1].time_unix_nano
    assert series(d2)[("c", ())][1].start_time_unix_nano == d1_end
    d3 = delta.get_metrics_data()
    assert first_value(d3, "c") is None and first_value(d3, "o") == 0
    c2 = cumulative.get_metrics_data()
    assert (first_value(c2, "c"), first_value(c2, "o")) == (8, 30)
    assert series(c2)[("c", ())][1].start_time_unix_nano == series(c1)[("c", ())][1].start_time_unix_nano
    provider.shutdown()


def test_reader_cannot_join_two_providers():
    reader = om_export.InMemoryMetricReader()
    first = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    with pytest.raises(ValueError, match="already registered"):
        otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    first.shutdown()


def test_provider_rejects_non_readers():
    with pytest.raises(TypeError, match="MetricReader"):
        otelmetrics.MeterProvider(metric_readers=[object()], shutdown_on_exit=False)


# -- periodic exporting reader -------------------------------------------------------

def test_periodic_reader_exports_at_its_interval(exporters):
    exporter = exporters()
    provider, _ = periodic_provider(exporter, interval=50)
    provider.get_meter("m").create_counter("c").add(1)
    deadline = time.monotonic() + 1.0
    while len(exporter.exports) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(exporter.exports) >= 2
    assert all(total(data, "c") == 1 for _, data in exporter.exports)
    provider.shutdown()


def test_periodic_reader_exports_one_at_a_time(exporters):
    exporter = exporters(sleep=0.03)
    provider, reader = periodic_provider(exporter, interval=5)
    provider.get_meter("m").create_counter("c").add(1)
    threads = [threading.Thread(target=reader.force_flush) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    for t in threads:
        t.join(5)
    assert len(exporter.exports) >= 4
    assert not exporter.overlapped
    provider.shutdown()
    assert not exporter.overlapped


def test_force_flush_exports_now(exporters):
    exporter = exporters()
    provider, reader = periodic_provider(exporter)
    provider.get_meter("m").create_counter("c").add(4)
    assert reader.force_flush() is True
    assert len(exporter.exports) == 1 and total(exporter.exports[0][1], "c") == 4
    assert provider.force_flush() is True
    assert len(exporter.exports) == 2
    provider.shutdown()


def test_force_flush_reports_a_failed_export():
    class Failing(TimedExporter):
        def export(self, metrics_data, timeout_millis=10_000, **kwargs):
            return om_export.MetricExportResult.FAILURE

    provider, reader = periodic_provider(Failing())
    provider.get_meter("m").create_counter("c").add(1)
    assert reader.force_flush() is False
    assert provider.force_flush() is False
    provider.shutdown()


def test_shutdown_exports_once_more_and_shuts_the_exporter_down(exporters):
    exporter = exporters()
    provider, _ = periodic_provider(exporter)
    counter = provider.get_meter("m").create_counter("c")
    counter.add(2)
    assert provider.shutdown() is True
    assert len(exporter.exports) == 1 and total(exporter.exports[0][1], "c") == 2
    assert exporter.shutdown_calls == 1
    counter.add(5)                      # ignored, and nothing exports any more
    time.sleep(0.05)
    assert len(exporter.exports) == 1
    assert provider.shutdown() is False
    assert exporter.shutdown_calls == 1


def _assert_shutdown_is_bounded(provider, exporter):
    # A watchdog ends the exporter's sleep after 2 s, so a failing run stays short.
    watchdog = threading.Timer(2.0, exporter.release.set)
    watchdog.start()
    try:
        started = time.monotonic()
        provider.shutdown(timeout_millis=500)
        elapsed = time.monotonic() - started
    finally:
        watchdog.cancel()
        exporter.release.set()
    assert elapsed < 1.5, "shutdown(timeout_millis=500) took %.2f s with a hanging exporter" % elapsed


def test_shutdown_is_bounded_while_an_export_hangs(exporters):
    exporter = exporters(sleep=5.0)
    provider, reader = periodic_provider(exporter)
    provider.get_meter("m").create_counter("c").add(1)
    threading.Thread(target=reader.force_flush, daemon=True).start()
    time.sleep(0.05)                     # the flush is now inside export()
    _assert_shutdown_is_bounded(provider, exporter)


def test_shutdown_is_bounded_when_its_final_export_hangs(exporters):
    exporter = exporters(sleep=5.0)
    provider, _ = periodic_provider(exporter)
    provider.get_meter("m").create_counter("c").add(1)
    _assert_shutdown_is_bounded(provider, exporter)


def test_periodic_reader_rejects_bad_configuration():
    with pytest.raises(TypeError, match="MetricExporter"):
        om_export.PeriodicExportingMetricReader(object())
    for bad in (0, -5, float("nan")):     # math.inf is valid: force_flush/shutdown only
        with pytest.raises(ValueError, match="export_interval_millis"):
            om_export.PeriodicExportingMetricReader(TimedExporter(), export_interval_millis=bad)


@pytest.mark.parametrize("limits", [
    dict(default_cardinality_limit=0), dict(default_cardinality_limit=-1),
    dict(default_cardinality_limit=True), dict(default_cardinality_limit=2**70),
    dict(default_cardinality_limit="5"), dict(default_cardinality_limit=1.5),
    dict(default_cardinality_limit={otelmetrics.Counter: 2**70}),
    dict(cardinality_limits={otelmetrics.Counter: 0}),
])
def test_reader_rejects_bad_cardinality_limits(limits):
    with pytest.raises(ValueError, match=r"cardinality_limit.* int in \[1, "):
        InMemoryMetricReader(**limits)


def test_exporter_temporality_preference_reaches_the_reader(exporters):
    exporter = exporters(preferred_temporality=temporality_map(OURS, SIDE_DELTA))
    provider, reader = periodic_provider(exporter)
    counter = provider.get_meter("m").create_counter("c")
    for amount in (3, 4):
        counter.add(amount)
        reader.force_flush()
    assert [total(data, "c") for _, data in exporter.exports] == [3, 4]
    provider.shutdown()


# -- provider lifecycle ------------------------------------------------------------------

class KeepingReader(om_export.MetricReader):
    """A minimal custom reader that keeps what it receives, even after shutdown."""

    def __init__(self):
        super().__init__()
        self.received = []

    def _receive_metrics(self, metrics_data, timeout_millis=10_000, **kwargs):
        self.received.append(metrics_data)

    def shutdown(self, timeout_millis=30_000, **kwargs):
        return True


def test_measurements_after_shutdown_are_ignored():
    reader = KeepingReader()
    provider = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    meter = provider.get_meter("m")
    counter, histogram = meter.create_counter("c"), meter.create_histogram("h")
    handle = counter.bind({"k": "v"})
    counter.add(1)
    histogram.record(1.0)
    handle.add(1)
    reader.collect()
    assert total(reader.received[0], "c") == 2
    assert provider.shutdown() is True
    counter.add(100)                 # none of these raises or counts
    histogram.record(100.0)
    handle.add(100)
    late = meter.create_counter("late")
    late.add(100)
    reader.collect()                 # collecting after shutdown: nothing, or what came before
    for data in reader.received:
        assert total(data, "c") == 2
        assert total(data, "late") == 0
        assert all(p.count == 1 for (name, _), (_, p) in series(data).items() if name == "h")


def test_provider_flush_and_shutdown_return_booleans():
    provider, _ = make_sdk(OURS)
    assert provider.force_flush() is True
    assert provider.shutdown() is True
    assert provider.shutdown() is False
