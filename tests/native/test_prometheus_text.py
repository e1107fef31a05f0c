"""Prometheus sample lines written from a collection's snapshot (cext/prometheus_text.pxi):
the same bytes as the points path, for every instrument kind and odd attributes; the
path is taken; no Python object per series."""
import math
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.metrics import Observation
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import otelmetrics
from otelmetrics._native import Snapshot
from otelmetrics.export import PrometheusMetricReader
from otelmetrics.export.prometheus import _Translation, render
from otelmetrics.resources import Resource
from otelmetrics.view import ExplicitBucketHistogramAggregation, ExponentialBucketHistogramAggregation, View
from _util import assert_nothing_per_series, quiet_for_counting

ODD_ATTRIBUTES = [
    {},
    {"a.b": 1, "a_b": "x", "a-b": 2.5, "c": True, "d": False},          # keys colliding once sanitised
    {"q": 'say "hi"\\ now\nnext', "le": 2.5, "é": "ünï cödé", "1st": -7},
    {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "big": 1e22, "tiny": 5e-324, "negzero": -0.0,
     "f": 0.1},
    {"s": ["a", 'b"'], "i": (1, 2), "b": [True, False], "fl": [1.5, math.nan], "e": []},
    {"max": 2**63 - 1, "min": -2**63, "huge": 2**70},
    {"otel.scope.name": "mine", "otel_scope_version": 3, "host.name": "attr"},   # collide with the extras
    {"_": 1, ".": 2, "__": 3, "": 4},
    {"sur": "a\ud800b", "emoji": "\U0001F600"},
    {"k": "same", "K": "same"},
]

READER_OPTIONS = [
    {},
    {"scope_info_enabled": False, "disable_target_info": True},
    {"prefix": "my app", "resource_attribute_filter": lambda k: k in ("host.name", "le", "deploy")},
]


def _setup(**options):
    reader = PrometheusMetricReader(registry=None, **options)
    resource = Resource({"service.name": "svc", "host.name": "edge-1", "le": "res", "deploy": ["a", "b"]})
    views = [View(instrument_name="h.custom", aggregation=ExplicitBucketHistogramAggregation(
                  boundaries=(-1e308, -1.5, 0, 1e-300, 2**53, 1e300))),
             View(instrument_name="h.wide", aggregation=ExplicitBucketHistogramAggregation(
                  boundaries=(0, 1e-300, 2**53, 1e300))),
             View(instrument_name="queue.h", aggregation=ExplicitBucketHistogramAggregation(boundaries=(0, 10))),
             View(instrument_name="h.one", aggregation=ExplicitBucketHistogramAggregation(boundaries=())),
             View(instrument_name="h.expo", aggregation=ExponentialBucketHistogramAggregation(max_size=8))]
    provider = otelmetrics.MeterProvider(metric_readers=[reader], resource=resource, views=views,
                                         shutdown_on_exit=False)
    return reader, provider


def _texts(reader, openmetrics):
    """(snapshot path's text, points path's text, metrics whose snapshot stayed unbuilt,
    sample chunks rendered from snapshots), both paths over one collection."""
    data = reader._snapshot()
    fast = _Translation(reader._warn_drop)
    fast.add(data, reader._options)
    fast_text = render(fast.ordered(), openmetrics)
    unbuilt = [m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
               if type(getattr(m.data, "_data_points", None)) is Snapshot]
    chunks = sum(1 for f in fast.ordered() for p in f.points if type(p) is bytes)
    slow = _Translation(reader._warn_drop, text=False)      # reads data_points: the points path
    slow.add(data, reader._options)
    assert not any(type(p) is bytes for f in slow.ordered() for p in f.points)
    return fast_text, render(slow.ordered(), openmetrics), unbuilt, chunks


def _record_everything(provider, round_):
    meter = provider.get_meter("scope.a", "1.0", attributes={"team": "x", "le": 1})
    other = provider.get_meter("scope b", schema_url="https://example.com/s")
    c = meter.create_counter("requests", unit="By")
    fc = meter.create_counter("float.requests")
    ud = meter.create_up_down_counter("queue")
    g = meter.create_gauge("temp", unit="1")
    h = meter.create_histogram("h", unit="ms")
    hc = meter.create_histogram("h.custom")
    hw = meter.create_histogram("h.wide")
    udh = meter.create_up_down_counter("queue.h")          # a histogram View: a sum below zero
    h1 = other.create_histogram("h.one")
    he = meter.create_histogram("h.expo")
    same = other.create_counter("requests", unit="By")      # the same family from another scope

    def observe(options):
        for i, a in enumerate(ODD_ATTRIBUTES):
            yield Observation(i * 10 + round_, a)

    meter.create_observable_counter("obs.count", callbacks=[observe])
    meter.create_observable_gauge("obs.gauge", callbacks=[lambda o: [Observation(1e-7),
                                                                      Observation(1.5, {"x": 1})]])
    meter.create_observable_up_down_counter("obs.updown", callbacks=[
        lambda o: [Observation(-2.5e300, {"y": "z"})]])
    for i, a in enumerate(ODD_ATTRIBUTES):
        c.add(i + round_, a)
        fc.add(0.1 * (i + 1), a)
        ud.add(-i * round_, a)
        udh.add(i - 3, a)
        g.set(math.inf if i == 3 else i - 0.5, a)
        for v in (0, -2, 1e-301, 7, 2**60, i * 1.5):
            h.record(v, a)
            hc.record(v, a)
            hw.record(v, a)
            h1.record(v, a)
            he.record(abs(v) + 1, a)
        same.add(i, a)
    fc.add(1e308, {"inf": "sum"})
    fc.add(1e308, {"inf": "sum"})            # the float sum overflows: +Inf
    c.add(2**62, {"overflowed": 1})
    c.add(2**62, {"overflowed": 1})          # int64 overflow: the sum turns float
    h.record(2**62, {"overflowed": 1})
    h.record(2**62, {"overflowed": 1})


@pytest.mark.parametrize("openmetrics", [False, True])
@pytest.mark.parametrize("options", range(len(READER_OPTIONS)))
def test_snapshot_text_equals_points_text(options, openmetrics, bucket_width):
    reader, provider = _setup(**READER_OPTIONS[options])
    try:
        for round_ in range(3):                 # cumulative: the same series again, grown
            _record_everything(provider, round_)
            fast, slow, unbuilt, chunks = _texts(reader, openmetrics)
            assert fast == slow
            # Every Sum, Gauge and explicit Histogram went through its snapshot; the
            # exponential histogram builds its points at collection, and so do histograms
            # whose OpenMetrics lines are not their text lines (a negative bucket threshold,
            # a series' sum below zero: no _count and _sum in OpenMetrics).
            assert {"h.expo", "h.custom", "queue.h"}.isdisjoint(unbuilt)
            assert {"requests", "float.requests", "queue", "temp", "h", "h.wide", "h.one", "obs.count",
                    "obs.gauge", "obs.updown"} <= set(unbuilt)
            assert chunks == len(unbuilt)
        assert b'le="-1e+308"' in fast and b"+Inf" in fast and b"NaN" in fast and b'\\"' in fast and b"\\n" in fast
        assert b"a?b" in fast
    finally:
        provider.shutdown()


def test_snapshot_path_taken_by_a_scrape_and_not_for_exemplars():
    reader, provider = _setup()
    meter = provider.get_meter("m")
    meter.create_counter("plain").add(1, {"k": "v"})
    ctx = trace.set_span_in_context(NonRecordingSpan(SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C, span_id=0xB7AD6B7169203331, is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED))))
    meter.create_counter("sampled").add(2, {"k": "v"}, context=ctx)        # took an exemplar
    meter.create_histogram("sampled.h").record(3, context=ctx)
    # A stream with exemplars builds its points at collection, and the points path writes them.
    fast, slow, unbuilt, chunks = _texts(reader, True)
    assert fast == slow and "plain" in unbuilt and "sampled" not in unbuilt and "sampled.h" not in unbuilt
    assert (b'sampled_total{k="v",otel_scope_name="m"} 2 # {trace_id="0af7651916cd43dd8448eb211c80319c",'
            b'span_id="b7ad6b7169203331"}') in fast
    meter.create_counter("sampled").add(1, {"k": "v"}, context=ctx)        # a new sample
    kinds = {f.name: [type(p) for p in f.points] for f in reader._families()}
    assert kinds["plain"] == [bytes] and kinds["sampled"] == [tuple]
    # Nothing offered since (the histogram's sample went out above): the snapshot's lines.
    assert kinds["sampled_h"] == [bytes]
    # prometheus_client's collector gets the points
    assert {f.name: [type(p) for p in f.points] for f in reader._families(text=False)}["plain"] == [tuple]
    provider.shutdown()


@given(st.lists(st.dictionaries(
    st.text(st.sampled_from("aZ9._-lé \"\n\\\udc80"), min_size=1, max_size=4),
    st.one_of(st.text(max_size=6), st.text(st.sampled_from('ab;"\\\né\ud800\udfff\U0001F600'), max_size=6),
              st.integers(min_value=-2**63, max_value=2**63 - 1), st.floats(),
              st.booleans(), st.lists(st.text(max_size=3), max_size=3), st.lists(st.integers(), max_size=3)),
    max_size=5), min_size=1, max_size=6),
    st.sampled_from(range(len(READER_OPTIONS))), st.booleans())
def test_any_attributes_render_the_same_from_the_snapshot(attribute_sets, options, openmetrics):
    reader, provider = _setup(**READER_OPTIONS[options])
    try:
        meter = provider.get_meter("m", "2", attributes={"le": "scope", "a.Z": 1})
        c, g, h = meter.create_counter("c"), meter.create_gauge("g"), meter.create_histogram("h")
        for i, a in enumerate(attribute_sets):
            c.add(i, a)
            g.set(-i * 0.5, a)
            h.record(i, a)
        fast, slow, unbuilt, _ = _texts(reader, openmetrics)
        assert fast == slow and {"c", "g", "h"} <= set(unbuilt)
    finally:
        provider.shutdown()


def _render_blocks(series):
    """Blocks still allocated after translating and rendering one collection (the text
    alive), in steady state."""
    reader, provider = _setup()
    meter = provider.get_meter("m", "1")
    counter, hist = meter.create_counter("c"), meter.create_histogram("h")
    for i in range(series):
        a = {"device": "d%d" % i, "site": "s%d" % (i % 7), "n": i, "on": i % 2 == 0}
        counter.add(i, a)
        hist.record(i * 0.5, a)
    for _ in range(2):
        reader.exposition()
    with quiet_for_counting():
        data = reader._snapshot()
        before = sys.getallocatedblocks()
        t = _Translation(reader._warn_drop)
        t.add(data, reader._options)
        text = render(t.ordered(), False)
        blocks = sys.getallocatedblocks() - before
    assert text.count(b"\nc_total{") == series
    assert type(data.resource_metrics[0].scope_metrics[0].metrics[0].data._data_points) is Snapshot
    provider.shutdown()
    return blocks


def test_render_allocates_nothing_per_series():
    small, large = _render_blocks(200), _render_blocks(2000)
    assert_nothing_per_series(small, large, room=200)
