"""Helpers shared by the black-box SDK tests: the two SDKs (ours and the
reference opentelemetry-sdk) behind one interface, flattening of collected
MetricsData into series, and the comparisons the tests make. No tests here."""
from __future__ import annotations

import functools
import inspect
import math
import re
import threading
import time
from types import SimpleNamespace
from typing import Dict, List, Optional, Tuple

import pytest
from opentelemetry.exporter.prometheus import PrometheusMetricReader as RefPrometheusReader
from opentelemetry.sdk import metrics as ref_metrics
from opentelemetry.sdk.metrics import export as ref_export
from opentelemetry.sdk.metrics import view as ref_view
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

import otelmetrics
from otelmetrics import export as om_export
from otelmetrics import view as om_view

# The reference's own telemetry (meter "opentelemetry-sdk": each reader's collection
# duration) is not the workload's: always on in opentelemetry-sdk 1.41 (the newest release
# for Python 3.9), opt-in later. Every reference provider of the tests drops it with this view.
REF_OWN_TELEMETRY_DROPPED = ref_view.View(meter_name="opentelemetry-sdk", aggregation=ref_view.DropAggregation())


def reference_provider(*, views=(), **kwargs):
    """The reference's MeterProvider(**kwargs), its own telemetry dropped."""
    return ref_metrics.MeterProvider(views=[*views, REF_OWN_TELEMETRY_DROPPED], **kwargs)


REF = SimpleNamespace(
    name="reference",
    MeterProvider=reference_provider,
    export=ref_export,
    view=ref_view,
    kinds=(ref_metrics.Counter, ref_metrics.UpDownCounter, ref_metrics.Histogram, ref_metrics._Gauge,
           ref_metrics.ObservableCounter, ref_metrics.ObservableUpDownCounter,
           ref_metrics.ObservableGauge),
)
OURS = SimpleNamespace(
    name="otelmetrics",
    MeterProvider=otelmetrics.MeterProvider,
    export=om_export,
    view=om_view,
    kinds=(otelmetrics.Counter, otelmetrics.UpDownCounter, otelmetrics.Histogram, otelmetrics.Gauge,
           otelmetrics.ObservableCounter, otelmetrics.ObservableUpDownCounter,
           otelmetrics.ObservableGauge),
)
SIDES = (REF, OURS)
DELTA = "delta"
CUMULATIVE = "cumulative"


def temporality_map(side, temporality: str) -> dict:
    """Every instrument kind of ``side`` in one temporality."""
    t = side.export.AggregationTemporality
    value = t.DELTA if temporality == DELTA else t.CUMULATIVE
    return {k: value for k in side.kinds}


def make_sdk(side, temporality: str = CUMULATIVE, views=(), **reader_kw):
    """(provider, in-memory reader) of ``side``; nothing registered at exit."""
    reader = side.export.InMemoryMetricReader(
        preferred_temporality=temporality_map(side, temporality), **reader_kw)
    provider = side.MeterProvider(metric_readers=[reader], views=list(views),
                                  shutdown_on_exit=False)
    return provider, reader


# -- what the installed reference can be the oracle for -------------------------------------
# pip gives Python 3.9 opentelemetry-sdk 1.41, the newest release for it; later releases fixed
# behaviours that otelmetrics has. Each probe asks the installed reference through its public
# API; where it lacks the behaviour, a test compares against what it has instead, or checks
# ours alone, saying so.

def _probe(record, temporality: str = "cumulative", views=()):
    """The reference's series after record(meter) then each of two collections."""
    provider, reader = make_sdk(REF, temporality, views=views)
    try:
        record(provider.get_meter("probe"))
        return series(reader.get_metrics_data()), series(reader.get_metrics_data())
    finally:
        provider.shutdown()


@functools.lru_cache(maxsize=None)
def reference_repeats_cumulative_sync_gauge() -> bool:
    """Whether the reference exports a synchronous gauge's last value again in a cumulative
    collection with no new measurement (1.41: it forgets it after each collection)."""
    return bool(_probe(lambda m: m.create_gauge("g").set(1))[1])


@functools.lru_cache(maxsize=None)
def reference_keeps_attribute_value_types() -> bool:
    """Whether 1, 1.0 and True are three attribute values to the reference (1.41 merges them)."""
    def record(meter):
        counter = meter.create_counter("c")
        for v in (1, 1.0, True):
            counter.add(1, {"k": v})
    return len(_probe(record)[0]) == 3


@functools.lru_cache(maxsize=None)
def reference_takes_list_attribute_values() -> bool:
    """Whether the reference takes a list as an attribute value (1.41 raises TypeError:
    unhashable type)."""
    try:
        _probe(lambda m: m.create_counter("c").add(1, {"tags": ["a", "b"]}))
    except TypeError:
        return False
    return True


@functools.lru_cache(maxsize=None)
def reference_view_names_case_insensitive() -> bool:
    """Whether the reference's View matches instrument names case-insensitively (1.41
    matches with fnmatch, case-sensitively on POSIX)."""
    view = ref_view.View(instrument_name="C", aggregation=ref_view.DropAggregation())
    return not _probe(lambda m: m.create_counter("c").add(1), views=[view])[0]


def reference_prometheus_reader(prefix: str):
    """(opentelemetry-exporter-prometheus's reader with ``prefix``, a function returning the
    text exposition of what that reader writes). With registry= the reader gets a registry
    of its own. Without it (0.62b1, the newest for Python 3.9) the reader registers in
    prometheus_client's global REGISTRY, until it shuts down; its exposition is then that of
    the global registry's families the reader writes: target_info and those named with the
    prefix (the global registry's own collectors write python_*, process_*)."""
    assert prefix, "the prefix tells the reader's families from the global registry's"
    if "registry" in inspect.signature(RefPrometheusReader).parameters:
        registry = CollectorRegistry()
        return RefPrometheusReader(prefix=prefix, registry=registry), lambda: generate_latest(registry).decode()

    def own(line):
        name = line.split()[2] if line.startswith("# ") else re.split(r"[{ ]", line, 1)[0]
        return name == "target_info" or name.startswith(prefix + "_")

    def exposition():
        return "".join(line + "\n" for line in generate_latest(REGISTRY).decode().splitlines() if own(line))
    return RefPrometheusReader(prefix=prefix), exposition


@functools.lru_cache(maxsize=None)
def reference_prometheus_labels_scope() -> bool:
    """Whether opentelemetry-exporter-prometheus labels each sample with its meter
    (otel_scope_name; 0.62b1, the newest for Python 3.9, labels none: two meters' samples
    of one series are then the same sample)."""
    reader, exposition = reference_prometheus_reader("probe")
    provider = reference_provider(metric_readers=[reader], shutdown_on_exit=False)
    try:
        provider.get_meter("probe.scope").create_counter("c").add(1)
        return "otel_scope_name" in exposition()
    finally:
        provider.shutdown()


def carried_sync_gauges(previous_ours, ours_data, ref_data, names) -> set:
    """Series of ours to leave out of a cumulative comparison with a reference that forgets
    synchronous gauges (see reference_repeats_cumulative_sync_gauge): those of the gauges
    ``names`` that ours exports again with the value it exported in ``previous_ours`` and
    the reference does not export. Empty where the reference is the oracle for them."""
    if reference_repeats_cumulative_sync_gauge():
        return set()
    before, ours, ref = series(previous_ours), series(ours_data), series(ref_data)
    carried = set()
    for key, (_, point) in ours.items():
        if key[0] in names and key not in ref and key in before:
            assert point.value == before[key][1].value, "gauge %r: not the value exported before" % (key,)
            carried.add(key)
    return carried


def attr_key(attributes) -> tuple:
    """Hashable, type-tagged identity of an attribute set (1, 1.0 and True differ,
    as in the data model)."""
    return tuple(sorted((k, type(v).__name__, v) for k, v in (attributes or {}).items()))


def series(data) -> Dict[Tuple[str, tuple], Tuple[object, object]]:
    """{(metric name, attribute key): (metric, point)} of one collection.
    Fails on a series exported twice."""
    out = {}
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    key = (metric.name, attr_key(point.attributes))
                    assert key not in out, "series %r exported twice" % (key,)
                    out[key] = (metric, point)
    return out


def metrics_by_name(data) -> Dict[str, object]:
    out = {}
    for rm in (data.resource_metrics if data is not None else ()):
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                assert metric.name not in out, "metric %r exported twice" % metric.name
                out[metric.name] = metric
    return out


def values(data, name: str) -> Dict[tuple, object]:
    """{attribute key: value (sums/gauges) or point (histograms)} of one metric."""
    out = {}
    for (metric_name, key), (_, point) in series(data).items():
        if metric_name == name:
            out[key] = point.value if hasattr(point, "value") else point
    return out


def kind_of(metric) -> str:
    return type(metric.data).__name__          # Sum, Gauge, Histogram: same names in both


def assert_number(ours, ref, what: str, rel: float = 1e-9) -> None:
    assert type(ours) is type(ref), "%s: type %s, reference %s (%r vs %r)" % (
        what, type(ours).__name__, type(ref).__name__, ours, ref)
    if isinstance(ref, float) and not math.isinf(ref):
        assert ours == pytest.approx(ref, rel=rel, abs=1e-12), "%s: %r, reference %r" % (what, ours, ref)
    else:
        assert ours == ref, "%s: %r, reference %r" % (what, ours, ref)


def assert_same_collection(ours_data, ref_data, rel: float = 1e-9, minmax_types: bool = True,
                           ignore=()) -> None:
    """The numbers of one collection equal the reference's, series by series.
    ``minmax_types=False`` compares histogram min/max by value only; ``ignore``: series
    of ours the reference is no oracle for (carried_sync_gauges)."""
    ours, ref = series(ours_data), series(ref_data)
    ours = {k: v for k, v in ours.items() if k not in ignore}
    assert sorted(ours) == sorted(ref), "exported series differ:\n only ours: %s\n only reference: %s" % (
        sorted(set(ours) - set(ref)), sorted(set(ref) - set(ours)))
    for key, (rmetric, rpoint) in ref.items():
        ometric, opoint = ours[key]
        what = "%s%s" % (key[0], list(key[1]))
        assert kind_of(ometric) == kind_of(rmetric), what
        assert (ometric.description, ometric.unit) == (rmetric.description, rmetric.unit), what
        if hasattr(rmetric.data, "aggregation_temporality"):
            assert int(ometric.data.aggregation_temporality) == int(rmetric.data.aggregation_temporality), what
        if hasattr(rmetric.data, "is_monotonic"):
            assert ometric.data.is_monotonic == rmetric.data.is_monotonic, what
        if hasattr(rpoint, "value"):
            assert_number(opoint.value, rpoint.value, what + ".value", rel)
        else:
            assert opoint.count == rpoint.count, what + ".count"
            assert tuple(opoint.bucket_counts) == tuple(rpoint.bucket_counts), what + ".bucket_counts"
            assert tuple(opoint.explicit_bounds) == tuple(rpoint.explicit_bounds), what + ".bounds"
            assert_number(opoint.sum, rpoint.sum, what + ".sum", rel)
            for field in ("min", "max"):
                o, r = getattr(opoint, field), getattr(rpoint, field)
                if not minmax_types:
                    o, r = float(o), float(r)
                assert_number(o, r, "%s.%s" % (what, field), rel)


def end_times(data) -> set:
    return {p.time_unix_nano for _, p in series(data).values()}


class RecordingExporter(om_export.MetricExporter):
    """Keeps every export; optionally sleeps in export; notices overlapping exports."""

    def __init__(self, sleep: float = 0.0, preferred_temporality=None) -> None:
        super().__init__(preferred_temporality=preferred_temporality)
        self.sleep = sleep
        self.exports: List[Tuple[float, object]] = []
        self.active = 0
        self.overlapped = False
        self.shutdown_calls = 0
        self._lock = threading.Lock()
        self.release = threading.Event()    # ends a long sleep early at teardown

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs):
        with self._lock:
            self.active += 1
            if self.active > 1:
                self.overlapped = True
        try:
            if self.sleep:
                self.release.wait(self.sleep)
            with self._lock:
                self.exports.append((time.monotonic(), metrics_data))
            return om_export.MetricExportResult.SUCCESS
        finally:
            with self._lock:
                self.active -= 1

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        self.shutdown_calls += 1


def total(data, name: str):
    """Sum of a Sum metric's values across series (0 when absent)."""
    return sum(values(data, name).values())


def first_value(data, name: str) -> Optional[object]:
    vals = values(data, name)
    assert len(vals) <= 1, vals
    return next(iter(vals.values()), None)


def run_sides(workload, views=lambda side: (), temporality: str = CUMULATIVE, **reader_kw) -> dict:
    """{side name: MetricsData} after ``workload(provider, side)`` ran on each SDK
    with ``views(side)``; one collection each."""
    out = {}
    for side in SIDES:
        provider, reader = make_sdk(side, temporality, views=views(side), **reader_kw)
        try:
            workload(provider, side)
            out[side.name] = reader.get_metrics_data()
        finally:
            provider.shutdown()
    return out
