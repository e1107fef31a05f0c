"""Spec: MeterProvider, MeterProvider Creation, Meter Creation, Configuration,
MeterConfigurator, Shutdown, ForceFlush."""
import logging
import threading
import time

import pytest
from opentelemetry import metrics as api
from opentelemetry.metrics import Observation

import otelmetrics
from otelmetrics.export import InMemoryMetricReader, MetricExportResult, PeriodicExportingMetricReader
from otelmetrics.view import View

from _spec_util import RecordingExporter, warnings_about
from _util import points, provider


def periodic(exporter, **kw):
    return PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000, **kw)


# -- MeterProvider ---------------------------------------------------------------

def test_meterprovider__resource_is_associated_with_all_metrics():
    res = otelmetrics.Resource({"service.name": "gw", "host.id": "7"})
    mp, r = provider(resource=res)
    mp.get_meter("a").create_counter("x").add(1)
    mp.get_meter("b").create_histogram("y").record(1)
    data = r.get_metrics_data()
    assert [rm.resource for rm in data.resource_metrics] == [res]
    assert {sm.scope.name for sm in data.resource_metrics[0].scope_metrics} == {"a", "b"}


def test_meterprovider__default_resource_has_service_name():
    mp, r = provider()
    assert "service.name" in mp.resource.attributes


# -- MeterProvider Creation -------------------------------------------------------

def test_meterprovider_creation__multiple_independent_providers():
    mp1, r1 = provider()
    mp2, r2 = provider()
    mp1.get_meter("m").create_counter("c").add(1)
    mp2.get_meter("m").create_counter("c").add(10)
    assert points(r1, "c")[0].value == 1
    assert points(r2, "c")[0].value == 10
    mp1.shutdown()
    mp2.get_meter("m").create_counter("c").add(5)
    assert points(r2, "c")[0].value == 15


# -- Meter Creation --------------------------------------------------------------

def test_meter_creation__meters_come_only_from_a_provider():
    # otelmetrics.Meter is exported (as opentelemetry-sdk's is) for isinstance and
    # annotations; a Meter is made from a provider's scope and pipeline only.
    mp, _ = provider()
    meter = mp.get_meter("m")
    assert isinstance(meter, api.Meter) and type(meter) is otelmetrics.Meter
    with pytest.raises(TypeError):
        otelmetrics.Meter("m")


def test_meter_creation__scope_is_built_from_the_arguments():
    mp, r = provider()
    m = mp.get_meter("lib", "1.2.3", "https://opentelemetry.io/schemas/1.21.0", {"k": "v"})
    assert (m.name, m.version, m.schema_url) == ("lib", "1.2.3", "https://opentelemetry.io/schemas/1.21.0")
    m.create_counter("c").add(1)
    (sm,) = r.get_metrics_data().resource_metrics[0].scope_metrics
    assert (sm.scope.name, sm.scope.version, sm.scope.schema_url) == (
        "lib", "1.2.3", "https://opentelemetry.io/schemas/1.21.0")
    assert dict(sm.scope.attributes) == {"k": "v"}
    assert sm.schema_url == "https://opentelemetry.io/schemas/1.21.0"


def test_meter_creation__same_arguments_same_meter_distinct_otherwise():
    mp, _ = provider()
    assert mp.get_meter("a", "1") is mp.get_meter("a", "1")
    assert mp.get_meter("a", "1") is not mp.get_meter("a", "2")
    assert mp.get_meter("a", "1", attributes={"x": 1}) is not mp.get_meter("a", "1")


@pytest.mark.parametrize("bad", [None, ""])
def test_meter_creation__invalid_name_returns_working_meter_and_logs(bad, caplog):
    mp, r = provider()
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        m = mp.get_meter(bad)
    assert m is not None
    assert warnings_about(caplog, "invalid meter name")
    m.create_counter("c").add(3)
    assert points(r, "c")[0].value == 3
    # The original value is kept (None is exported as the empty string, as OTLP has no null name).
    assert m.name == (bad or "")


# -- Configuration ---------------------------------------------------------------

def test_configuration__owned_by_provider_and_applies_to_meters_obtained_before():
    reader = InMemoryMetricReader()
    view = View(instrument_name="c", name="renamed")
    mp = otelmetrics.MeterProvider(metric_readers=[reader], views=[view], shutdown_on_exit=False)
    meter = mp.get_meter("m")
    meter.create_counter("c").add(1)
    assert set(points(reader)) == {"renamed"}
    with pytest.raises(ValueError):  # a reader is owned by one provider
        otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)


# -- MeterConfigurator -----------------------------------------------------------

def test_meterconfigurator__called_with_the_meter_scope():
    seen = []
    mp, _ = provider(meter_configurator=lambda scope: seen.append(scope) or otelmetrics.MeterConfig())
    mp.get_meter("lib", "2.0", "https://s", {"a": 1})
    (scope,) = seen
    assert (scope.name, scope.version, scope.schema_url, dict(scope.attributes)) == ("lib", "2.0", "https://s", {"a": 1})


def test_meterconfigurator__meterconfig_enabled_false_disables():
    mp, r = provider(meter_configurator=lambda scope: otelmetrics.MeterConfig(enabled=scope.name != "off"))
    mp.get_meter("off").create_counter("a").add(1)
    mp.get_meter("on").create_counter("b").add(1)
    assert set(points(r)) == {"b"}


def test_meterconfigurator__none_means_default_config():
    mp, r = provider(meter_configurator=lambda scope: None)
    c = mp.get_meter("m").create_counter("c")
    c.add(1)
    assert c.enabled()
    assert points(r, "c")[0].value == 1


# -- Shutdown --------------------------------------------------------------------

def test_shutdown__returns_status_and_second_call_fails(caplog):
    mp, _ = provider()
    assert mp.shutdown() is True
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        assert mp.shutdown() is False
    assert warnings_about(caplog, "already shut down")


def test_shutdown__subsequent_get_meter_returns_working_noop():
    mp, r = provider()
    mp.shutdown()
    m = mp.get_meter("late")
    assert isinstance(m, api.Meter)
    calls = []
    c = m.create_counter("c")
    h = m.create_histogram("h")
    g = m.create_gauge("g")
    m.create_observable_gauge("og", [lambda o: calls.append(1) or [Observation(1)]])
    c.add(1, {"a": 1})
    h.record(1.5)
    g.set(2)
    assert not c.enabled() and not h.enabled()
    assert r.get_metrics_data() is None
    assert calls == []


def test_shutdown__invokes_shutdown_on_every_reader_and_exporter():
    e1, e2 = RecordingExporter(), RecordingExporter()
    r1, r2 = periodic(e1), periodic(e2)
    r3 = InMemoryMetricReader()
    mp = otelmetrics.MeterProvider(metric_readers=[r1, r2, r3], shutdown_on_exit=False)
    mp.get_meter("m").create_counter("c").add(1)
    assert mp.shutdown() is True
    assert (e1.shutdowns, e2.shutdowns) == (1, 1)
    assert len(e1.exports) == 1 and len(e2.exports) == 1    # final collection exported
    assert r3.get_metrics_data() is None                   # the in-memory reader is shut down too


@pytest.mark.parametrize("operation", ["shutdown", "force_flush"])
def test_shutdown_and_forceflush__complete_within_timeout_when_an_export_hangs(operation):
    block = threading.Event()
    exporter = RecordingExporter(block=block)
    mp = otelmetrics.MeterProvider(metric_readers=[periodic(exporter)], shutdown_on_exit=False)
    mp.get_meter("m").create_counter("c").add(1)
    t0 = time.monotonic()
    ok = getattr(mp, operation)(timeout_millis=200)
    elapsed = time.monotonic() - t0
    block.set()
    assert ok is False and elapsed < 2.0
    if operation == "force_flush":
        mp.shutdown(timeout_millis=500)


def test_shutdown__reports_failure_of_a_reader():
    class Failing(InMemoryMetricReader):
        def shutdown(self, timeout_millis=30_000, **kw):
            raise RuntimeError("boom")

    mp = otelmetrics.MeterProvider(metric_readers=[Failing(), InMemoryMetricReader()], shutdown_on_exit=False)
    assert mp.shutdown() is False


# -- ForceFlush ------------------------------------------------------------------

def test_forceflush__invokes_forceflush_on_every_reader():
    e1, e2 = RecordingExporter(), RecordingExporter()
    mp = otelmetrics.MeterProvider(metric_readers=[periodic(e1), periodic(e2)], shutdown_on_exit=False)
    mp.get_meter("m").create_counter("c").add(1)
    assert mp.force_flush() is True
    assert (len(e1.exports), len(e2.exports)) == (1, 1)
    assert (e1.flushes, e2.flushes) == (1, 1)
    mp.shutdown()


def test_forceflush__error_status_when_an_export_fails():
    ok_exp, bad_exp = RecordingExporter(), RecordingExporter(result=MetricExportResult.FAILURE)
    mp = otelmetrics.MeterProvider(metric_readers=[periodic(ok_exp), periodic(bad_exp)], shutdown_on_exit=False)
    mp.get_meter("m").create_counter("c").add(1)
    assert mp.force_flush() is False
    assert len(ok_exp.exports) == 1      # the other reader still flushed
    mp.shutdown()


def test_forceflush__after_shutdown_reports_failure():
    mp = otelmetrics.MeterProvider(metric_readers=[periodic(RecordingExporter())], shutdown_on_exit=False)
    mp.shutdown()
    assert mp.force_flush() is False
