"""configure(): provider, readers and exporters from the environment, registered globally."""
import pytest
from opentelemetry import metrics as api
from opentelemetry.sdk.resources import Resource as SDKResource

import otelmetrics
from otelmetrics._configure import configure
from otelmetrics.export import ConsoleMetricExporter
from otelmetrics.export.otlp import OTLPMetricExporter
from test_env import clean_env  # noqa: F401  (autouse: no OTEL_* variable leaks in)


@pytest.fixture
def built(monkeypatch):
    """configure() with the global registration captured instead of done."""
    registered = []
    monkeypatch.setattr(api, "set_meter_provider", registered.append)
    providers = []

    def build(**kw):
        provider = configure(**kw)
        providers.append(provider)
        return provider, registered

    yield build
    for p in providers:
        if hasattr(p, "shutdown"):
            p.shutdown()


def exporters_of(provider):
    return [reader._exporter for reader in provider._readers]


def test_default_is_otlp_registered_globally(built):
    provider, registered = built()
    assert isinstance(provider, otelmetrics.MeterProvider) and registered == [provider]
    (exp,) = exporters_of(provider)
    assert isinstance(exp, OTLPMetricExporter) and exp.endpoint == "http://localhost:4318/v1/metrics"


def test_exporters_from_the_environment(built, monkeypatch):
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "console,otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "1234")
    provider, _ = built()
    console, otlp = exporters_of(provider)
    assert isinstance(console, ConsoleMetricExporter)
    assert otlp.endpoint == "http://collector:4318/v1/metrics"
    assert all(r._interval_s == 1.234 for r in provider._readers)


def test_none_means_no_reader(built, monkeypatch):
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    provider, registered = built()
    assert exporters_of(provider) == [] and registered == [provider]


def test_overrides_beat_the_environment(built, monkeypatch):
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "console")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "env-name")
    provider, _ = built(exporter="otlp", endpoint="http://given:1/v1/metrics", protocol="http/json",
                        export_interval_millis=5000, resource=SDKResource({"service.name": "given", "k": 1}))
    (exp,) = exporters_of(provider)
    assert exp.endpoint == "http://given:1/v1/metrics" and exp._encoder.json
    assert provider._readers[0]._interval_s == 5.0
    attrs = provider._resource.attributes
    assert attrs["service.name"] == "given" and attrs["k"] == 1 and attrs["telemetry.sdk.name"] == "otelmetrics"


def test_exporter_instances_and_no_global(built):
    mine = ConsoleMetricExporter()
    provider, registered = built(exporter=[mine], set_global=False)
    assert exporters_of(provider) == [mine] and registered == []


def test_sdk_disabled_returns_the_noop_provider(built, monkeypatch):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    provider, registered = built()
    assert isinstance(provider, api.NoOpMeterProvider) and registered == []


def test_bad_exporter_name_fails_fast(built):
    with pytest.raises(ValueError):
        built(exporter="zipkin")


def test_otlp_headers_that_are_no_mapping_fail_fast(built):
    """configure(headers="a=b") failed with AttributeError: 'str' object has no attribute 'items'."""
    with pytest.raises(ValueError, match="headers: expected a mapping"):
        built(exporter="otlp", headers="a=b", set_global=False)
