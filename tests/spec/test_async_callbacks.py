"""Spec: Observations inside asynchronous callbacks; Start timestamps."""
import threading
import time

import pytest
from opentelemetry.metrics import Observation

import otelmetrics
from otelmetrics.export import InMemoryMetricReader

from _util import ALL_DELTA, by_attrs, points, provider


def two_readers():
    r1, r2 = InMemoryMetricReader(), InMemoryMetricReader(preferred_temporality=ALL_DELTA)
    return otelmetrics.MeterProvider(metric_readers=[r1, r2], shutdown_on_exit=False), r1, r2


# -- Observations inside asynchronous callbacks ------------------------------------

def test_observations_inside_asynchronous_callbacks__invoked_for_the_collecting_reader_only():
    mp, r1, r2 = two_readers()
    n = [0]

    def cb(options):
        n[0] += 1
        return [Observation(n[0])]

    mp.get_meter("m").create_observable_gauge("g", [cb])
    assert points(r1, "g")[0].value == 1
    assert n[0] == 1                       # r2 did not trigger it
    assert points(r2, "g")[0].value == 2   # r2's collection sees its own invocation
    assert points(r1, "g")[0].value == 3


def test_observations_inside_asynchronous_callbacks__timeout_bounds_a_hanging_callback():
    mp, r = provider()
    release = threading.Event()
    m = mp.get_meter("m")
    m.create_observable_gauge("slow", [lambda o: release.wait(10) and []])
    m.create_observable_gauge("fast", [lambda o: [Observation(1)]])
    t0 = time.monotonic()
    r.collect(timeout_millis=200)
    assert time.monotonic() - t0 < 2.0
    release.set()


def test_observations_inside_asynchronous_callbacks__callback_gets_the_timeout():
    mp, r = provider()
    seen = []
    mp.get_meter("m").create_observable_gauge("g", [lambda o: seen.append(o.timeout_millis) or []])
    r.collect(timeout_millis=500)
    assert 0 < seen[0] <= 500


def test_observations_inside_asynchronous_callbacks__one_round_completes_before_the_next():
    mp, r1, r2 = two_readers()
    active, overlap = [0], [0]
    lock = threading.Lock()

    def cb(options):
        with lock:
            active[0] += 1
            overlap[0] = max(overlap[0], active[0])
        time.sleep(0.01)
        with lock:
            active[0] -= 1
        return [Observation(1)]

    mp.get_meter("m").create_observable_counter("c", [cb])
    threads = [threading.Thread(target=lambda r=r: [r.collect() for _ in range(5)]) for r in (r1, r2, r1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlap[0] == 1


@pytest.mark.parametrize("delta", [False, True])
def test_observations_inside_asynchronous_callbacks__unobserved_attribute_sets_not_exported(delta):
    mp, r = provider(delta=delta)
    obs = [[Observation(1, {"a": 1}), Observation(2, {"a": 2})], [Observation(5, {"a": 2})]]
    step = [0]
    mp.get_meter("m").create_observable_up_down_counter("u", [lambda o: obs[step[0]]])
    assert len(points(r, "u")) == 2
    step[0] = 1
    got = points(r, "u")
    assert [p.attributes for p in got] == [{"a": 2}]


def test_observations_inside_asynchronous_callbacks__failed_callback_keeps_the_others():
    mp, r = provider()

    def bad(options):
        raise RuntimeError("sensor gone")

    mp.get_meter("m").create_observable_gauge("g", [bad, lambda o: [Observation(7)]])
    assert points(r, "g")[0].value == 7


# The Python API offers no way to observe outside a callback, so "disregard the use of
# asynchronous instrument APIs outside of registered callbacks" holds by construction.


# -- Start timestamps --------------------------------------------------------------

def test_start_timestamps__delta_first_interval_starts_at_instrument_creation_then_previous_collection():
    mp, r = provider(delta=True)
    t0 = time.time_ns()
    c = mp.get_meter("m").create_counter("c")
    t1 = time.time_ns()
    c.add(1, {"a": 1})
    (p1,) = points(r, "c")
    assert t0 <= p1.start_time_unix_nano <= t1
    c.add(1, {"a": 2})          # a new attribute set in the second interval
    c.add(1, {"a": 1})
    second = points(r, "c")
    assert {p.start_time_unix_nano for p in second} == {p1.time_unix_nano}


def test_start_timestamps__delta_attribute_sets_share_one_start():
    mp, r = provider(delta=True)
    c = mp.get_meter("m").create_counter("c")
    c.add(1, {"a": 1})
    time.sleep(0.002)
    c.add(1, {"a": 2})
    pts = points(r, "c")
    assert len(pts) == 2 and len({p.start_time_unix_nano for p in pts}) == 1


def test_start_timestamps__delta_streams_of_one_instrument_share_one_start():
    from otelmetrics.view import SumAggregation, View

    class SlowToBuild(SumAggregation):
        def _build(self, kind, **kw):
            time.sleep(0.002)      # makes the gap between the two streams' creation certain
            return super()._build(kind, **kw)

    mp, r = provider(delta=True, views=[View(instrument_name="c"), View(instrument_name="c", name="c2",
                                                                          aggregation=SlowToBuild())])
    c = mp.get_meter("m").create_counter("c")
    c.add(1, {"a": 1})
    pts = [p for ps in points(r).values() for p in ps]
    assert len(pts) == 2 and len({p.start_time_unix_nano for p in pts}) == 1


def test_start_timestamps__cumulative_sync_uses_first_measurement_per_attribute_set():
    mp, r = provider()
    c = mp.get_meter("m").create_counter("c")
    time.sleep(0.002)
    before_a = time.time_ns()
    c.add(1, {"k": "a"})
    after_a = time.time_ns()
    first = by_attrs(points(r, "c"))
    time.sleep(0.002)
    before_b = time.time_ns()
    c.add(1, {"k": "b"})
    second = by_attrs(points(r, "c"))
    a, b = second[frozenset({("k", "a")})], second[frozenset({("k", "b")})]
    assert before_a <= a.start_time_unix_nano <= after_a
    assert a.start_time_unix_nano == first[frozenset({("k", "a")})].start_time_unix_nano  # repeated
    assert b.start_time_unix_nano >= before_b


def test_start_timestamps__cumulative_async_uses_previous_collection_or_creation():
    mp, r = provider()
    obs = [[Observation(1, {"k": "a"})], [Observation(1, {"k": "a"}), Observation(1, {"k": "b"})]]
    step = [0]
    t0 = time.time_ns()
    mp.get_meter("m").create_observable_counter("c", [lambda o: obs[step[0]]])
    t1 = time.time_ns()
    (a1,) = points(r, "c")
    assert t0 <= a1.start_time_unix_nano <= t1
    step[0] = 1
    second = by_attrs(points(r, "c"))
    assert second[frozenset({("k", "a")})].start_time_unix_nano == a1.start_time_unix_nano
    assert second[frozenset({("k", "b")})].start_time_unix_nano == a1.time_unix_nano
