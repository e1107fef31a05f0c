"""Spec: Aggregation (Drop, Default, Sum, Last Value, Histogram, Explicit Bucket Histogram,
Base2 Exponential Bucket Histogram)."""
import math
import sys

import pytest
from opentelemetry.metrics import Observation

import otelmetrics
from otelmetrics.export import ExponentialHistogram, Gauge, Histogram, Sum
from otelmetrics.view import (
    Aggregation,
    DefaultAggregation,
    DEFAULT_BOUNDARIES,
    DropAggregation,
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    LastValueAggregation,
    SumAggregation,
    View,
)

from _spec_util import metrics_of
from _util import points, provider

SYNC = {"counter": ("create_counter", "add"), "up_down_counter": ("create_up_down_counter", "add"),
        "histogram": ("create_histogram", "record"), "gauge": ("create_gauge", "set")}
ASYNC = {"observable_counter": "create_observable_counter",
         "observable_up_down_counter": "create_observable_up_down_counter",
         "observable_gauge": "create_observable_gauge"}


def one_of_each(meter, value=3):
    for name, (create, rec) in SYNC.items():
        getattr(getattr(meter, create)(name), rec)(value)
    for name, create in ASYNC.items():
        getattr(meter, create)(name, [lambda o, v=value: [Observation(v)]])


def exported(views=(), value=3):
    mp, r = provider(views=views)
    one_of_each(mp.get_meter("m"), value)
    return {m.name: m for m in metrics_of(r.get_metrics_data())}


def test_aggregation__all_required_aggregations_exist():
    for cls in (DropAggregation, SumAggregation, LastValueAggregation, ExplicitBucketHistogramAggregation,
                ExponentialBucketHistogramAggregation, DefaultAggregation):
        assert isinstance(cls(), Aggregation)


# -- Drop Aggregation ------------------------------------------------------------

def test_drop_aggregation__ignores_every_measurement_of_every_kind():
    calls = []
    mp, r = provider(views=[View(instrument_name="*", aggregation=DropAggregation())])
    m = mp.get_meter("m")
    one_of_each(m)
    m.create_observable_gauge("og2", [lambda o: calls.append(1) or [Observation(1)]])
    assert r.get_metrics_data() is None
    assert calls == []          # no stream, so its callback is not even run


# -- Default Aggregation ---------------------------------------------------------

def test_default_aggregation__selected_per_instrument_kind():
    got = exported()
    expected = {"counter": Sum, "up_down_counter": Sum, "observable_counter": Sum,
                "observable_up_down_counter": Sum, "gauge": Gauge, "observable_gauge": Gauge,
                "histogram": Histogram}
    assert {k: type(m.data) for k, m in got.items()} == expected
    assert got["histogram"].data.data_points[0].explicit_bounds == DEFAULT_BOUNDARIES


def test_default_aggregation__histogram_uses_the_advisory_boundaries():
    mp, r = provider(views=[View(instrument_name="h", aggregation=DefaultAggregation())])
    mp.get_meter("m").create_histogram("h", explicit_bucket_boundaries_advisory=[1.0, 5.0]).record(2)
    assert points(r, "h")[0].explicit_bounds == (1.0, 5.0)


# -- Sum Aggregation -------------------------------------------------------------

@pytest.mark.parametrize("kind,monotonic", [
    ("counter", True), ("up_down_counter", False), ("gauge", False), ("observable_gauge", False),
    ("observable_counter", True), ("observable_up_down_counter", False),
    ("histogram", True),
])
def test_sum_aggregation__monotonicity_by_instrument_kind(kind, monotonic):
    got = exported([View(instrument_name="*", aggregation=SumAggregation())])
    assert isinstance(got[kind].data, Sum)
    assert got[kind].data.is_monotonic is monotonic


def test_sum_aggregation__arithmetic_sum():
    mp, r = provider(views=[View(instrument_name="h", aggregation=SumAggregation())])
    m = mp.get_meter("m")
    u = m.create_up_down_counter("u")
    for v in (5, -2, 0.5):
        u.add(v)
    h = m.create_histogram("h")
    for v in (1, 2, 3.5):
        h.record(v)
    got = points(r)
    assert got["u"][0].value == 3.5 and got["h"][0].value == 6.5


# -- Last Value Aggregation ------------------------------------------------------

def test_last_value_aggregation__last_measurement_and_its_timestamp():
    mp, r = provider(views=[View(instrument_name="c", aggregation=LastValueAggregation())])
    c = mp.get_meter("m").create_counter("c")
    c.add(1)
    c.add(7)
    c.add(2)
    (p,) = points(r, "c")
    assert p.value == 2
    assert p.start_time_unix_nano is None or p.start_time_unix_nano <= p.time_unix_nano


# -- Histogram Aggregations ------------------------------------------------------

@pytest.mark.parametrize("agg", [ExplicitBucketHistogramAggregation(), ExponentialBucketHistogramAggregation()])
def test_histogram_aggregations__count_sum_min_max(agg):
    mp, r = provider(views=[View(instrument_name="h", aggregation=agg)])
    h = mp.get_meter("m").create_histogram("h")
    for v in (3, 0.25, 12, 7.5):
        h.record(v)
    (p,) = points(r, "h")
    assert (p.count, p.sum, p.min, p.max) == (4, 22.75, 0.25, 12)


@pytest.mark.parametrize("agg", [ExplicitBucketHistogramAggregation(record_min_max=False),
                                 ExponentialBucketHistogramAggregation(record_min_max=False)])
def test_histogram_aggregations__record_min_max_false(agg):
    mp, r = provider(views=[View(instrument_name="h", aggregation=agg)])
    mp.get_meter("m").create_histogram("h").record(3)
    (p,) = points(r, "h")
    assert p.count == 1 and p.sum == 3
    assert p.min in (None, math.inf) and p.max in (None, -math.inf)


# -- Explicit Bucket Histogram Aggregation ---------------------------------------

def test_explicit_bucket_histogram_aggregation__default_boundaries():
    assert DEFAULT_BOUNDARIES == (0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000)
    assert ExplicitBucketHistogramAggregation().boundaries == DEFAULT_BOUNDARIES


def test_explicit_bucket_histogram_aggregation__upper_bound_inclusive():
    mp, r = provider(views=[View(instrument_name="h", aggregation=ExplicitBucketHistogramAggregation([0, 5, 10]))])
    h = mp.get_meter("m").create_histogram("h")
    for v in (0, 0.0001, 5, 5.0001, 10, 11, sys.float_info.max):
        h.record(v)
    (p,) = points(r, "h")
    # (-inf, 0], (0, 5], (5, 10], (10, +inf)
    assert p.bucket_counts == (1, 2, 2, 2)


def test_explicit_bucket_histogram_aggregation__matches_reference():
    from opentelemetry.sdk.metrics import MeterProvider as RefProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader as RefReader

    values = [0, 1, 5, 5.5, 99.9, 100, 101, 7500, 10000, 10001, 1e9, 0.5]
    ref = RefReader()
    rh = RefProvider(metric_readers=[ref]).get_meter("m").create_histogram("h")
    mp, r = provider()
    h = mp.get_meter("m").create_histogram("h")
    for v in values:
        rh.record(v)
        h.record(v)
    (rp,) = ref.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics[0].data.data_points
    (p,) = points(r, "h")
    assert (p.count, p.sum, p.min, p.max, tuple(p.bucket_counts), tuple(p.explicit_bounds)) == (
        rp.count, rp.sum, rp.min, rp.max, tuple(rp.bucket_counts), tuple(rp.explicit_bounds))


# -- Base2 Exponential Bucket Histogram Aggregation ------------------------------

def expo(values, **kw):
    mp, r = provider(views=[View(instrument_name="h", aggregation=ExponentialBucketHistogramAggregation(**kw))])
    h = mp.get_meter("m").create_histogram("h")
    for v in values:
        h.record(v)
    data = metrics_of(r.get_metrics_data())
    assert isinstance(data[0].data, ExponentialHistogram)
    (p,) = data[0].data.data_points
    return p


def test_base2_exponential_bucket_histogram_aggregation__defaults():
    agg = ExponentialBucketHistogramAggregation()
    assert (agg._max_size, agg._max_scale, agg._record_min_max) == (160, 20, True)


def test_handle_all_normal_values__extremes_of_the_normal_range():
    values = [sys.float_info.min, 1.0, sys.float_info.max, 5e-324]   # incl. the smallest subnormal
    p = expo(values)
    assert p.count == 4
    assert sum(p.positive.bucket_counts) + p.zero_count == 4
    assert p.min == 5e-324 and p.max == sys.float_info.max


def test_handle_all_normal_values__non_finite_not_in_sum_min_max():
    p = expo([1.0, math.inf, -math.inf, math.nan, 2.0])
    assert (p.count, p.sum, p.min, p.max) == (2, 3.0, 1.0, 2.0)


def test_support_a_minimum_and_maximum_scale():
    assert expo([1.5], max_scale=5).scale == 5
    wide = expo([sys.float_info.min, sys.float_info.max], max_size=2)
    assert wide.scale >= -10            # a reasonable minimum scale
    assert sum(wide.positive.bucket_counts) == 2
    with pytest.raises(ValueError):
        ExponentialBucketHistogramAggregation(max_scale=21)


def test_use_the_maximum_scale_for_single_measurements():
    assert expo([123.456]).scale == 20
    assert expo([-3.0, 1e300]).scale == 20       # one value in each range


def test_maintain_the_ideal_scale():
    # 1..4 spans a contrast of 4: the ideal scale for 160 buckets is 6 (the spec's table).
    p = expo([1.0, 4.0])
    assert p.scale == 6
    assert len(p.positive.bucket_counts) <= 160
    # 1 ms .. 100 s: ideal scale 3.
    assert expo([0.001, 100.0]).scale == 3
    # Best resolution: one scale higher would need more than max_size buckets.
    p = expo([1.0, 1000.0], max_size=20)
    span_up = (math.ceil(math.log2(1000.0) * 2 ** (p.scale + 1)) - 0) + 1
    assert span_up > 20 and len(p.positive.bucket_counts) <= 20


# -- Histogram sum with negative measurements (SHOULD NOT be collected) -----------
# Not done, deliberately: the data model's HistogramDataPoint.sum is mandatory, as in
# opentelemetry-sdk, which also reports it. See CONFORMANCE.md.
