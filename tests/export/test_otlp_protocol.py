"""otelmetrics.export.otlp_protocol without a network: request bodies and batches,
request headers, what a response means (read with the official proto classes as the
oracle), Retry-After and the backoff; and the one transport rule that needs a socket,
the bound on a response body, against a real receiver on 127.0.0.1."""
import email.utils
import gzip
import logging
import math
import time

import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from otelmetrics.export import otlp_settings
from otelmetrics.export import otlp_protocol as proto
from otelmetrics.export.otlp_http import MAX_RESPONSE_BYTES, HttpTransport
from otelmetrics.export.otlp_queue import GZIP, JSON
from otlp_receiver import OTLPServer, Reply
from native.test_otlp_wire import _snapshot_backed, _with_points, canonical, collections_of_everything, json_to_proto, sdk_data

PB = {"content-type": "application/x-protobuf"}
JS = {"content-type": "application/json"}


def points_of(request):
    return [(m.name, canonical(p)) for rm in request.resource_metrics for sm in rm.scope_metrics
            for m in sm.metrics for p in getattr(m, m.WhichOneof("data")).data_points]


# ---------------------------------------------------------------- request bodies

@pytest.mark.parametrize("json, gz, flags", [(False, False, 0), (False, True, GZIP), (True, False, JSON),
                                             (True, True, GZIP | JSON)])
def test_one_body_per_export_in_the_configured_encoding(json, gz, flags):
    data = sdk_data()
    encoder = proto.RequestEncoder(json=json, gzip=gz, max_export_batch_size=None)
    assert encoder.flags == flags
    bodies = list(encoder.bodies(data))
    assert len(bodies) == 1
    body = gzip.decompress(bodies[0]) if gz else bodies[0]
    if json:
        assert canonical(json_to_proto(body)) == canonical(encode_metrics(data))
    else:
        assert ExportMetricsServiceRequest.FromString(body) == encode_metrics(data)
    assert list(encoder.bodies(data)) == bodies   # gzip without a timestamp: the same bytes each time


@pytest.mark.parametrize("limit", [1, 4, 8, 1000])
def test_batches_carry_every_point_once_in_order(limit):
    data = sdk_data(4)
    whole = points_of(encode_metrics(data))
    encoder = proto.RequestEncoder(json=False, gzip=True, max_export_batch_size=limit)
    requests = [ExportMetricsServiceRequest.FromString(gzip.decompress(b)) for b in encoder.bodies(data)]
    assert len(requests) == math.ceil(len(whole) / limit)
    assert all(0 < len(points_of(r)) <= limit for r in requests)
    assert [p for r in requests for p in points_of(r)] == whole
    assert {r.resource_metrics[0].scope_metrics[0].scope.name for r in requests} == {"lib"}


@pytest.mark.parametrize("json", [False, True])
@pytest.mark.parametrize("limit, bound", [(1, None), (7, None), (1000, None), (None, 3000), (50, 5000)])
def test_batches_of_a_collection_are_written_from_its_records_as_from_its_points(json, limit, bound):
    """Split by max_export_batch_size or by max_export_batch_bytes, points not built yet
    stay so (each batch carries a copy of its part of the records); the bodies are the
    ones the built points give, byte for byte."""
    settings = {"max_export_batch_bytes": bound} if bound else {}
    for data in collections_of_everything(delta=False, exemplars=False, limit=None):
        lazy = _snapshot_backed(data)
        encoder = proto.RequestEncoder(json=json, gzip=False, max_export_batch_size=limit, **settings)
        bodies = list(encoder.bodies(data))
        assert _snapshot_backed(data) == lazy               # splitting and encoding built no points
        assert bodies == list(encoder.bodies(_with_points(data)))
        points = sum(len(m.data.data_points) for m in data.resource_metrics[0].scope_metrics[0].metrics)
        assert len(bodies) == math.ceil(points / limit) if not bound else len(bodies) > 1


def test_headers_follow_the_flags_and_configured_ones_win():
    assert proto.http_headers(0, {}) == {"content-type": "application/x-protobuf",
                                         "user-agent": proto.USER_AGENT}
    assert proto.USER_AGENT.startswith("otelmetrics/")
    gz_json = proto.http_headers(GZIP | JSON, {"authorization": "Bearer t"})
    assert gz_json["content-type"] == "application/json" and gz_json["content-encoding"] == "gzip"
    assert gz_json["authorization"] == "Bearer t"
    assert proto.http_headers(0, {"user-agent": "gateway/2"})["user-agent"] == "gateway/2"


# ---------------------------------------------------------------- responses

def partial(rejected, message, as_json=False):
    msg = ExportMetricsServiceResponse(partial_success=ExportMetricsPartialSuccess(
        rejected_data_points=rejected, error_message=message))
    return json_format.MessageToJson(msg).encode() if as_json else msg.SerializeToString()


@pytest.mark.parametrize("as_json", [False, True])
def test_success_with_a_partial_success_is_delivered_with_a_note(as_json):
    got = proto.http_outcome(200, "OK", JS if as_json else PB, partial(3, "too old", as_json), False)
    assert got == proto.Outcome(proto.DELIVERED, "3 data point(s) rejected: too old")
    assert proto.http_outcome(202, "Accepted", PB, partial(2, ""), False).detail == \
        "2 data point(s) rejected: (no message)"
    # int64 on the wire: a negative count (nonsense, but representable) keeps its sign.
    assert proto.http_outcome(200, "OK", PB, partial(-1, "x"), False).detail.startswith("-1 ")


@pytest.mark.parametrize("payload, headers", [
    (b"", PB),
    (ExportMetricsServiceResponse().SerializeToString(), PB),
    (b"{}", JS),
])
def test_plain_success_has_no_note(payload, headers):
    assert proto.http_outcome(200, "OK", headers, payload, False) == proto.Outcome(proto.DELIVERED, "")


def test_an_unreadable_success_body_is_still_success(caplog):
    with caplog.at_level(logging.DEBUG, logger="otelmetrics"):
        got = proto.http_outcome(200, "OK", JS, b"{not json", False)
    assert got == proto.Outcome(proto.DELIVERED, "")
    assert "undecodable success response body" in caplog.text


def test_without_a_content_type_the_body_is_read_as_the_protocol_we_send():
    body = partial(4, "dup", as_json=True)
    assert proto.http_outcome(200, "OK", {}, body, json_default=True).detail == "4 data point(s) rejected: dup"
    assert proto.http_outcome(200, "OK", {}, body, json_default=False).detail == ""   # not protobuf


@pytest.mark.parametrize("status", [400, 401, 403, 404, 500, 501])
def test_other_statuses_are_permanent_with_the_status_message(status):
    pb = status_pb2.Status(code=3, message="metric name is invalid").SerializeToString()
    assert proto.http_outcome(status, "Nope", PB, pb, False) == \
        proto.Outcome(proto.PERMANENT, "HTTP %d Nope: metric name is invalid" % status)
    js = json_format.MessageToJson(status_pb2.Status(code=3, message="bad json")).encode()
    assert proto.http_outcome(status, "Nope", JS, js, False).detail == "HTTP %d Nope: bad json" % status


@pytest.mark.parametrize("payload, headers, message", [
    (b"", PB, "(no message)"),
    (b'{"code": 3}', JS, '{"code": 3}'),                      # JSON without a message: the JSON itself
    (b"upstream exploded", {"content-type": "text/plain"}, "upstream exploded"),
    (b"x" * 500, {"content-type": "text/plain"}, "x" * 200),   # the start of a long body
])
def test_a_status_without_a_readable_message(payload, headers, message):
    assert proto.http_outcome(400, "Bad Request", headers, payload, False).detail == \
        "HTTP 400 Bad Request: " + message


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retryable_statuses_carry_the_retry_after_hint(status):
    assert proto.http_outcome(status, "Busy", {"retry-after": "7"}, b"", False) == \
        proto.Outcome(proto.RETRYABLE, "HTTP %d Busy" % status, 7.0)
    assert proto.http_outcome(status, "Busy", {}, b"", False).retry_after is None


# ---------------------------------------------------------------- Retry-After and backoff

@pytest.mark.parametrize("value, seconds", [
    ("0.3", 0.3), (" 5 ", 5.0), ("0", 0.0), ("-3", 0.0),
    (None, None), ("", None), ("soon", None), ("nan", None), ("inf", None),
    ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0),         # a date in the past: now
    ("Wed, 21 Oct 2015 07:28:00 -0000", None),      # no time zone: unreadable
])
def test_retry_after(value, seconds):
    assert proto.retry_after(value) == seconds


def test_retry_after_as_a_future_http_date():
    value = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= proto.retry_after(value) <= 30


def test_retry_delay_backs_off_exponentially_with_jitter_and_a_hint_only_lengthens_it():
    assert 25.6 <= proto.retry_delay(5, 0.25, base=1.0, cap=32.0, jitter=0.2) <= 38.4
    assert 0.8 <= proto.retry_delay(0, 0.0, base=1.0, cap=32.0, jitter=0.2) <= 1.2
    assert proto.retry_delay(0, 30.0, base=1.0, cap=32.0, jitter=0.2) == 30.0
    assert [proto.retry_delay(n, None, base=1.0, cap=32.0, jitter=0.0) for n in range(8)] == \
        [1, 2, 4, 8, 16, 32, 32, 32]
    delays = [proto.retry_delay(2, None, base=0.5, cap=32.0, jitter=0.2) for _ in range(200)]
    assert all(1.6 <= d <= 2.4 for d in delays) and len(set(delays)) > 1


# ---------------------------------------------------------------- the transport's bound on a response

def test_a_response_body_over_the_bound_is_cut_and_its_connection_dropped():
    with OTLPServer() as server:
        server.replies.append(Reply(400, b"y" * (MAX_RESPONSE_BYTES + 10), {"Content-Type": "text/plain"}))
        transport = HttpTransport(otlp_settings.OTLPSettings(endpoint=server.url), tls_fall_back=False)
        try:
            got = transport.send(b"", {"content-type": "application/x-protobuf"}, 5)
            assert got == proto.Outcome(proto.PERMANENT, "HTTP 400 Bad Request: " + "y" * 200)
            assert transport.send(b"", {}, 5).kind == proto.DELIVERED
        finally:
            transport.close()
        assert server.connections == 2   # the first one was not reused
