"""Spec: Exemplar, ExemplarFilter, ExemplarReservoir, Exemplar defaults, Custom
ExemplarReservoir (complements tests/test_exemplars.py and native/test_exemplars.py)."""
import time

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

import otelmetrics
from otelmetrics.view import ExplicitBucketHistogramAggregation, ExponentialBucketHistogramAggregation, View

from _util import by_attrs, points, provider

SAMPLED = TracerProvider(sampler=ALWAYS_ON).get_tracer("t")
ON = otelmetrics.AlwaysOnExemplarFilter()


# -- Exemplar ------------------------------------------------------------------------

def test_exemplar__value_time_filtered_attributes_and_span_ids():
    mp, r = provider(views=[View(instrument_name="c", attribute_keys=["X"])])
    c = mp.get_meter("m").create_counter("c")
    with SAMPLED.start_as_current_span("s") as span:
        before = time.time_ns()
        c.add(4, {"X": 1, "Z": "z"})
        after = time.time_ns()
    (ex,) = points(r, "c")[0].exemplars
    sc = span.get_span_context()
    assert ex.value == 4 and before <= ex.time_unix_nano <= after
    assert ex.filtered_attributes == {"Z": "z"}
    assert (ex.trace_id, ex.span_id) == (sc.trace_id, sc.span_id)


def test_exemplar__sampling_on_by_default_with_trace_based_filter(monkeypatch):
    monkeypatch.delenv("OTEL_METRICS_EXEMPLAR_FILTER", raising=False)
    mp, r = provider()
    c = mp.get_meter("m").create_counter("c")
    c.add(1)
    with SAMPLED.start_as_current_span("s"):
        c.add(2)
    assert [e.value for e in points(r, "c")[0].exemplars] == [2]


def test_exemplar__off_means_no_sampling_work():
    mp, r = provider(exemplar_filter=otelmetrics.AlwaysOffExemplarFilter())
    assert mp._sampler is None          # no filter call, no context lookup on the hot path
    c = mp.get_meter("m").create_histogram("h")
    with SAMPLED.start_as_current_span("s"):
        c.record(1)
    assert points(r, "h")[0].exemplars == []


# -- ExemplarFilter ------------------------------------------------------------------

def test_exemplarfilter__builtin_filters_selectable_on_the_provider():
    for f, expected in ((otelmetrics.AlwaysOnExemplarFilter(), 1), (otelmetrics.AlwaysOffExemplarFilter(), 0),
                        (otelmetrics.TraceBasedExemplarFilter(), 0)):
        mp, r = provider(exemplar_filter=f)
        mp.get_meter("m").create_counter("c").add(1)       # no span
        assert len(points(r, "c")[0].exemplars) == expected, f


def test_exemplarfilter__reference_filter_objects_are_accepted():
    from opentelemetry.sdk.metrics import AlwaysOnExemplarFilter as RefOn
    mp, r = provider(exemplar_filter=RefOn())
    mp.get_meter("m").create_counter("c").add(1)
    assert len(points(r, "c")[0].exemplars) == 1


# -- ExemplarReservoir ---------------------------------------------------------------

def test_exemplarreservoir__one_reservoir_per_timeseries():
    mp, r = provider(exemplar_filter=ON)
    c = mp.get_meter("m").create_counter("c")
    for i in range(3):
        for v in range(5):
            c.add(10 * i + v, {"i": i})
    for key, p in by_attrs(points(r, "c")).items():
        i = dict(key)["i"]
        (ex,) = p.exemplars
        assert 10 * i <= ex.value < 10 * i + 5


def test_exemplarreservoir__exemplars_fall_within_the_points_interval():
    mp, r = provider(delta=True, exemplar_filter=ON)
    h = mp.get_meter("m").create_histogram("h")
    for _ in range(3):
        for v in (1, 20, 300):
            h.record(v)
        (p,) = points(r, "h")
        assert p.exemplars
        for ex in p.exemplars:
            assert p.start_time_unix_nano <= ex.time_unix_nano <= p.time_unix_nano


# -- Exemplar defaults -----------------------------------------------------------------

def test_exemplar_defaults__explicit_histogram_uses_aligned_reservoir():
    mp, r = provider(exemplar_filter=ON)
    h = mp.get_meter("m").create_histogram("h")
    for v in (1, 2, 7, 8, 30, 40):          # buckets (0,5], (5,10], (25,50]
        h.record(v)
    assert len(points(r, "h")[0].exemplars) == 3


def test_exemplar_defaults__single_bucket_histogram_uses_simple_reservoir():
    mp, r = provider(views=[View(instrument_name="h", aggregation=ExplicitBucketHistogramAggregation([]))],
                     exemplar_filter=ON)
    h = mp.get_meter("m").create_histogram("h")
    for v in range(10):
        h.record(v)
    assert len(points(r, "h")[0].exemplars) == 1


@pytest.mark.parametrize("max_size,expected", [(160, 20), (8, 8)])
def test_exemplar_defaults__exponential_histogram_simple_reservoir_min_20_max_size(max_size, expected):
    mp, r = provider(views=[View(instrument_name="h",
                                 aggregation=ExponentialBucketHistogramAggregation(max_size=max_size))],
                     exemplar_filter=ON)
    h = mp.get_meter("m").create_histogram("h")
    for v in range(1, 200):
        h.record(v)
    assert len(points(r, "h")[0].exemplars) == expected


def test_exemplar_defaults__other_aggregations_simple_reservoir_of_one():
    mp, r = provider(exemplar_filter=ON)
    m = mp.get_meter("m")
    c, u, g = m.create_counter("c"), m.create_up_down_counter("u"), m.create_gauge("g")
    for v in range(20):
        c.add(v)
        u.add(v)
        g.set(v)
    assert all(len(ps[0].exemplars) == 1 for ps in points(r).values())


# -- Custom ExemplarReservoir ----------------------------------------------------------

class LastTwo:
    """A user reservoir in the reference SDK's shape: offer() and collect()."""

    instances = 0

    def __init__(self):
        type(self).instances += 1
        self.kept = []

    def offer(self, value, time_unix_nano, attributes, context):
        self.kept = (self.kept + [(value, time_unix_nano, attributes)])[-2:]

    def collect(self, point_attributes):
        from otelmetrics.export import Exemplar
        out = [Exemplar(dict(a), v, t, None, None) for v, t, a in self.kept]
        self.kept = []
        return out


def test_custom_exemplarreservoir__user_implementation_on_a_view_per_timeseries():
    mp, r = provider(views=[View(instrument_name="c", exemplar_reservoir_factory=lambda agg: LastTwo())],
                     exemplar_filter=ON)
    c = mp.get_meter("m").create_counter("c")
    for v in range(5):
        c.add(v, {"s": v % 2})
    got = by_attrs(points(r, "c"))
    assert LastTwo.instances == 2
    assert sorted(e.value for p in got.values() for e in p.exemplars) == [1, 2, 3, 4]
