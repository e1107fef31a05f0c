"""The OTLP/gRPC exporter (otelmetrics.export.grpc) against a real grpcio server on
127.0.0.1 that decodes every request with opentelemetry-proto's classes: the same
requests as the reference's gRPC exporter, the status codes and RetryInfo of the
OTLP/gRPC specification, the outage scenarios of the OTLP/HTTP exporter (its very
tests, run here over gRPC), TLS and mTLS, configure(), and the ImportError without
grpcio."""
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent import futures

import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceResponse,
)

from export import test_otlp_queue as test_otlp_outage
from _sdk_helpers import reference_provider
from _util import NEUTRAL_CWD, needs_fork
from otelmetrics import _env
from otelmetrics.export import MetricExportResult
from otelmetrics.export.otlp_protocol import PERMANENT, RETRYABLE, grpc_outcome
from export.test_otlp import EXPO_VIEW, collect_ours, comparable, record_everything
from export.test_otlp_queue import (  # noqa: F401  (the outage tests, run again here over gRPC)
    DELTA,
    Gateway,
    clean_env,
    summed,
    test_a_full_queue_drops_the_oldest_and_counts_them,
    test_an_empty_collection_still_sends_the_queue,
    test_connection_refused_then_recovery_delivers_everything,
    test_delta_recorded_during_an_outage_arrives_complete,
    test_permanent_failures_are_dropped_not_queued,
    test_queue_turned_off_drops_and_counts,
    test_queued_requests_go_first_and_in_order,
    test_retryable_statuses_past_the_timeout_are_queued,
    test_shutdown_tries_the_memory_queue_once,
    test_shutdown_with_the_collector_down_loses_only_the_memory_queue_and_says_so,
)
from otlp_receiver import Received, Reply, TinyCA, free_port
from native.test_otlp_wire import sdk_data

try:
    import grpc
    from otelmetrics.export.grpc import OTLPMetricExporter
except ImportError:   # the "grpc" extra is not installed (no wheel for armv7l or free-threaded CPython): the tests needing it skip
    grpc = OTLPMetricExporter = None

needs_grpc = pytest.mark.skipif(grpc is None, reason="grpcio is not installed (the 'grpc' extra; no wheel for armv7l or free-threaded CPython)")
SUCCESS, FAILURE = MetricExportResult.SUCCESS, MetricExportResult.FAILURE
SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"
METHOD = "/%s/Export" % SERVICE
# The outage tests script HTTP statuses; their gRPC counterparts for the scripted server.
# 413 and 429 are both RESOURCE_EXHAUSTED: retryable only with the RetryInfo that 429's
# Retry-After becomes.
HTTP_AS_GRPC = {200: "OK", 400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 404: "UNIMPLEMENTED",
                413: "RESOURCE_EXHAUSTED", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 502: "UNAVAILABLE",
                503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def status_details(code, seconds):
    """grpc-status-details-bin: a google.rpc.Status carrying a RetryInfo, by the official classes."""
    info = any_pb2.Any()
    info.Pack(error_details_pb2.RetryInfo(retry_delay={"seconds": int(seconds),
                                                       "nanos": int(round(seconds % 1 * 1e9))}))
    return status_pb2.Status(code=code.value[0], message="scripted", details=[info]).SerializeToString()


class GrpcServer:
    """A grpcio server with a generic handler for the Export method, scripted like
    ``test_otlp_support.OTLPServer``: ``replies`` (a ``Reply`` whose status is a
    grpc.StatusCode or an HTTP status, mapped by HTTP_AS_GRPC; a Retry-After header becomes
    a RetryInfo in grpc-status-details-bin, other headers are sent as trailers), then OK.
    ``tls``: (TinyCA, require_client_cert)."""

    def __init__(self, port=0, tls=None):
        self.replies, self.received = [], []
        self.release = threading.Event()
        self._pool = futures.ThreadPoolExecutor(4)
        self.server = grpc.server(self._pool)
        handler = grpc.unary_unary_rpc_method_handler(self._export)   # no deserializer: bytes
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Export": handler}),))
        address = "127.0.0.1:%d" % port
        if tls is None:
            self.port = self.server.add_insecure_port(address)
        else:
            ca, require_client_cert = tls
            with open(ca.server_key, "rb") as k, open(ca.server_cert, "rb") as c, open(ca.ca_file, "rb") as r:
                creds = grpc.ssl_server_credentials([(k.read(), c.read())], root_certificates=r.read(),
                                                    require_client_auth=require_client_cert)
            self.port = self.server.add_secure_port(address, creds)
        assert self.port, "could not listen on %s" % address
        self.server.start()
        self.url = "%s://127.0.0.1:%d" % ("http" if tls is None else "https", self.port)

    def _export(self, request, context):
        self.received.append(Received(METHOD, dict(context.invocation_metadata()), request, request))
        reply = self.replies.pop(0) if self.replies else Reply()
        if reply.delay:
            self.release.wait(reply.delay)
        code = reply.status if isinstance(reply.status, grpc.StatusCode) else grpc.StatusCode[HTTP_AS_GRPC[reply.status]]
        if code == grpc.StatusCode.OK:
            return reply.body
        trailers = [("grpc-status-details-bin", status_details(code, float(v))) if k.lower() == "retry-after"
                    else (k, v) for k, v in reply.headers.items()]
        context.set_trailing_metadata(trailers)
        context.abort(code, "scripted %s" % code.name)

    def close(self):
        self.release.set()
        self.server.stop(0).wait(5)
        self._pool.shutdown(wait=False)      # its idle threads would outlive the test

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def grpc_exporter_for(url, **kw):
    if grpc is None:
        pytest.skip("grpcio is not installed (the 'grpc' extra; no wheel for armv7l or free-threaded CPython)")
    kw.setdefault("timeout", 2)
    return OTLPMetricExporter(url, preferred_temporality=DELTA, **kw)


@pytest.fixture(autouse=True)
def over_grpc(monkeypatch, clean_env):
    """The outage tests, imported above, build their exporter and server through these names."""
    for name in ("OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_METRICS_INSECURE", "OTEL_METRICS_EXPORTER",
                 "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "OTEL_EXPORTER_OTLP_CERTIFICATE",
                 "OTEL_EXPORTER_OTLP_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(test_otlp_outage, "exporter_for", grpc_exporter_for)
    monkeypatch.setattr(test_otlp_outage, "OTLPServer", GrpcServer)


@pytest.fixture
def server():
    if grpc is None:
        pytest.skip("grpcio is not installed (the 'grpc' extra; no wheel for armv7l or free-threaded CPython)")
    with GrpcServer() as s:
        yield s


@pytest.fixture
def fast_backoff(monkeypatch):
    # Real backoff starts at 1 s; the retry logic is the same at 20 ms.
    monkeypatch.setattr(OTLPMetricExporter, "_backoff_base", 0.02)


def exporter(server, **kw):
    kw.setdefault("timeout", 5)
    return OTLPMetricExporter(server.url, **kw)


# ---------------------------------------------------------------- what arrives

@needs_grpc
@pytest.mark.parametrize("in_span", [False, True])
def test_same_request_as_the_reference_grpc_exporter(server, in_span):
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as RefExporter
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader as RefReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation as RefExpo
    from opentelemetry.sdk.metrics.view import View as RefView
    from opentelemetry.sdk.resources import Resource as SDKResource

    resource = SDKResource.create({"service.name": "checkout", "host.id": 7})
    ref_reader = RefReader()
    ref_provider = reference_provider(metric_readers=[ref_reader], resource=resource,
                                      views=[RefView(aggregation=RefExpo(), **EXPO_VIEW)])
    record_everything(ref_provider, in_span)
    ref_exporter = RefExporter(endpoint=server.url, insecure=True)
    assert ref_exporter.export(ref_reader.get_metrics_data()).name == "SUCCESS"
    ref_provider.shutdown()
    ref_exporter.shutdown()

    assert exporter(server).export(collect_ours(resource, in_span)) is SUCCESS
    ref, ours = server.received
    assert ours.path == ref.path == METHOD
    assert comparable(ours.request()) == comparable(ref.request())


@needs_grpc
def test_batches_are_the_reference_exporters_byte_for_byte(server):
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as RefExporter

    data = sdk_data()
    ref_exporter = RefExporter(endpoint=server.url, insecure=True, max_export_batch_size=2)
    assert ref_exporter.export(data).name == "SUCCESS"
    ref_exporter.shutdown()
    n = len(server.received)
    assert n > 1
    assert exporter(server, max_export_batch_size=2).export(data) is SUCCESS
    ref, ours = server.received[:n], server.received[n:]
    assert [r.request() for r in ours] == [r.request() for r in ref]
    assert exporter(server).export(data) is SUCCESS
    assert server.received[-1].request() == encode_metrics(data)


@needs_grpc
def test_headers_in_the_reference_forms_become_metadata(server, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-from-env=1,x-tenant=env")
    for headers in ({"Authorization": "Bearer t", "X-Tenant": "a"}, (("authorization", "Bearer t"), ("x-tenant", "a")),
                    "authorization=Bearer%20t,x-tenant=a"):
        assert exporter(server, headers=headers).export(sdk_data()) is SUCCESS
        got = server.received[-1].headers
        assert (got["authorization"], got["x-tenant"], got["x-from-env"]) == ("Bearer t", "a", "1")
        assert "otelmetrics/" in got["user-agent"] and "content-type" not in got
    with pytest.raises(ValueError, match="x tenant"):
        OTLPMetricExporter(server.url, headers=(("x tenant", "a"),))


@needs_grpc
def test_gzip_is_grpc_message_compression():
    """A byte-counting TCP relay between exporter and server: gzip shrinks what goes on the wire,
    while the server (and the queue) see plain protobuf."""
    with GrpcServer() as server, socket.create_server(("127.0.0.1", 0)) as relay:
        wire = []

        def pump(src, dst, count):
            try:
                while True:
                    chunk = src.recv(65536)
                    if not chunk:
                        break
                    count.append(len(chunk))
                    dst.sendall(chunk)
                dst.shutdown(socket.SHUT_WR)
            except OSError:   # the other side is gone: so is this direction
                pass

        def serve():
            while True:
                try:
                    client, _ = relay.accept()
                except OSError:
                    return
                upstream = socket.create_connection(("127.0.0.1", server.port))
                threading.Thread(target=pump, args=(client, upstream, wire), daemon=True).start()
                threading.Thread(target=pump, args=(upstream, client, []), daemon=True).start()

        threading.Thread(target=serve, daemon=True).start()
        url = "http://127.0.0.1:%d" % relay.getsockname()[1]
        data = sdk_data(points_per_metric=300)
        sent = {}
        for compression in ("none", grpc.Compression.Gzip):
            wire.clear()
            exp = OTLPMetricExporter(url, compression=compression, timeout=5)
            assert exp.export(data) is SUCCESS
            exp.shutdown()
            time.sleep(0.1)
            sent[compression] = sum(wire)
        assert server.received[0].body == server.received[1].body
        plain = len(server.received[0].body)
        assert sent["none"] > plain > 3 * sent[grpc.Compression.Gzip]
    with pytest.raises(ValueError, match="Deflate"):
        OTLPMetricExporter(url, compression=grpc.Compression.Deflate)


# ---------------------------------------------------------------- status codes and retries

@needs_grpc
@pytest.mark.parametrize("code", ["UNAVAILABLE", "CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE",
                                  "DATA_LOSS"])
def test_retryable_codes_are_retried_then_delivered(server, fast_backoff, code):
    server.replies.append(Reply(grpc.StatusCode[code]))
    exp = exporter(server)
    assert exp.export(sdk_data()) is SUCCESS
    assert len(server.received) == 2 and server.received[0].body == server.received[1].body
    assert exp.stats()["requests_sent"] == 1


@needs_grpc
@pytest.mark.parametrize("code", ["INVALID_ARGUMENT", "UNAUTHENTICATED", "PERMISSION_DENIED", "NOT_FOUND",
                                  "UNIMPLEMENTED", "INTERNAL", "RESOURCE_EXHAUSTED"])
def test_other_codes_fail_at_once(server, fast_backoff, caplog, code):
    server.replies.append(Reply(grpc.StatusCode[code]))
    exp = exporter(server)
    with caplog.at_level(logging.ERROR, logger="otelmetrics"):
        assert exp.export(sdk_data()) is FAILURE
    assert len(server.received) == 1
    assert exp.stats()["requests_rejected"] == 1 and exp.stats()["queued_requests"] == 0
    assert "scripted %s" % code in caplog.text


@needs_grpc
@pytest.mark.parametrize("code", ["UNAVAILABLE", "RESOURCE_EXHAUSTED"])
def test_retry_info_delay_is_honoured(server, monkeypatch, code):
    # The backoff (about 0.02 s here) is the floor of every delay; the server's longer
    # RetryInfo delay must lengthen it.
    monkeypatch.setattr(OTLPMetricExporter, "_backoff_base", 0.02)
    server.replies.append(Reply(grpc.StatusCode[code], headers={"Retry-After": "0.4"}))
    exp = exporter(server)
    start = time.monotonic()
    assert exp.export(sdk_data()) is SUCCESS
    assert 0.4 <= time.monotonic() - start < 3
    assert len(server.received) == 2


@needs_grpc
def test_retry_info_alone_in_the_trailer_the_reference_reads(server, monkeypatch):
    monkeypatch.setattr(OTLPMetricExporter, "_backoff_base", 0.02)
    info = error_details_pb2.RetryInfo(retry_delay={"nanos": 400_000_000}).SerializeToString()
    server.replies.append(Reply(grpc.StatusCode.UNAVAILABLE, headers={"google.rpc.retryinfo-bin": info}))
    start = time.monotonic()
    assert exporter(server).export(sdk_data()) is SUCCESS
    assert 0.4 <= time.monotonic() - start < 3         # the server's delay, not the 0.02 s backoff
    assert len(server.received) == 2


def test_grpc_outcome_reads_codes_and_retry_info_without_a_protobuf_runtime():
    codes = {name: number for number, name in enumerate((
        "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
        "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
        "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"))}
    retryable = {"CANCELLED", "DEADLINE_EXCEEDED", "ABORTED", "OUT_OF_RANGE", "UNAVAILABLE", "DATA_LOSS"}
    for name, number in codes.items():
        if number:
            assert grpc_outcome(number, name, "why", {}).kind == (RETRYABLE if name in retryable else PERMANENT)

    class Code:   # what status_details needs of a grpc.StatusCode
        value = (8, "resource exhausted")

    details = status_details(Code, 2.5)
    out = grpc_outcome(8, "RESOURCE_EXHAUSTED", "slow down", {"grpc-status-details-bin": details})
    assert (out.kind, out.retry_after) == (RETRYABLE, 2.5) and "slow down" in out.detail
    assert grpc_outcome(14, "UNAVAILABLE", "", {"grpc-status-details-bin": b"\xff\xff"}).retry_after is None
    partial = ExportMetricsServiceResponse(partial_success=ExportMetricsPartialSuccess(
        rejected_data_points=3, error_message="too old")).SerializeToString()
    assert grpc_outcome(0, "OK", "", {}, partial).detail == "3 data point(s) rejected: too old"


@needs_grpc
def test_partial_success_is_logged(server, caplog):
    body = ExportMetricsServiceResponse(partial_success=ExportMetricsPartialSuccess(
        rejected_data_points=2, error_message="stale points")).SerializeToString()
    server.replies.append(Reply(grpc.StatusCode.OK, body=body))
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        assert exporter(server).export(sdk_data()) is SUCCESS
    assert "partial success" in caplog.text and "2 data point(s) rejected: stale points" in caplog.text


@needs_grpc
def test_shutdown_aborts_a_call_in_progress(server):
    server.replies.append(Reply(grpc.StatusCode.OK, delay=10))
    exp = exporter(server, timeout=10)
    results = []
    thread = threading.Thread(target=lambda: results.append(exp.export(sdk_data())))
    thread.start()
    while not server.received:
        time.sleep(0.01)
    start = time.monotonic()
    exp.shutdown(timeout_millis=200)
    thread.join(5)
    assert results == [FAILURE] and time.monotonic() - start < 2


@needs_grpc
def test_a_spool_written_over_http_with_gzip_is_delivered_over_grpc(server, tmp_path):
    dead = "http://127.0.0.1:%d/v1/metrics" % free_port()
    before = Gateway(test_otlp_outage.OTLPMetricExporter(dead, preferred_temporality=DELTA, timeout=1,
                                                         compression="gzip", spool_dir=str(tmp_path)))
    before.record(3)
    assert not before.export()
    before.close()
    after = Gateway(grpc_exporter_for(server.url, spool_dir=str(tmp_path)))
    after.record(1)
    assert after.export()
    assert summed(server.received[:1]) == before.recorded and summed(server.received[1:]) == after.recorded
    after.close()


# ---------------------------------------------------------------- endpoint, TLS

@needs_grpc
def test_endpoint_and_insecure_resolution(monkeypatch):
    assert OTLPMetricExporter().endpoint == "http://localhost:4317"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert OTLPMetricExporter().endpoint == "http://collector:4317"   # no /v1/metrics for gRPC
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "collector:9000")
    assert OTLPMetricExporter().endpoint == "https://collector:9000"   # no scheme: TLS unless insecure
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    assert OTLPMetricExporter().endpoint == "http://collector:9000"
    assert OTLPMetricExporter(insecure=False).endpoint == "https://collector:9000"
    assert OTLPMetricExporter("https://c:1", insecure=True).endpoint == "https://c:1"   # the scheme decides
    with pytest.raises(ValueError, match="https://"):
        OTLPMetricExporter("http://c:1", insecure=False)
    assert OTLPMetricExporter("[::1]:4317", insecure=True)._transport._target == "[::1]:4317"


@pytest.fixture(scope="module")
def ca(tmp_path_factory):
    from export.test_otlp import _tls_available

    if grpc is None:
        pytest.skip("grpcio is not installed (the 'grpc' extra; no wheel for armv7l or free-threaded CPython)")
    if not _tls_available():
        pytest.skip("neither the cryptography package nor openssl is available to make certificates")
    return TinyCA(str(tmp_path_factory.mktemp("tls")))


def test_tls_with_a_ca_file_or_credentials(ca):
    with GrpcServer(tls=(ca, False)) as s:
        assert s.url.startswith("https://")
        assert OTLPMetricExporter(s.url, certificate_file=ca.ca_file, timeout=5).export(sdk_data()) is SUCCESS
        with open(ca.ca_file, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        assert OTLPMetricExporter(s.url, credentials=creds, timeout=5).export(sdk_data()) is SUCCESS
        # Without our CA the server is not trusted: a failure, not an exception.
        assert OTLPMetricExporter(s.url, timeout=0.5).export(sdk_data()) is FAILURE
        assert len(s.received) == 2


def test_mutual_tls_from_the_environment(ca, monkeypatch):
    with GrpcServer(tls=(ca, True)) as s:
        assert OTLPMetricExporter(s.url, certificate_file=ca.ca_file, timeout=0.5).export(sdk_data()) is FAILURE
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", s.url)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.ca_file)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE", ca.client_cert)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", ca.client_key)
        assert OTLPMetricExporter(timeout=5).export(sdk_data()) is SUCCESS
        assert len(s.received) == 1


@needs_grpc
def test_unusable_tls_files(tmp_path, monkeypatch, caplog):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ValueError, match="certificate"):
        OTLPMetricExporter("https://127.0.0.1:1", certificate_file=str(junk))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(junk))
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        OTLPMetricExporter("https://127.0.0.1:1")
    assert "CERTIFICATE" in caplog.text


# ---------------------------------------------------------------- configure(), the optional extra

@needs_grpc
def test_configure_picks_grpc_from_the_protocol_variable(server, monkeypatch):
    from otelmetrics._configure import configure
    from otelmetrics.export import otlp

    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", server.url)
    provider = configure(set_global=False)
    (reader,) = provider._readers
    assert type(reader._exporter) is OTLPMetricExporter
    provider.get_meter("m").create_counter("c").add(5)
    provider.shutdown()
    (got,) = server.received
    assert got.request().resource_metrics[0].scope_metrics[0].metrics[0].name == "c"
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_PROTOCOL")
    provider = configure(set_global=False, protocol="grpc", endpoint="collector:4317", insecure=True)
    (reader,) = provider._readers
    assert reader._exporter.endpoint == "http://collector:4317"
    provider.shutdown()
    provider = configure(set_global=False, endpoint="http://collector:4318/v1/metrics")
    (reader,) = provider._readers
    assert type(reader._exporter) is otlp.OTLPMetricExporter
    provider.shutdown()
    with pytest.raises(ValueError, match="insecure"):
        configure(set_global=False, insecure=True)


BLOCKED = r"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "grpc" or name.startswith("grpc."):
            raise ImportError("No module named %r (blocked)" % name)
sys.meta_path.insert(0, Block())
import otelmetrics
otelmetrics.configure(set_global=False, exporter="console").shutdown()   # no gRPC needed: fine
try:
    from otelmetrics.export.grpc import OTLPMetricExporter
except ImportError as e:
    print("ImportError:", e)
"""


@needs_grpc
def test_subprocesses_started_while_grpc_runs_all_start(server, tmp_path):
    # On Python 3.9 (subprocess forks there) grpcio's fork handlers made 1 child in 20
    # abort before it ran its program; the suite turns them off (conftest.py, README).
    ex = exporter(server)
    assert ex.export(collect_ours()) is SUCCESS                # a channel and its poller are running
    failed = []
    for i in range(200):
        with open(str(tmp_path / "child.log"), "w+") as log:
            rc = subprocess.Popen(["/bin/sh", "-c", "exit 0"], stdout=log, stderr=subprocess.STDOUT).wait()
            if rc != 0:
                log.seek(0)
                failed.append((i, rc, log.read()[:200]))
    ex.shutdown()
    assert not failed, failed


FORKED_EXPORT = """
import os, sys
import otelmetrics
from otelmetrics.export import InMemoryMetricReader
from otelmetrics.export.grpc import OTLPMetricExporter
reader = InMemoryMetricReader()
otelmetrics.MeterProvider(metric_readers=[reader]).get_meter("m").create_counter("c").add(1)
data = reader.get_metrics_data()
exporter = OTLPMetricExporter(sys.argv[1], insecure=True, timeout=5)
print("parent", exporter.export(data).name, flush=True)
pid = os.fork()
if pid == 0:
    print("child", exporter.export(data).name, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent", exporter.export(data).name, flush=True)
"""


@needs_grpc
@needs_fork
def test_a_forked_child_exports_over_grpc_with_grpcios_fork_support(server):
    # grpcio's fork support (its default) hands the child a working channel: the exporter
    # keeps it (its transport's leave_to_parent). A process of its own: this suite turns the
    # support off (conftest.py), and with it off gRPC cannot run in a forked child at all.
    env = dict(os.environ, GRPC_ENABLE_FORK_SUPPORT="true")
    out = subprocess.run([sys.executable, "-c", FORKED_EXPORT, server.url], capture_output=True, text=True,
                         timeout=60, cwd=NEUTRAL_CWD, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["parent SUCCESS", "child SUCCESS", "parent SUCCESS"]
    assert len(server.received) == 3


def test_without_grpcio_the_import_error_names_the_extra():
    out = subprocess.run([sys.executable, "-c", BLOCKED], capture_output=True, text=True, timeout=60,
                         cwd=NEUTRAL_CWD)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == (
        'ImportError: The OTLP/gRPC exporter needs grpcio, the "grpc" extra: pip install "otelmetrics[grpc]"')


def test_protocol_variable_choices(monkeypatch):
    assert _env.otlp_protocol() == "http/protobuf"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "GRPC")
    assert _env.otlp_protocol() == "grpc"
    assert _env.otlp_protocol("http/json") == "http/json"
