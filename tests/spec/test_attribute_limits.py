"""Spec: Attribute limits (metric attributes are exempt), Numerical limits handling."""
import math
import sys

import pytest

from _util import points, provider


# -- Attribute limits -----------------------------------------------------------------

def test_attribute_limits__metric_attributes_are_not_truncated_or_dropped(monkeypatch):
    monkeypatch.setenv("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "4")
    monkeypatch.setenv("OTEL_ATTRIBUTE_COUNT_LIMIT", "2")
    mp, r = provider()
    attrs = {"key.%03d" % i: "v" * 5000 for i in range(300)}
    attrs["list"] = ("x" * 300,) * 200
    mp.get_meter("m").create_counter("c").add(1, attrs)
    (p,) = points(r, "c")
    assert dict(p.attributes) == attrs


# -- Numerical limits handling ----------------------------------------------------------

@pytest.mark.parametrize("create,record", [("create_counter", "add"), ("create_up_down_counter", "add"),
                                           ("create_histogram", "record"), ("create_gauge", "set")])
def test_numerical_limits_handling__nan_and_infinities_never_raise(create, record):
    mp, r = provider()
    inst = getattr(mp.get_meter("m"), create)("x")
    rec = getattr(inst, record)
    for v in (math.nan, math.inf, -math.inf, 1.0, sys.float_info.max, -0.0, 5e-324):
        if create == "create_counter" and v < 0:
            continue
        rec(v)
    (p,) = points(r, "x")
    value = p.sum if hasattr(p, "sum") else p.value
    assert math.isfinite(value) or value == math.inf     # finite inputs may add up to +inf
    assert mp.stats()["dropped_by_reason"]               # the non-finite ones are counted


def test_numerical_limits_handling__int64_overflow_is_not_wrapped():
    mp, r = provider()
    c = mp.get_meter("m").create_counter("c")
    c.add(2 ** 63 - 1)
    c.add(10)
    (p,) = points(r, "c")
    assert p.value > 2 ** 63 - 1
