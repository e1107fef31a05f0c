"""The attribute table of a compiled stream (a cell per attribute set): at most
``limit`` cells including the overflow series, bounded storage, every measurement
in exactly one cell, one series per attribute set whatever the order of its keys."""
import random

import pytest
from hypothesis import given, strategies as st

from otelmetrics._native import HistogramStream, SumStream, time_ns


def test_storage_never_grows_past_limit():
    s = SumStream(50)
    for i in range(10_000):
        s.record(1, {"k": i})
        assert s.capacity <= 50
    assert s.series == 49
    pts = s.collect(time_ns())
    assert len(pts) == 50 and sum(p.value for p in pts) == 10_000


def test_limit_one_means_everything_overflows():
    s = SumStream(1)
    s.record(2, {"a": 1})
    s.record(3, None)
    pts = s.collect(time_ns())
    assert [(p.attributes, p.value) for p in pts] == [({"otel.metric.overflow": True}, 5)]


@given(st.lists(st.tuples(st.integers(0, 40), st.integers(-1000, 1000)), max_size=300),
       st.integers(1, 30), st.booleans())
def test_every_measurement_lands_once(ops, limit, delta):
    s = SumStream(limit, delta)
    expected_total = 0
    collected_total = 0
    for j, (key, value) in enumerate(ops):
        s.record(value, {"k": key} if key else None)
        expected_total += value
        if j % 37 == 36:
            pts = s.collect(time_ns())
            assert len(pts) <= limit
            if delta:
                collected_total += sum(p.value for p in pts)
    pts = s.collect(time_ns())
    assert len(pts) <= limit
    if delta:
        collected_total += sum(p.value for p in pts)
    else:
        collected_total = sum(p.value for p in pts)
    assert collected_total == expected_total


def test_histogram_overflow_counts_every_measurement():
    h = HistogramStream(4, False, boundaries=(1.0, 10.0))
    rnd = random.Random(7)
    values = [rnd.uniform(0, 20) for _ in range(500)]
    for i, v in enumerate(values):
        h.record(v, {"k": i % 50})
    pts = h.collect(time_ns())
    assert len(pts) == 4
    assert sum(p.count for p in pts) == 500
    assert sum(sum(p.bucket_counts) for p in pts) == 500
    assert sum(p.sum for p in pts) == pytest.approx(sum(values))


def test_same_pairs_in_another_order_are_one_series():
    s = SumStream(10)
    s.record(1, {"method": "GET", "route": "/a", "status": 200})
    s.record(2, {"status": 200, "route": "/a", "method": "GET"})
    s.record(4, {"route": "/a", "method": "GET", "status": 200})
    assert s.series == 1
    (p,) = s.collect(time_ns())
    assert p.attributes == {"method": "GET", "route": "/a", "status": 200} and p.value == 7


def test_key_filters_apply_before_the_lookup():
    s = SumStream(10, allowed_keys=("keep", "also"), excluded_keys=("also",))
    s.record(1, {"keep": 1, "also": 2, "drop": 3})
    s.record(2, {"drop": 4, "keep": 1})
    assert s.series == 1
    (p,) = s.collect(time_ns())
    assert p.attributes == {"keep": 1} and p.value == 3


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="cardinality limit"):
        SumStream(0)


def test_equal_keys_that_are_other_objects_find_the_series():
    # The lookup first compares the caller's pairs position by position with the
    # stored ones; equal but distinct key objects, a shuffled order and more
    # pairs than it notes all still find the one series.
    s = SumStream(10)
    many = {"k%d" % i: i for i in range(12)}
    s.record(1, {"method": "GET", "status": 200})
    s.record(2, {"".join(["meth", "od"]): "GET", "".join(["sta", "tus"]): 200})
    s.record(4, dict(reversed(list({"method": "GET", "status": 200}.items()))))
    s.record(8, many)
    s.record(16, dict(reversed(list(many.items()))))
    s.record(32, {"method": "GET", "status": 201})
    s.record(64, {"status": 200, "method": "POST"})
    assert s.series == 4
    values = {frozenset(p.attributes.items()): p.value for p in s.collect(time_ns())}
    assert values[frozenset({"method": "GET", "status": 200}.items())] == 7
    assert values[frozenset(many.items())] == 24


@pytest.mark.parametrize("make", [lambda: SumStream(100), lambda: HistogramStream(100, (1.0, 10.0))])
def test_a_slice_of_a_snapshot_builds_the_points_of_its_records(make):
    s = make()
    for i in range(20):
        s.record(i, {"k": i})
    snap = s.collect_snapshot(time_ns())
    cuts = [(0, 20), (0, 7), (7, 13), (13, 20), (19, 20), (5, 5), (-3, 4), (15, 99), (30, 40), (9, 3)]
    parts = [snap.slice(a, b) for a, b in cuts]
    assert not snap.points_built                        # slicing built nothing
    whole = snap.points()
    for (a, b), part in zip(cuts, parts):
        assert len(part) == len(whole[max(a, 0):b]) and part.points() == whole[max(a, 0):b], (a, b)
    assert snap.slice(0, 5) is None                     # the points are the data now: slice those
