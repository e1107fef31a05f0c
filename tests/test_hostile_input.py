"""Hostile and bad values, attributes and callbacks.

Whatever the application passes, no call raises into it, a control series
recorded alongside keeps its exact total, collection keeps working and its
result serialises, and ``provider.stats()`` counts exactly the drops the
input calls for. The property-based tests throw mixtures at it; the example-based
ones at the end pin the policy per input (values and attributes dropped or
sanitised, counted, and warned about at most once in a while).
"""
import decimal
import fractions
import functools
import json
import logging
import math
import threading
import time
import types

import pytest
from hypothesis import given, strategies as st
from opentelemetry.metrics import CallbackOptions, Observation

import otelmetrics
from otelmetrics import _pipeline
from otelmetrics._native import BAD_ATTRIBUTES, BAD_VALUE, NEGATIVE, NON_FINITE
from otelmetrics.export import InMemoryMetricReader

from _util import ALL_DELTA, by_attrs, points, provider

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
CONTROL = {"control": "series", "n": 1}


# -- hostile objects -------------------------------------------------------------------------

class Boom(Exception):
    pass


def _raise(*_):
    raise Boom("hostile")


class NoHashNoEq:
    """Not hashable, not comparable, but a number."""
    __hash__ = _raise
    __eq__ = _raise

    def __float__(self):
        return 2.5


class RaisingFloat:
    __float__ = _raise


class RaisingIndex:
    __index__ = _raise
    __float__ = _raise


class HugeIndex:
    def __index__(self):
        return 1 << 70


class EvilKey(str):
    """A str key whose hash and equality raise once armed (after it is in a dict)."""
    armed = False

    def __hash__(self):
        if EvilKey.armed:
            raise Boom("hash")
        return str.__hash__(self)

    def __eq__(self, other):
        if EvilKey.armed:
            raise Boom("eq")
        return str.__eq__(self, other)


class PairsMapping:
    """Mapping-like: only items()."""

    def __init__(self, pairs):
        self._pairs = pairs

    def items(self):
        return list(self._pairs)


class RaisingItems:
    def items(self):
        raise Boom("items")


class HalfItems:
    """items() that fails after yielding some pairs."""

    def items(self):
        yield ("a", 1)
        raise Boom("items midway")


# -- the model: what the SDK must do with each value ---------------------------------------

def value_outcome(v, monotonic):
    """(accepted number or None, drop reason or None)."""
    if isinstance(v, bool):
        x = int(v)
    elif type(v) is int:
        x = v if INT64_MIN <= v <= INT64_MAX else float(v)
    elif type(v) is float:
        x = v
    elif isinstance(v, (str, bytes)) or v is None or isinstance(v, (RaisingFloat, RaisingIndex, complex,
                                                                    list, dict, Boom)):
        return None, BAD_VALUE
    elif isinstance(v, decimal.Decimal) and v.is_snan():
        return None, BAD_VALUE
    elif isinstance(v, (decimal.Decimal, fractions.Fraction, NoHashNoEq)):
        x = float(v)
    elif isinstance(v, HugeIndex):
        x = float(1 << 70)
    else:
        raise AssertionError("no model for %r" % (v,))
    if isinstance(x, float) and not math.isfinite(x):
        return None, NON_FINITE
    if monotonic and x < 0:
        return None, NEGATIVE
    return x, None


# Ints beyond the double range are a known gap (see test_int_beyond_double_range...).
FLOAT_SAFE = 1 << 1000

values = st.one_of(
    st.integers(min_value=-FLOAT_SAFE, max_value=FLOAT_SAFE),
    st.integers(min_value=INT64_MAX - 3, max_value=INT64_MAX + 3),
    st.integers(min_value=INT64_MIN - 3, max_value=INT64_MIN + 3),
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.sampled_from([-0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                     True, False, None]),
    st.text(max_size=3), st.binary(max_size=3),
    st.builds(lambda c: c(), st.sampled_from([RaisingFloat, RaisingIndex, NoHashNoEq, HugeIndex])),
    st.sampled_from([complex(1, 2), [], {}, Boom("value")]),
    st.sampled_from([decimal.Decimal("2.5"), decimal.Decimal("NaN"), decimal.Decimal("sNaN"),
                     decimal.Decimal("-Infinity"), fractions.Fraction(1, 3)]),
)

# -- attributes, each tagged with whether something in it must be dropped --------------------

good_values = st.one_of(st.text(max_size=4), st.integers(INT64_MIN, INT64_MAX), st.booleans(),
                        st.floats(allow_nan=False), st.lists(st.integers(0, 9), max_size=3),
                        st.lists(st.text(max_size=2), max_size=3),
                        st.integers(min_value=INT64_MAX + 1, max_value=1 << 100),   # -> str
                        st.binary(max_size=3).filter(lambda b: _utf8(b)))
bad_values = st.one_of(st.none(), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
                       st.just([1, "x"]), st.just([{}]), st.builds(NoHashNoEq), st.builds(object),
                       st.just(b"\xff\xfe"), st.just({1, 2}))


def _utf8(b):
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


@st.composite
def attribute_sets(draw):
    """(attributes object, must_report_a_drop)."""
    shape = draw(st.sampled_from(["none", "pairs", "pairs", "pairs", "non-mapping", "raising",
                                  "half", "huge"]))
    if shape == "none":
        return None, False
    if shape == "non-mapping":
        return draw(st.sampled_from([42, "k=v", [("a", 1)], ("a", 1), b"a", 1.5])), True
    if shape == "raising":
        return RaisingItems(), True
    if shape == "half":
        return HalfItems(), True
    if shape == "huge":
        kind = draw(st.sampled_from(["long", "wide"]))
        if kind == "long":
            return {"s": "x" * 100_000, "t": draw(st.text(max_size=3))}, False
        return {"k%d" % i: i for i in range(draw(st.integers(1000, 3000)))}, False
    pairs, bad = [], False
    for i, is_bad in enumerate(draw(st.lists(st.booleans(), max_size=5))):
        key = "k%d" % i
        if is_bad:
            bad = True
            kind = draw(st.sampled_from(["value", "value", "int key", "empty key", "tuple key"]))
            if kind == "value":
                pairs.append((key, draw(bad_values)))
            else:
                pairs.append(({"int key": i, "empty key": "", "tuple key": (i,)}[kind], 1))
        else:
            if draw(st.booleans()):
                key = EvilKey(key)
            pairs.append((key, draw(good_values)))
    wrap = draw(st.sampled_from(["dict", "dict", "pairs-mapping", "mappingproxy"]))
    if wrap == "dict":
        return dict(pairs), bad
    if wrap == "mappingproxy":
        return types.MappingProxyType(dict(pairs)), bad
    return PairsMapping(pairs), bad


KINDS = ["counter", "updown", "histogram", "gauge"]


def make_provider(delta, exemplars):
    readers = [InMemoryMetricReader(preferred_temporality=ALL_DELTA if delta else None),
               InMemoryMetricReader(default_cardinality_limit=50)]      # small: overflow too
    kw = {"exemplar_filter": otelmetrics.AlwaysOnExemplarFilter()} if exemplars else {}
    mp = otelmetrics.MeterProvider(metric_readers=readers, shutdown_on_exit=False, **kw)
    m = mp.get_meter("hostile")
    inst = {"counter": m.create_counter("counter"), "updown": m.create_up_down_counter("updown"),
            "histogram": m.create_histogram("histogram"), "gauge": m.create_gauge("gauge")}
    return mp, readers, inst, m.create_counter("control")


VERB = {"counter": "add", "updown": "add", "histogram": "record", "gauge": "set"}


def collect(reader):
    """{name: [points]} of one collection; the result must serialise."""
    data = reader.get_metrics_data()
    out = {}
    if data is not None:
        json.loads(data.to_json())
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out.setdefault(m.name, []).extend(m.data.data_points)
    return out


def control_value(pts):
    return sum(p.value for p in pts.get("control", []) if p.attributes == CONTROL)


ops = st.lists(st.tuples(st.sampled_from(KINDS), values, attribute_sets()), min_size=1, max_size=25)


@pytest.mark.parametrize("delta,exemplars", [(False, False), (True, False), (False, True)],
                         ids=["cumulative", "delta", "exemplars-on"])
@given(ops=ops)
def test_hostile_measurements(delta, exemplars, ops):
    mp, (first, small), inst, control = make_provider(delta, exemplars)
    expected_drops = {}
    accepted_hist = 0
    first_control = 0
    for i, (kind, value, (attrs, attrs_bad)) in enumerate(ops):
        EvilKey.armed = True
        try:
            getattr(inst[kind], VERB[kind])(value, attrs)
        finally:
            EvilKey.armed = False
        x, reason = value_outcome(value, kind in ("counter", "histogram"))  # histograms drop negatives too
        if reason is None and attrs_bad:
            reason = BAD_ATTRIBUTES
        if reason is not None:
            expected_drops[reason] = expected_drops.get(reason, 0) + 1
        if x is not None and kind == "histogram":
            accepted_hist += 1
        control.add(1, dict(CONTROL))
        if i % 7 == 3:                   # collections in the middle keep working
            got = control_value(collect(first))
            first_control = first_control + got if delta else got
            collect(small)
    assert mp.stats()["dropped_by_reason"] == expected_drops
    got = control_value(collect(first))
    assert (first_control + got if delta else got) == len(ops)
    final = collect(small)               # cumulative, limit 50: some series overflowed
    assert control_value(final) == len(ops)
    # Every accepted histogram measurement is in exactly one point (own or overflow series).
    assert sum(p.count for p in final.get("histogram", [])) == accepted_hist
    for pts in final.values():
        assert len(pts) <= 50
        for p in pts:
            v = getattr(p, "value", None)
            assert not (isinstance(v, float) and math.isnan(v))


bound_values = st.lists(st.tuples(st.sampled_from(KINDS), values), min_size=1, max_size=30)


@given(ops=bound_values)
def test_hostile_values_through_bound_handles(ops):
    mp, (first, small), inst, control = make_provider(False, False)
    handles = {k: inst[k].bind({"bound": k}) for k in KINDS}
    expected_drops, accepted_hist = {}, 0
    for kind, value in ops:
        getattr(handles[kind], VERB[kind])(value)
        x, reason = value_outcome(value, kind in ("counter", "histogram"))  # histograms drop negatives too
        if reason is not None:
            expected_drops[reason] = expected_drops.get(reason, 0) + 1
        accepted_hist += x is not None and kind == "histogram"
        control.add(1, CONTROL)
    assert mp.stats()["dropped_by_reason"] == expected_drops
    final = collect(small)
    assert control_value(final) == len(ops)
    assert sum(p.count for p in final.get("histogram", [])) == accepted_hist


@pytest.mark.parametrize("value", [10 ** 400, -10 ** 400])
def test_int_beyond_double_range_is_a_counted_value_drop(value):
    mp, (first, small), inst, control = make_provider(False, False)
    inst["updown"].add(value, {"a": 1})
    inst["updown"].bind({"a": 1}).add(value)
    inst["histogram"].record(value)
    # Its nearest double is infinite: dropped as such, every time.
    assert mp.stats()["dropped_by_reason"] == {NON_FINITE: 3}


def test_bind_counts_invalid_attributes_once():
    mp, (first, small), inst, control = make_provider(False, False)
    h = inst["counter"].bind({"a": None, "b": 1})
    h.add(1)
    assert h.attributes == {"b": 1}
    assert mp.stats()["dropped_by_reason"] == {BAD_ATTRIBUTES: 1}


# -- callbacks ---------------------------------------------------------------------------------

class RaisingIter:
    def __iter__(self):
        raise Boom("iter")


class BadObservation(Observation):
    @property
    def value(self):
        raise Boom("value")


def _half_good(options):
    yield Observation(7, {"from": "half"})
    raise Boom("midway")


class Unnamable:
    """A callback that fails and cannot be named either: its repr raises."""

    def __call__(self, options):
        raise Boom("unplugged")

    def __repr__(self):
        raise Boom("repr")


class NameRaises(Unnamable):
    @property
    def __name__(self):
        raise Boom("__name__")


class Unprintable(Exception):
    def __str__(self):
        raise Boom("str")


def _raise_unprintable(options):
    raise Unprintable()


HOSTILE_CALLBACKS = {
    "raises": (_raise, 0),
    "returns-none": (lambda options: None, 0),
    "returns-int": (lambda options: 5, 0),
    "returns-str": (lambda options: "abc", 0),
    "raising-iter": (lambda options: RaisingIter(), 0),
    "bad-observations": (lambda options: [Observation(float("nan")), Observation("x"),
                                          Observation(1, RaisingItems()), Observation(1 << 70),
                                          Observation(1, {"a": None}), 1, None,
                                          BadObservation(1)], 1),    # all in the {} series
    "half-good-generator-function": (_half_good, 1),
    "no-arguments": (lambda: [Observation(1)], 0),
    "huge-attributes": (lambda options: [Observation(1, {"k%d" % i: i for i in range(2000)})], 1),
    "unnamable": (Unnamable(), 0),
    "name-raises": (NameRaises(), 0),
    "partial-of-unnamable": (functools.partial(_raise, Unnamable()), 0),
    "unprintable-error": (_raise_unprintable, 0),
}



@pytest.mark.parametrize("name", sorted(HOSTILE_CALLBACKS))
@pytest.mark.parametrize("delta", [False, True], ids=["cumulative", "delta"])
def test_hostile_callbacks_do_not_break_collection(name, delta):
    callback, n_points = HOSTILE_CALLBACKS[name]
    reader = InMemoryMetricReader(preferred_temporality=ALL_DELTA if delta else None)
    mp = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    m = mp.get_meter("hostile")
    m.create_observable_up_down_counter("hostile", callbacks=[callback])
    m.create_observable_gauge("good", callbacks=[lambda options: [Observation(42, CONTROL)]])
    c = m.create_counter("control")
    for round_ in range(3):
        c.add(1, CONTROL)
        pts = collect(reader)
        assert [(p.attributes, p.value) for p in pts["good"]] == [(CONTROL, 42)]
        assert control_value(pts) == (1 if delta else round_ + 1)
        assert len(pts.get("hostile", [])) == n_points
    assert "control" not in str(mp.stats()["dropped"])


def test_failing_callbacks_are_logged_readably_whatever_they_are(caplog):
    mp, reader = provider()
    m = mp.get_meter("m")
    m.create_observable_gauge("unnamable", callbacks=[Unnamable(), NameRaises()])
    m.create_observable_gauge("unprintable", callbacks=[_raise_unprintable])
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        reader.get_metrics_data()
    messages = [r.getMessage() for r in caplog.records]     # each one formats
    assert any("'unnamable'" in msg and "Unnamable" in msg for msg in messages)
    assert any("_raise_unprintable" in msg and "Unprintable" in msg for msg in messages)
    assert mp.stats()["dropped"] == {"unnamable: callback error": 2, "unprintable: callback error": 1}


def test_callback_errors_are_warned_once_an_interval_and_counted_each_time(caplog):
    mp, reader = provider()
    mp.get_meter("m").create_observable_gauge("temp", callbacks=[_raise])
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        for _ in range(20):
            reader.get_metrics_data()
    warnings = [r.getMessage() for r in caplog.records if "'temp'" in r.getMessage()]
    assert len(warnings) == 1
    assert "_raise" in warnings[0] and "Boom: hostile" in warnings[0]
    assert mp.stats()["dropped"] == {"temp: callback error": 20}


def test_observations_are_counted_like_measurements():
    reader = InMemoryMetricReader()
    mp = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    m = mp.get_meter("hostile")
    m.create_observable_counter("oc", callbacks=[HOSTILE_CALLBACKS["bad-observations"][0]])
    collect(reader)
    by_reason = mp.stats()["dropped_by_reason"]
    assert by_reason[NON_FINITE] == 1 and by_reason[BAD_VALUE] == 1 and by_reason[BAD_ATTRIBUTES] == 2
    assert sum(n for r, n in by_reason.items() if "Observation" in r) == 2   # the 1 and the None
    assert by_reason["callback error"] == 1                                  # BadObservation


def test_generator_callbacks():
    def api_style_generator():
        options = yield
        n = 0
        while True:
            assert isinstance(options, CallbackOptions)
            n += 1
            options = yield [Observation(n, {"g": 1})]

    reader = InMemoryMetricReader()
    mp = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    mp.get_meter("hostile").create_observable_gauge("g", callbacks=[api_style_generator()])
    assert [p.value for p in collect(reader)["g"]] == [1]
    assert [p.value for p in collect(reader)["g"]] == [2]
    assert mp.stats()["dropped_by_reason"] == {}


def test_exhausted_generator_callback_is_harmless():
    def once():
        yield
        yield [Observation(1)]

    reader = InMemoryMetricReader()
    mp = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    m = mp.get_meter("hostile")
    m.create_observable_gauge("g", callbacks=[once()])
    m.create_counter("control").add(1, CONTROL)
    for _ in range(4):
        assert control_value(collect(reader)) == 1


HANG_S = 3.0


@pytest.mark.parametrize("how", ["blocks", "endless-garbage"])
def test_callback_hanging_past_the_timeout(how):
    release = threading.Event()

    def blocks(options):
        release.wait(HANG_S)
        return [Observation(1)]

    def endless_garbage(options):
        end = time.monotonic() + HANG_S
        while time.monotonic() < end and not release.is_set():
            yield "not an observation"

    reader = InMemoryMetricReader()
    mp = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    m = mp.get_meter("hostile")
    m.create_observable_gauge("slow", callbacks=[blocks if how == "blocks" else endless_garbage])
    m.create_counter("control").add(1, CONTROL)
    try:
        t0 = time.monotonic()
        reader.collect(timeout_millis=200)
        elapsed = time.monotonic() - t0
    finally:
        release.set()
    assert elapsed < 1.5, "collect(timeout_millis=200) took %.1f s" % elapsed


def test_endless_generator_is_not_consumed_after_the_timeout():
    yielded = [0]

    def endless(options):
        while True:
            yielded[0] += 1
            yield Observation(1, {"k": "v"})

    reader = InMemoryMetricReader()
    mp = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    m = mp.get_meter("hostile")
    m.create_observable_gauge("endless", callbacks=[endless])
    m.create_counter("control").add(1, CONTROL)
    reader.collect(timeout_millis=200)
    time.sleep(0.2)
    before = yielded[0]
    time.sleep(0.3)
    assert yielded[0] == before, "the abandoned generator is still being consumed"
    assert before <= _pipeline.MAX_OBSERVATIONS + 1
    assert control_value(collect(reader)) == 1


def test_observations_past_the_cap_are_not_consumed_and_are_counted(monkeypatch):
    monkeypatch.setattr(_pipeline, "MAX_OBSERVATIONS", 50)
    consumed = [0]

    def many(options):
        for i in range(1000):
            consumed[0] += 1
            yield Observation(1, {"i": i})

    mp, reader = provider(limit=10)
    mp.get_meter("hostile").create_observable_counter("many", callbacks=[many])
    pts = points(reader, "many")
    assert consumed[0] <= 51
    assert len(pts) == 10 and sum(p.value for p in pts) == 50     # 9 series + the overflow one
    assert mp.stats()["dropped"] == {"many: dropped: callback made more than 50 observations": 1}


def test_the_cap_is_at_least_the_cardinality_limit(monkeypatch):
    monkeypatch.setattr(_pipeline, "MAX_OBSERVATIONS", 50)
    mp, reader = provider(limit=300)
    mp.get_meter("hostile").create_observable_gauge(
        "many", callbacks=[lambda options: [Observation(i, {"i": i}) for i in range(299)]])
    assert len(points(reader, "many")) == 299
    assert mp.stats()["dropped"] == {}


class UnprintableText:
    def __str__(self):
        raise Boom("str")

    __repr__ = __str__


class UnusableAttributes(dict):
    def __bool__(self):
        raise Boom("bool")

    def items(self):
        raise Boom("items")

    keys = __iter__ = items


@pytest.mark.parametrize("create", [
    lambda m: m.create_counter(UnprintableText()),
    lambda m: m.create_histogram("h", unit=UnprintableText()),
    lambda m: m.create_gauge("g", description=UnprintableText()),
    lambda m: m.create_up_down_counter(UnprintableText(), UnprintableText(), UnprintableText()),
    lambda m: m.create_observable_gauge(UnprintableText(), [lambda o: [Observation(1)]]),
    lambda m: m.create_histogram("h", explicit_bucket_boundaries_advisory=UnprintableText()),
], ids=["name", "unit", "description", "all-three", "observable", "advisory"])
def test_creating_instruments_from_unprintable_objects_does_not_raise(create, caplog):
    mp, reader = provider()
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        instrument = create(mp.get_meter("m"))
    assert [r.getMessage() for r in caplog.records]      # warned, and each warning formats
    for method in ("add", "record", "set"):     # the observable one has none: its callback observes
        if hasattr(instrument, method):
            getattr(instrument, method)(1)
    assert len(points(reader)) == 1


@pytest.mark.parametrize("attributes", [UnusableAttributes(a=1), [1, 2], 5])
def test_get_meter_with_unusable_attributes_does_not_raise(attributes, caplog):
    mp, reader = provider()
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        meter = mp.get_meter("m", attributes=attributes)
        unnamed = mp.get_meter(UnprintableText())
    assert [r.getMessage() for r in caplog.records]
    meter.create_counter("c").add(1)
    unnamed.create_counter("c").add(2)
    assert sorted(p.value for p in points(reader, "c")) == [1, 2]
    assert meter is mp.get_meter("m", attributes=attributes)


# -- the policy per input, example by example -------------------------------------------------

class Nasty:
    def __hash__(self):
        raise RuntimeError("no hash")

    def __eq__(self, other):
        raise RuntimeError("no eq")

    def __float__(self):
        raise RuntimeError("no float")


class StrKey(str):
    def __hash__(self):
        raise RuntimeError("evil hash")


BAD_VALUES = [None, "1", b"1", float("nan"), float("inf"), -float("inf"), [], {}, object(), Nasty(),
              complex(1, 2)]


@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
def test_bad_values_are_dropped_not_raised(value):
    mp, reader = provider()
    m = mp.get_meter("m")
    c, u, h, g = (m.create_counter("c"), m.create_up_down_counter("u"), m.create_histogram("h"),
                  m.create_gauge("g"))
    c.add(value)
    u.add(value)
    h.record(value)
    g.set(value)
    c.add(1)
    pts = points(reader)
    assert pts["c"][0].value == 1
    assert set(pts) == {"c"}
    assert sum(mp.stats()["dropped_by_reason"].values()) >= 4


def test_negative_counter_dropped():
    mp, reader = provider()
    c = mp.get_meter("m").create_counter("c")
    c.add(-1)
    c.add(-0.5)
    c.add(2)
    assert points(reader, "c")[0].value == 2
    assert mp.stats()["dropped_by_reason"] == {"dropped: negative value on a monotonic instrument": 2}


@pytest.mark.parametrize("value,expected", [
    (True, 1), (2 ** 70, float(2 ** 70)), (-2 ** 70, float(-2 ** 70)),
    (decimal.Decimal("2.5"), 2.5), (fractions.Fraction(1, 4), 0.25), (-0.0, 0.0),
    (5e-324, 5e-324),
])
def test_convertible_values(value, expected):
    mp, reader = provider()
    u = mp.get_meter("m").create_up_down_counter("u")
    u.add(value)
    got = points(reader, "u")[0].value
    assert got == expected and type(got) is type(expected)


def test_int64_overflow_switches_to_float():
    mp, reader = provider()
    c = mp.get_meter("m").create_counter("c")
    c.add(2 ** 63 - 1)
    c.add(10)
    got = points(reader, "c")[0].value
    assert isinstance(got, float) and got == pytest.approx(2 ** 63 + 9)


@pytest.mark.parametrize("attrs,expected", [
    ({"a": None, "b": 1}, {"b": 1}),
    ({1: "x", "b": 1}, {"b": 1}),
    ({"": 1, "b": 1}, {"b": 1}),
    ({"a": {"nested": 1}}, {}),
    ({"a": [1, "x"]}, {}),
    ({"a": [1, 2, None]}, {"a": (1, 2, None)}),
    ({"a": ["x", "y"]}, {"a": ("x", "y")}),
    ({"a": b"bytes"}, {"a": "bytes"}),
    ({"a": b"\xff"}, {}),
    ({"a": 2 ** 80}, {"a": str(2 ** 80)}),
    ({"a": Nasty()}, {}),
    (PairsMapping([(StrKey("k"), 1), ("b", 2)]), {"k": 1, "b": 2}),
    (PairsMapping([("a", 1, 2), ("b", 2)]), {"b": 2}),
    ([("a", 1)], {}),
    ("not a mapping", {}),
    (42, {}),
])
def test_attribute_sanitising(attrs, expected):
    mp, reader = provider()
    c = mp.get_meter("m").create_counter("c")
    c.add(1, attrs)
    c.add(1, attrs)
    (p,) = points(reader, "c")
    assert p.attributes == expected and p.value == 2


def test_huge_attributes_are_fine():
    mp, reader = provider()
    c = mp.get_meter("m").create_counter("c")
    big = {"k%d" % i: i for i in range(3000)}
    c.add(1, big)
    c.add(1, dict(big))
    c.add(1, {"s": "x" * 100_000})
    got = by_attrs(points(reader, "c"))
    assert got[frozenset(big.items())].value == 2
    assert len(got) == 2


def test_warnings_are_rate_limited(caplog):
    mp, reader = provider()
    c = mp.get_meter("m").create_counter("c")
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        for _ in range(1000):
            c.add(-1)
            c.add(float("nan"))
    warnings = [r for r in caplog.records if "instrument 'c'" in r.getMessage()]
    assert len(warnings) == 2     # one per reason in the interval
    assert mp.stats()["dropped"] == {
        "c: dropped: negative value on a monotonic instrument": 1000,
        "c: dropped: NaN or infinite value": 1000,
    }


def test_callbacks_that_raise_or_return_garbage(caplog):
    from opentelemetry.metrics import Observation

    def boom(options):
        raise ValueError("sensor unplugged")

    def garbage(options):
        return [1, "x", Observation("NaN-ish"), Observation(float("nan")), Observation(3, {"ok": 1})]

    def not_iterable(options):
        return 5

    mp, reader = provider()
    m = mp.get_meter("m")
    m.create_observable_gauge("g1", callbacks=[boom, garbage, not_iterable])
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        pts = points(reader)
    assert [(p.attributes, p.value) for p in pts["g1"]] == [({"ok": 1}, 3)]
    assert any("sensor unplugged" in r.getMessage() for r in caplog.records)


mixed_values = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.none(),
                         st.text(max_size=5), st.binary(max_size=5), st.booleans(),
                         st.lists(st.integers(), max_size=3))
attr_values = st.one_of(st.integers(), st.floats(), st.none(), st.text(max_size=5), st.booleans(),
                        st.lists(st.one_of(st.integers(), st.text(max_size=2)), max_size=3),
                        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))
attrs = st.one_of(st.none(), st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), attr_values,
                                             max_size=4))


@given(st.lists(st.tuples(mixed_values, attrs), max_size=40))
def test_anything_goes_and_good_data_survives(ops):
    mp, reader = provider()
    m = mp.get_meter("m")
    inst = [m.create_counter("c").add, m.create_up_down_counter("u").add, m.create_histogram("h").record,
            m.create_gauge("g").set]
    good = m.create_counter("good")
    for i, (v, a) in enumerate(ops):
        for f in inst:
            f(v, a)
        good.add(1, {"fixed": "series"})
    data = points(reader)
    if ops:
        assert data["good"][0].value == len(ops)
    for pts in data.values():
        for p in pts:
            v = getattr(p, "value", None)
            if v is not None:
                assert not math.isnan(v)
