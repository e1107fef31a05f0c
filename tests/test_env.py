"""The OpenTelemetry SDK environment variables: defaults, precedence, invalid values; and
the process's fork hooks (``call_in_child_after_fork``)."""
import gc
import logging
import subprocess
import sys
import textwrap
import urllib.parse

import pytest
from hypothesis import given, strategies as st
from opentelemetry import metrics as api
from opentelemetry.sdk import metrics as sdk

import otelmetrics
from otelmetrics import _env as config
from otelmetrics.export import otlp_settings
from otelmetrics.export import _exporter as prefs
from otelmetrics.export import AggregationTemporality as T
from otelmetrics.export.otlp import OTLPMetricExporter
from otelmetrics.view import ExplicitBucketHistogramAggregation, ExponentialBucketHistogramAggregation
from _util import NEUTRAL_CWD, run_in_child, needs_fork

OTEL_VARS = [
    "OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_METRICS_EXPORTER",
    "OTEL_METRIC_EXPORT_INTERVAL", "OTEL_METRIC_EXPORT_TIMEOUT",
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION",
] + ["OTEL_EXPORTER_OTLP_%s%s" % (signal, what) for signal in ("", "METRICS_") for what in (
    "ENDPOINT", "HEADERS", "TIMEOUT", "COMPRESSION", "CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE", "PROTOCOL")]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def warnings(caplog):
    caplog.set_level(logging.WARNING, logger="otelmetrics")
    return caplog


def test_defaults():
    s = otlp_settings.otlp_settings()
    assert s == otlp_settings.OTLPSettings(endpoint="http://localhost:4318/v1/metrics", headers={}, timeout=10.0,
                                    compression="none", protocol="http/protobuf")
    assert config.metrics_exporters() == ["otlp"]
    assert config.export_interval_millis() == 60_000 and config.export_timeout_millis() == 30_000
    assert config.sdk_disabled() is False


@pytest.mark.parametrize("env, expected", [
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "http://collector:4318/v1/metrics"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4318/"}, "https://collector:4318/v1/metrics"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://gw/otlp"}, "http://gw/otlp/v1/metrics"),
    ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:4318/custom"}, "http://c:4318/custom"),
    ({"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://c:9/m", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://d:8"},
     "http://c:9/m"),
    ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318"}, "http://collector:4318/v1/metrics"),
])
def test_endpoint_from_the_environment(monkeypatch, env, expected):
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert otlp_settings.otlp_settings().endpoint == expected
    assert OTLPMetricExporter().endpoint == expected


def test_explicit_endpoint_is_used_as_is(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://env:1/x")
    assert OTLPMetricExporter("https://given:4318/v1/metrics").endpoint == "https://given:4318/v1/metrics"


@pytest.mark.parametrize("bad", ["ftp://x/v1/metrics", "http://:80/", "http://host:notaport/"])
def test_bad_endpoint_variable_warns_and_falls_back(monkeypatch, warnings, bad):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", bad)
    assert otlp_settings.otlp_settings().endpoint == "http://localhost:4318/v1/metrics"
    assert "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT" in warnings.text


def test_bad_explicit_arguments_fail_fast():
    for kwargs in ({"endpoint": "ftp://x"}, {"compression": "zstd"}, {"protocol": "grpc"}, {"timeout": 0},
                   {"max_export_batch_size": 0}, {"certificate_file": "/nonexistent/ca.pem"}):
        with pytest.raises(ValueError):
            OTLPMetricExporter(**kwargs)
    with pytest.raises(TypeError):   # the reference's positional order would be ambiguous
        OTLPMetricExporter("http://x:1/v1/metrics", "/some/cert.pem")


def test_headers_merge_signal_specific_first_and_explicit_on_top(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "generic=1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "Api-Key=s%3Dcret , x-scope=a%20b,,")
    assert otlp_settings.otlp_settings().headers == {"api-key": "s=cret", "x-scope": "a b"}
    assert otlp_settings.otlp_settings(headers={"X-Scope": "given"}).headers == {"api-key": "s=cret", "x-scope": "given"}


def test_bad_header_items_are_skipped_with_a_warning(monkeypatch, warnings):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "good=1,novalue,=x,bad key=2")
    assert otlp_settings.otlp_settings().headers == {"good": "1"}
    assert "OTEL_EXPORTER_OTLP_HEADERS" in warnings.text and "item 2" in warnings.text


def test_unsendable_header_items_are_dropped_with_a_warning_naming_the_variable(monkeypatch, warnings):
    """A value beyond Latin-1 or with a NUL after percent-decoding, and a name that is no
    HTTP token, were kept: every export then failed as a retryable "connection error"."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_HEADERS",
                       "good=caf%C3%A9,x-tenant=%E2%82%AC,k=a%00b,k2=a%0Ab,bad%20key=v,k%C3%A9y=v,a%2Fb=v")
    assert otlp_settings.otlp_settings().headers == {"good": "caf\u00e9"}
    assert warnings.text.count("OTEL_EXPORTER_OTLP_METRICS_HEADERS") == 6
    assert "x-tenant" in warnings.text and "\u20ac" not in warnings.text   # names, never values


def test_a_header_warning_never_shows_the_value(monkeypatch, warnings):
    """A header's value is often a secret (an API key): a dropped one is named, not shown."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "api-key=s3cr3t%00x,novalue")
    assert otlp_settings.otlp_settings().headers == {}
    assert "api-key" in warnings.text and "s3cr3t" not in warnings.text and "item 2" in warnings.text


@pytest.mark.parametrize("headers", [{"x-tenant": "\u20ac"}, {"k": "a\x00b"}, {"k": "a\nb"}, {"k": "a\rb"},
                                     {"bad key": "v"}, {"k\u00e9y": "v"}, {"a:b": "v"}, {"": "v"}])
def test_unsendable_explicit_headers_fail_fast(headers):
    with pytest.raises(ValueError, match="OTLPMetricExporter header .*: the (name|value)"):
        OTLPMetricExporter("http://127.0.0.1:9/v1/metrics", headers=headers)


def test_headers_that_are_no_mapping_fail_fast_with_a_message():
    with pytest.raises(ValueError, match="headers: expected a mapping"):
        OTLPMetricExporter("http://127.0.0.1:9/v1/metrics", headers="api-key=secret")


@pytest.mark.parametrize("var", ["OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT"])
def test_timeout_variable_is_milliseconds(monkeypatch, var):
    monkeypatch.setenv(var, "2500")
    assert otlp_settings.otlp_settings().timeout == 2.5
    assert otlp_settings.otlp_settings(timeout=7).timeout == 7


def test_timeout_that_looks_like_seconds_gets_a_warning(monkeypatch, warnings):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "10")
    assert otlp_settings.otlp_settings().timeout == 0.01
    assert "milliseconds" in warnings.text and "10000" in warnings.text


@pytest.mark.parametrize("suffix, value, field, default", [
    ("TIMEOUT", "soon", "timeout", 10.0),
    ("TIMEOUT", "-5", "timeout", 10.0),
    ("COMPRESSION", "zstd", "compression", "none"),
    ("PROTOCOL", "grpc", "protocol", "http/protobuf"),
    ("PROTOCOL", "http/xml", "protocol", "http/protobuf"),
    ("CERTIFICATE", "/nonexistent/ca.pem", "certificate_file", None),
])
def test_invalid_otlp_variables_warn_by_name_and_use_the_default(monkeypatch, warnings, suffix, value, field, default):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_" + suffix, value)
    assert getattr(otlp_settings.otlp_settings(), field) == default
    assert "OTEL_EXPORTER_OTLP_METRICS_" + suffix in warnings.text


@pytest.mark.parametrize("suffix, value, field, expected", [
    ("COMPRESSION", "GZIP", "compression", "gzip"),
    ("PROTOCOL", "http/json", "protocol", "http/json"),
])
def test_generic_and_signal_specific_choices(monkeypatch, suffix, value, field, expected):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_" + suffix, value)
    assert getattr(otlp_settings.otlp_settings(), field) == expected
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_" + suffix, "none" if suffix == "COMPRESSION" else "http/protobuf")
    assert getattr(otlp_settings.otlp_settings(), field) != expected   # the signal-specific one wins
    assert getattr(otlp_settings.otlp_settings(**{field: value}), field) == expected   # explicit wins over both


def test_certificate_files_from_the_environment(monkeypatch, tmp_path):
    files = {}
    for suffix in ("CERTIFICATE", "CLIENT_KEY", "CLIENT_CERTIFICATE"):
        files[suffix] = tmp_path / suffix
        files[suffix].write_text("x")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(files["CERTIFICATE"]))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY", str(files["CLIENT_KEY"]))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", str(files["CLIENT_CERTIFICATE"]))
    s = otlp_settings.otlp_settings()
    assert (s.certificate_file, s.client_key_file, s.client_certificate_file) == (
        str(files["CERTIFICATE"]), str(files["CLIENT_KEY"]), str(files["CLIENT_CERTIFICATE"]))


# ---------------------------------------------------------------- temporality and aggregation

KINDS = [api.Counter, api.UpDownCounter, api.Histogram, api.ObservableCounter, api.ObservableUpDownCounter,
         api.ObservableGauge]
C, D = T.CUMULATIVE, T.DELTA


@pytest.mark.parametrize("value, expected", [
    (None, [C, C, C, C, C, C]),
    ("cumulative", [C, C, C, C, C, C]),
    ("DELTA", [D, C, D, D, C, C]),
    ("lowmemory", [D, C, D, C, C, C]),
])
def test_temporality_preference_maps_as_the_reference(monkeypatch, value, expected):
    if value:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", value)
    assert [prefs.preferred_temporality()[k] for k in KINDS] == expected
    # The reference's own mapping agrees (its keys are its instrument classes); the OTLP
    # exporter of opentelemetry-sdk 1.41 (the newest for Python 3.9) has no such module.
    _get_temporality = pytest.importorskip(
        "opentelemetry.exporter.otlp.common._aggregation",
        reason="no oracle: this OTLP exporter (1.41, the newest for Python 3.9) has no "
        "_get_temporality")._get_temporality

    ref = _get_temporality(None)
    assert [int(ref[k]) for k in (sdk.Counter, sdk.UpDownCounter, sdk.Histogram, sdk.ObservableCounter,
                                  sdk.ObservableUpDownCounter, sdk.ObservableGauge)] == [int(t) for t in expected]


def test_invalid_temporality_preference_warns_and_is_cumulative(monkeypatch, warnings):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "sometimes")
    assert set(prefs.preferred_temporality().values()) == {C}
    assert "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE" in warnings.text


def test_explicit_temporality_beats_the_variable_whatever_class_keys_it(monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    got = prefs.preferred_temporality({otelmetrics.Counter: C, sdk.Histogram: C})
    assert got[api.Counter] == C and got[api.Histogram] == C and got[api.ObservableCounter] == D
    exp = OTLPMetricExporter(preferred_temporality={otelmetrics.Counter: C})
    assert exp._preferred_temporality[api.Counter] == C


def test_default_histogram_aggregation(monkeypatch, warnings):
    assert isinstance(prefs.preferred_aggregation()[api.Histogram], ExplicitBucketHistogramAggregation)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "base2_exponential_bucket_histogram")
    assert isinstance(prefs.preferred_aggregation()[api.Histogram], ExponentialBucketHistogramAggregation)
    given = ExplicitBucketHistogramAggregation([1.0, 2.0])
    assert prefs.preferred_aggregation({otelmetrics.Histogram: given})[api.Histogram] is given
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "linear")
    assert isinstance(prefs.preferred_aggregation()[api.Histogram], ExplicitBucketHistogramAggregation)
    assert "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION" in warnings.text


def test_the_reader_accepts_the_exporter_preferences(monkeypatch):
    """The periodic reader adopts the mapping (keyed by the API's classes) as given."""
    from otelmetrics.export import PeriodicExportingMetricReader

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "base2_exponential_bucket_histogram")
    reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=60_000)
    try:
        assert reader._temporality_for(otelmetrics.Counter) == D
        assert reader._temporality_for(otelmetrics.UpDownCounter) == C
        assert isinstance(reader._aggregation_for(otelmetrics.Histogram), ExponentialBucketHistogramAggregation)
    finally:
        reader.shutdown()


# ---------------------------------------------------------------- general SDK variables

@pytest.mark.parametrize("value, expected", [("true", True), ("TRUE", True), ("false", False), ("", False)])
def test_sdk_disabled(monkeypatch, value, expected):
    monkeypatch.setenv("OTEL_SDK_DISABLED", value)
    assert config.sdk_disabled() is expected


def test_sdk_disabled_invalid(monkeypatch, warnings):
    monkeypatch.setenv("OTEL_SDK_DISABLED", "yes please")
    assert config.sdk_disabled() is False
    assert "OTEL_SDK_DISABLED" in warnings.text


@pytest.mark.parametrize("value, expected", [
    ("otlp", ["otlp"]), ("console", ["console"]), ("none", []), ("console, OTLP", ["console", "otlp"]),
    ("otlp,otlp", ["otlp"]), ("prometheus,console", ["console"]), ("zipkin", ["otlp"]),
])
def test_metrics_exporter_list(monkeypatch, value, expected):
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", value)
    assert config.metrics_exporters() == expected


@pytest.mark.parametrize("var, reader, default", [
    ("OTEL_METRIC_EXPORT_INTERVAL", config.export_interval_millis, 60_000),
    ("OTEL_METRIC_EXPORT_TIMEOUT", config.export_timeout_millis, 30_000),
])
def test_export_interval_and_timeout(monkeypatch, warnings, var, reader, default):
    monkeypatch.setenv(var, "1500")
    assert reader() == 1500 and reader(250) == 250
    for bad in ("0", "-1", "fast", "inf"):
        monkeypatch.setenv(var, bad)
        assert reader() == default
    assert var in warnings.text


# -- percent-decoding, without importing urllib.parse -----------------------------------

_ESCAPE_PIECES = st.one_of(
    st.sampled_from(["%", "%2", "%zz", "%41", "%e2%82%ac", "%E2%82", "%C3", "%A9", "%ff", "%20", "%2C", "%3D",
                     "=", ",", " ", "a", "Z", "9", "\u00e9", "\u20ac", "\ud83d\ude00"]),
    st.text(max_size=3))


@given(st.lists(_ESCAPE_PIECES, max_size=12).map("".join))
def test_unquote_is_urllib_unquote(text):
    assert config.unquote(text) == urllib.parse.unquote(text)


def test_unquote_examples():
    for text in ("", "plain", "a%20b", "%E2%82%AC", "%e2%82", "%E2x%82", "%zz%4", "100%", "\u00e9%C3%A9",
                 "%F0%9F%98%80", "%ED%A0%80"):
        assert config.unquote(text) == urllib.parse.unquote(text), text


# -- fork hooks -----------------------------------------------------------------------

class _Resettable:
    def __init__(self, name, log):
        self.name, self.log = name, log
        config.call_in_child_after_fork(self, "reset")

    def reset(self):
        if self.name == "fails":
            raise RuntimeError("cannot reset")
        self.log.append(self.name)


@needs_fork
def test_fork_hooks_run_in_the_child_in_the_order_asked_and_one_failure_stops_none():
    log = []
    keep = [_Resettable(name, log) for name in ("first", "fails", "last")]
    status, got = run_in_child(lambda: log)
    assert status == "ok" and got == ["first", "last"]
    assert log == [] and len(keep) == 3          # the parent runs none


def test_fork_hooks_of_collected_objects_leave_the_registry():
    gc.collect()
    before = len(config._in_child)
    made = [_Resettable(str(i), []) for i in range(1000)]
    assert len(config._in_child) == before + 1000
    del made
    gc.collect()
    assert len(config._in_child) == before


def test_one_process_hook_however_many_providers_and_exporters_a_program_makes():
    # os.register_at_fork has no unregister: a hook per object would grow without bound.
    script = textwrap.dedent("""
        import gc, io, os
        calls = []
        real = os.register_at_fork
        os.register_at_fork = lambda **kw: (calls.append(kw), real(**kw))
        import otelmetrics
        from otelmetrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
        from otelmetrics.export.otlp import OTLPMetricExporter
        from otelmetrics.export.prometheus import PrometheusMetricReader
        from otelmetrics import _env
        before = len(_env._in_child)
        for _ in range(50):
            readers = [PeriodicExportingMetricReader(ConsoleMetricExporter(out=io.StringIO())),
                       PeriodicExportingMetricReader(OTLPMetricExporter("http://127.0.0.1:9/v1/metrics",
                                                                     timeout=0.05)),
                       PrometheusMetricReader()]
            mp = otelmetrics.MeterProvider(metric_readers=readers)
            mp.get_meter("m").create_counter("c").add(1)
            mp.shutdown()
        del mp, readers
        gc.collect()
        ours = [f for kw in calls for f in kw.values()
                if (getattr(f, "__module__", None) or "").startswith("otelmetrics")]   # a lock's method: None
        print(len(ours), len(_env._in_child) - before)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=NEUTRAL_CWD, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    hooks, left = map(int, out.stdout.split())
    assert hooks == 1
    assert left == 0       # each provider and exporter asked for one; the collected ones are gone
