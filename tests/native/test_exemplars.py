"""The compiled exemplar reservoirs: simple fixed size (uniform reservoir sampling,
reset at each collection) and aligned histogram bucket (one slot per bucket), through
the SDK with real spans from opentelemetry-sdk's TracerProvider, and directly."""
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_ON

import otelmetrics
from otelmetrics._native import Reservoirs
from otelmetrics.view import ExplicitBucketHistogramAggregation, View

from _util import points, provider

SAMPLED = TracerProvider(sampler=ALWAYS_ON).get_tracer("t")


def test_aligned_histogram_reservoir_one_per_bucket():
    mp, reader = provider(views=[View(instrument_name="h", aggregation=ExplicitBucketHistogramAggregation(
        boundaries=(10, 100)))])
    h = mp.get_meter("m").create_histogram("h")
    with SAMPLED.start_as_current_span("s"):
        for v in (1, 2, 3, 50, 60, 500):
            h.record(v)
    (p,) = points(reader, "h")
    assert len(p.exemplars) == 3
    buckets = sorted(0 if e.value <= 10 else 1 if e.value <= 100 else 2 for e in p.exemplars)
    assert buckets == [0, 1, 2]


def test_simple_reservoir_default_size_one_and_reset_each_collection():
    mp, reader = provider(delta=True)
    c = mp.get_meter("m").create_counter("c")
    with SAMPLED.start_as_current_span("s"):
        for v in range(1, 101):
            c.add(v)
    (p,) = points(reader, "c")
    assert len(p.exemplars) == 1 and 1 <= p.exemplars[0].value <= 100
    c.add(7)            # no span: nothing sampled in this interval
    (p,) = points(reader, "c")
    assert p.exemplars == []


def test_simple_reservoir_is_uniform():
    """Algorithm R: every measurement equally likely to be kept (chi-square-ish bound)."""
    counts = [0] * 10
    for trial in range(600):
        mp, reader = provider(delta=True, exemplar_filter=otelmetrics.AlwaysOnExemplarFilter())
        c = mp.get_meter("m").create_counter("c")
        for v in range(10):
            c.add(v)
        counts[points(reader, "c")[0].exemplars[0].value] += 1
    assert min(counts) > 25 and max(counts) < 110, counts


def test_aligned_reservoir_is_uniform_within_a_bucket():
    """One slot per bucket, replaced with probability 1/n among the bucket's n measurements."""
    counts = [0] * 10
    view = View(instrument_name="h", aggregation=ExplicitBucketHistogramAggregation(boundaries=(100,)))
    for trial in range(600):
        mp, reader = provider(delta=True, views=[view], exemplar_filter=otelmetrics.AlwaysOnExemplarFilter())
        h = mp.get_meter("m").create_histogram("h")
        for v in range(10):
            h.record(v)                                  # all ten in the first bucket
        (e,) = points(reader, "h")[0].exemplars
        counts[int(e.value)] += 1
    assert min(counts) > 25 and max(counts) < 110, counts


@pytest.mark.parametrize("measurements", [3, 4, 50])
def test_simple_reservoir_keeps_distinct_measurements_up_to_its_size(measurements):
    view = View(instrument_name="c",
                exemplar_reservoir_factory=lambda agg: otelmetrics.SimpleFixedSizeExemplarReservoir(size=4))
    mp, reader = provider(delta=True, views=[view], exemplar_filter=otelmetrics.AlwaysOnExemplarFilter())
    c = mp.get_meter("m").create_counter("c")
    for v in range(1, measurements + 1):
        c.add(v)
    kept = [e.value for e in points(reader, "c")[0].exemplars]
    assert len(kept) == min(4, measurements)
    assert len(set(kept)) == len(kept) and set(kept) <= set(range(1, measurements + 1))


def test_a_reservoir_needs_a_slot():
    with pytest.raises(ValueError, match="at least one slot"):
        Reservoirs(0, False, 1)
