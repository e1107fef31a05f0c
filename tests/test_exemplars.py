"""Exemplars (spec: Exemplar, ExemplarFilter, ExemplarReservoir, Exemplar defaults),
with real spans from opentelemetry-sdk's TracerProvider: filters, the reservoir
choices and user reservoirs (otelmetrics/_exemplars.py). How the compiled reservoirs
sample is tested in native/test_exemplars.py."""
import os
import subprocess
import sys

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON
from opentelemetry import trace

import otelmetrics
from otelmetrics.view import View

from _util import points, provider
from _util import NEUTRAL_CWD

SAMPLED = TracerProvider(sampler=ALWAYS_ON).get_tracer("t")
UNSAMPLED = TracerProvider(sampler=ALWAYS_OFF).get_tracer("t")


def ids(span):
    sc = span.get_span_context()
    return sc.trace_id, sc.span_id


def test_trace_based_default_samples_only_in_sampled_spans():
    mp, reader = provider()
    c = mp.get_meter("m").create_counter("c")
    c.add(1, {"a": 1})                                   # no span: no exemplar
    with UNSAMPLED.start_as_current_span("u"):
        c.add(2, {"a": 1})                               # unsampled span: none
    with SAMPLED.start_as_current_span("s") as span:
        c.add(3, {"a": 1})
        expected = ids(span)
    (p,) = points(reader, "c")
    assert p.value == 6
    (ex,) = p.exemplars
    assert (ex.trace_id, ex.span_id) == expected
    assert ex.value == 3 and ex.filtered_attributes == {}
    assert ex.time_unix_nano <= p.time_unix_nano


def test_exemplar_keeps_attributes_the_view_dropped():
    """Spec example: view keeps X and Y; the exemplar carries Z."""
    mp, reader = provider(views=[View(instrument_name="cache_miss", attribute_keys=["X", "Y"])])
    c = mp.get_meter("m").create_counter("cache_miss")
    with SAMPLED.start_as_current_span("makeRequest"):
        c.add(1, {"X": "x-value", "Y": "y-value", "Z": "z-value"})
    (p,) = points(reader, "cache_miss")
    assert p.attributes == {"X": "x-value", "Y": "y-value"}
    (ex,) = p.exemplars
    assert ex.filtered_attributes == {"Z": "z-value"}
    assert {**p.attributes, **ex.filtered_attributes} == {"X": "x-value", "Y": "y-value", "Z": "z-value"}


def test_always_on_samples_without_span_and_always_off_never():
    mp, reader = provider(exemplar_filter=otelmetrics.AlwaysOnExemplarFilter())
    c = mp.get_meter("m").create_counter("c")
    c.add(5)
    (p,) = points(reader, "c")
    (ex,) = p.exemplars
    assert ex.value == 5 and ex.trace_id is None and ex.span_id is None

    mp, reader = provider(exemplar_filter=otelmetrics.AlwaysOffExemplarFilter())
    c = mp.get_meter("m").create_counter("c")
    with SAMPLED.start_as_current_span("s"):
        c.add(5)
    assert points(reader, "c")[0].exemplars == []


def test_a_collection_without_samples_stays_on_the_snapshot_path():
    """Points are built at collection only when samples were offered since the last one
    (they hold the exemplars); otherwise the byte writers read the copy, as for a stream
    that never sampled, and the points, built when read, carry no exemplar."""
    mp, reader = provider(exemplar_filter=otelmetrics.TraceBasedExemplarFilter())
    c = mp.get_meter("m").create_counter("c")
    h = mp.get_meter("m").create_histogram("h")

    def collect():
        metrics = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
        return {m.name: m.data for m in metrics}

    with SAMPLED.start_as_current_span("s"):
        c.add(5, {"k": "v"})
        h.record(2.0, {"k": "v"})
    first = collect()
    assert all(d._data_points.points_built for d in first.values())
    assert [len(p.exemplars) for d in first.values() for p in d.data_points] == [1, 1]
    c.add(1, {"k": "v"})                                   # no span: nothing offered
    h.record(3.0, {"k": "v"})
    second = collect()
    assert not any(d._data_points.points_built for d in second.values())
    assert [(p.value, p.exemplars) for p in second["c"].data_points] == [(6, [])]
    assert [(p.count, p.exemplars) for p in second["h"].data_points] == [(2, [])]
    with SAMPLED.start_as_current_span("s"):
        c.add(1, {"k": "v"})
    third = collect()
    assert third["c"]._data_points.points_built and not third["h"]._data_points.points_built
    assert [len(p.exemplars) for p in third["c"].data_points] == [1]


def test_explicit_context_argument_is_used():
    mp, reader = provider()
    c = mp.get_meter("m").create_counter("c")
    with SAMPLED.start_as_current_span("s") as span:
        ctx = trace.set_span_in_context(span)
        expected = ids(span)
    c.add(1, context=ctx)     # outside the span, but its context is given
    (ex,) = points(reader, "c")[0].exemplars
    assert (ex.trace_id, ex.span_id) == expected


def test_custom_reservoir_factory():
    mp, reader = provider(views=[View(instrument_name="c", exemplar_reservoir_factory=lambda agg:
                                      otelmetrics.SimpleFixedSizeExemplarReservoir(size=4))],
                          exemplar_filter=otelmetrics.AlwaysOnExemplarFilter())
    c = mp.get_meter("m").create_counter("c")
    for v in range(10):
        c.add(v)
    assert len(points(reader, "c")[0].exemplars) == 4


def test_exemplar_filter_from_environment():
    code = ("import otelmetrics; from otelmetrics.export import InMemoryMetricReader;"
            "r = InMemoryMetricReader(); mp = otelmetrics.MeterProvider(metric_readers=[r]);"
            "c = mp.get_meter('m').create_counter('c'); c.add(1);"
            "p = r.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0];"
            "print(len(p.exemplars))")
    for value, expected in (("always_on", "1"), ("always_off", "0"), ("trace_based", "0"), ("bogus", "0")):
        env = dict(os.environ, OTEL_METRICS_EXEMPLAR_FILTER=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                             cwd=NEUTRAL_CWD)
        assert out.stdout.strip() == expected, (value, out.stderr)


TRACE_LATER = """
import sys
import otelmetrics
from opentelemetry import baggage, context
from otelmetrics.export import InMemoryMetricReader

reader = InMemoryMetricReader()
meter = otelmetrics.MeterProvider(metric_readers=[reader]).get_meter("m")
c, h = meter.create_counter("c"), meter.create_histogram("h")
c.add(1)
token = context.attach(baggage.set_baggage("k", "v"))   # a context, but no span in it
c.add(2)
h.record(2.0, context=context.get_current())
print("trace imported:", "opentelemetry.trace" in sys.modules)

from opentelemetry.sdk.trace import TracerProvider     # the application starts tracing
with TracerProvider().get_tracer("t").start_as_current_span("s") as span:
    c.add(4)
    h.record(4.0, context=context.get_current())
sc = span.get_span_context()
for metric in reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics:
    (p,) = metric.data.data_points
    print(metric.name, [(e.value, e.trace_id == sc.trace_id, e.span_id == sc.span_id) for e in p.exemplars])
"""


def test_the_sdk_does_not_import_tracing_and_samples_spans_once_the_application_does():
    """opentelemetry.trace (0.9 MB resident, 22 M instructions to import) is the
    application's to import: before it is, no context holds a span; after, the spans
    it starts are sampled by instruments made before (the sampler finds the key then)."""
    out = subprocess.run([sys.executable, "-c", TRACE_LATER], capture_output=True, text=True,
                         cwd=NEUTRAL_CWD)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["trace imported: False", "c [(4, True, True)]",
                                       "h [(4.0, True, True)]"], out.stderr


def test_off_means_no_reservoir_storage():
    mp, reader = provider(exemplar_filter=otelmetrics.AlwaysOffExemplarFilter())
    c = mp.get_meter("m").create_counter("c")
    with SAMPLED.start_as_current_span("s"):
        c.add(1)
    stream = mp._pipeline._outs[id(reader)][id(c)][0].stream
    assert stream.ex_k == 0


def test_bound_handle_samples_exemplars():
    mp, reader = provider()
    h = mp.get_meter("m").create_counter("c").bind({"a": 1})
    with SAMPLED.start_as_current_span("s") as span:
        h.add(2)
        expected = ids(span)
    (ex,) = points(reader, "c")[0].exemplars
    assert (ex.trace_id, ex.span_id, ex.value) == (*expected, 2)


def test_same_exemplar_fields_as_reference():
    from opentelemetry.sdk.metrics import MeterProvider as RefProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader as RefReader

    rr = RefReader()
    rp = RefProvider(metric_readers=[rr])
    rc = rp.get_meter("m").create_counter("c")
    mp, reader = provider()
    c = mp.get_meter("m").create_counter("c")
    with SAMPLED.start_as_current_span("s"):
        rc.add(3, {"a": 1})
        c.add(3, {"a": 1})
    ref_ex = rr.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics[0].data.data_points[0].exemplars[0]
    (ours,) = points(reader, "c")[0].exemplars
    for f in ("filtered_attributes", "value", "span_id", "trace_id"):
        assert getattr(ours, f) == getattr(ref_ex, f), f


class SpanIdReservoir:
    """A user reservoir keeping the span ids it saw, via the offered context."""

    def __init__(self):
        self.seen = []

    def offer(self, value, time_unix_nano, attributes, context):
        span = trace.get_current_span(context)
        self.seen.append((value, span.get_span_context().span_id))

    def collect(self, point_attributes):
        from otelmetrics.export import Exemplar
        out = [Exemplar({}, v, 0, s, None) for v, s in self.seen]
        self.seen = []
        return out


class BrokenReservoir:
    def offer(self, *a):
        raise RuntimeError("broken offer")

    def collect(self, point_attributes):
        raise RuntimeError("broken collect")


def test_user_reservoir_gets_the_measurement_context():
    mp, reader = provider(views=[View(instrument_name="c", exemplar_reservoir_factory=lambda agg: SpanIdReservoir())])
    c = mp.get_meter("m").create_counter("c")
    with SAMPLED.start_as_current_span("s") as span:
        c.add(4, {"a": 1})
        expected = ids(span)[1]
    (ex,) = points(reader, "c")[0].exemplars
    assert (ex.value, ex.span_id) == (4, expected)


def test_broken_user_reservoir_does_not_lose_measurements(caplog):
    mp, reader = provider(views=[View(instrument_name="c", exemplar_reservoir_factory=lambda agg: BrokenReservoir())],
                          exemplar_filter=otelmetrics.AlwaysOnExemplarFilter())
    c = mp.get_meter("m").create_counter("c")
    for _ in range(3):
        c.add(2)
    (p,) = points(reader, "c")
    assert p.value == 6 and p.exemplars == []
    assert mp.stats()["dropped_by_reason"] == {}
