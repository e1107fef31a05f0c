"""The aggregations of the compiled streams: sum, last value and explicit-bucket
histogram directly; the exponential histogram through the whole SDK (view -> stream
-> points), against opentelemetry-sdk, with the cell-level tests' data generators
(native/test_expo_histogram.py)."""
import pytest
from hypothesis import given, strategies as st

import otelmetrics
from otelmetrics._native import HistogramStream, LastValueStream, SumStream, time_ns
from otelmetrics.export import InMemoryMetricReader
from otelmetrics.view import ExponentialBucketHistogramAggregation, View

from native.test_expo_histogram import (GENERATORS, avoid_reference_cumulative_bugs, make_batches,
                                        max_scales, max_sizes, reference, through_sdk)


def ours_sdk(batches, temporality, max_size, max_scale, record_min_max=True):
    import otelmetrics.export
    import otelmetrics.view

    return through_sdk(otelmetrics, otelmetrics.export, otelmetrics.view, batches, temporality, max_size,
                       max_scale, record_min_max)


@pytest.mark.parametrize("kind", sorted(GENERATORS))
@given(seed=st.integers(0, 2 ** 32 - 1), max_size=max_sizes, max_scale=max_scales,
       temporality=st.sampled_from(["delta", "cumulative"]), n=st.integers(1, 150),
       k=st.integers(1, 4))
def test_sdk_matches_reference(kind, seed, max_size, max_scale, temporality, n, k):
    batches = make_batches(kind, seed, n, k, max_scale)
    if temporality == "cumulative":
        batches = avoid_reference_cumulative_bugs(batches)
    assert ours_sdk(batches, temporality, max_size, max_scale) == \
        reference(batches, temporality, max_size, max_scale), (batches, temporality, max_size, max_scale)


def test_reader_preferred_aggregation_makes_it_the_default_for_histograms():
    reader = InMemoryMetricReader(preferred_aggregation={
        otelmetrics.Histogram: ExponentialBucketHistogramAggregation(max_size=20)})
    provider = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    h = provider.get_meter("m").create_histogram("latency")
    for v in (1, 2, 4, 8):
        h.record(v, {"route": "/"})
    (metric,) = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics
    (p,) = metric.data.data_points
    assert type(metric.data).__name__ == "ExponentialHistogram"
    assert p.count == 4 and p.attributes == {"route": "/"} and len(p.positive.bucket_counts) <= 20


def test_overflow_and_exemplars_on_exponential_streams():
    reader = InMemoryMetricReader(default_cardinality_limit=3)
    provider = otelmetrics.MeterProvider(
        metric_readers=[reader], shutdown_on_exit=False, exemplar_filter=otelmetrics.AlwaysOnExemplarFilter(),
        views=[View(instrument_name="h", aggregation=ExponentialBucketHistogramAggregation(max_size=4))])
    h = provider.get_meter("m").create_histogram("h")
    for i in range(10):
        h.record(i + 0.5, {"k": i})
    pts = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
    assert len(pts) == 3 and sum(p.count for p in pts) == 10
    assert all(1 <= len(p.exemplars) <= 4 for p in pts)   # min(20, max_size) slots


@pytest.mark.parametrize("args", [dict(max_size=1), dict(max_scale=21), dict(max_scale=-11),
                                  dict(max_size="8")])
def test_invalid_aggregation_fails_fast(args):
    with pytest.raises(ValueError, match="ExponentialBucketHistogramAggregation"):
        ExponentialBucketHistogramAggregation(**args)


# -- sum, last value, explicit-bucket histogram, directly --------------------------------

@pytest.mark.parametrize("delta", [False, True])
def test_sum_is_cumulative_or_per_interval(delta):
    s = SumStream(10, delta)
    s.record(1, {"k": "a"})
    s.record(2, {"k": "a"})
    assert [p.value for p in s.collect(time_ns())] == [3]
    s.record(4, {"k": "a"})
    assert [p.value for p in s.collect(time_ns())] == ([4] if delta else [7])


def test_sum_stays_int_until_a_float_arrives():
    s = SumStream(10)
    s.record(2)
    (p,) = s.collect(time_ns())
    assert p.value == 2 and type(p.value) is int
    s.record(0.5)
    (p,) = s.collect(time_ns())
    assert p.value == 2.5 and type(p.value) is float


def test_last_value_keeps_the_last_measurement_per_series():
    s = LastValueStream(10)
    for v, k in ((5, "a"), (7, "b"), (3, "a"), (9.5, "b")):
        s.record(v, {"k": k})
    got = {p.attributes["k"]: p.value for p in s.collect(time_ns())}
    assert got == {"a": 3, "b": 9.5}


def test_histogram_snapshot_records_hold_uint32_buckets_while_every_count_fits():
    """A held collection's histogram records take 4 bytes per bucket, not 8, until some
    series' count passes the limit (2**32; lowered here): then the whole snapshot is
    uint64, and the points are the same either way."""
    from otelmetrics._native import narrow_bucket_limit

    def collect(limit):
        h = HistogramStream(10, False, boundaries=(1.0, 10.0))   # 3 buckets
        for v in (0.5, 1.0, 1.5, 10.0, 11.0, 12.0):
            h.record(v, {"k": "a" if v < 11 else "b"})
        old = narrow_bucket_limit(limit)
        try:
            snap = h.collect_snapshot(time_ns())
        finally:
            narrow_bucket_limit(old)
        return snap.rec, [(p.attributes, p.count, list(p.bucket_counts)) for p in snap.points()]

    narrow, points = collect(2**32 - 1)
    at_limit, same = collect(4)           # the largest count is 4: still uint32
    wide, wide_points = collect(3)        # one count is past 3: every record is uint64
    # 3 buckets: 12 bytes of uint32 padded to 16 (records stay 8-byte aligned), or 24 of uint64
    assert narrow == at_limit and wide - narrow == 24 - 16 and narrow % 8 == 0 and wide % 8 == 0
    assert points == same == wide_points == [({"k": "a"}, 4, [2, 2, 0]), ({"k": "b"}, 2, [0, 0, 2])]
    for nb in range(12):                  # every bucket count: records stay 8-byte aligned
        h = HistogramStream(10, False, boundaries=tuple(float(b) for b in range(nb)))
        h.record(0.5)
        assert h.collect_snapshot(time_ns()).rec % 8 == 0


def test_histogram_buckets_are_upper_inclusive_with_count_sum_min_max():
    h = HistogramStream(10, False, boundaries=(1.0, 10.0))
    for v in (0.5, 1.0, 1.5, 10.0, 11.0):
        h.record(v)
    (p,) = h.collect(time_ns())
    assert list(p.explicit_bounds) == [1.0, 10.0] and list(p.bucket_counts) == [2, 2, 1]
    assert (p.count, p.sum, p.min, p.max) == (5, 24.0, 0.5, 11.0)


def test_histogram_int_min_max_are_exact():
    """While every measurement is an int, min and max are the exact ints (as the reference's
    Python ints): past 2**53 and at the int64 limits, where a double would round (2**63 - 1
    to 2**63, which no int64 holds); from a series' first float on they are doubles."""
    h = HistogramStream(10, False, boundaries=(0.0,))
    for v in (2 ** 53 + 3, 2 ** 63 - 1, 2 ** 53 + 1):
        h.record(v)
    for v in (-(2 ** 53) - 1, -(2 ** 63)):
        h.record(v, {"k": "low"})
    got = {tuple(p.attributes.items()): (p.min, p.max, type(p.min), type(p.max)) for p in h.collect(time_ns())}
    assert got == {(): (2 ** 53 + 1, 2 ** 63 - 1, int, int),
                   (("k", "low"),): (-(2 ** 63), -(2 ** 53) - 1, int, int)}
    h.record(0.5)
    h.record(2 ** 63 - 1, {"k": "low"})
    got = {tuple(p.attributes.items()): (p.min, p.max) for p in h.collect(time_ns())}
    assert got == {(): (0.5, float(2 ** 63 - 1)), (("k", "low"),): (-(2 ** 63), 2 ** 63 - 1)}
    assert type(got[()][0]) is float and type(got[()][1]) is float
    off = HistogramStream(10, False, boundaries=(0.0,), record_min_max=False)
    off.record(5)
    (p,) = off.collect(time_ns())
    assert (p.min, p.max) == (float("inf"), float("-inf"))
