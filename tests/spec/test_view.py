"""Spec: View, Instrument selection criteria, Stream configuration, Measurement processing."""
import logging

import pytest
from opentelemetry import metrics as api
from opentelemetry.metrics import Observation

import otelmetrics
from otelmetrics.export import AggregationTemporality, Histogram, InMemoryMetricReader, Sum
from otelmetrics.view import (
    DropAggregation,
    ExplicitBucketHistogramAggregation,
    LastValueAggregation,
    SumAggregation,
    View,
)

from _spec_util import metrics_of, warnings_about
from _util import by_attrs, points, provider


def names(reader):
    return sorted(points(reader))


def make_x_y_z(mp):
    """The spec's example: meter A with counter X and histogram Y, meter B with gauge Z."""
    a, b = mp.get_meter("A", "1.0", "https://a"), mp.get_meter("B", "2.0", "https://b")
    x = a.create_counter("X", unit="ms")
    y = a.create_histogram("Y", unit="s")
    z = b.create_gauge("Z", unit="ms")
    for inst, rec in ((x, x.add), (y, y.record), (z, z.set)):
        rec(1, {"a": 1, "b": 2, "c": 3})
    return x, y, z


# -- View --------------------------------------------------------------------------

def test_view__created_with_criteria_and_stream_configuration_and_registered():
    v = View(instrument_name="X", name="Foo", description="d", attribute_keys=["a"],
             aggregation=SumAggregation(), aggregation_cardinality_limit=10)
    mp, r = provider(views=[v])
    make_x_y_z(mp)
    assert names(r) == ["Foo", "Y", "Z"]


# -- Instrument selection criteria ---------------------------------------------------

@pytest.mark.parametrize("criteria,expected", [
    ({"instrument_name": "*"}, ["X", "Y", "Z"]),
    ({"instrument_name": "X"}, ["X"]),
    ({"instrument_name": "?"}, ["X", "Y", "Z"]),
    ({"instrument_name": "[XY]"}, ["X", "Y"]),   # fnmatch sets are accepted too
    ({"instrument_type": otelmetrics.Histogram}, ["Y"]),
    ({"instrument_type": api.Histogram}, ["Y"]),
    ({"instrument_unit": "ms"}, ["X", "Z"]),
    ({"meter_name": "B"}, ["Z"]),
    ({"meter_version": "1.0"}, ["X", "Y"]),
    ({"meter_schema_url": "https://b"}, ["Z"]),
    ({"instrument_unit": "ms", "meter_name": "A"}, ["X"]),          # additive
    ({"instrument_name": "X", "instrument_type": otelmetrics.Histogram}, []),
])
def test_instrument_selection_criteria__each_criterion_and_their_conjunction(criteria, expected):
    # A dropping view: the instruments it selects are exactly those missing from the export.
    mp, r = provider(views=[View(**criteria, aggregation=DropAggregation())])
    make_x_y_z(mp)
    assert sorted({"X", "Y", "Z"} - set(points(r))) == expected


def test_instrument_selection_criteria__name_match_is_exact_not_prefix():
    mp, r = provider(views=[View(instrument_name="req", aggregation=DropAggregation())])
    m = mp.get_meter("m")
    m.create_counter("req").add(1)
    m.create_counter("requests").add(1)
    assert names(r) == ["requests"]


def test_instrument_selection_criteria__no_criterion_is_obligatory():
    # Any single criterion suffices; none of them is required by itself.
    for kw in ({"instrument_name": "*"}, {"instrument_type": otelmetrics.Counter}, {"instrument_unit": "ms"},
               {"meter_name": "A"}, {"meter_version": "1"}, {"meter_schema_url": "s"}):
        View(**kw)


# -- Stream configuration ----------------------------------------------------------

def test_stream_configuration__name_and_description_default_to_the_instrument():
    mp, r = provider(views=[View(instrument_name="c", attribute_keys=["a"])])
    mp.get_meter("m").create_counter("c", unit="1", description="desc").add(1, {"a": 1, "b": 2})
    (m,) = metrics_of(r.get_metrics_data())
    assert (m.name, m.description, m.unit) == ("c", "desc", "1")


def test_stream_configuration__name_and_description_from_the_view():
    mp, r = provider(views=[View(instrument_name="c", name="renamed", description="new")])
    mp.get_meter("m").create_counter("c", unit="1", description="desc").add(1)
    (m,) = metrics_of(r.get_metrics_data())
    assert (m.name, m.description, m.unit) == ("renamed", "new", "1")


def test_stream_configuration__name_view_selecting_several_instruments_is_refused_or_warned(caplog):
    with pytest.raises(ValueError, match="wildcard"):
        View(instrument_name="http.*", name="one")          # fail fast: certainly several
    v = View(instrument_type=otelmetrics.Counter, name="one")   # may select several: warn
    mp, r = provider(views=[v])
    m = mp.get_meter("m")
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        m.create_counter("a").add(1)
        m.create_counter("b").add(2)
    assert warnings_about(caplog, "View(name='one') matches more than one instrument")
    assert [p.value for p in points(r, "one")] == [1, 2]     # both still exported


def test_stream_configuration__attribute_keys_allow_list():
    mp, r = provider(views=[View(instrument_name="c", attribute_keys=["a", "b"])])
    c = mp.get_meter("m").create_counter("c")
    c.add(1, {"a": 1, "b": 2, "c": 3})
    c.add(1, {"a": 1, "b": 2, "c": 4})
    c.add(1, {"z": 1})
    got = {k: p.value for k, p in by_attrs(points(r, "c")).items()}
    assert got == {frozenset({("a", 1), ("b", 2)}): 2, frozenset(): 1}


def test_stream_configuration__no_attribute_keys_keeps_all():
    mp, r = provider(views=[View(instrument_name="c", description="x")])
    mp.get_meter("m").create_counter("c").add(1, {"a": 1, "b": 2})
    assert points(r, "c")[0].attributes == {"a": 1, "b": 2}


def test_stream_configuration__exclude_list():
    mp, r = provider(views=[View(instrument_name="c", excluded_attribute_keys=["secret"])])
    mp.get_meter("m").create_counter("c").add(1, {"a": 1, "secret": "x"})
    assert points(r, "c")[0].attributes == {"a": 1}


def test_stream_configuration__default_aggregation_comes_from_the_reader():
    reader = InMemoryMetricReader(preferred_aggregation={otelmetrics.Counter: LastValueAggregation()})
    mp = otelmetrics.MeterProvider(metric_readers=[reader], views=[View(instrument_name="c", name="d")],
                                   shutdown_on_exit=False)
    c = mp.get_meter("m").create_counter("c")
    c.add(5)
    c.add(7)
    (m,) = metrics_of(reader.get_metrics_data())
    assert m.name == "d" and type(m.data).__name__ == "Gauge" and m.data.data_points[0].value == 7


def test_stream_configuration__default_exemplar_reservoir_applies():
    mp, r = provider(views=[View(instrument_name="c", name="d")],
                     exemplar_filter=otelmetrics.AlwaysOnExemplarFilter())
    c = mp.get_meter("m").create_counter("c")
    for v in range(5):
        c.add(v)
    assert len(points(r, "d")[0].exemplars) == 1     # SimpleFixedSize, size 1


def test_stream_configuration__cardinality_limit_defaults_to_the_readers():
    reader = InMemoryMetricReader(default_cardinality_limit=3)
    mp = otelmetrics.MeterProvider(metric_readers=[reader], views=[View(instrument_name="c", name="d")],
                                   shutdown_on_exit=False)
    c = mp.get_meter("m").create_counter("c")
    for i in range(10):
        c.add(1, {"i": i})
    assert len(points(reader, "d")) == 3


# -- Measurement processing --------------------------------------------------------

def test_measurement_processing__no_views_default_aggregation_and_advisory_honored():
    mp, r = provider()
    m = mp.get_meter("m")
    m.create_histogram("h", explicit_bucket_boundaries_advisory=[1.0, 2.0]).record(1.5)
    m.create_counter("c").add(1)
    m.create_gauge("g").set(1)
    data = {mt.name: mt for mt in metrics_of(r.get_metrics_data())}
    assert data["h"].data.data_points[0].explicit_bounds == (1.0, 2.0)
    assert isinstance(data["c"].data, Sum) and type(data["g"].data).__name__ == "Gauge"


def test_measurement_processing__views_applied_independently():
    # The spec's example: "X" as a sum, and "*" with attribute keys a, b: X is exported twice.
    mp, r = provider(views=[View(instrument_name="X", aggregation=SumAggregation()),
                            View(instrument_name="*", attribute_keys=["a", "b"])])
    make_x_y_z(mp)
    got = points(r)
    assert len(got["X"]) == 2
    assert {frozenset(p.attributes) for p in got["X"]} == {frozenset("abc"), frozenset("ab")}
    assert got["Y"][0].attributes == {"a": 1, "b": 2} and got["Z"][0].attributes == {"a": 1, "b": 2}


def test_measurement_processing__conflicting_identities_from_views_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        mp, r = provider(views=[View(instrument_name="X", aggregation=SumAggregation()),
                                View(instrument_name="*", attribute_keys=["a", "b"])])
        make_x_y_z(mp)
    assert warnings_about(caplog, "'X'")


def test_measurement_processing__match_all_drop_with_one_view_exports_only_it():
    mp, r = provider(views=[View(instrument_name="X"), View(instrument_name="*", aggregation=DropAggregation())])
    make_x_y_z(mp)
    assert names(r) == ["X"]


def test_measurement_processing__unmatched_instruments_use_default_aggregation_and_temporality():
    mp, r = provider(views=[View(instrument_name="X", name="Foo")])
    make_x_y_z(mp)
    data = {m.name: m for m in metrics_of(r.get_metrics_data())}
    assert sorted(data) == ["Foo", "Y", "Z"]
    assert isinstance(data["Y"].data, Histogram)
    assert data["Y"].data.aggregation_temporality == AggregationTemporality.CUMULATIVE


def test_measurement_processing__view_wins_over_advisory():
    mp, r = provider(views=[View(instrument_name="h", aggregation=ExplicitBucketHistogramAggregation([10.0]))])
    mp.get_meter("m").create_histogram("h", explicit_bucket_boundaries_advisory=[1.0, 2.0]).record(1)
    assert points(r, "h")[0].explicit_bounds == (10.0,)


def test_measurement_processing__semantic_error_view_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        mp, r = provider(views=[View(instrument_name="og", aggregation=ExplicitBucketHistogramAggregation())])
        mp.get_meter("m").create_observable_gauge("og", [lambda o: [Observation(4)]])
    assert warnings_about(caplog, "cannot aggregate")
    (m,) = metrics_of(r.get_metrics_data())
    assert type(m.data).__name__ == "Gauge" and m.data.data_points[0].value == 4


def test_measurement_processing__semantic_error_view_is_ignored_entirely():
    mp, r = provider(views=[View(instrument_name="og", name="renamed",
                                 aggregation=ExplicitBucketHistogramAggregation())])
    mp.get_meter("m").create_observable_gauge("og", [lambda o: [Observation(4, {"a": 1})]])
    assert names(r) == ["og"]
