"""The OTLP exporter against hostile or broken collectors on 127.0.0.1: answers dripped a
byte at a time, Retry-After values that would make it hammer an overloaded server, huge
and endless response bodies, and requests too large for the collector or the retry queue."""
import email.utils
import gzip
import logging
import subprocess
import sys
import textwrap
import time

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

import otelmetrics
from otelmetrics.export import InMemoryMetricReader, MetricExportResult
from otelmetrics.export import otlp_protocol as proto
from otelmetrics.export.otlp import OTLPMetricExporter
from otelmetrics.export.otlp_json import encode_request_json
from otelmetrics.export.otlp_queue import GZIP, JSON
from otelmetrics._native import encode_request
from faulty_servers import Collector, RawServer, dripping, read_request
from _util import ALL_DELTA, NEUTRAL_CWD
from otlp_receiver import OTLPServer, Reply

SUCCESS, FAILURE = MetricExportResult.SUCCESS, MetricExportResult.FAILURE
MiB = 1024 * 1024
ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS",
       "OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TIMEOUT",
       "OTELMETRICS_EXPORTER_QUEUE_BYTES", "OTELMETRICS_EXPORTER_SPOOL_DIR", "OTELMETRICS_EXPORTER_BATCH_BYTES")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def collection(series=3, value_bytes=10, metrics=1):
    """One delta collection of ``metrics`` counters with ``series`` series each, whose
    attribute values are ``value_bytes`` long; each point's value is its index + 1."""
    reader = InMemoryMetricReader(preferred_temporality=ALL_DELTA, default_cardinality_limit=5000)
    provider = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    meter = provider.get_meter("faults")
    for m in range(metrics):
        counter = meter.create_counter("c%d" % m)
        for i in range(series):
            counter.add(i + 1, {"k": ("%06d" % i).ljust(value_bytes, "x")})
    data = reader.get_metrics_data()
    provider.shutdown()
    return data


def points_of(requests):
    """{(metric, attribute value): value} over decoded requests; fails on a duplicate."""
    out = {}
    for request in requests:
        for rm in request.resource_metrics:
            assert rm.resource.attributes   # the framing travels with every part
            for sm in rm.scope_metrics:
                assert sm.scope.name == "faults"
                for m in sm.metrics:
                    assert m.sum.aggregation_temporality == 1 and m.sum.is_monotonic
                    for p in m.sum.data_points:
                        key = (m.name, p.attributes[0].value.string_value)
                        assert key not in out
                        out[key] = p.as_int
    return out


def expected_points(series, value_bytes=10, metrics=1):
    return {("c%d" % m, ("%06d" % i).ljust(value_bytes, "x")): i + 1
            for m in range(metrics) for i in range(series)}


# ---------------------------------------------------------------- the whole export's deadline

def hang(conn):
    read_request(conn)
    time.sleep(20)


@pytest.mark.parametrize("script", [
    dripping(b"HTTP/1.1 200 OK\r\n", b"x"),                              # a header line that never ends
    dripping(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", b"\x00"),
    hang,
], ids=["headers", "body", "hang"])
def test_a_server_dripping_its_answer_cannot_stretch_the_export_deadline(script):
    with RawServer(script) as server:
        exporter = OTLPMetricExporter(server.url, timeout=2)
        start = time.monotonic()
        assert exporter.export(collection()) is FAILURE
        took = time.monotonic() - start
        print("export with a 2 s timeout returned after %.2f s" % took)
        assert 1.5 < took < 2.5
        # What it could not send is kept for the next export, not lost.
        assert exporter.stats()["queued_requests"] == 1
        exporter._transport.close()


# ---------------------------------------------------------------- Retry-After and backoff

PAST = email.utils.formatdate(time.time() - 3600, usegmt=True)


@pytest.mark.parametrize("value", ["0", "-1", "0.001", PAST])
def test_retry_after_never_shortens_the_backoff(value):
    with OTLPServer() as server:
        server.replies[:] = [Reply(503, headers={"Retry-After": value})] * 10_000
        exporter = OTLPMetricExporter(server.url, timeout=2.5)   # real backoff: 1 s, 2 s, ...
        start = time.monotonic()
        assert exporter.export(collection()) is FAILURE
        took = time.monotonic() - start
        tries = len(server.received)
        print("Retry-After %r: %d tries in %.2f s" % (value, tries, took))
        # Tries at 0 s and 0.8-1.2 s; the next, 1.6-2.4 s later, would pass the deadline.
        assert tries == 2


def test_a_longer_retry_after_is_honoured(monkeypatch):
    monkeypatch.setattr(OTLPMetricExporter, "_backoff_base", 0.02)
    with OTLPServer() as server:
        server.replies[:] = [Reply(503, headers={"Retry-After": "0.5"})]
        exporter = OTLPMetricExporter(server.url, timeout=5)
        start = time.monotonic()
        assert exporter.export(collection()) is SUCCESS
        assert time.monotonic() - start >= 0.5 and len(server.received) == 2


# ---------------------------------------------------------------- hostile response bodies

# Runs in a subprocess: the peak RSS of a process that has only done this is the measure.
RSS_SCRIPT = textwrap.dedent("""
    import resource, sys
    import otelmetrics
    from otelmetrics.export import InMemoryMetricReader
    from otelmetrics.export.otlp import OTLPMetricExporter
    reader = InMemoryMetricReader()
    provider = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    provider.get_meter("m").create_counter("c").add(1)
    data = reader.get_metrics_data()
    exporter = OTLPMetricExporter(sys.argv[1], timeout=10, max_queue_bytes=0)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = [exporter.export(data).name for _ in range(3)]
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(after - before, results)
""")

# A protobuf body of 3 million tiny fields: decoded whole, millions of Python objects.
TINY_FIELDS = b"\x08\x01" * (3 * MiB)


def huge_body(conn):
    while read_request(conn):
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(TINY_FIELDS))
        conn.sendall(TINY_FIELDS)


def endless_chunked_body(conn):
    while read_request(conn):
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-protobuf\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"\x12\x01x" * 20_000
        while True:
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))


@pytest.mark.parametrize("script", [huge_body, endless_chunked_body])
def test_a_huge_or_endless_response_body_costs_bounded_memory(script):
    with RawServer(script) as server:
        out = subprocess.run([sys.executable, "-c", RSS_SCRIPT, server.url], capture_output=True,
                             text=True, timeout=60, cwd=NEUTRAL_CWD)
    assert out.returncode == 0, out.stderr
    grown_kib, results = out.stdout.split(" ", 1)
    print("%s: peak RSS grew by %d KiB over 3 responses (%s)" % (script.__name__, int(grown_kib), results))
    assert int(grown_kib) < 4 * 1024      # a few times the 1 MiB cap on what is read


def test_a_large_partial_success_message_is_not_decoded(caplog):
    big = b"\x0a" + proto._varint(100_000) + b"\x08\x01" * 50_000
    with caplog.at_level(logging.DEBUG, logger="otelmetrics"):
        assert proto.http_outcome(200, "OK", {"content-type": "application/x-protobuf"}, big, False) == \
            proto.Outcome(proto.DELIVERED, "")
    assert "not decoded" in caplog.text


# ---------------------------------------------------------------- a byte bound per request

def test_a_batch_over_the_byte_bound_is_split_by_series():
    data = collection(series=2000, value_bytes=10_000)   # about 20 MB encoded in one request
    assert len(encode_request(data)) > 19 * MiB
    with Collector() as collector:
        exporter = OTLPMetricExporter(collector.url, timeout=30)
        assert exporter.export(data) is SUCCESS
        print("2000 series of 10 kB: %d requests, largest %d bytes" % (len(collector.sizes), max(collector.sizes)))
        assert len(collector.sizes) >= 5 and max(collector.sizes) <= 4 * MiB
        assert points_of(collector.accepted) == expected_points(2000, 10_000)


def test_the_byte_bound_from_the_argument_and_the_environment(monkeypatch, caplog):
    data = collection(series=200, value_bytes=1000)      # about 200 kB
    with Collector() as collector:
        monkeypatch.setenv("OTELMETRICS_EXPORTER_BATCH_BYTES", "65536")
        assert OTLPMetricExporter(collector.url).export(data) is SUCCESS
        assert len(collector.sizes) >= 4 and max(collector.sizes) <= 65536
        del collector.sizes[:]
        assert OTLPMetricExporter(collector.url, max_export_batch_bytes=32768,
                                  compression="gzip").export(data) is SUCCESS
        assert len(collector.sizes) >= 7 and max(collector.sizes) <= 32768
        monkeypatch.setenv("OTELMETRICS_EXPORTER_BATCH_BYTES", "tiny")
        with caplog.at_level(logging.WARNING, logger="otelmetrics"):
            assert OTLPMetricExporter(collector.url)._encoder.max_export_batch_bytes == 4 * MiB
        assert "OTELMETRICS_EXPORTER_BATCH_BYTES" in caplog.text
    for bad in (0, 100, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_export_batch_bytes"):
            OTLPMetricExporter("http://127.0.0.1:4318/v1/metrics", max_export_batch_bytes=bad)


def test_a_single_point_over_the_bound_is_sent_alone(caplog):
    data = collection(series=3, value_bytes=5000)
    with Collector() as collector, caplog.at_level(logging.WARNING, logger="otelmetrics"):
        assert OTLPMetricExporter(collector.url, max_export_batch_bytes=2048).export(data) is SUCCESS
    assert len(collector.accepted) == 3 and points_of(collector.accepted) == expected_points(3, 5000)
    assert "more than max_export_batch_bytes" in caplog.text


def test_during_an_outage_a_request_larger_than_the_queue_is_kept_in_parts():
    data = collection(series=200, value_bytes=10_000)   # one request of about 2 MB
    with Collector() as collector:
        collector.hang.set()
        exporter = OTLPMetricExporter(collector.url, timeout=1, max_queue_bytes=MiB)
        assert exporter.export(data) is FAILURE
        stats = exporter.stats()
        print("a 2 MB request, a 1 MiB queue: %d parts kept (%d bytes), %d dropped"
              % (stats["queued_requests"], stats["queued_bytes"], stats["requests_dropped_queue_full"]))
        # Split in halves that fit: the newer half is kept, the older pushed out and counted.
        assert stats["queued_requests"] == 1 and stats["queued_bytes"] > MiB // 2
        assert stats["requests_dropped_queue_full"] == 1
        collector.recover()
        assert exporter.force_flush() is True
        got = points_of(collector.accepted)
        want = expected_points(200, 10_000)
        assert len(got) == 100 and all(want[key] == value for key, value in got.items())


# ---------------------------------------------------------------- 413: split and send again

@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_413_splits_the_request_and_sends_the_halves(compression):
    data = collection(series=64, value_bytes=2000, metrics=2)    # about 260 kB
    body = encode_request(data)
    limit = len(gzip.compress(body) if compression == "gzip" else body) // 5
    with Collector(limit=limit) as collector:
        exporter = OTLPMetricExporter(collector.url, timeout=10, compression=compression)
        assert exporter.export(data) is SUCCESS
        print("413 over %d bytes (%s): %d refused, %d accepted" % (limit, compression, collector.refused,
                                                                   len(collector.accepted)))
        assert collector.refused >= 1 and len(collector.accepted) >= 2
        assert points_of(collector.accepted) == expected_points(64, 2000, metrics=2)
        stats = exporter.stats()
        assert stats["requests_rejected"] == 0 and stats["queued_requests"] == 0


def test_413_on_a_spooled_request_splits_it_too(tmp_path):
    data = collection(series=32, value_bytes=2000)
    with Collector() as collector:
        collector.hang.set()
        first = OTLPMetricExporter(collector.url, timeout=1, spool_dir=str(tmp_path))
        assert first.export(data) is FAILURE
        first.shutdown(timeout_millis=1000)
        collector.recover()
        collector.limit = 20_000
        second = OTLPMetricExporter(collector.url, timeout=10, spool_dir=str(tmp_path))
        assert second.force_flush() is True
        assert collector.refused >= 1 and points_of(collector.accepted) == expected_points(32, 2000)
        assert second.stats()["spooled_requests"] == 0
        second.shutdown()


def test_413_for_a_single_point_drops_it_and_counts_it():
    data = collection(series=1, value_bytes=5000)
    with Collector(limit=1000) as collector:
        exporter = OTLPMetricExporter(collector.url, timeout=5)
        assert exporter.export(data) is FAILURE
        assert exporter.stats()["requests_rejected"] == 1 and collector.refused == 1


@pytest.mark.parametrize("flags", [0, GZIP, JSON, GZIP | JSON])
def test_split_body_halves_the_points_and_keeps_the_framing(flags):
    data = collection(series=5, value_bytes=10, metrics=3)
    body = (encode_request_json if flags & JSON else encode_request)(data)
    if flags & GZIP:
        body = gzip.compress(body)

    def decode(part):
        raw = gzip.decompress(part) if flags & GZIP else part
        if flags & JSON:
            return json_format.Parse(raw, ExportMetricsServiceRequest())
        return ExportMetricsServiceRequest.FromString(raw)

    first, second = proto.split_body(body, flags)
    a, b = decode(first), decode(second)
    count = lambda r: sum(len(m.sum.data_points) for rm in r.resource_metrics
                          for sm in rm.scope_metrics for m in sm.metrics)
    assert (count(a), count(b)) == (7, 8)
    assert points_of([a, b]) == expected_points(5, 10, metrics=3)
    # Split again down to single points; a single point cannot be split.
    parts, singles = [first, second], []
    while parts:
        part = parts.pop()
        halves = proto.split_body(part, flags)
        if halves is None:
            singles.append(decode(part))
        else:
            parts.extend(halves)
    assert len(singles) == 15 and points_of(singles) == expected_points(5, 10, metrics=3)
    assert proto.split_body(b"\xff\xff", flags) is None
