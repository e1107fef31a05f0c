"""Spec: Meter, MeterConfig, Duplicate instrument registration, Name conflict,
Instrument name / unit / description, Instrument advisory parameters, Instrument enabled."""
import logging

import pytest
from opentelemetry.metrics import Observation

import otelmetrics
from otelmetrics._instruments import MAX_CALLBACKS
from otelmetrics.view import DropAggregation, ExplicitBucketHistogramAggregation, View

from _spec_util import metrics_of, warnings_about
from _util import points, provider


# -- Meter -------------------------------------------------------------------------

def test_meter__distinct_meters_are_separate_namespaces(caplog):
    mp, r = provider()
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        a = mp.get_meter("a").create_counter("c", unit="s")
        b = mp.get_meter("b").create_histogram("c", unit="ms")
    assert a is not b
    a.add(1)
    b.record(1)
    assert not warnings_about(caplog, "two different instruments")
    scopes = {sm.scope.name: [m.name for m in sm.metrics]
              for sm in r.get_metrics_data().resource_metrics[0].scope_metrics}
    assert scopes == {"a": ["c"], "b": ["c"]}


# -- MeterConfig -------------------------------------------------------------------

def test_meterconfig__enabled_by_default():
    assert otelmetrics.MeterConfig().enabled is True
    mp, _ = provider()
    assert mp.get_meter("m").create_counter("c").enabled()


def test_meterconfig__disabled_meter_behaves_as_noop():
    calls = []
    mp, r = provider(meter_configurator={"off": False})
    m = mp.get_meter("off")
    c, h, g = m.create_counter("c"), m.create_histogram("h"), m.create_gauge("g")
    m.create_observable_counter("oc", [lambda o: calls.append(1) or [Observation(1)]])
    c.add(1)
    h.record(1)
    g.set(1)
    assert r.get_metrics_data() is None and calls == []
    assert not (c.enabled() or h.enabled() or g.enabled())


# -- Duplicate instrument registration -------------------------------------------

def test_duplicate_instrument_registration__identical_instruments_aggregate_together():
    mp, r = provider()
    m = mp.get_meter("m")
    a = m.create_counter("c", "1", "d")
    b = m.create_counter("c", "1", "d")
    a.add(1)
    b.add(2)
    assert [p.value for p in points(r, "c")] == [3]


def test_duplicate_instrument_registration__identical_observable_instruments_aggregate_together(caplog):
    # One instrument, one stream; the second registration's callbacks join the first's (the
    # spec: data of identical instruments aggregated together). opentelemetry-sdk 1.45 returns
    # the first instrument too but drops the second one's callbacks: its "cpu": 1 is not exported.
    def cpu0(options):
        return [Observation(5, {"cpu": 0})]

    def cpu1(options):
        return [Observation(7, {"cpu": 1})]

    mp, r = provider()
    m = mp.get_meter("m")
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        a = m.create_observable_counter("cpu.time", [cpu0], unit="s")
        b = m.create_observable_counter("cpu.time", [cpu1, cpu0], unit="s")   # cpu0 again: runs once
    assert a is b
    assert not warnings_about(caplog, "cpu.time")
    got = metrics_of(r.get_metrics_data())
    assert [(mt.name, sorted((p.attributes["cpu"], p.value) for p in mt.data.data_points))
            for mt in got] == [("cpu.time", [(0, 5), (1, 7)])]


def test_duplicate_instrument_registration__functional_instrument_both_exported_with_warning(caplog):
    mp, r = provider()
    m = mp.get_meter("m")
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        a = m.create_counter("c", unit="s")
        b = m.create_up_down_counter("c", unit="ms")
    a.add(1)
    b.add(-2)
    msgs = warnings_about(caplog, "'c'", "two different instruments")
    assert msgs and "View(" in msgs[0]            # a renaming View recipe
    got = metrics_of(r.get_metrics_data())
    assert sorted((m.unit, m.data.data_points[0].value) for m in got) == [("ms", -2), ("s", 1)]


def test_duplicate_instrument_registration__renaming_view_avoids_the_warning(caplog):
    mp, r = provider(views=[View(instrument_name="c", instrument_type=otelmetrics.UpDownCounter, name="c.updown")])
    m = mp.get_meter("m")
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        m.create_counter("c").add(1)
        m.create_up_down_counter("c").add(1)
    assert not warnings_about(caplog, "two different instruments")
    assert sorted(points(r)) == ["c", "c.updown"]


def test_duplicate_instrument_registration__description_view_avoids_the_warning(caplog):
    mp, r = provider(views=[View(instrument_name="c", description="one")])
    m = mp.get_meter("m")
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        m.create_counter("c", description="first").add(1)
        m.create_counter("c", description="second").add(1)
    assert not warnings_about(caplog, "'c'")


# -- Name conflict -----------------------------------------------------------------

def test_name_conflict__case_insensitive_returns_first_seen_name():
    mp, r = provider()
    m = mp.get_meter("m")
    a = m.create_counter("requestCount")
    b = m.create_counter("RequestCount")
    assert b is a and b.name == "requestCount"
    b.add(1)
    assert list(points(r)) == ["requestCount"]


def test_name_conflict__different_casing_is_logged(caplog):
    mp, _ = provider()
    m = mp.get_meter("m")
    m.create_counter("requestCount")
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        m.create_counter("RequestCount")
    assert warnings_about(caplog, "RequestCount")


def test_name_conflict__first_seen_name_even_when_other_fields_differ():
    mp, r = provider()
    m = mp.get_meter("m")
    m.create_counter("requestCount").add(1)
    b = m.create_counter("RequestCount", description="other")
    b.add(1)
    assert b.name == "requestCount"
    assert {mt.name for mt in metrics_of(r.get_metrics_data())} == {"requestCount"}


# -- Instrument name ---------------------------------------------------------------

@pytest.mark.parametrize("bad", ["1abc", "", "a b", "x" * 256, "ünicode"])
def test_instrument_name__invalid_name_logs_an_error(bad, caplog):
    mp, _ = provider()
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        c = mp.get_meter("m").create_counter(bad)
    assert warnings_about(caplog, "is invalid")
    c.add(1)       # never raises


@pytest.mark.parametrize("good", ["a", "http.server.duration", "A_b-c/d.e", "x" * 255])
def test_instrument_name__valid_names_are_silent(good, caplog):
    mp, _ = provider()
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        mp.get_meter("m").create_counter(good)
    assert not caplog.records


# -- Instrument unit ---------------------------------------------------------------

def test_instrument_unit__none_or_missing_is_the_empty_unit():
    mp, r = provider()
    m = mp.get_meter("m")
    a = m.create_counter("c", unit=None)
    assert a.unit == "" and m.create_counter("c") is a and m.create_counter("c", unit="") is a


@pytest.mark.parametrize("unit", ["µs", "x" * 64])
def test_instrument_unit__not_validated(unit):
    mp, r = provider()
    mp.get_meter("m").create_counter("c", unit=unit).add(1)
    (m,) = metrics_of(r.get_metrics_data())
    assert m.unit == unit


# -- Instrument description ---------------------------------------------------------

def test_instrument_description__none_or_missing_is_empty_and_not_validated(caplog):
    mp, r = provider()
    m = mp.get_meter("m")
    a = m.create_counter("c", description=None)
    assert a.description == "" and m.create_counter("c") is a
    weird = "ünïcødé\n" + "d" * 5000
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        m.create_counter("d", description=weird).add(1)
    assert not caplog.records
    assert {mt.name: mt.description for mt in metrics_of(r.get_metrics_data())}["d"] == weird


# -- Instrument advisory parameters -------------------------------------------------

@pytest.mark.parametrize("bad", [[3, 1], [1, float("nan")], ["a"], [1, 1], [0, 10**400]])
def test_instrument_advisory_parameters__invalid_is_reported_and_ignored(bad, caplog):
    mp, r = provider()
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        h = mp.get_meter("m").create_histogram("h", explicit_bucket_boundaries_advisory=bad)
    assert warnings_about(caplog, "'h'")
    h.record(1)
    assert points(r, "h")[0].explicit_bounds == ExplicitBucketHistogramAggregation().boundaries


def test_instrument_advisory_parameters__first_seen_advisory_wins_with_log(caplog):
    mp, r = provider()
    m = mp.get_meter("m")
    h1 = m.create_histogram("h", explicit_bucket_boundaries_advisory=[1.0, 2.0])
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        h2 = m.create_histogram("h", explicit_bucket_boundaries_advisory=[5.0])
    assert warnings_about(caplog, "'h'")
    h2.record(1)
    assert [p.explicit_bounds for p in points(r, "h")] == [(1.0, 2.0)]


def test_instrument_advisory_parameter_explicitbucketboundaries__used_without_view_or_with_default_view():
    for views in ([], [View(instrument_name="h", name="h")]):
        mp, r = provider(views=views)
        mp.get_meter("m").create_histogram("h", explicit_bucket_boundaries_advisory=[1.0, 2.0]).record(1)
        assert points(r, "h")[0].explicit_bounds == (1.0, 2.0)


def test_instrument_advisory_parameter_explicitbucketboundaries__view_boundaries_win():
    mp, r = provider(views=[View(instrument_name="h", aggregation=ExplicitBucketHistogramAggregation([7.0]))])
    mp.get_meter("m").create_histogram("h", explicit_bucket_boundaries_advisory=[1.0, 2.0]).record(1)
    assert points(r, "h")[0].explicit_bounds == (7.0,)


def test_instrument_advisory_parameter_explicitbucketboundaries__ignored_by_explicit_view_without_boundaries():
    mp, r = provider(views=[View(instrument_name="h", aggregation=ExplicitBucketHistogramAggregation())])
    mp.get_meter("m").create_histogram("h", explicit_bucket_boundaries_advisory=[1.0, 2.0]).record(1)
    assert points(r, "h")[0].explicit_bounds == ExplicitBucketHistogramAggregation().boundaries


# Advisory parameter `Attributes` (Development): opentelemetry-api has no such argument; nothing to honour.


# -- Instrument enabled -------------------------------------------------------------

def test_instrument_enabled__true_by_default_for_every_sync_kind():
    mp, _ = provider()
    m = mp.get_meter("m")
    for inst in (m.create_counter("a"), m.create_up_down_counter("b"), m.create_histogram("c"), m.create_gauge("d")):
        assert inst.enabled() is True


def test_instrument_enabled__false_when_meter_disabled():
    mp, _ = provider(meter_configurator=lambda s: otelmetrics.MeterConfig(enabled=False))
    assert mp.get_meter("m").create_counter("a").enabled() is False


def test_instrument_enabled__false_only_when_all_resolved_views_drop():
    mp, _ = provider(views=[View(instrument_name="a", aggregation=DropAggregation()),
                            View(instrument_name="b", aggregation=DropAggregation()),
                            View(instrument_name="b", name="b2")])
    m = mp.get_meter("m")
    assert m.create_counter("a").enabled() is False
    assert m.create_counter("b").enabled() is True


def test_duplicate_instrument_registration__recreated_observable_stays_bounded(caplog):
    """A program that creates its observable instrument again at every reconnect: the same
    method of the same object is one callback (read twice it is two equal objects, not one),
    and fresh callbacks stop at MAX_CALLBACKS with a warning, so memory and collection time
    stay bounded."""
    class Connection:
        def observe(self, options):
            return [Observation(100, {"link": "up"})]

    mp, r = provider()
    m = mp.get_meter("m")
    conn = Connection()
    for _ in range(3):
        gauge = m.create_observable_counter("bytes.sent", [conn.observe])
    assert len(gauge._callbacks) == 1
    assert [p.value for p in points(r)["bytes.sent"]] == [100]
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        for i in range(MAX_CALLBACKS + 50):
            m.create_observable_gauge("temp", [lambda options, i=i: [Observation(i, {"sensor": i})]])
    temp = m.create_observable_gauge("temp")
    assert len(temp._callbacks) == MAX_CALLBACKS
    assert len(points(r)["temp"]) == MAX_CALLBACKS          # one per sensor, within the bound
    assert warnings_about(caplog, "'temp'", "refused")
