"""Spec sections MeterConfigurator / MeterConfig, Instrument enabled, MetricProducer."""
import pytest

import otelmetrics
from otelmetrics.export import InMemoryMetricReader, MetricProducer, MetricsData
from otelmetrics.view import DropAggregation, View

from _util import points


def make(**kw):
    r = InMemoryMetricReader(metric_producers=kw.pop("metric_producers", ()))
    return otelmetrics.MeterProvider(metric_readers=[r], shutdown_on_exit=False, **kw), r


def test_meter_configurator_disables_meters_by_pattern():
    mp, r = make(meter_configurator={"noisy.*": False})
    quiet = mp.get_meter("noisy.lib").create_counter("q")
    loud = mp.get_meter("app").create_counter("a")
    quiet.add(1)
    loud.add(1)
    assert set(points(r)) == {"a"}
    assert not quiet.enabled() and loud.enabled()


def test_meter_configurator_callable_and_meter_config():
    mp, r = make(meter_configurator=lambda scope: otelmetrics.MeterConfig(enabled=scope.version != "0.0"))
    c = mp.get_meter("x", "0.0").create_counter("c")
    assert not c.enabled()
    assert mp.get_meter("x", "1.0").create_counter("c").enabled()


def test_meter_configurator_that_raises_keeps_meters_enabled():
    def boom(scope):
        raise RuntimeError("bad config")

    mp, r = make(meter_configurator=boom)
    assert mp.get_meter("x").create_counter("c").enabled()


def test_bad_meter_configurator_fails_fast():
    with pytest.raises(TypeError, match="meter_configurator"):
        make(meter_configurator=42)


def test_enabled_false_when_every_view_drops():
    mp, r = make(views=[View(instrument_name="dropped", aggregation=DropAggregation())])
    m = mp.get_meter("m")
    assert not m.create_counter("dropped").enabled()
    assert m.create_counter("kept").enabled()
    assert m.create_observable_gauge("g", callbacks=[]).enabled()
    mp.shutdown()
    assert not m.create_counter("late").enabled()   # created after shutdown: inert


def test_enabled_false_after_shutdown():
    mp, r = make()
    c = mp.get_meter("m").create_counter("c")
    assert c.enabled()
    mp.shutdown()
    assert not c.enabled()


class StaticProducer(MetricProducer):
    def __init__(self, data):
        self.data = data

    def produce(self, timeout_millis=10_000):
        return self.data


def test_metric_producers_are_collected_with_the_sdk():
    other_r = InMemoryMetricReader()
    other = otelmetrics.MeterProvider(metric_readers=[other_r], shutdown_on_exit=False)
    other.get_meter("bridge").create_counter("bridged").add(4)
    bridged = other_r.get_metrics_data()

    class Failing(MetricProducer):
        def produce(self, timeout_millis=10_000):
            raise RuntimeError("bridge down")

    mp, r = make(metric_producers=[StaticProducer(bridged), Failing(), StaticProducer(None)])
    mp.get_meter("m").create_counter("own").add(1)
    got = points(r)
    assert got["own"][0].value == 1 and got["bridged"][0].value == 4
    # Producers alone (nothing recorded in the SDK) still export.
    mp2, r2 = make(metric_producers=[StaticProducer(bridged)])
    assert isinstance(r2.get_metrics_data(), MetricsData)
