"""OTLPMetricExporter against a real OTLP/HTTP receiver on 127.0.0.1: what arrives,
and how the exporter reacts to the status codes of the OTLP/HTTP specification."""
import contextlib
import logging
import shutil
import threading
import time

import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as RefExporter
from opentelemetry.sdk.metrics.export import InMemoryMetricReader as RefReader
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation as RefExpo
from opentelemetry.sdk.metrics.view import View as RefView
from opentelemetry.sdk.resources import Resource as SDKResource

from opentelemetry import trace
from opentelemetry.metrics import Observation
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

import otelmetrics
from otelmetrics.export import InMemoryMetricReader, MetricExportResult
from otelmetrics._native import encode_request
from otelmetrics.export.otlp import OTLPMetricExporter
from otelmetrics.export.otlp_json import encode_request_json
from otelmetrics.view import ExponentialBucketHistogramAggregation, View
from _sdk_helpers import reference_provider, reference_takes_list_attribute_values
from native.test_otlp_wire import _snapshot_backed, _with_points, canonical, json_to_proto, sdk_data
from export.test_otlp_queue import DELTA, Gateway, summed
from otlp_receiver import OTLPServer, Reply, TinyCA, free_port
from faulty_servers import RawServer
from _util import run_in_child, needs_fork

SUCCESS, FAILURE = MetricExportResult.SUCCESS, MetricExportResult.FAILURE


@pytest.fixture
def server():
    with OTLPServer() as s:
        yield s


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    # Real backoff starts at 1 s; the retry logic is the same at 20 ms.
    monkeypatch.setattr(OTLPMetricExporter, "_backoff_base", 0.02)
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_COMPRESSION",
                 "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)


def exporter(server, **kw):
    kw.setdefault("timeout", 5)
    return OTLPMetricExporter(server.url, **kw)


SPAN = SpanContext(trace_id=0x0123456789ABCDEF0123456789ABCDEF, span_id=0x0123456789ABCDEF,
                   is_remote=False, trace_flags=TraceFlags(TraceFlags.SAMPLED))


# A sequence attribute value: a list, as users write it; a tuple (the same OTLP array) where
# the reference cannot take a list (opentelemetry-sdk 1.41, the newest for Python 3.9).
TAGS = ["a", "b"] if reference_takes_list_attribute_values() else ("a", "b")


def record_everything(provider, in_span=False):
    """Measurements on every instrument kind. With ``in_span`` most are made in a sampled
    span and so get exemplars: one measurement per series or bucket, so that either
    SDK's reservoir keeps the same one."""
    meter = provider.get_meter("test.scope", "0.1", schema_url="https://opentelemetry.io/schemas/1.21.0")
    c = meter.create_counter("requests", unit="{request}", description="served")
    for i in range(5):
        c.add(i + 1, {"route": "/r%d" % (i % 2), "ok": True, "code": 200, "ratio": 0.5, "tags": TAGS})
    e = meter.create_histogram("size", unit="By")
    # Outside the span: the reference offers no exemplar for a zero in an exponential
    # histogram (it returns before its reservoir), which the specification does not ask.
    e.record(0)
    with trace.use_span(NonRecordingSpan(SPAN)) if in_span else contextlib.nullcontext():
        meter.create_counter("spanned").add(7, {"a": "b"})
        meter.create_up_down_counter("queue").add(-3.5, {"q": "x"})
        h = meter.create_histogram("latency", unit="ms")
        for v in (0.0, 3, 7.5, 99.0, 1234.0):
            h.record(v, {"route": "/r"})
        for v in (1, 2, 3.5, 1024, 0.001):
            e.record(v)
        meter.create_gauge("temp").set(21.5, {"room": "a"})
        meter.create_observable_counter("ticks", callbacks=[lambda o: [Observation(42, {"cpu": 0})]])
        meter.create_observable_gauge("load", callbacks=[lambda o: [Observation(0.75)]])
        meter.create_observable_up_down_counter("conns", callbacks=[lambda o: [Observation(-2)]])


EXPO_VIEW = dict(instrument_name="size")


def collect_ours(resource=None, in_span=False):
    reader = InMemoryMetricReader()
    provider = otelmetrics.MeterProvider(
        metric_readers=[reader], resource=resource,
        views=[View(aggregation=ExponentialBucketHistogramAggregation(), **EXPO_VIEW)])
    record_everything(provider, in_span)
    data = reader.get_metrics_data()
    provider.shutdown()
    return data


def comparable(request):
    """The request without timestamps and SDK identity; metrics in name order."""
    req = type(request)()
    req.CopyFrom(request)
    for rm in req.resource_metrics:
        keep = [kv for kv in rm.resource.attributes if not kv.key.startswith("telemetry.sdk.")]
        del rm.resource.attributes[:]
        rm.resource.attributes.extend(keep)
        for sm in rm.scope_metrics:
            ordered = sorted(sm.metrics, key=lambda m: m.name)
            del sm.metrics[:]
            sm.metrics.extend(ordered)
            for m in sm.metrics:
                points = getattr(m, m.WhichOneof("data")).data_points
                for p in points:
                    p.ClearField("start_time_unix_nano")
                    p.ClearField("time_unix_nano")
                    for ex in p.exemplars:
                        ex.ClearField("time_unix_nano")
                ordered = sorted(points, key=lambda p: p.SerializeToString(deterministic=True))
                del points[:]
                points.extend(ordered)
    return req


# ---------------------------------------------------------------- what arrives

def test_every_point_kind_arrives_as_collected(server):
    data = collect_ours()
    assert exporter(server).export(data) is SUCCESS
    (got,) = server.received
    assert got.path == "/v1/metrics"
    assert got.headers["content-type"] == "application/x-protobuf"
    req = got.request()
    by_name = {m.name: m for m in req.resource_metrics[0].scope_metrics[0].metrics}
    assert set(by_name) == {"requests", "spanned", "queue", "latency", "size", "temp", "ticks", "load",
                            "conns"}
    for metric in data.resource_metrics[0].scope_metrics[0].metrics:
        m = by_name[metric.name]
        kind = m.WhichOneof("data")
        points = getattr(m, kind).data_points
        assert len(points) == len(metric.data.data_points)
        for collected, sent in zip(metric.data.data_points, points):
            assert {kv.key for kv in sent.attributes} == set(collected.attributes)
            assert sent.time_unix_nano == collected.time_unix_nano
            if kind in ("sum", "gauge"):
                assert getattr(sent, sent.WhichOneof("value")) == collected.value
                assert sent.WhichOneof("value") == ("as_int" if isinstance(collected.value, int) else "as_double")
            if kind != "gauge":
                assert sent.start_time_unix_nano == collected.start_time_unix_nano
                assert getattr(m, kind).aggregation_temporality == int(metric.data.aggregation_temporality)
            if kind == "histogram":
                assert list(sent.bucket_counts) == list(collected.bucket_counts)
                assert list(sent.explicit_bounds) == list(collected.explicit_bounds)
                assert (sent.count, sent.sum, sent.min, sent.max) == (
                    collected.count, collected.sum, collected.min, collected.max)
            if kind == "exponential_histogram":
                assert (sent.count, sent.sum, sent.scale, sent.zero_count, sent.min, sent.max) == (
                    collected.count, collected.sum, collected.scale, collected.zero_count,
                    collected.min, collected.max)
                assert (sent.positive.offset, list(sent.positive.bucket_counts)) == (
                    collected.positive.offset, list(collected.positive.bucket_counts))
    assert by_name["requests"].sum.is_monotonic and not by_name["queue"].sum.is_monotonic
    assert by_name["requests"].unit == "{request}" and by_name["requests"].description == "served"
    scope = req.resource_metrics[0].scope_metrics[0]
    assert (scope.scope.name, scope.scope.version) == ("test.scope", "0.1")
    assert scope.schema_url == "https://opentelemetry.io/schemas/1.21.0"


@pytest.mark.parametrize("in_span", [False, True])
def test_same_request_as_the_reference_sdk_and_exporter(server, in_span):
    resource = SDKResource.create({"service.name": "checkout", "host.id": 7})
    ref_reader = RefReader()
    ref_provider = reference_provider(metric_readers=[ref_reader], resource=resource,
                                      views=[RefView(aggregation=RefExpo(), **EXPO_VIEW)])
    record_everything(ref_provider, in_span)
    ref_exporter = RefExporter(endpoint=server.url)
    assert ref_exporter.export(ref_reader.get_metrics_data()).name == "SUCCESS"
    ref_provider.shutdown()
    ref_exporter.shutdown()

    ours_data = collect_ours(resource, in_span)   # the reference's Resource object, accepted as is
    assert exporter(server).export(ours_data) is SUCCESS
    ref_req, our_req = (r.request() for r in server.received)
    assert comparable(our_req) == comparable(ref_req)


def test_reference_data_through_our_exporter_equals_the_reference_encoding(server):
    data = sdk_data()
    assert exporter(server).export(data) is SUCCESS
    assert server.received[0].request() == encode_metrics(data)


def test_gzip_headers_and_keep_alive(server):
    exp = exporter(server, compression="gzip", headers={"Authorization": "Bearer t", "X-Tenant": "a"})
    data = sdk_data()
    assert exp.export(data) is SUCCESS
    assert exp.export(data) is SUCCESS
    first = server.received[0]
    assert first.headers["content-encoding"] == "gzip"
    assert first.raw[:2] == b"\x1f\x8b" and len(first.raw) < len(first.body)
    assert first.headers["authorization"] == "Bearer t" and first.headers["x-tenant"] == "a"
    assert first.headers["user-agent"].startswith("otelmetrics/")
    assert first.request() == encode_metrics(data)
    assert server.connections == 1   # one kept-alive connection for both


def test_http_json_decodes_with_the_official_mapping(server):
    data = sdk_data()
    assert exporter(server, protocol="http/json").export(data) is SUCCESS
    got = server.received[0]
    assert got.headers["content-type"] == "application/json"
    assert canonical(json_to_proto(got.body)) == canonical(encode_metrics(data))


@pytest.mark.parametrize("in_span", [False, True])
def test_http_json_sends_a_collection_from_its_snapshots_as_from_its_points(server, in_span):
    data = collect_ours(in_span=in_span)
    lazy = _snapshot_backed(data)
    # Exemplars taken in the span, and exponential histograms: points, built at collection.
    assert lazy == {"conns", "load", "requests", "ticks"} | (
        set() if in_span else {"latency", "queue", "spanned", "temp"})
    assert exporter(server, protocol="http/json").export(data) is SUCCESS
    assert _snapshot_backed(data) == lazy        # the request was written from the snapshots
    body = server.received[0].body
    assert body == encode_request_json(_with_points(data))
    assert canonical(json_to_proto(body)) == canonical(ExportMetricsServiceRequest.FromString(encode_request(data)))


def test_max_export_batch_size_splits_by_points(server):
    data = sdk_data(4)   # 5 metrics, 21 points
    assert exporter(server, max_export_batch_size=8).export(data) is SUCCESS
    sizes = [sum(len(getattr(m, m.WhichOneof("data")).data_points)
                 for m in r.request().resource_metrics[0].scope_metrics[0].metrics) for r in server.received]
    assert sizes == [8, 8, 5]


def test_empty_collection_sends_nothing(server):
    from otelmetrics.export import MetricsData

    assert exporter(server).export(MetricsData([])) is SUCCESS
    assert server.received == []


# ---------------------------------------------------------------- responses and retries

def test_partial_success_is_success_and_logged(server, caplog):
    body = ExportMetricsServiceResponse(partial_success=ExportMetricsPartialSuccess(
        rejected_data_points=3, error_message="3 points too old")).SerializeToString()
    server.replies.append(Reply(200, body, {"Content-Type": "application/x-protobuf"}))
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        assert exporter(server).export(sdk_data()) is SUCCESS
    assert len(server.received) == 1
    assert "3 data point(s) rejected: 3 points too old" in caplog.text


def test_partial_success_in_json(server, caplog):
    server.replies.append(Reply(200, b'{"partialSuccess":{"rejectedDataPoints":"2","errorMessage":"dup"}}',
                                {"Content-Type": "application/json"}))
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        assert exporter(server, protocol="http/json").export(sdk_data()) is SUCCESS
    assert "2 data point(s) rejected: dup" in caplog.text


def test_503_with_retry_after_then_200(server):
    server.replies.append(Reply(503, headers={"Retry-After": "0.3"}))
    start = time.monotonic()
    assert exporter(server).export(sdk_data()) is SUCCESS
    assert len(server.received) == 2
    assert time.monotonic() - start >= 0.3   # honoured, not the 20 ms backoff


@pytest.mark.parametrize("status", [429, 502, 504])
def test_retryable_statuses_back_off_and_retry(server, status):
    server.replies += [Reply(status), Reply(status)]
    assert exporter(server).export(sdk_data()) is SUCCESS
    assert len(server.received) == 3
    assert server.received[0].body == server.received[2].body


@pytest.mark.parametrize("status", [400, 401, 404, 500])   # 413: test_otlp_faults
def test_other_statuses_fail_at_once_with_the_server_message(server, caplog, status):
    body = status_pb2.Status(code=3, message="metric name is invalid").SerializeToString()
    server.replies.append(Reply(status, body, {"Content-Type": "application/x-protobuf"}))
    with caplog.at_level(logging.ERROR, logger="otelmetrics"):
        assert exporter(server).export(sdk_data()) is FAILURE
    assert len(server.received) == 1
    assert "HTTP %d" % status in caplog.text and "metric name is invalid" in caplog.text


def test_retry_after_past_the_deadline_gives_up_without_waiting(server):
    server.replies.append(Reply(503, headers={"Retry-After": "30"}))
    start = time.monotonic()
    assert exporter(server, timeout=2).export(sdk_data()) is FAILURE
    assert time.monotonic() - start < 1.5
    assert len(server.received) == 1


def test_retries_stop_at_the_export_timeout(server):
    server.replies += [Reply(503) for _ in range(50)]
    start = time.monotonic()
    assert exporter(server).export(sdk_data(), timeout_millis=400) is FAILURE
    assert time.monotonic() - start < 1.5
    assert 2 <= len(server.received) < 50


def test_a_server_that_stalls_past_the_timeout(server):
    server.replies.append(Reply(200, delay=5))
    start = time.monotonic()
    assert exporter(server, timeout=0.5).export(sdk_data()) is FAILURE
    assert time.monotonic() - start < 2


def test_connection_refused_then_recovery():
    port = free_port()
    exp = OTLPMetricExporter("http://127.0.0.1:%d/v1/metrics" % port, timeout=0.3)
    assert exp.export(sdk_data()) is FAILURE   # nobody listens

    holder = {}

    def start_later():
        time.sleep(0.3)
        holder["server"] = OTLPServer(port)

    t = threading.Thread(target=start_later)
    t.start()
    try:
        exp = OTLPMetricExporter("http://127.0.0.1:%d/v1/metrics" % port, timeout=5)
        assert exp.export(sdk_data()) is SUCCESS   # refused, backed off, retried
    finally:
        t.join()
        holder["server"].close()
    assert len(holder["server"].received) == 1


def test_server_closing_the_kept_alive_connection_is_transparent(server):
    exp = exporter(server)
    assert exp.export(sdk_data()) is SUCCESS
    server.replies.append(Reply(200, headers={"Connection": "close"}))
    assert exp.export(sdk_data()) is SUCCESS
    assert exp.export(sdk_data()) is SUCCESS
    assert len(server.received) == 3 and server.connections == 2


@needs_fork
def test_a_child_forked_during_an_export_sends_on_a_connection_of_its_own(server):
    # At the fork the parent's thread is waiting for the server's answer: it holds the export
    # lock, and the kept-alive connection is the parent's. The child's export must take neither
    # (on the parent's socket the two processes' requests and answers would interleave).
    data = sdk_data()
    exp = exporter(server)
    assert exp.export(data) is SUCCESS                   # the parent's kept-alive connection
    server.replies.append(Reply(delay=1.5))
    results = []
    parent = threading.Thread(target=lambda: results.append(exp.export(data)))
    parent.start()
    try:
        deadline = time.monotonic() + 5
        while len(server.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        status, got = run_in_child(lambda: exp.export(data, timeout_millis=3000).name)
    finally:
        parent.join(10)
    assert status == "ok", got
    assert got == "SUCCESS" and results == [SUCCESS]
    assert exp.export(data) is SUCCESS                   # the parent's connection still works
    assert len(server.received) == 4 and all(r.request() == encode_metrics(data) for r in server.received)
    assert server.connections == 2                       # the parent's, and the child's own


@needs_fork
def test_what_the_parent_kept_before_a_fork_is_delivered_once(server):
    # A request kept during an outage is the parent's to deliver: a child sending its copy
    # too would deliver it twice (a delta batch counted twice downstream).
    kept, child, parent = (collect_ours(SDKResource.create({"service.name": name}))
                           for name in ("kept", "child", "parent"))
    exp = exporter(server, timeout=2)
    server.replies.append(Reply(503, headers={"Retry-After": "30"}))
    assert exp.export(kept) is FAILURE and exp.stats()["queued_requests"] == 1
    status, got = run_in_child(lambda: [exp.stats()["queued_requests"], exp.export(child).name])
    assert status == "ok", got
    assert got == [0, "SUCCESS"]
    assert exp.export(parent) is SUCCESS
    assert [_service(r.request()) for r in server.received] == ["kept", "child", "kept", "parent"]


def _service(request):
    (rm,) = request.resource_metrics
    return next(kv.value.string_value for kv in rm.resource.attributes if kv.key == "service.name")


@pytest.mark.parametrize("reply, shutdown_ms", [
    (Reply(503, headers={"Retry-After": "3"}), 30_000),   # sleeping before a retry: woken at once
    (Reply(200, delay=5), 200),                             # stalled in network I/O: socket cut
])
def test_shutdown_ends_a_running_export(server, reply, shutdown_ms):
    server.replies.append(reply)
    exp = exporter(server, timeout=10)
    results = []
    t = threading.Thread(target=lambda: results.append(exp.export(sdk_data())))
    t.start()
    time.sleep(0.3)
    start = time.monotonic()
    exp.shutdown(timeout_millis=shutdown_ms)
    t.join(5)
    assert results == [FAILURE] and time.monotonic() - start < 1.5
    assert exp.export(sdk_data()) is FAILURE
    assert exp.force_flush() is True


def test_unencodable_input_fails_without_raising(server):
    assert exporter(server).export(object()) is FAILURE
    assert exporter(server).export(None) is FAILURE


# ---------------------------------------------------------------- TLS

def _tls_available():
    try:
        import cryptography  # noqa: F401

        return True
    except ImportError:
        return shutil.which("openssl") is not None


needs_tls = pytest.mark.skipif(not _tls_available(), reason="neither the cryptography package nor openssl")


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    if not _tls_available():
        pytest.skip("neither the cryptography package nor openssl is available to make certificates")
    return TinyCA(str(tmp_path_factory.mktemp("tls")))


@needs_tls
def test_https_with_a_ca_file(ca):
    with OTLPServer(tls=ca.server_context(require_client_cert=False)) as s:
        exp = OTLPMetricExporter(s.url, certificate_file=ca.ca_file, timeout=5)
        assert exp.export(sdk_data()) is SUCCESS
        assert s.received[0].request() == encode_metrics(sdk_data())
        assert exp.export(sdk_data()) is SUCCESS and s.connections == 1   # kept alive over TLS too
        # Without our CA the server is not trusted: a failure, not an exception.
        assert OTLPMetricExporter(s.url, timeout=0.5).export(sdk_data()) is FAILURE


def assert_shutdown_wakes_a_stuck_export(exp):
    """An export on its own thread, stuck; shutdown(0.2 s) half a second later makes it
    fail at once, not at its timeout."""
    results = []
    t = threading.Thread(target=lambda: results.append(exp.export(sdk_data())))
    t.start()
    time.sleep(0.5)
    start = time.monotonic()
    exp.shutdown(timeout_millis=200)
    t.join(5)
    assert results == [FAILURE] and time.monotonic() - start < 1.5, (results, time.monotonic() - start)


@needs_tls
def test_shutdown_wakes_an_export_stalled_on_a_tls_connection(ca):
    with OTLPServer(tls=ca.server_context(require_client_cert=False)) as s:
        s.replies.append(Reply(200, delay=5))
        assert_shutdown_wakes_a_stuck_export(OTLPMetricExporter(s.url, certificate_file=ca.ca_file, timeout=10))


@needs_tls
def test_shutdown_wakes_an_export_stuck_in_the_tls_handshake(ca):
    """A server that accepts the connection and never answers the ClientHello."""
    def silent(conn):
        conn.recv(65536)
        time.sleep(10)

    with RawServer(silent) as server:
        assert_shutdown_wakes_a_stuck_export(OTLPMetricExporter(
            server.url.replace("http://", "https://"), certificate_file=ca.ca_file, timeout=10))


@needs_tls
def test_mutual_tls(ca):
    with OTLPServer(tls=ca.server_context(require_client_cert=True)) as s:
        exp = OTLPMetricExporter(s.url, certificate_file=ca.ca_file, client_certificate_file=ca.client_cert,
                                 client_key_file=ca.client_key, timeout=5)
        assert exp.export(sdk_data()) is SUCCESS
        no_client_cert = OTLPMetricExporter(s.url, certificate_file=ca.ca_file, timeout=0.5)
        assert no_client_cert.export(sdk_data()) is FAILURE
        assert len(s.received) == 1


@needs_tls
def test_tls_files_from_the_environment(ca, monkeypatch):
    with OTLPServer(tls=ca.server_context(require_client_cert=True)) as s:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", s.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.ca_file)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE", ca.client_cert)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", ca.client_key)
        assert OTLPMetricExporter(timeout=5).export(sdk_data()) is SUCCESS


def test_unusable_tls_files(tmp_path, monkeypatch, caplog):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ValueError):
        OTLPMetricExporter("https://127.0.0.1:1/v1/metrics", certificate_file=str(junk))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(junk))
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        OTLPMetricExporter("https://127.0.0.1:1/v1/metrics")
    assert "CERTIFICATE" in caplog.text


def test_configured_headers_replace_ours(server):
    exp = exporter(server, headers={"User-Agent": "gateway/2", "Content-Type": "application/x-protobuf"})
    assert exp.export(sdk_data()) is SUCCESS
    got = server.received[0].headers
    assert got["user-agent"] == "gateway/2"


# ---------------------------------------------------------------- with the SDK's periodic reader

def test_configure_end_to_end(server, monkeypatch):
    from opentelemetry import metrics as api

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.url[: -len("/v1/metrics")])
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge-agent")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta")
    provider = otelmetrics.configure(export_interval_millis=60_000, set_global=False)
    try:
        counter = provider.get_meter("m").create_counter("c")
        counter.add(2, {"k": "v"})
        assert provider.force_flush()
        counter.add(5, {"k": "v"})
        assert provider.force_flush()
    finally:
        provider.shutdown()
    assert api.get_meter_provider() is not provider
    sums = []
    for got in server.received:
        assert got.headers["content-encoding"] == "gzip"
        rm = got.request().resource_metrics[0]
        attrs = {kv.key: kv.value.string_value for kv in rm.resource.attributes}
        assert attrs["service.name"] == "edge-agent" and attrs["telemetry.sdk.name"] == "otelmetrics"
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                assert m.sum.aggregation_temporality == 1   # delta, from the preference
                sums += [p.as_int for p in m.sum.data_points]
    assert sums == [2, 5]


def test_an_export_that_cannot_get_the_connection_hands_its_data_over(server):
    """Another export (or a force_flush) holds the connection past this export's time: the
    batch is not dropped but handed over, and goes out first with the next export."""
    gw = Gateway(OTLPMetricExporter(server.url, timeout=0.3, preferred_temporality=DELTA))
    gw.record(3)
    first = gw.recorded.copy()
    with gw.exporter._lock:                 # held elsewhere for the whole export's time
        assert not gw.export()
    assert server.received == []
    gw.record(2)
    assert gw.export()
    assert len(server.received) == 2
    assert summed(server.received[:1]) == first and summed(server.received) == gw.recorded
    gw.close()
