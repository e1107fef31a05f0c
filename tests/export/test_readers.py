"""The periodic reader's interval and timeout are clamped, with a warning, to
[MIN_EXPORT_INTERVAL_MILLIS, MAX_EXPORT_MILLIS] whether they come from an argument or
from OTEL_METRIC_EXPORT_INTERVAL / _TIMEOUT: a tiny interval does not busy-loop the
reader, an absurd one does not kill its thread, an absurd timeout does not stop exports."""
import logging
import math
import threading
import time

import pytest

import otelmetrics
from otelmetrics import _env
from otelmetrics.export import PeriodicExportingMetricReader
from _spec_util import RecordingExporter

INTERVAL, TIMEOUT = "OTEL_METRIC_EXPORT_INTERVAL", "OTEL_METRIC_EXPORT_TIMEOUT"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, caplog):
    monkeypatch.delenv(INTERVAL, raising=False)
    monkeypatch.delenv(TIMEOUT, raising=False)
    caplog.set_level(logging.WARNING, logger="otelmetrics")


def reader_with(monkeypatch, source, interval=None, timeout=None):
    """A running reader on a provider, the interval/timeout given as arguments or variables."""
    exporter = RecordingExporter()
    if source == "env":
        for name, value in ((INTERVAL, interval), (TIMEOUT, timeout)):
            if value is not None:
                monkeypatch.setenv(name, repr(value))
        reader = PeriodicExportingMetricReader(exporter)
    else:
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=interval,
                                               export_timeout_millis=timeout)
    provider = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    return provider, reader, exporter


@pytest.mark.parametrize("source", ["argument", "env"])
def test_a_tiny_interval_is_raised_to_the_floor_and_does_not_busy_loop(monkeypatch, caplog, source):
    provider, reader, exporter = reader_with(monkeypatch, source, interval=1e-9)
    try:
        assert reader._interval_s == _env.MIN_EXPORT_INTERVAL_MILLIS / 1e3 == 0.001
        name = INTERVAL if source == "env" else "export_interval_millis"
        assert "%s=1e-09 ms is outside [1, 2147483647] ms; using 1 ms" % name in caplog.text
        start = exporter.flushes + len(exporter.exports)
        time.sleep(0.3)
        ticks = exporter.flushes + len(exporter.exports) - start
        assert 0 < ticks <= 300 + 50   # at most one collection a millisecond (unclamped: ~10**5)
    finally:
        provider.shutdown()


@pytest.mark.parametrize("source", ["argument", "env"])
@pytest.mark.parametrize("value", [1e300, 1e13])
def test_an_absurd_interval_is_lowered_to_the_ceiling_and_the_thread_lives(monkeypatch, caplog, source, value):
    provider, reader, _ = reader_with(monkeypatch, source, interval=value)
    try:
        assert reader._interval_s == _env.MAX_EXPORT_MILLIS / 1e3
        assert "using 2147483647 ms" in caplog.text
        time.sleep(0.1)
        assert reader._thread.is_alive()   # unclamped: OverflowError in its first wait
        assert "Traceback" not in caplog.text and "OverflowError" not in caplog.text
    finally:
        provider.shutdown(timeout_millis=2_000)


@pytest.mark.parametrize("source", ["argument", "env"])
def test_an_absurd_timeout_does_not_stop_exports(monkeypatch, caplog, source):
    provider, reader, exporter = reader_with(monkeypatch, source, interval=5, timeout=1e13)
    try:
        assert reader._timeout_ms == _env.MAX_EXPORT_MILLIS
        provider.get_meter("m").create_counter("c").add(1)
        deadline = time.monotonic() + 5
        while not exporter.exports and time.monotonic() < deadline:
            time.sleep(0.01)
        assert exporter.exports, caplog.text   # unclamped: every export failed with OverflowError
        assert "periodic export failed" not in caplog.text
    finally:
        provider.shutdown(timeout_millis=2_000)


def test_clamp_millis_bounds_and_leaves_the_rest_to_the_caller(caplog):
    assert _env.clamp_millis("x", 500.0, 1.0) == 500.0 and caplog.text == ""
    assert _env.clamp_millis("x", 0.5, 1.0) == 1.0
    assert _env.clamp_millis("x", 1e300, 1.0) == _env.MAX_EXPORT_MILLIS
    assert _env.clamp_millis("x", 1e-300, 0.0) == 1e-300   # a timeout has no floor
    for bad in (0.0, -1.0, float("inf"), float("nan")):      # refused by the reader, not clamped
        value = _env.clamp_millis("x", bad, 1.0)
        assert value == bad or value != value
    assert caplog.text.count("is outside") == 2
    for bad in (0, -5, float("nan")):
        with pytest.raises(ValueError, match="export_interval_millis"):
            PeriodicExportingMetricReader(RecordingExporter(), export_interval_millis=bad)


def test_the_schedule_starts_when_a_provider_registers_the_reader():
    exporter = RecordingExporter()
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=20)
    time.sleep(0.2)                                   # ten intervals, unregistered
    assert (exporter.exports, exporter.flushes) == ([], 0)
    provider = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    provider.get_meter("m").create_counter("c").add(2)
    deadline = time.monotonic() + 10
    while not exporter.exports and time.monotonic() < deadline:
        time.sleep(0.01)
    assert provider.shutdown(timeout_millis=5_000)
    assert exporter.exports, "no periodic export after registration"


def test_infinite_interval_collects_only_on_force_flush_and_shutdown():
    exporter = RecordingExporter()
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)
    provider = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    assert reader._thread is None   # no periodic thread for this reader
    provider.get_meter("m").create_counter("c").add(2)
    time.sleep(0.3)
    assert exporter.exports == []
    assert provider.force_flush(timeout_millis=5_000)
    assert len(exporter.exports) == 1
    provider.get_meter("m").create_counter("c").add(3)
    assert provider.shutdown(timeout_millis=5_000)
    assert len(exporter.exports) == 2
