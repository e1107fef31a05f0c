"""The exponential-histogram cell of the compiled core: downscale, merge, and
differential tests against opentelemetry-sdk (the reference) for delta and
cumulative collection.

Deliberate differences from the reference, filtered out of the differential data:
* Values within ~1 ulp of a bucket boundary: our index is exact, the
  reference's floor(log(v) * 2**s / ln 2) is sometimes one off.  A value is
  dropped when the reference mapping disagrees with ours at any scale the
  histogram may pass through.
* Cumulative only: an interval holding nothing but zeros makes the reference
  merge its running histogram down to scale 0 for good, and a sign that first
  appears after the first collection is merged against a phantom bucket 0
  (or raises "Incorrect merge scale"; open-telemetry/opentelemetry-python#3219).
  We keep the ideal scale; the differential data avoids these cases.
"""
import functools
import inspect
import math
import random
import tracemalloc

import pytest
from hypothesis import given, strategies as st

eh = pytest.importorskip("otelmetrics._native")

import opentelemetry.sdk.metrics as sdk  # noqa: E402
import opentelemetry.sdk.metrics.export as sdk_export  # noqa: E402
import opentelemetry.sdk.metrics.view as sdk_view  # noqa: E402
from opentelemetry.sdk.metrics._internal.exponential_histogram.mapping.logarithm_mapping import (  # noqa: E402
    LogarithmMapping,
)

Cell = eh.ExpoHistogramCell
MAX_FLOAT = 1.7976931348623157e308


# --- helpers --------------------------------------------------------------------

def summary(p):
    """Everything the reference exports for a point, Python types included."""
    if p is None:
        return None
    return (p.scale, p.zero_count, p.positive.offset, list(p.positive.bucket_counts),
            p.negative.offset, list(p.negative.bucket_counts), p.count,
            repr(p.sum), repr(p.min), repr(p.max))


def reference(batches, temporality, max_size, max_scale, record_min_max=True):
    """One summary (or None) per collection, from opentelemetry-sdk."""
    if temporality == "delta" and not reference_delta_intervals_independent():
        # Delta intervals are independent: each one's point is that of its values alone.
        return [through_sdk(sdk, sdk_export, sdk_view, [batch], temporality, max_size, max_scale,
                            record_min_max)[0] for batch in batches]
    return through_sdk(sdk, sdk_export, sdk_view, batches, temporality, max_size, max_scale, record_min_max)


@functools.lru_cache(maxsize=None)
def reference_delta_intervals_independent():
    """Whether the reference starts each delta interval afresh at max_scale, as ours
    does; opentelemetry-sdk 1.41 (the newest for Python 3.9) keeps the scale the previous
    interval was downscaled to, so there a fresh reference per interval is the oracle."""
    return through_sdk(sdk, sdk_export, sdk_view, [[1.0, 1e6], [3.0]], "delta", 2, 20)[1][0] == 20


def through_sdk(sdk, export, view, batches, temporality, max_size, max_scale, record_min_max=True):
    """Record ``batches`` through an SDK (the reference's or ours: same names), one
    collection per batch; the summary of the single point (or None) of each."""
    temp = export.AggregationTemporality.DELTA if temporality == "delta" else \
        export.AggregationTemporality.CUMULATIVE
    reader = export.InMemoryMetricReader(preferred_temporality={sdk.Histogram: temp, sdk.UpDownCounter: temp})
    provider = sdk.MeterProvider(metric_readers=[reader], shutdown_on_exit=False, views=[view.View(
        instrument_name="h",
        # record_min_max only when off: opentelemetry-sdk 1.41 (the newest for Python 3.9)
        # records min/max always and has no such parameter.
        aggregation=view.ExponentialBucketHistogramAggregation(
            max_size, max_scale, **({} if record_min_max else {"record_min_max": False})))])
    meter = provider.get_meter("m")
    # Histogram drops negative values; an UpDownCounter takes them, same aggregation path
    if any(v < 0 for b in batches for v in b):
        record = meter.create_up_down_counter("h").add
    else:
        record = meter.create_histogram("h").record
    out = []
    for batch in batches:
        for v in batch:
            record(v)
        data = reader.get_metrics_data()
        # Meter "m" only: opentelemetry-sdk 1.41 (the newest for Python 3.9) adds its own
        # telemetry (meter "opentelemetry-sdk") to every collection.
        points = [p for rm in (data.resource_metrics if data else ()) for sm in rm.scope_metrics
                  if sm.scope.name == "m" for m in sm.metrics for p in m.data.data_points]
        assert len(points) <= 1
        out.append(summary(points[0]) if points else None)
    provider.shutdown()
    return out


def ours(batches, temporality, max_size, max_scale, record_min_max=True, approach="b"):
    """The same collections from our cell, as the stream storage would drive it.

    delta:          one cell, point if it saw anything, then reset().
    cumulative (a): one cell, never reset.
    cumulative (b): a delta cell reset every collection, merged into a running cell.
    """
    cell = Cell(max_size, max_scale, record_min_max)
    running = Cell(max_size, max_scale, record_min_max)
    out = []
    for batch in batches:
        for v in batch:
            cell.py_record(v)
        if temporality == "delta":
            out.append(summary(cell.py_point()) if cell.count else None)
            cell.py_reset()
        elif approach == "a":
            out.append(summary(cell.py_point()) if cell.count else None)
        else:
            running.py_merge(cell)
            cell.py_reset()
            out.append(summary(running.py_point()) if running.count else None)
    return out


def exact_disagrees_with_reference(v, max_scale):
    """True when the reference's log mapping puts v elsewhere than the exact one."""
    a = abs(v)
    if a == 0 or a < 2.0 ** -1022:
        return False
    # scales <= 0 use the exponent bits in both implementations
    return any(LogarithmMapping(s).map_to_index(a) != eh.index_of(a, s) for s in range(1, max_scale + 1))


def split(values, rng, k):
    cuts = sorted(rng.randrange(len(values) + 1) for _ in range(k - 1))
    out, prev = [], 0
    for c in cuts + [len(values)]:
        out.append(values[prev:c])
        prev = c
    return out


def avoid_reference_cumulative_bugs(batches):
    """See the module docstring: no zeros-only interval, every sign in the first one."""
    fixed = [list(b) for b in batches]
    for b in fixed:
        if b and all(v == 0 for v in b):
            b.append(1.5)
    first = next((b for b in fixed if b), None)
    if first is not None:
        for sign in (1, -1):
            later = [v for b in fixed for v in b if v * sign > 0]
            if later and not any(v * sign > 0 for v in first):
                first.append(later[0])
    return fixed


def model(values, max_size, max_scale):
    """Independent model: ideal scale and exact per-bucket counts, from index_of alone."""
    nz = [v for v in values if v != 0]
    scale = max_scale
    while True:
        fits = True
        for sign in (1, -1):
            idx = [eh.index_of(v, scale) for v in nz if v * sign > 0]
            if idx and max(idx) - min(idx) >= max_size:
                fits = False
        if fits:
            break
        scale -= 1
    sides = []
    for sign in (1, -1):
        idx = [eh.index_of(v, scale) for v in nz if v * sign > 0]
        if not idx:
            sides.append((0, []))
            continue
        lo = min(idx)
        counts = [0] * (max(idx) - lo + 1)
        for i in idx:
            counts[i - lo] += 1
        sides.append((lo, counts))
    return scale, sides


def trimmed(counts):
    counts = list(counts)
    while counts and counts[-1] == 0:
        counts.pop()
    return counts


# --- data sets ---------------------------------------------------------------------

def _extreme(rng):
    pick = rng.random()
    if pick < 0.3:
        return rng.choice([5e-324, 2.0 ** -1022, 1e-300, 1e300, MAX_FLOAT, 1e-30, 1e30, 2.0 ** 1023])
    # log-uniform over the whole finite range, subnormals included
    return math.ldexp(rng.uniform(0.5, 1.0), rng.randint(-1073, 1024))


GENERATORS = {
    "uniform": lambda rng, p: rng.uniform(0, p),
    "lognormal": lambda rng, p: rng.lognormvariate(math.log(p) / 3, 2.0),
    "heavy_tail": lambda rng, p: rng.paretovariate(0.7) * p / 1e3,
    "zeros": lambda rng, p: 0.0 if rng.random() < 0.4 else rng.lognormvariate(0, 1.5),
    "negative": lambda rng, p: rng.choice((-1, 1, 1)) * rng.lognormvariate(0, 3) if rng.random() > 0.1 else 0.0,
    "extreme": lambda rng, p: rng.choice((-1, 1)) * _extreme(rng) if rng.random() > 0.05 else 0.0,
    "ints": lambda rng, p: rng.randint(0, int(p) + 1),
    "powers": lambda rng, p: math.ldexp(rng.choice((1.0, 1.0, 3.0, 0.75)), rng.randint(-60, 60)),
    "mixed_types": lambda rng, p: rng.randint(-50, 10 ** 6) if rng.random() < 0.5 else rng.uniform(-1, p),
}


def make_batches(kind, seed, n, k, max_scale):
    rng = random.Random(seed)
    p = rng.choice([1.0, 1e3, 1e6, 1e9])
    values = [GENERATORS[kind](rng, p) for _ in range(n)]
    values = [v for v in values if not exact_disagrees_with_reference(v, max_scale)]
    return split(values, rng, k)


max_sizes = st.sampled_from([2, 3, 4, 5, 8, 20, 160])
max_scales = st.one_of(st.just(20), st.integers(-10, 20))


# --- downscale / merge at the module level -----------------------------------------

def test_downscale_merges_adjacent_buckets():
    c = Cell(4, 0)
    for v in (1.5, 3.0, 5.0, 9.0):            # indices 0, 1, 2, 3 at scale 0
        c.py_record(v)
    p = c.py_point()
    assert (p.scale, p.positive.offset, p.positive.bucket_counts) == (0, 0, [1, 1, 1, 1])
    c.py_record(17.0)                          # index 4: five buckets do not fit in 4
    p = c.py_point()
    assert (p.scale, p.positive.offset, p.positive.bucket_counts) == (-1, 0, [2, 2, 1, 0])
    c.py_record(0.75)                          # index -1 at scale -1
    p = c.py_point()
    assert (p.scale, p.positive.offset, p.positive.bucket_counts) == (-1, -1, [1, 2, 2, 1])
    c.py_record(2.0 ** 40)                     # far above: several halvings at once
    p = c.py_point()
    assert p.scale == -4 and p.positive.offset == -1
    assert sum(p.positive.bucket_counts) == 7 and trimmed(p.positive.bucket_counts) == [1, 5, 0, 1]


def test_downscale_of_a_wrapped_window():
    # grow downwards first so the circular window wraps, then force a downscale
    c = Cell(8, 3)
    vals = [2.0 ** (i / 8) * 1.01 for i in range(7, -1, -1)] + [2.0 ** 3]
    for v in vals:
        c.py_record(v)
    scale, ((lo, counts), _) = model(vals, 8, 3)
    p = c.py_point()
    assert scale == 1 and (p.scale, p.positive.offset, trimmed(p.positive.bucket_counts)) == (scale, lo, counts)


def test_both_signs_share_one_scale():
    c = Cell(4, 20)
    c.py_record(-1.0)
    c.py_record(-1.0001)
    c.py_record(1.0)
    c.py_record(1e6)                           # the positive range forces the downscale
    scale, ((plo, pc), (nlo, nc)) = model([-1.0, -1.0001, 1.0, 1e6], 4, 20)
    p = c.py_point()
    assert p.scale == scale == -3
    assert (p.positive.offset, trimmed(p.positive.bucket_counts)) == (plo, pc)
    assert (p.negative.offset, trimmed(p.negative.bucket_counts)) == (nlo, nc)


def test_minimum_scale_holds_the_whole_range():
    c = Cell(2, 20)
    for v in (5e-324, 2.0 ** -1022, 1.0, MAX_FLOAT, -5e-324, -MAX_FLOAT):
        c.py_record(v)
    p = c.py_point()
    assert p.scale == -10
    # 1.0 is the upper bound of bucket -1 like every power of two at or below 2**1024
    assert (p.positive.offset, p.positive.bucket_counts) == (-1, [3, 1])
    assert (p.negative.offset, p.negative.bucket_counts) == (-1, [1, 1])


@given(seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(sorted(GENERATORS)),
       max_size=max_sizes, max_scale=max_scales, n=st.integers(1, 300))
def test_cell_matches_independent_model(seed, kind, max_size, max_scale, n):
    values = [v for b in make_batches(kind, seed, n, 1, 20) for v in b]
    c = Cell(max_size, max_scale)
    for v in values:
        c.py_record(v)
    scale, ((plo, pc), (nlo, nc)) = model(values, max_size, max_scale)
    p = c.py_point()
    if any(values):
        assert p.scale == scale
    assert trimmed(p.positive.bucket_counts) == pc and (not pc or p.positive.offset == plo)
    assert trimmed(p.negative.bucket_counts) == nc and (not nc or p.negative.offset == nlo)
    assert p.zero_count == sum(1 for v in values if v == 0) and p.count == len(values)


@given(seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(sorted(GENERATORS)),
       max_size=max_sizes, max_scale=max_scales, n=st.integers(0, 200), cut=st.integers(0, 200))
def test_merge_equals_recording_everything_in_one_cell(seed, kind, max_size, max_scale, n, cut):
    values = [v for b in make_batches(kind, seed, n, 1, 20) for v in b]
    a, b, whole = Cell(max_size, max_scale), Cell(max_size, max_scale), Cell(max_size, max_scale)
    for v in values[:cut]:
        a.py_record(v)
    for v in values[cut:]:
        b.py_record(v)
    for v in values:
        whole.py_record(v)
    a.py_merge(b)
    pa, pw = a.py_point(), whole.py_point()
    assert (pa.scale, pa.zero_count, pa.count) == (pw.scale, pw.zero_count, pw.count)
    for side in ("positive", "negative"):
        sa, sw = getattr(pa, side), getattr(pw, side)
        assert trimmed(sa.bucket_counts) == trimmed(sw.bucket_counts)
        if trimmed(sw.bucket_counts):
            assert sa.offset == sw.offset
    assert (repr(pa.min), repr(pa.max)) == (repr(pw.min), repr(pw.max))
    # sums differ only by float rounding order (or overflow order near the top of the range)
    if all(abs(v) < 1e150 for v in values):
        assert math.isclose(pa.sum, pw.sum, abs_tol=1e-9 * sum(abs(v) for v in values) + 1e-300)
    # other is left as it was
    pb = b.py_point()
    assert pb.count == len(values) - min(cut, len(values))


def test_merge_lowers_to_common_scale():
    hi, lo = Cell(160, 20), Cell(160, 20)
    hi.py_record(1.5)                          # scale 20
    for v in (1.0, 1e12):                      # forces a low scale
        lo.py_record(v)
    assert lo.scale < 20
    hi.py_merge(lo)
    p = hi.py_point()
    assert p.scale == lo.scale
    assert sum(p.positive.bucket_counts) == 3
    assert p.positive.offset == eh.index_of(1.0, lo.scale)


def test_merge_needs_extra_downscale_when_union_does_not_fit():
    a, b = Cell(4, 20), Cell(4, 20)
    a.py_record(1.0)
    b.py_record(2.0 ** 30)
    a.py_merge(b)
    p = a.py_point()
    scale, ((plo, pc), _) = model([1.0, 2.0 ** 30], 4, 20)
    assert (p.scale, p.positive.offset, trimmed(p.positive.bucket_counts)) == (scale, plo, pc)


def test_merge_into_an_empty_side_has_no_phantom_bucket():
    # the reference raises "Incorrect merge scale" here in cumulative collection
    running, delta = Cell(4, 20), Cell(4, 20)
    delta.py_record(-1.0)
    running.py_merge(delta)
    delta.py_reset()
    delta.py_record(1e6)
    running.py_merge(delta)
    p = running.py_point()
    assert p.scale == 20
    assert (p.positive.offset, p.positive.bucket_counts) == (eh.index_of(1e6, 20), [1])
    assert (p.negative.offset, p.negative.bucket_counts) == (eh.index_of(1.0, 20), [1])


def test_zeros_only_then_values_keeps_resolution():
    # the reference would pin the cumulative scale to 0 after a zeros-only interval
    running, delta = Cell(), Cell()
    delta.py_record(0)
    running.py_merge(delta)
    assert running.py_point().scale == 0      # only zeros: reported as scale 0, like the reference
    delta.py_reset()
    delta.py_record(3.0)
    running.py_merge(delta)
    p = running.py_point()
    assert (p.scale, p.zero_count, p.positive.bucket_counts) == (20, 1, [1])


def test_merge_empty_is_a_no_op_for_buckets():
    a = Cell(8, 20)
    for v in (1.0, 2.5, -3.0):
        a.py_record(v)
    before = summary(a.py_point())
    a.py_merge(Cell(8, 20))
    assert summary(a.py_point()) == before


# --- reset, types, guards ------------------------------------------------------------

def test_reset_returns_to_max_scale_and_keeps_working():
    c = Cell(4, 12)
    for v in (1.0, 1e9, -2.0):
        c.py_record(v)
    assert c.scale < 12
    c.py_reset()
    p = c.py_point()
    assert (p.scale, p.count, p.zero_count, repr(p.sum), repr(p.min), repr(p.max)) == (12, 0, 0, "0", "inf", "-inf")
    assert (p.positive.offset, p.positive.bucket_counts, p.negative.bucket_counts) == (0, [0], [0])
    c.py_record(7.0)
    p = c.py_point()
    assert (p.scale, p.positive.offset, p.positive.bucket_counts) == (12, eh.index_of(7.0, 12), [1])


def test_sum_min_max_keep_python_types():
    c = Cell()
    for v in (3, 1, 2):
        c.py_record(v)
    p = c.py_point()
    assert (repr(p.sum), repr(p.min), repr(p.max)) == ("6", "1", "3")
    c.py_record(0.5)
    c.py_record(1.0)                           # ties keep the earlier object, like min()/max()
    c.py_record(3.0)
    p = c.py_point()
    assert (repr(p.sum), repr(p.min), repr(p.max)) == ("10.5", "0.5", "3")


def test_record_min_max_off():
    c = Cell(160, 20, False)
    c.py_record(5.0)
    p = c.py_point()
    assert (repr(p.min), repr(p.max)) == ("inf", "-inf")


def test_non_finite_values_are_ignored():
    c = Cell()
    for v in (math.nan, math.inf, -math.inf):
        c.py_record(v)
    assert c.count == 0 and c.py_point().count == 0


@pytest.mark.parametrize("args", [(1, 20), (16385, 20), (160, 21), (160, -11)])
def test_invalid_configuration(args):
    with pytest.raises(ValueError):
        Cell(*args)


def test_no_allocation_per_measurement():
    c = Cell()
    rng = random.Random(1)
    values = [rng.lognormvariate(0, 3) for _ in range(20000)]
    for v in values[:100]:
        c.py_record(v)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for v in values:
            c.py_record(v)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1024


def test_point_type_and_fields():
    from otelmetrics._native import Buckets, ExponentialHistogramDataPoint
    c = Cell()
    c.py_record(2.5)
    p = c.py_point({"k": "v"}, 10, 20, ["ex"])
    assert type(p) is ExponentialHistogramDataPoint and type(p.positive) is Buckets
    assert (p.attributes, p.start_time_unix_nano, p.time_unix_nano, p.flags, p.exemplars) == (
        {"k": "v"}, 10, 20, 0, ["ex"])
    # the stream storage's flat attribute key
    assert c.py_point(("a", 1, "b", "x")).attributes == {"a": 1, "b": "x"}


# --- differential against opentelemetry-sdk -----------------------------------------

def _check(batches, temporality, max_size, max_scale, record_min_max=True, approach="b"):
    if temporality == "cumulative":
        batches = avoid_reference_cumulative_bugs(batches)
    want = reference(batches, temporality, max_size, max_scale, record_min_max)
    got = ours(batches, temporality, max_size, max_scale, record_min_max, approach)
    assert got == want, (batches, temporality, max_size, max_scale)


@pytest.mark.parametrize("kind", sorted(GENERATORS))
@given(seed=st.integers(0, 2 ** 32 - 1), max_size=max_sizes, max_scale=max_scales,
       temporality=st.sampled_from(["delta", "cumulative"]), n=st.integers(1, 150),
       k=st.integers(1, 4))
def test_matches_reference(kind, seed, max_size, max_scale, temporality, n, k):
    _check(make_batches(kind, seed, n, k, max_scale), temporality, max_size, max_scale)


@given(values=st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=40),
       max_size=st.integers(2, 4), max_scale=max_scales,
       temporality=st.sampled_from(["delta", "cumulative"]), seed=st.integers(0, 1000))
def test_matches_reference_adversarial_floats(values, max_size, max_scale, temporality, seed):
    # hypothesis' floats: subnormals, -0.0, the largest doubles, both signs
    values = [v for v in values if not exact_disagrees_with_reference(v, max_scale)]
    _check(split(values, random.Random(seed), 3), temporality, max_size, max_scale)


@pytest.mark.skipif(
    "record_min_max" not in inspect.signature(sdk_view.ExponentialBucketHistogramAggregation).parameters,
    reason="no oracle: this opentelemetry-sdk (1.41, the newest for Python 3.9) always records min/max")
@given(seed=st.integers(0, 2 ** 32 - 1), kind=st.sampled_from(["lognormal", "negative", "ints"]),
       temporality=st.sampled_from(["delta", "cumulative"]))
def test_matches_reference_without_min_max(seed, kind, temporality):
    _check(make_batches(kind, seed, 60, 3, 20), temporality, 8, 20, record_min_max=False)


@pytest.mark.parametrize("temporality", ["delta", "cumulative"])
def test_matches_reference_on_type_ties(temporality):
    # equal int and float extremes/sums across intervals: which object the reference keeps
    batches = [[1, 5], [1.0, 5.0], [1, 5.0, 0], [], [-0.0, 2]]
    _check(batches, temporality, 160, 20)
    _check([[0.0], [-0.0], [0]], "delta", 160, 20)


def test_many_collections_both_temporalities():
    rng = random.Random(7)
    values = [rng.lognormvariate(rng.choice([-3, 0, 6]), 2) for _ in range(2000)]
    values = [v for v in values if not exact_disagrees_with_reference(v, 20)]
    batches = split(values, rng, 12) + [[], [1e-3, 1e4], []]
    for temporality in ("delta", "cumulative"):
        for max_size in (4, 160):
            _check(batches, temporality, max_size, 20)


def test_cumulative_single_cell_is_not_the_reference():
    """Approach (a), one never-reset cell, differs from the reference's cumulative
    export; approach (b), delta cell merged into a running cell, reproduces it."""
    batches = [[1.0], [1.0 + 2 ** -20, 1.0 + 2 ** -10, 4.0, 1e9]]
    want = reference(batches, "cumulative", 160, 20)
    assert ours(batches, "cumulative", 160, 20, approach="b") == want
    got_a = ours(batches, "cumulative", 160, 20, approach="a")
    # same scale, offset and counts, but (a) grew its bucket list along the way
    assert got_a[1][:3] == want[1][:3] and trimmed(got_a[1][3]) == trimmed(want[1][3])
    assert len(got_a[1][3]) != len(want[1][3])
    # float sums: the reference adds per-interval sums, (a) one running sum
    sums = [[0.1], [0.2, 0.3]]                 # 0.6 per interval, 0.6000000000000001 in one go
    want = reference(sums, "cumulative", 160, 20)
    assert ours(sums, "cumulative", 160, 20, approach="b") == want
    assert ours(sums, "cumulative", 160, 20, approach="a")[1][7] != want[1][7]


def test_an_int_sum_past_int64_becomes_a_float_never_wraps():
    """As the explicit histogram's and the sum's: the int sum turns float where int64 ends
    (the reference's Python int is exact; a double is the nearest OTLP carries anyway)."""
    c = Cell()
    c.py_record(2 ** 63 - 1)
    c.py_record(1)
    p = c.py_point()
    assert (repr(p.sum), p.min, p.max) == (repr(float(2 ** 63)), 1, 2 ** 63 - 1)
    low, other = Cell(), Cell()
    low.py_record(-(2 ** 63))
    other.py_record(-1)
    low.py_merge(other)                     # a cumulative collection merges an interval
    assert repr(low.py_point().sum) == repr(-float(2 ** 63) - 1.0)
    high, more = Cell(), Cell()
    high.py_record(2 ** 62)
    more.py_record(2 ** 62)
    high.py_merge(more)
    assert repr(high.py_point().sum) == repr(float(2 ** 63))
