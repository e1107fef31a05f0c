"""Delta and cumulative temporality per instrument kind (numbers checked against
the reference SDK and spelled out), and start/end timestamps as the spec's
"Start timestamps" and "MetricReader" sections require."""
from __future__ import annotations

import threading
import time

import pytest
from opentelemetry.metrics import Observation

from _sdk_helpers import (
    CUMULATIVE,
    DELTA,
    OURS,
    SIDES,
    assert_same_collection,
    attr_key,
    carried_sync_gauges,
    end_times,
    make_sdk,
    series,
    total,
    values,
)

# kind -> (measurements per collection; expected value per collection by temporality, None = absent)
# Synchronous steps are lists of amounts; asynchronous steps one observation or None (not observed).
SCRIPTS = {
    "counter": ([[5], [3, 2], [], [1]],
                {DELTA: [5, 5, None, 1], CUMULATIVE: [5, 10, 10, 11]}),
    "up_down_counter": ([[5], [-7], [], [2.5]],
                        {DELTA: [5, -7, None, 2.5], CUMULATIVE: [5, -2, -2, 0.5]}),
    "histogram": ([[5, 20], [1], [], [7]],
                  {DELTA: [(2, 25), (1, 1), None, (1, 7)], CUMULATIVE: [(2, 25), (3, 26), (3, 26), (4, 33)]}),
    "gauge": ([[3], [4, 1], [], [9]],
              {DELTA: [3, 1, None, 9], CUMULATIVE: [3, 1, 1, 9]}),
    "observable_counter": ([10, 25, 25, None, 40],
                           {DELTA: [10, 15, 0, None, 15], CUMULATIVE: [10, 25, 25, None, 40]}),
    "observable_up_down_counter": ([10, 4, 4, None, -3],
                                   {DELTA: [10, -6, 0, None, -7], CUMULATIVE: [10, 4, 4, None, -3]}),
    "observable_gauge": ([10, 4, None, 7.5],
                         {DELTA: [10, 4, None, 7.5], CUMULATIVE: [10, 4, None, 7.5]}),
}
VERB = {"counter": "add", "up_down_counter": "add", "histogram": "record", "gauge": "set"}


def run_script(side, kind, temporality):
    steps, _ = SCRIPTS[kind]
    provider, reader = make_sdk(side, temporality)
    meter = provider.get_meter("m")
    step = [None]
    if kind in VERB:
        record = getattr(getattr(meter, "create_" + kind)("x"), VERB[kind])
    else:
        getattr(meter, "create_" + kind)("x", callbacks=[
            lambda options: [] if step[0] is None else [Observation(step[0], {"k": "v"})]])
    out = []
    for s in steps:
        if kind in VERB:
            for amount in s:
                record(amount, {"k": "v"})
        step[0] = s
        out.append(reader.get_metrics_data())
    provider.shutdown()
    return out


def simple(point):
    return (point.count, point.sum) if hasattr(point, "count") else point.value


@pytest.mark.parametrize("temporality", [DELTA, CUMULATIVE])
@pytest.mark.parametrize("kind", list(SCRIPTS))
def test_temporality_per_instrument_kind(kind, temporality):
    ref = run_script(SIDES[0], kind, temporality)
    ours = run_script(OURS, kind, temporality)
    key = ("x", attr_key({"k": "v"}))
    for i, (o, r) in enumerate(zip(ours, ref)):
        carried = carried_sync_gauges(ours[i - 1], o, r, {"x"}) if i and temporality == CUMULATIVE else ()
        assert_same_collection(o, r, ignore=carried)
    got = [simple(series(o)[key][1]) if key in series(o) else None for o in ours]
    assert got == SCRIPTS[kind][1][temporality]


# -- timestamps ----------------------------------------------------------------------

class Clock:
    """Runs collections on our SDK and remembers the wall-clock window of each."""

    def __init__(self, temporality):
        self.created = [time.time_ns()]
        self.provider, self.reader = make_sdk(OURS, temporality)
        self.meter = self.provider.get_meter("m")
        # Measured in every interval, so every collection's time is visible.
        self.tick = self.meter.create_counter("tick")
        self.windows = []

    def created_done(self):
        self.created.append(time.time_ns())

    def collect(self):
        self.tick.add(1)
        before = time.time_ns()
        data = self.reader.get_metrics_data()
        after = time.time_ns()
        ends = end_times(data)
        assert len(ends) == 1, "one collection, one end time: %s" % ends
        end = ends.pop()
        assert before <= end <= after          # the time the collection was invoked
        self.windows.append(end)
        return series(data)


def start(points, name, attrs=None):
    return points[(name, attr_key(attrs))][1].start_time_unix_nano


@pytest.mark.parametrize("kind", ["counter", "histogram", "observable_counter", "observable_up_down_counter"])
def test_delta_intervals_advance(kind):
    """(T0, T1], (T1, T2], (T2, T3]: every series of an instrument starts at the
    previous collection (also after an interval it was absent from), and the first
    interval at the instrument's creation."""
    clock = Clock(DELTA)
    obs = {}
    if kind in VERB:
        instrument = getattr(clock.meter, "create_" + kind)("x")
        measure = lambda attrs: getattr(instrument, VERB[kind])(1, attrs)
    else:
        getattr(clock.meter, "create_" + kind)("x", callbacks=[
            lambda options: [Observation(v, dict(a)) for a, v in obs.items()]])
        measure = _observing(obs)
    clock.created_done()
    time.sleep(0.002)
    measure({"s": "a"})
    p1 = clock.collect()
    assert clock.created[0] <= start(p1, "x", {"s": "a"}) <= clock.created[1]
    obs.clear()
    p2 = clock.collect()                                       # "x" quiet for an interval
    assert ("x", attr_key({"s": "a"})) not in p2
    measure({"s": "a"})
    measure({"s": "b"})
    p3 = clock.collect()
    assert start(p3, "x", {"s": "a"}) == start(p3, "x", {"s": "b"}) == clock.windows[1]
    assert start(p3, "tick") == clock.windows[1]
    clock.provider.shutdown()


def _observing(obs):
    def measure(attrs):
        key = tuple(attrs.items())
        obs[key] = obs.get(key, 0) + 1
    return measure


def test_cumulative_sync_series_start_at_their_first_measurement():
    clock = Clock(CUMULATIVE)
    counter = clock.meter.create_counter("x")
    clock.created_done()
    time.sleep(0.002)
    t_a = time.time_ns()
    counter.add(1, {"s": "a"})
    p1 = clock.collect()
    time.sleep(0.002)
    t_b = time.time_ns()
    counter.add(1, {"s": "b"})
    p2 = clock.collect()
    p3 = clock.collect()                                       # nothing new: both still exported
    assert t_a <= start(p1, "x", {"s": "a"}) <= clock.windows[0]
    assert t_b <= start(p2, "x", {"s": "b"}) <= clock.windows[1]
    for points in (p2, p3):                                    # (T0, T1], (T0, T2], (T0, T3]
        assert start(points, "x", {"s": "a"}) == start(p1, "x", {"s": "a"})
    assert start(p3, "x", {"s": "b"}) == start(p2, "x", {"s": "b"})
    assert values_of(p3) == {attr_key({"s": "a"}): 1, attr_key({"s": "b"}): 1}
    clock.provider.shutdown()


def values_of(points, name="x"):
    return {key: p.value for (n, key), (_, p) in points.items() if n == name}


def test_cumulative_async_series_start_at_the_previous_collection():
    """A series first observed in interval k starts at collection k - 1 (the
    instrument's creation for k = 1) and keeps that start afterwards."""
    clock = Clock(CUMULATIVE)
    obs = {}
    clock.meter.create_observable_counter("x", callbacks=[
        lambda options: [Observation(v, dict(a)) for a, v in obs.items()]])
    clock.created_done()
    time.sleep(0.002)
    _observing(obs)({"s": "a"})
    p1 = clock.collect()
    _observing(obs)({"s": "b"})
    p2 = clock.collect()
    p3 = clock.collect()
    assert clock.created[0] <= start(p1, "x", {"s": "a"}) <= clock.created[1]
    assert start(p2, "x", {"s": "b"}) == clock.windows[0]
    assert start(p3, "x", {"s": "a"}) == start(p1, "x", {"s": "a"})
    assert start(p3, "x", {"s": "b"}) == clock.windows[0]
    clock.provider.shutdown()


@pytest.mark.parametrize("temporality", [DELTA, CUMULATIVE])
def test_gauges_carry_no_start_time(temporality):
    # As the reference: a gauge point has no start time.
    clock = Clock(temporality)
    clock.meter.create_gauge("g").set(1)
    clock.meter.create_observable_gauge("og", callbacks=[lambda options: [Observation(2)]])
    points = clock.collect()
    assert start(points, "g") is None and start(points, "og") is None
    clock.provider.shutdown()


# -- which series are exported ------------------------------------------------------------

@pytest.mark.parametrize("temporality", [DELTA, CUMULATIVE])
def test_unmeasured_sync_series_absent_from_delta_present_in_cumulative(temporality):
    got = {}
    for side in SIDES:
        provider, reader = make_sdk(side, temporality)
        meter = provider.get_meter("m")
        counter, histogram, gauge = meter.create_counter("c"), meter.create_histogram("h"), meter.create_gauge("g")
        for attrs in ({"s": 1}, {"s": 2}):
            counter.add(1, attrs)
            histogram.record(1, attrs)
            gauge.set(1, attrs)
        first = reader.get_metrics_data()
        counter.add(1, {"s": 1})
        histogram.record(1, {"s": 1})
        gauge.set(1, {"s": 1})
        got[side.name] = (first, reader.get_metrics_data())
        provider.shutdown()
    (o1, o2), (r1, r2) = got["otelmetrics"], got["reference"]
    assert_same_collection(o1, r1)
    assert_same_collection(o2, r2, ignore=carried_sync_gauges(o1, o2, r2, {"g"}) if temporality == CUMULATIVE else ())
    second = series(got["otelmetrics"][1])
    expected = {1} if temporality == DELTA else {1, 2}
    for name in ("c", "h", "g"):
        assert {dict((k, v) for k, _, v in key)["s"] for n, key in second if n == name} == expected, name


@pytest.mark.parametrize("temporality", [DELTA, CUMULATIVE])
def test_async_series_not_observed_are_not_exported(temporality):
    observed = [[("a", 1), ("b", 2)], [("a", 3)], []]
    got = {}
    for side in SIDES:
        it = iter(observed)
        provider, reader = make_sdk(side, temporality)
        meter = provider.get_meter("m")
        current = []

        def callback(options):
            return [Observation(v, {"s": s}) for s, v in current]
        for make in ("create_observable_counter", "create_observable_up_down_counter", "create_observable_gauge"):
            getattr(meter, make)(make, callbacks=[callback])
        out = []
        for step in it:
            current[:] = step
            out.append(reader.get_metrics_data())
        got[side.name] = out
        provider.shutdown()
    for o, r in zip(got["otelmetrics"], got["reference"]):
        assert_same_collection(o, r)
    ours = got["otelmetrics"]
    for make in ("create_observable_counter", "create_observable_up_down_counter", "create_observable_gauge"):
        assert set(values(ours[1], make)) == {attr_key({"s": "a"})}
    assert ours[2] is None


# -- bound handles ----------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["counter", "histogram", "gauge"])
def test_bound_handle_without_measurement_exports_nothing(kind):
    """A handle that never recorded makes no series (a cumulative point of 0 or a
    gauge of 0 would be invented data); its series starts at its first measurement."""
    provider, reader = make_sdk(OURS, CUMULATIVE)
    handle = getattr(provider.get_meter("m"), "create_" + kind)("x").bind({"k": "v"})
    assert reader.get_metrics_data() is None
    time.sleep(0.002)
    before = time.time_ns()
    getattr(handle, VERB[kind])(4)
    points = series(reader.get_metrics_data())
    assert list(points) == [("x", attr_key({"k": "v"}))]
    if kind != "gauge":
        assert start(points, "x", {"k": "v"}) >= before
    provider.shutdown()


@pytest.mark.parametrize("temporality", [DELTA, CUMULATIVE])
def test_bound_handle_records_like_the_instrument(temporality):
    provider, reader = make_sdk(OURS, temporality)
    counter = provider.get_meter("m").create_counter("c")
    handle = counter.bind({"k": "v"})
    handle.add(2)
    counter.add(3, {"k": "v"})
    assert values(reader.get_metrics_data(), "c") == {attr_key({"k": "v"}): 5}
    if temporality == DELTA:
        assert reader.get_metrics_data() is None
    handle.add(1)                               # the handle outlives a quiet delta interval
    assert values(reader.get_metrics_data(), "c") == {attr_key({"k": "v"}): 1 if temporality == DELTA else 6}
    provider.shutdown()


def test_measurements_racing_delta_collections_land_in_exactly_one_interval():
    provider, reader = make_sdk(OURS, DELTA)
    meter = provider.get_meter("m")
    counter, histogram = meter.create_counter("c"), meter.create_histogram("h")
    handle = counter.bind({"t": "bound"})
    n, workers = 20_000, 3

    def work(i):
        for j in range(n):
            counter.add(1, {"t": i % 2})
            handle.add(1)
            histogram.record(j % 50)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    collections = []
    while any(t.is_alive() for t in threads):
        collections.append(reader.get_metrics_data())
    for t in threads:
        t.join()
    collections.append(reader.get_metrics_data())
    assert sum(total(d, "c") for d in collections) == 2 * n * workers
    assert sum(p.count for d in collections for p in values(d, "h").values()) == n * workers
