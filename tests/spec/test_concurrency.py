"""Spec: Concurrency requirements (MeterProvider, ExemplarReservoir, MetricReader;
MetricExporter is in spec/test_exporter.py), Compatibility requirements."""
import inspect
import threading

import pytest

import otelmetrics
from otelmetrics.export import InMemoryMetricReader, MetricReader, PeriodicExportingMetricReader

from _spec_util import RecordingExporter
from _util import ALL_DELTA, points


def run_all(*targets, join=10):
    errors = []

    def wrap(fn):
        def go():
            try:
                fn()
            except Exception as e:  # the failure being tested for
                errors.append(e)
        return go

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(join)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert not errors, errors


def test_concurrency__meterprovider_get_meter_forceflush_shutdown():
    exporter = RecordingExporter()
    mp = otelmetrics.MeterProvider(metric_readers=[PeriodicExportingMetricReader(exporter, 3_600_000)],
                                   shutdown_on_exit=False)
    meters = []
    results = []
    # One measurement before the race, so that whichever of flush and shutdown runs first
    # has something to export (max_active == 1: exports happened, never two at once).
    mp.get_meter("m0").create_counter("c").add(1)

    def get():
        for i in range(50):
            meters.append(mp.get_meter("m%d" % (i % 5)))
            meters[-1].create_counter("c").add(1)

    run_all(get, get, lambda: results.append(mp.force_flush()), lambda: results.append(mp.force_flush()),
            lambda: results.append(mp.shutdown()), lambda: results.append(mp.shutdown()))
    assert len({id(m) for m in meters if m.name == "m0"}) == 1
    assert exporter.shutdowns == 1 and exporter.max_active == 1
    assert results.count(True) >= 1


def test_concurrency__exemplarreservoir_offer_and_collect():
    reader = InMemoryMetricReader(preferred_temporality=ALL_DELTA)
    mp = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False,
                                   exemplar_filter=otelmetrics.AlwaysOnExemplarFilter())
    m = mp.get_meter("m")
    h, c = m.create_histogram("h"), m.create_counter("c")
    seen = {"h": 0, "c": 0}
    lock = threading.Lock()

    def record():
        for i in range(3000):
            h.record(i % 300, {"k": i % 3})
            c.add(1, {"k": i % 3})

    def collect():
        for _ in range(30):
            for name, pts in points(reader).items():
                for p in pts:
                    for ex in p.exemplars:
                        assert ex.filtered_attributes == {} and ex.value >= 0
                    with lock:
                        seen[name] += p.count if name == "h" else p.value

    run_all(record, record, collect, collect)
    for name, pts in points(reader).items():
        seen[name] += sum(p.count if name == "h" else p.value for p in pts)
    assert seen == {"h": 6000, "c": 6000}


def test_concurrency__metricreader_collect_forceflush_shutdown():
    exporter = RecordingExporter()
    reader = PeriodicExportingMetricReader(exporter, 3_600_000)
    mem = InMemoryMetricReader()
    mp = otelmetrics.MeterProvider(metric_readers=[reader, mem], shutdown_on_exit=False)
    c = mp.get_meter("m").create_counter("c")
    c.add(1)
    run_all(*[reader.collect] * 3, *[reader.force_flush] * 3, reader.shutdown,
            *[mem.get_metrics_data] * 3, mem.shutdown)
    assert exporter.shutdowns == 1 and exporter.max_active == 1


def test_concurrency__metricreader_concurrent_shutdowns_shut_the_exporter_down_once():
    exporter = RecordingExporter(delay=0.05)
    reader = PeriodicExportingMetricReader(exporter, 3_600_000)
    mp = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    mp.get_meter("m").create_counter("c").add(1)
    results = []
    run_all(*[lambda: results.append(reader.shutdown())] * 2)
    assert exporter.shutdowns == 1 and sorted(results) == [False, True]


# -- Compatibility requirements -----------------------------------------------------------

def test_compatibility__lifecycle_methods_take_keyword_timeouts_and_extra_options():
    # New optional parameters can be added without breaking callers: every lifecycle
    # method takes its timeout by keyword, and readers/exporters accept **kwargs.
    for fn in (otelmetrics.MeterProvider.force_flush, otelmetrics.MeterProvider.shutdown,
               MetricReader.collect, MetricReader.force_flush, PeriodicExportingMetricReader.shutdown):
        assert "timeout_millis" in inspect.signature(fn).parameters
    for fn in (MetricReader.shutdown, RecordingExporter.export, RecordingExporter.shutdown):
        assert any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fn).parameters.values())
