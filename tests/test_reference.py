"""Exporters and readers written for opentelemetry-sdk, plugged into otelmetrics: the
reference's OTLP/HTTP exporter behind our periodic reader, opentelemetry-exporter-prometheus's
reader and the reference's in-memory reader in our MeterProvider. Each must deliver
what it delivers when plugged into the reference's own provider with the same
measurements; and otelmetrics used with its own exporters never imports the reference."""
import dataclasses
import logging
import math
import subprocess
import sys
import textwrap

import pytest
from opentelemetry import metrics as api_metrics
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as RefOTLPExporter
from opentelemetry.sdk import metrics as ref_metrics
from opentelemetry.sdk.metrics import export as ref_export
from opentelemetry.sdk.metrics import view as ref_view
from opentelemetry.sdk.resources import Resource as RefResource

import otelmetrics
from otelmetrics.export import PeriodicExportingMetricReader
from otelmetrics.view import View

from _sdk_helpers import (
    reference_prometheus_labels_scope,
    reference_prometheus_reader,
    reference_provider,
    reference_repeats_cumulative_sync_gauge,
)
from _util import NEUTRAL_CWD
from export.test_otlp import EXPO_VIEW, comparable, record_everything
from export.test_prometheus import _families, _record
from otlp_receiver import OTLPServer

DELTA = ref_export.AggregationTemporality.DELTA
RESOURCE = RefResource({"service.name": "bridge", "host.name": "edge-1"})
# Exporter and reader preferences, in the reference's classes: delta counters and
# histograms, histograms with other boundaries and no min/max (each of record_everything's
# latencies in a bucket of its own: either SDK's reservoir then keeps the same exemplar).
PREFERRED_TEMPORALITY = {ref_metrics.Counter: DELTA, ref_metrics.Histogram: DELTA,
                         ref_metrics.ObservableCounter: DELTA}
PREFERRED_AGGREGATION = {ref_metrics.Histogram: ref_view.ExplicitBucketHistogramAggregation(
    boundaries=(0.0, 5.0, 50.0, 500.0), record_min_max=False)}


def our_provider(readers, **kw):
    # The reference readers' own telemetry (opentelemetry-sdk 1.41, the newest for Python 3.9,
    # records it through the provider it is registered with) dropped, as in reference_provider.
    views = [View(aggregation=otelmetrics.view.ExponentialBucketHistogramAggregation(), **EXPO_VIEW),
             View(meter_name="opentelemetry-sdk", aggregation=otelmetrics.view.DropAggregation())]
    return otelmetrics.MeterProvider(metric_readers=readers, resource=RESOURCE, shutdown_on_exit=False,
                                     views=views, **kw)


def ref_provider(readers, **kw):
    views = [ref_view.View(aggregation=ref_view.ExponentialBucketHistogramAggregation(), **EXPO_VIEW)]
    return reference_provider(metric_readers=readers, resource=RESOURCE, shutdown_on_exit=False,
                              views=views, **kw)


def more_measurements(provider):
    meter = provider.get_meter("test.scope", "0.1", schema_url="https://opentelemetry.io/schemas/1.21.0")
    meter.create_counter("requests", unit="{request}", description="served").add(10, {"route": "/late"})
    meter.create_histogram("latency", unit="ms").record(55.5, {"route": "/r"})


class VendorExporter(ref_export.MetricExporter):
    """A vendor's exporter, written for opentelemetry-sdk: keeps what it is given."""

    def __init__(self, result=ref_export.MetricExportResult.SUCCESS, **kw):
        super().__init__(**kw)
        self.result = result
        self.exported = []
        self.calls = []

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        self.exported.append(metrics_data)
        return self.result

    def force_flush(self, timeout_millis=10_000):
        self.calls.append("force_flush")
        return True

    def shutdown(self, timeout_millis=30_000, **kwargs):
        self.calls.append("shutdown")


# No oracle for record_everything's synchronous gauge "temp" (cumulative) in a collection
# after its only measurement: opentelemetry-sdk 1.41 (the newest for Python 3.9) forgets a
# synchronous gauge's value at each collection. Ours exports it again, unchanged; these
# take it out of our second collection after checking that.
CARRIED_GAUGE, CARRIED_VALUE = "temp", 21.5


def _without_carried_gauge_request(request):
    for rm in request.resource_metrics:
        for sm in rm.scope_metrics:
            kept = [m for m in sm.metrics if m.name != CARRIED_GAUGE]
            assert [p.as_double for m in sm.metrics if m.name == CARRIED_GAUGE
                    for p in m.gauge.data_points] in ([], [CARRIED_VALUE])
            del sm.metrics[:]
            sm.metrics.extend(kept)
    return request


def _without_carried_gauge_data(data):
    scope_metrics = [sm for rm in data.resource_metrics for sm in rm.scope_metrics]
    carried = [m for sm in scope_metrics for m in sm.metrics if m.name == CARRIED_GAUGE]
    assert [p.value for m in carried for p in m.data.data_points] == [CARRIED_VALUE]
    return dataclasses.replace(data, resource_metrics=[
        dataclasses.replace(rm, scope_metrics=[
            dataclasses.replace(sm, metrics=[m for m in sm.metrics if m.name != CARRIED_GAUGE])
            for sm in rm.scope_metrics]) for rm in data.resource_metrics])


# -- the reference's OTLP/HTTP exporter behind our periodic reader ----------------------------

@pytest.mark.parametrize("in_span", [False, True])
def test_reference_otlp_exporter_sends_what_it_sends_from_the_reference_provider(in_span):
    requests = []
    for side in ("reference", "otelmetrics"):
        with OTLPServer() as server:
            exporter = RefOTLPExporter(endpoint=server.url, preferred_temporality=PREFERRED_TEMPORALITY,
                                       preferred_aggregation=PREFERRED_AGGREGATION)
            if side == "reference":
                reader = ref_export.PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)
                provider = ref_provider([reader])
            else:
                reader = PeriodicExportingMetricReader(exporter, export_interval_millis=math.inf)
                provider = our_provider([reader])
            record_everything(provider, in_span)
            assert provider.force_flush() is True
            more_measurements(provider)
            assert provider.force_flush() is True
            # (on shutdown we export once more; the reference's reader does not with math.inf)
            requests.append([comparable(r.request()) for r in server.received])
            provider.shutdown()
    ref, ours = requests
    assert len(ref) == 2
    if not reference_repeats_cumulative_sync_gauge():
        ours[1] = _without_carried_gauge_request(ours[1])
    # the exporter's preferences were applied: delta counters, its histogram boundaries
    first = {m.name: m for m in ours[0].resource_metrics[0].scope_metrics[0].metrics}
    assert list(first["latency"].histogram.data_points[0].explicit_bounds) == [0.0, 5.0, 50.0, 500.0]
    # record_min_max=False: no real min (the reference's encoder sends the placeholder inf)
    assert first["latency"].histogram.data_points[0].min == math.inf
    assert first["size"].WhichOneof("data") == "exponential_histogram"
    late = {m.name: m for m in ours[1].resource_metrics[0].scope_metrics[0].metrics}
    assert late["requests"].sum.aggregation_temporality == DELTA
    assert [p.as_int for p in late["requests"].sum.data_points] == [10]
    assert ours == ref


def test_a_vendor_exporter_receives_the_reference_data_classes():
    vendor = VendorExporter()
    reader = PeriodicExportingMetricReader(vendor, export_interval_millis=math.inf)
    provider = our_provider([reader])
    record_everything(provider, in_span=True)
    assert provider.force_flush() is True
    (data,) = vendor.exported
    assert type(data) is ref_export.MetricsData
    rm = data.resource_metrics[0]
    assert type(rm) is ref_export.ResourceMetrics and rm.resource is RESOURCE
    sm = rm.scope_metrics[0]
    assert type(sm) is ref_export.ScopeMetrics and type(sm.scope).__module__.startswith("opentelemetry.sdk")
    seen = set()
    for metric in sm.metrics:
        assert type(metric) is ref_export.Metric
        seen.add(type(metric.data).__name__)
        assert type(metric.data).__module__.startswith("opentelemetry.sdk")
        for p in metric.data.data_points:
            assert type(p).__module__.startswith("opentelemetry.sdk"), p
            for ex in p.exemplars:
                assert type(ex) is ref_metrics.Exemplar
            if hasattr(p, "positive"):
                assert type(p.positive) is type(p.negative) is ref_export.Buckets
        if hasattr(metric.data, "aggregation_temporality"):
            assert type(metric.data.aggregation_temporality) is ref_export.AggregationTemporality
    assert seen == {"Sum", "Gauge", "Histogram", "ExponentialHistogram"}
    assert "force_flush" in vendor.calls
    provider.shutdown()
    assert vendor.calls[-1] == "shutdown"


def test_a_failing_vendor_exporter_fails_the_flush():
    vendor = VendorExporter(result=ref_export.MetricExportResult.FAILURE)
    provider = our_provider([PeriodicExportingMetricReader(vendor, export_interval_millis=math.inf)])
    provider.get_meter("m").create_counter("c").add(1)
    assert provider.force_flush() is False
    assert len(vendor.exported) == 1
    provider.shutdown()


def test_an_aggregation_without_an_equivalent_fails_at_construction():
    class Custom(ref_view.SumAggregation.__mro__[1]):     # the reference's Aggregation base
        def _create_aggregation(self, *args, **kwargs):
            raise NotImplementedError

    with pytest.raises(TypeError, match="not an aggregation otelmetrics knows"):
        PeriodicExportingMetricReader(VendorExporter(preferred_aggregation={ref_metrics.Counter: Custom()}),
                                      export_interval_millis=math.inf)


def test_reference_aggregations_become_ours():
    pairs = [
        (ref_view.ExponentialBucketHistogramAggregation(max_size=40, max_scale=5),
         otelmetrics.view.ExponentialBucketHistogramAggregation(max_size=40, max_scale=5)),
        (ref_view.ExplicitBucketHistogramAggregation((1.0, 2.0), record_min_max=False),
         otelmetrics.view.ExplicitBucketHistogramAggregation((1.0, 2.0), record_min_max=False)),
        (ref_view.SumAggregation(), otelmetrics.view.SumAggregation()),
        (ref_view.LastValueAggregation(), otelmetrics.view.LastValueAggregation()),
        (ref_view.DropAggregation(), otelmetrics.view.DropAggregation()),
        (ref_view.DefaultAggregation(), otelmetrics.view.DefaultAggregation()),
    ]
    kinds = (ref_metrics.Counter, ref_metrics.UpDownCounter, ref_metrics.Histogram,
             ref_metrics.ObservableCounter, ref_metrics.ObservableGauge, ref_metrics._Gauge)
    for ref, ours in pairs:
        reader = PeriodicExportingMetricReader(VendorExporter(preferred_aggregation=dict.fromkeys(kinds, ref)),
                                               export_interval_millis=math.inf)
        for kind in (otelmetrics.Counter, otelmetrics.UpDownCounter, otelmetrics.Histogram,
                     otelmetrics.ObservableCounter, otelmetrics.ObservableGauge, otelmetrics.Gauge):
            assert reader._aggregation_for(kind) == ours, (ref, kind)
        reader.shutdown()


def test_a_foreign_object_is_still_refused():
    with pytest.raises(TypeError, match="MetricExporter"):
        PeriodicExportingMetricReader(object(), export_interval_millis=math.inf)
    with pytest.raises(TypeError, match="MetricReader"):
        our_provider([object()])


# -- opentelemetry-exporter-prometheus's reader in our provider -------------------------------

def _without_sdk_identity(families):
    """The target_info family names the SDK in telemetry_sdk_* labels: drop those."""
    typ, doc, samples = families["target_info"]
    families["target_info"] = (typ, doc, {(n, tuple(kv for kv in labels if not kv[0].startswith("telemetry_sdk"))): v
                                          for (n, labels), v in samples.items()})
    return families


def test_prometheus_reader_gives_the_exposition_of_the_reference_provider():
    expositions = []
    for make in (ref_provider, our_provider):
        reader, exposition = reference_prometheus_reader("edge")
        provider = make([reader])
        # Two meters, the same series, told apart by otel_scope_* labels; one meter where the
        # reader writes none (0.62b1, the newest for Python 3.9).
        meters = [("lib.one", "1.0"), ("lib.two", None)] if reference_prometheus_labels_scope() else [("lib.one", "1.0")]
        for name, version in meters:
            _record(provider.get_meter(name, version), api_metrics)
        expositions.append(_without_sdk_identity(_families(exposition())))
        provider.shutdown()
    ref, ours = expositions
    assert len(ref) == 14 and "edge_req_latency_milliseconds" in ref
    assert ours == ref


# -- the reference's in-memory reader in our provider -----------------------------------------

def _comparable(data):
    """The reference's MetricsData as plain values, without timestamps; metrics by
    name and points by attributes, so that both providers' orders compare. An
    exemplar's filtered_attributes None is {}: the reference gives None for a
    measurement made without attributes (OTLP encodes both alike)."""
    def walk(node):
        if isinstance(node, dict):
            return {k: 0 if k.endswith("time_unix_nano") else
                    {} if k == "filtered_attributes" and v is None else walk(v) for k, v in node.items()}
        if isinstance(node, list):
            items = [walk(v) for v in node]
            return sorted(items, key=lambda v: (v.get("name", ""), repr(v.get("attributes")))
                          if isinstance(v, dict) else 0)
        return node
    return walk(dataclasses.asdict(data))


def test_in_memory_reader_returns_the_reference_providers_data():
    collections = []
    for make in (ref_provider, our_provider):
        reader = ref_export.InMemoryMetricReader(preferred_temporality=PREFERRED_TEMPORALITY,
                                                 preferred_aggregation=PREFERRED_AGGREGATION)
        provider = make([reader])
        record_everything(provider, in_span=True)
        first = reader.get_metrics_data()
        more_measurements(provider)
        collections.append((first, reader.get_metrics_data()))
        provider.shutdown()
    (ref1, ref2), (ours1, ours2) = collections
    assert type(ours1) is ref_export.MetricsData
    assert ours1.resource_metrics[0].scope_metrics[0].scope == ref1.resource_metrics[0].scope_metrics[0].scope
    assert _comparable(ours1) == _comparable(ref1)
    if not reference_repeats_cumulative_sync_gauge():
        assert _comparable(_without_carried_gauge_data(ours2)) == _comparable(ref2)
    else:
        assert _comparable(ours2) == _comparable(ref2)
    # delta: the second collection holds only what was recorded since the first
    (requests,) = [m for m in ours2.resource_metrics[0].scope_metrics[0].metrics if m.name == "requests"]
    assert [p.value for p in requests.data.data_points] == [10]


def test_reference_reader_lifecycle_in_our_provider(caplog):
    provider = our_provider([])
    counter = provider.get_meter("m").create_counter("before")
    counter.add(3)
    reader = ref_export.InMemoryMetricReader()
    provider.add_metric_reader(reader)           # sees the instrument made before it
    counter.add(4)
    (metric,) = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
    assert metric.name == "before" and metric.data.data_points[0].value == 4
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        provider.add_metric_reader(reader)
    assert "registered already" in caplog.text
    with pytest.raises(ValueError, match="already registered"):
        our_provider([reader])                    # one provider per reader
    assert provider.force_flush() is True
    assert provider.stats()["dropped"] == {}
    assert reader.get_metrics_data() is not None   # what the flush collected, kept by the reader
    provider.remove_metric_reader(reader)         # stops its collection, shuts it down
    counter.add(1)
    assert reader.get_metrics_data() is None
    assert provider.shutdown() is True


def test_a_reader_of_the_reference_provider_is_refused():
    reader = ref_export.InMemoryMetricReader()
    ref_provider([reader])
    with pytest.raises(ValueError, match="already registered"):
        our_provider([reader])


def test_reference_periodic_reader_in_our_provider_exports_on_flush():
    vendor = VendorExporter()
    reader = ref_export.PeriodicExportingMetricReader(vendor, export_interval_millis=math.inf)
    provider = our_provider([reader])
    provider.get_meter("m").create_up_down_counter("q").add(-2, {"k": "v"})
    assert provider.force_flush() is True
    assert provider.shutdown() is True
    (data,) = vendor.exported
    (metric,) = data.resource_metrics[0].scope_metrics[0].metrics
    assert type(metric.data) is ref_export.Sum and metric.data.data_points[0].value == -2
    assert vendor.calls[-1] == "shutdown"


# -- ours stay free of opentelemetry-sdk ------------------------------------------------------

def test_our_own_exporters_never_import_the_reference():
    code = textwrap.dedent("""
        import io, math, sys
        import otelmetrics
        from otelmetrics.export import (ConsoleMetricExporter, InMemoryMetricReader, OTLPMetricExporter,
                                        PeriodicExportingMetricReader, PrometheusMetricReader)
        console = PeriodicExportingMetricReader(ConsoleMetricExporter(out=io.StringIO()),
                                                export_interval_millis=math.inf)
        otlp = PeriodicExportingMetricReader(OTLPMetricExporter("http://127.0.0.1:9/v1/metrics", timeout=0.2),
                                             export_interval_millis=math.inf)
        memory, prom = InMemoryMetricReader(), PrometheusMetricReader(registry=None)
        provider = otelmetrics.MeterProvider(metric_readers=[console, otlp, memory, prom])
        provider.get_meter("m").create_histogram("h").record(1.5, {"k": "v"})
        assert memory.get_metrics_data() is not None and prom.exposition()
        provider.shutdown(timeout_millis=2000)
        loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk"))
        assert not loaded, loaded
        print("clean")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=NEUTRAL_CWD,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "clean", out.stderr
