"""Cardinality limits: every measurement lands in exactly one cell, at most
``limit`` points per stream including the overflow series, bounded storage."""
import random

import pytest
from hypothesis import given, strategies as st

from otelmetrics.view import View
from otelmetrics._native.aggregations import HistogramStream, SumStream
from otelmetrics._native.table import time_ns

from _util import by_attrs, points, provider

OVERFLOW = frozenset({("otel.metric.overflow", True)})


@pytest.mark.parametrize("delta", [False, True])
def test_overflow_series_and_exact_total(delta):
    mp, reader = provider(delta=delta, limit=10)
    c = mp.get_meter("m").create_counter("c")
    for i in range(100):
        c.add(i, {"k": i})
    pts = points(reader, "c")
    # Spec: at most `limit` points including the overflow one (the reference exports limit + 1).
    assert len(pts) == 10
    got = by_attrs(pts)
    assert OVERFLOW in got
    assert sum(p.value for p in pts) == sum(range(100))
    # The first limit - 1 series keep their own cells.
    assert {frozenset({("k", i)}) for i in range(9)} | {OVERFLOW} == set(got)


def test_cumulative_keeps_series_seen_before_overflow():
    mp, reader = provider(limit=5)
    c = mp.get_meter("m").create_counter("c")
    for i in range(4):
        c.add(1, {"k": i})
    c.add(7, {"k": "late"})
    c.add(1, {"k": 0})
    got = by_attrs(points(reader, "c"))
    assert got[frozenset({("k", 0)})].value == 2
    assert got[OVERFLOW].value == 7
    # Nothing new, cumulative: same series, same values.
    again = by_attrs(points(reader, "c"))
    assert {k: p.value for k, p in again.items()} == {k: p.value for k, p in got.items()}


def test_delta_frees_quiet_series():
    mp, reader = provider(delta=True, limit=4)
    c = mp.get_meter("m").create_counter("c")
    for i in range(3):
        c.add(1, {"k": i})
    assert len(points(reader, "c")) == 3
    # An interval later the old series were quiet: new ones get their own cells.
    for i in range(3, 6):
        c.add(2, {"k": i})
    got = by_attrs(points(reader, "c"))   # series 0..2 quiet in this interval: freed at this collection
    assert OVERFLOW not in got and len(got) == 3
    for i in range(6, 9):
        c.add(3, {"k": i})
    got = by_attrs(points(reader, "c"))
    assert OVERFLOW not in got
    assert {k: p.value for k, p in got.items()} == {frozenset({("k", i)}): 3 for i in range(6, 9)}


def test_view_limit_beats_reader_default():
    mp, reader = provider(limit=100, views=[View(instrument_name="c", aggregation_cardinality_limit=3)])
    c = mp.get_meter("m").create_counter("c")
    d = mp.get_meter("m").create_counter("d")
    for i in range(50):
        c.add(1, {"k": i})
        d.add(1, {"k": i})
    pts = points(reader)
    assert len(pts["c"]) == 3 and len(pts["d"]) == 50


def test_default_limit_is_2000():
    mp, reader = provider()
    c = mp.get_meter("m").create_counter("c")
    for i in range(2500):
        c.add(1, {"k": i})
    pts = points(reader, "c")
    assert len(pts) == 2000
    assert by_attrs(pts)[OVERFLOW].value == 501


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


def test_filtered_attributes_count_toward_one_series():
    """Cardinality applies after attribute filtering (views)."""
    mp, reader = provider(limit=3, views=[View(instrument_name="c", attribute_keys=["keep"])])
    c = mp.get_meter("m").create_counter("c")
    for i in range(100):
        c.add(1, {"keep": "x", "drop": i})
    pts = points(reader, "c")
    assert [(p.attributes, p.value) for p in pts] == [({"keep": "x"}, 100)]
