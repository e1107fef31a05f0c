"""Attribute sanitising in the compiled core (cext/attributes.pxi): the
clean dict and the count of dropped pairs for any input, exact types out, never a
raise. (The policy through the SDK, pair by pair, is in test_hostile_input.py.)"""
import enum

import pytest

from otelmetrics._native import sanitize


class Colour(str, enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Raising:
    def items(self):
        raise RuntimeError("no items")


@pytest.mark.parametrize("attributes,expected", [
    (None, ({}, 0)),
    ({}, ({}, 0)),
    ({"a": None, 1: "x", "": 2, "b": 1}, ({"b": 1}, 3)),
    ({"a": [1, "x"], "b": {"nested": 1}, "c": (1.5, None)}, ({"c": (1.5, None)}, 2)),
    ("not a mapping", ({}, 1)),
    (Raising(), ({}, 1)),
])
def test_clean_dict_and_the_number_of_dropped_pairs(attributes, expected):
    assert sanitize(attributes) == expected


def test_subclasses_come_out_as_the_exact_type():
    clean, dropped = sanitize({"colour": Colour.RED, "level": Level.HIGH, "flag": True,
                               "key": [Colour.RED, "blue"]})
    assert dropped == 0 and clean == {"colour": "red", "level": 3, "flag": True, "key": ("red", "blue")}
    assert type(clean["colour"]) is str and type(clean["level"]) is int and type(clean["flag"]) is bool
    assert all(type(v) is str for v in clean["key"])


def test_ints_beyond_int64_become_their_decimal_string():
    clean, dropped = sanitize({"small": -(1 << 63), "big": 1 << 63, "list": [1 << 64, 1 << 65]})
    assert dropped == 0
    assert clean == {"small": -(1 << 63), "big": str(1 << 63), "list": (str(1 << 64), str(1 << 65))}


def test_same_pairs_in_another_order_give_equal_sets():
    a, _ = sanitize({"method": "GET", "route": "/a", "status": 200})
    b, _ = sanitize({"status": 200, "route": "/a", "method": "GET"})
    assert a == b and frozenset(a.items()) == frozenset(b.items())
