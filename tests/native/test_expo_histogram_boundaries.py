"""Exact bucket boundaries of the base-2 exponential histogram, proved against an
independent oracle: ``decimal`` logarithms at 60 digits (and exact rationals for
powers of two), never the code under test.

Bucket i at scale s holds (base**i, base**(i+1)] with base = 2**(2**-s), so
index(v) = ceil(2**s * log2(v)) - 1.  Subnormals are rounded up to 2**-1022
(documented choice, allowed by the spec).
"""
import math
from decimal import Decimal, localcontext
from fractions import Fraction

import pytest
from hypothesis import given, strategies as st

eh = pytest.importorskip("otelmetrics._native")

SCALES = list(range(-10, 21))
MIN_NORMAL = 2.0 ** -1022
MAX_FLOAT = 1.7976931348623157e308
PREC = 60
# The oracle must be decisive: for a double that is not a power of two,
# 2**s * log2(v) is irrational and, over all doubles, stays more than ~2**-78
# away from an integer (the closest boundary/double approach is 2**-77.8 relative).
# 60 digits resolve that by a wide margin; a smaller gap means a broken oracle.
DECISIVE = Decimal("1e-30")


def _log2_exact_or_decimal(v):
    """log2(v) as a Fraction for powers of two, else as a high-precision Decimal."""
    m, e = math.frexp(v)
    if m == 0.5:
        return Fraction(e - 1)
    with localcontext() as ctx:
        ctx.prec = PREC
        return Decimal(v).ln() / Decimal(2).ln()


def oracle_index(v, scale, log2v=None):
    v = abs(v)
    if v < MIN_NORMAL:
        v = MIN_NORMAL
        log2v = None
    if log2v is None:
        log2v = _log2_exact_or_decimal(v)
    if isinstance(log2v, Fraction):
        return math.ceil(log2v * Fraction(2) ** scale) - 1
    with localcontext() as ctx:
        ctx.prec = PREC
        x = log2v * (Decimal(2) ** scale)
        fl = x.to_integral_value(rounding="ROUND_FLOOR")
        assert min(x - fl, fl + 1 - x) > DECISIVE, (v, scale, x)
        # not an integer, so ceil(x) - 1 == floor(x)
        return int(fl)


def check_all_scales(v, scales=SCALES):
    log2v = _log2_exact_or_decimal(abs(v)) if abs(v) >= MIN_NORMAL else None
    for s in scales:
        got = eh.index_of(v, s)
        want = oracle_index(v, s, log2v)
        assert got == want, "value %r scale %d: got %d, exact %d" % (v, s, got, want)


def around(x):
    return (math.nextafter(x, 0.0), x, math.nextafter(x, math.inf))


# --- powers of two and their neighbours -------------------------------------

@pytest.mark.parametrize("chunk", range(8))
def test_powers_of_two_and_one_ulp_either_side(chunk):
    # all 2046 normal exponents, split in chunks to keep failures readable
    for e in range(-1022 + chunk, 1024, 8):
        for v in around(math.ldexp(1.0, e)):
            if v > MAX_FLOAT:
                continue
            check_all_scales(v)
            check_all_scales(-v)


def test_power_of_two_is_upper_bound_of_its_bucket():
    for s in SCALES:
        for e in (-1022, -100, -1, 0, 1, 2, 10, 1023):
            i = eh.index_of(math.ldexp(1.0, e), s)
            # 2**e is the upper boundary of bucket i, so bucket i+1 starts just above it
            assert i == math.ceil(Fraction(e) * Fraction(2) ** s) - 1
            assert eh.index_of(math.nextafter(math.ldexp(1.0, e), math.inf), s) >= i


def test_reference_log_formula_is_off_next_to_powers_of_two():
    # The deliberate difference from opentelemetry-sdk (floor(log(v) * 2**s / ln 2)).
    v = math.nextafter(4.0, 0.0)
    assert eh.index_of(v, 20) == 2097151 == oracle_index(v, 20)
    assert math.floor(math.log(v) * math.ldexp(1 / math.log(2), 20)) == 2097152


# --- values next to every kind of boundary, scales 1..20 -----------------------

def _boundary_neighbours(scale, j, e):
    """The double nearest to 2**(e + j/2**scale) and one ulp either side."""
    with localcontext() as ctx:
        ctx.prec = PREC
        b = (Decimal(2).ln() * (Decimal(e) + Decimal(j) / (1 << scale))).exp()
        return around(float(b))


@pytest.mark.parametrize("scale", range(1, 21))
def test_values_next_to_boundaries(scale):
    import random
    rng = random.Random(scale)
    n = 1 << scale
    js = {1, 2, n // 2 - 1, n // 2, n // 2 + 1, n - 2, n - 1} | {rng.randrange(1, n) for _ in range(25)}
    js = {j for j in js if 0 < j < n}
    exps = (0, 1, -1, 7, -300, 1000, -1021, 1023)
    for j in sorted(js):
        for e in exps:
            for v in _boundary_neighbours(scale, j, e):
                if MIN_NORMAL <= v <= MAX_FLOAT:
                    check_all_scales(v, scales=range(max(1, scale - 2), min(20, scale + 2) + 1))
                    assert eh.index_of(v, scale) == oracle_index(v, scale)


def test_hardest_boundary_is_exact():
    # j = 308076 at scale 20 is the boundary closest to a double (2**-77.8 relative)
    for e in (-1022, -1, 0, 1, 500, 1023):
        for v in _boundary_neighbours(20, 308076, e):
            check_all_scales(v, scales=range(1, 21))


# --- subnormals and the top of the range ---------------------------------------

SUBNORMALS = [5e-324, 1e-320, 2.0 ** -1030, 2.0 ** -1074 * 3, math.nextafter(MIN_NORMAL, 0.0),
              MIN_NORMAL / 2, MIN_NORMAL * 0.75]


@pytest.mark.parametrize("s", SCALES)
def test_subnormals_round_up_to_min_normal(s):
    want = oracle_index(MIN_NORMAL, s)
    assert eh.index_of(MIN_NORMAL, s) == want
    for v in SUBNORMALS:
        assert eh.index_of(v, s) == want
        assert eh.index_of(-v, s) == want
    # just above the smallest normal is a normal value again
    check_all_scales(math.nextafter(MIN_NORMAL, 1.0), scales=[s])


def test_largest_finite_doubles():
    tops = [MAX_FLOAT, math.nextafter(MAX_FLOAT, 0.0), 2.0 ** 1023,
            math.nextafter(2.0 ** 1023, 0.0), math.nextafter(2.0 ** 1023, math.inf), 1e308]
    for v in tops:
        check_all_scales(v)
    assert eh.index_of(MAX_FLOAT, 20) == (1024 << 20) - 1
    assert eh.index_of(MAX_FLOAT, 0) == 1023
    assert eh.index_of(MAX_FLOAT, -10) == 0
    assert eh.index_of(MIN_NORMAL, -10) == -1   # the whole range fits 2 buckets at -10


@given(v=st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: v != 0))
def test_ieee_fields_from_bits(v):
    # exponent/fraction/significand as read from the bits, subnormals renormalised
    e, f, m, sub = eh._ieee_parts(v)
    fm, fe = math.frexp(abs(v))
    assert e == fe - 1
    assert m == fm * 2 and 1.0 <= m < 2.0
    assert f == int((m - 1.0) * 2 ** 52)
    assert sub == (abs(v) < MIN_NORMAL)


def test_ieee_fields_edge_cases():
    assert eh._ieee_parts(5e-324) == (-1074, 0, 1.0, True)
    assert eh._ieee_parts(math.nextafter(MIN_NORMAL, 0.0))[:2] == (-1023, (2 ** 51 - 1) * 2)
    assert eh._ieee_parts(MIN_NORMAL) == (-1022, 0, 1.0, False)
    assert eh._ieee_parts(-MAX_FLOAT)[:3] == (1023, 2 ** 52 - 1, math.nextafter(2.0, 0.0))


def test_rejects_what_has_no_bucket():
    for bad in (0.0, -0.0, math.inf, -math.inf, math.nan):
        with pytest.raises(ValueError):
            eh.index_of(bad, 0)
    for s in (-11, 21):
        with pytest.raises(ValueError):
            eh.index_of(1.5, s)


# --- random doubles over the whole range -----------------------------------------

finite_doubles = st.floats(allow_nan=False, allow_infinity=False).filter(lambda v: v != 0)


@given(v=finite_doubles)
def test_random_doubles_all_scales(v):
    check_all_scales(v)


@given(v=st.floats(min_value=MIN_NORMAL, max_value=MAX_FLOAT).filter(
    lambda v: math.frexp(v)[0] != 0.5), s=st.integers(1, 20))
def test_exact_path_alone_matches_oracle(v, s):
    # the slow exact path, forced, for values nowhere near a boundary as well
    e = math.frexp(v)[1] - 1
    assert (e << s) + eh._subindex_exact(v, s) == oracle_index(v, s)


@given(v=finite_doubles, s=st.integers(-9, 20))
def test_lower_scale_is_a_shift(v, s):
    # exact boundaries nest: bucket i at scale s lies inside bucket i >> 1 at s - 1
    assert eh.index_of(v, s - 1) == eh.index_of(v, s) >> 1


@given(v=st.floats(min_value=MIN_NORMAL, max_value=1e300), s=st.sampled_from(SCALES))
def test_monotone_in_value(v, s):
    up = math.nextafter(v, math.inf)
    assert eh.index_of(v, s) <= eh.index_of(up, s) <= eh.index_of(v, s) + 1


def test_exact_path_was_always_decisive():
    eh.index_of(math.nextafter(4.0, 0.0), 20)   # one ulp below 4 takes the exact path
    calls, undecided = eh.exact_path_stats()
    assert calls > 0 and undecided == 0


# --- single values stay at MaxScale --------------------------------------------

SINGLES = [1.0, 1.5, 3.0, math.nextafter(4.0, 0.0), 4.0, 1e-9, 123456.789, MAX_FLOAT, MIN_NORMAL,
           5e-324, 2.0 ** -1022 * 1.5, 0.1]


@pytest.mark.parametrize("max_scale", [20, 19, 11, 5, 1, 0, -1, -4, -10])
def test_single_value_stays_at_max_scale(max_scale):
    for v in SINGLES:
        for sign in (1, -1):
            c = eh.ExpoHistogramCell(160, max_scale)
            c.py_record(sign * v)
            p = c.py_point()
            side, other = (p.positive, p.negative) if sign > 0 else (p.negative, p.positive)
            assert p.scale == max_scale
            assert side.offset == oracle_index(v, max_scale)
            assert side.bucket_counts == [1]
            assert (other.offset, other.bucket_counts) == (0, [0])


@given(a=finite_doubles, b=finite_doubles)
def test_one_value_per_sign_stays_at_max_scale(a, b):
    c = eh.ExpoHistogramCell(2, 20)
    c.py_record(abs(a))
    c.py_record(-abs(b))
    p = c.py_point()
    assert p.scale == 20
    assert p.positive.offset == eh.index_of(a, 20) and p.positive.bucket_counts == [1]
    assert p.negative.offset == eh.index_of(b, 20) and p.negative.bucket_counts == [1]
