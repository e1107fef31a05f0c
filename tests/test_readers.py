"""Readers: independence, registration, the periodic exporting reader's timing,
flush and shutdown, and the console exporter's JSON compared with the reference."""
from __future__ import annotations

import io
import json
import threading
import time

import pytest
from opentelemetry.metrics import Observation

import otelmetrics
from otelmetrics import export as om_export
from _sdk_helpers import (
    DELTA,
    OURS,
    SIDES,
    RecordingExporter,
    first_value,
    make_sdk,
    series,
    temporality_map,
    total,
)


def periodic_provider(exporter, interval_ms=60_000, **kw):
    reader = om_export.PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms, **kw)
    provider = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    return provider, reader


@pytest.fixture
def exporters():
    """Exporters made by a test; their long sleeps end at teardown."""
    made = []
    yield lambda **kw: made.append(RecordingExporter(**kw)) or made[-1]
    for e in made:
        e.release.set()


# -- several readers -------------------------------------------------------------

def test_readers_on_one_provider_are_independent():
    delta = om_export.InMemoryMetricReader(preferred_temporality=temporality_map(OURS, DELTA))
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
    provider, _ = periodic_provider(exporter, interval_ms=50)
    provider.get_meter("m").create_counter("c").add(1)
    deadline = time.monotonic() + 1.0
    while len(exporter.exports) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(exporter.exports) >= 2
    assert all(total(data, "c") == 1 for _, data in exporter.exports)
    provider.shutdown()


def test_periodic_reader_exports_one_at_a_time(exporters):
    exporter = exporters(sleep=0.03)
    provider, reader = periodic_provider(exporter, interval_ms=5)
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
    class Failing(RecordingExporter):
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
            om_export.PeriodicExportingMetricReader(RecordingExporter(), export_interval_millis=bad)


def test_exporter_temporality_preference_reaches_the_reader(exporters):
    exporter = exporters(preferred_temporality=temporality_map(OURS, DELTA))
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


# -- console exporter ---------------------------------------------------------------------

def _console_documents(side, flushes=2):
    out = io.StringIO()
    reader = side.export.PeriodicExportingMetricReader(side.export.ConsoleMetricExporter(out=out),
                                                       export_interval_millis=10 ** 9)
    provider = side.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    meter = provider.get_meter("console", "1.0")
    meter.create_counter("c", unit="1", description="d").add(3, {"a": "x", "n": 2})
    meter.create_up_down_counter("u").add(-2.5)
    meter.create_histogram("h", unit="ms").record(7.5, {"b": True})
    meter.create_gauge("g").set(2)
    meter.create_observable_gauge("og", callbacks=[lambda o: [Observation(1.5, {"k": "v"})]])
    for _ in range(flushes):
        assert provider.force_flush() is True
    provider.shutdown()
    text, decoder, docs, i = out.getvalue(), json.JSONDecoder(), [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i == len(text):
            return docs
        doc, i = decoder.raw_decode(text, i)
        docs.append(doc)


def _comparable(obj, key=None):
    """The document without what legitimately differs: timestamps (their
    presence and type stay) and the resource's attributes."""
    if key in ("start_time_unix_nano", "time_unix_nano"):
        return type(obj).__name__
    if key == "resource":
        return {k: ({} if k == "attributes" else _comparable(v, k)) for k, v in obj.items()}
    if isinstance(obj, dict):
        return {k: _comparable(v, k) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_comparable(v) for v in obj]
    return obj


def _keys_in_order(obj):
    if isinstance(obj, dict):
        return [(k, _keys_in_order(v)) for k, v in obj.items()]
    if isinstance(obj, list):
        return [_keys_in_order(v) for v in obj]
    return None


def test_console_exporter_prints_the_reference_document():
    ours = _console_documents(OURS)
    ref = _console_documents(SIDES[0])
    # One document per export: two flushes plus the final export at shutdown.
    assert len(ours) == len(ref) == 3
    for o, r in zip(ours, ref):
        assert _keys_in_order(_comparable(o)) == _keys_in_order(_comparable(r))
        assert _comparable(o) == _comparable(r)
