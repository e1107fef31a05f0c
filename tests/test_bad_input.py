"""Bad input never raises into the application: values and attributes are
dropped or sanitised, counted, and warned about at most once in a while."""
import decimal
import fractions
import logging
import math

import pytest
from hypothesis import given, strategies as st

from _util import by_attrs, points, provider


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


class PairsMapping:
    """A mapping-like object whose items() yields what it is given."""

    def __init__(self, pairs):
        self._pairs = pairs

    def items(self):
        return self._pairs


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


values = st.one_of(st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.none(),
                   st.text(max_size=5), st.binary(max_size=5), st.booleans(),
                   st.lists(st.integers(), max_size=3))
attr_values = st.one_of(st.integers(), st.floats(), st.none(), st.text(max_size=5), st.booleans(),
                        st.lists(st.one_of(st.integers(), st.text(max_size=2)), max_size=3),
                        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))
attrs = st.one_of(st.none(), st.dictionaries(st.one_of(st.text(max_size=4), st.integers()), attr_values,
                                             max_size=4))


@given(st.lists(st.tuples(values, attrs), max_size=40))
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
