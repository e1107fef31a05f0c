"""The OTLP exporter through a collector outage: what cannot be delivered is kept in a
bounded in-memory queue and sent, oldest first, once the collector answers again;
delta data recorded during the outage arrives complete."""
import logging
import time
from collections import Counter as Tally

import pytest
from opentelemetry.metrics import Counter, Histogram

import otelmetrics
from otelmetrics.export import (
    AggregationTemporality,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from otelmetrics.export.otlp import OTLPMetricExporter
from otelmetrics.export.otlp_queue import QueuedRequest, RetryQueue
from otlp_receiver import OTLPServer, Reply, free_port

SUCCESS, FAILURE = MetricExportResult.SUCCESS, MetricExportResult.FAILURE
DELTA = {Counter: AggregationTemporality.DELTA, Histogram: AggregationTemporality.DELTA}
# A 503 whose Retry-After is past any export deadline here: the export fails after one try.
UNAVAILABLE = Reply(503, headers={"Retry-After": "30"})
ENV = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_HEADERS",
       "OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TIMEOUT",
       "OTELMETRICS_EXPORTER_QUEUE_BYTES", "OTELMETRICS_EXPORTER_SPOOL_DIR",
       "OTELMETRICS_EXPORTER_SPOOL_BYTES", "OTELMETRICS_EXPORTER_SPOOL_FILES")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    # One try per export against a refused port: the first backoff is past every deadline here.
    monkeypatch.setattr(OTLPMetricExporter, "_backoff_base", 60.0)


@pytest.fixture
def server():
    with OTLPServer() as s:
        yield s


class Gateway:
    """A provider whose one reader exports through ``exporter`` on demand, with delta
    counters and histograms; ``recorded`` tallies what was measured, as ``summed`` does."""

    def __init__(self, exporter):
        self.exporter = exporter
        self.reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        self.provider = otelmetrics.MeterProvider(metric_readers=[self.reader], shutdown_on_exit=False)
        meter = self.provider.get_meter("gateway")
        self.packets = meter.create_counter("packets")
        self.latency = meter.create_histogram("latency")
        self.recorded = Tally()

    @staticmethod
    def tally(n):
        """What ``record(n)`` measures, keyed as ``summed`` keys it."""
        out = Tally()
        for i in range(n):
            key = (("if", "eth%d" % (i % 2)),)
            out[("packets", key)] += i + 1
            out[("latency.count", key)] += 1
            out[("latency.sum", key)] += 0.5 * i
        return out

    def record(self, n):
        for i in range(n):
            attrs = {"if": "eth%d" % (i % 2)}
            self.packets.add(i + 1, attrs)
            self.latency.record(0.5 * i, attrs)
        self.recorded.update(self.tally(n))

    def export(self):
        self.reader.collect(timeout_millis=2_000)
        return self.reader._last_ok

    def close(self):
        self.provider.shutdown(timeout_millis=2_000)


def exporter_for(url, **kw):
    kw.setdefault("timeout", 2)
    return OTLPMetricExporter(url, preferred_temporality=DELTA, **kw)


def summed(received):
    """Delta sums, histogram counts and sums per (metric, attributes) over ``received``,
    decoded with the official classes."""
    total = Tally()
    for got in received:
        for rm in got.request().resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    kind = m.WhichOneof("data")
                    for p in getattr(m, kind).data_points:
                        key = tuple(sorted((kv.key, kv.value.string_value) for kv in p.attributes))
                        if kind == "sum":
                            assert m.sum.aggregation_temporality == 1   # DELTA
                            total[(m.name, key)] += p.as_int
                        elif kind == "histogram":
                            total[(m.name + ".count", key)] += p.count
                            total[(m.name + ".sum", key)] += p.sum
    return total


def start_times(received):
    return [got.request().resource_metrics[0].scope_metrics[0].metrics[0].sum.data_points[0].start_time_unix_nano
            for got in received]


def test_delta_recorded_during_an_outage_arrives_complete(server):
    gw = Gateway(exporter_for(server.url))
    gw.record(3)
    assert gw.export()
    server.replies[:] = [UNAVAILABLE] * 1000
    for n in (5, 1, 7, 2, 4):
        gw.record(n)
        assert not gw.export()
    stats = gw.exporter.stats()
    assert stats["requests_queued"] == 5 and stats["queued_requests"] == 5 and stats["queued_bytes"] > 0
    mark = len(server.received)
    assert mark == 6   # one try per failed export: the queue is not retried before new data's turn
    server.replies.clear()
    gw.record(2)
    assert gw.export()
    accepted = [server.received[0]] + server.received[mark:]
    assert len(accepted) == 7
    assert summed(accepted) == gw.recorded
    # Oldest first: each replayed interval starts where the one before it began.
    starts = start_times(server.received[mark:])
    assert starts == sorted(starts)
    stats = gw.exporter.stats()
    assert stats["requests_replayed"] == 5 and stats["requests_sent"] == 7
    assert stats["queued_requests"] == 0 and stats["queued_bytes"] == 0
    assert stats["exports_succeeded"] == 2 and stats["exports_failed"] == 5
    gw.close()


def test_connection_refused_then_recovery_delivers_everything():
    port = free_port()
    gw = Gateway(exporter_for("http://127.0.0.1:%d/v1/metrics" % port))
    for n in (4, 3, 6):
        gw.record(n)
        assert not gw.export()
    assert gw.exporter.stats()["queued_requests"] == 3
    with OTLPServer(port) as server:
        gw.record(1)
        assert gw.export()
        assert len(server.received) == 4
        assert summed(server.received) == gw.recorded
    gw.close()


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_retryable_statuses_past_the_timeout_are_queued(server, status):
    server.replies.append(Reply(status, headers={"Retry-After": "30"}))
    gw = Gateway(exporter_for(server.url))
    gw.record(2)
    assert not gw.export()
    assert gw.exporter.stats()["queued_requests"] == 1
    assert gw.exporter.force_flush() is True
    assert server.received[0].body == server.received[1].body
    assert summed(server.received[1:]) == gw.recorded
    gw.close()


@pytest.mark.parametrize("status", [400, 401, 404, 413, 500])
def test_permanent_failures_are_dropped_not_queued(server, status):
    server.replies.append(Reply(status))
    gw = Gateway(exporter_for(server.url))
    gw.record(2)
    assert not gw.export()
    stats = gw.exporter.stats()
    assert stats["requests_rejected"] == 1 and stats["queued_requests"] == 0
    gw.record(1)
    assert gw.export()
    assert len(server.received) == 2   # the refused request is not sent again
    gw.close()


def test_queued_requests_go_first_and_in_order(server):
    gw = Gateway(exporter_for(server.url))
    server.replies[:] = [UNAVAILABLE] * 2
    gw.record(1)              # interval A
    assert not gw.export()
    gw.record(2)              # interval B: A is tried first and fails, B is kept behind it untried
    assert not gw.export()
    assert server.received[1].body == server.received[0].body
    # The collector takes A, then fails again on B: C is kept behind B without a try.
    server.replies[:] = [Reply(200), UNAVAILABLE]
    gw.record(3)              # interval C
    assert not gw.export()
    assert len(server.received) == 4
    assert server.received[2].body == server.received[0].body
    assert gw.exporter.stats()["queued_requests"] == 2
    gw.record(4)              # interval D
    assert gw.export()
    assert len(server.received) == 7 and server.received[4].body == server.received[3].body
    accepted = [server.received[i] for i in (2, 4, 5, 6)]
    starts = start_times(accepted)
    assert starts == sorted(starts)
    assert summed(accepted) == gw.recorded
    gw.close()


def test_an_empty_collection_still_sends_the_queue(server):
    gw = Gateway(exporter_for(server.url))
    server.replies.append(UNAVAILABLE)
    gw.record(2)
    assert not gw.export()
    # Nothing recorded since: the reader skips an empty collection, but an exporter
    # handed one still sends its queue.
    assert gw.exporter.export(MetricsData([])) is SUCCESS
    assert len(server.received) == 2
    assert summed(server.received[1:]) == gw.recorded
    gw.close()


def test_a_full_queue_drops_the_oldest_and_counts_them(server):
    probe = Gateway(exporter_for(server.url))
    server.replies.append(UNAVAILABLE)
    probe.record(1)
    probe.export()
    size = probe.exporter.stats()["queued_bytes"]
    probe.close()

    gw = Gateway(exporter_for(server.url, max_queue_bytes=2 * size + size // 2))
    server.replies[:] = [UNAVAILABLE] * 5
    for _ in range(5):
        gw.record(1)      # same shape every time: every request has the same size
        assert not gw.export()
    stats = gw.exporter.stats()
    assert stats["requests_queued"] == 5 and stats["requests_dropped_queue_full"] == 3
    assert stats["queued_requests"] == 2 and stats["queued_bytes"] == 2 * size
    mark = len(server.received)
    assert gw.exporter.force_flush() is True
    assert [summed([got]) for got in server.received[mark:]] == [Gateway.tally(1)] * 2
    gw.close()


def test_queue_turned_off_drops_and_counts(server, monkeypatch):
    monkeypatch.setenv("OTELMETRICS_EXPORTER_QUEUE_BYTES", "0")
    gw = Gateway(exporter_for(server.url))
    server.replies.append(UNAVAILABLE)
    gw.record(2)
    assert not gw.export()
    stats = gw.exporter.stats()
    assert stats["requests_dropped_queue_full"] == 1 and stats["queued_requests"] == 0
    gw.close()


def test_retry_queue_bounds():
    q = RetryQueue(10)
    for body in (b"aaaa", b"bbbb", b"cc", b"dddd"):
        q.put(QueuedRequest(body, 0))
    assert [len(q), q.bytes, q.dropped] == [3, 10, 1] and q.oldest().body == b"bbbb"
    q.put(QueuedRequest(b"x" * 11, 0))           # larger than the whole queue
    assert [len(q), q.dropped] == [3, 2]
    q.remove(q.oldest())
    assert q.oldest().body == b"cc" and q.bytes == 6


def test_queue_settings_from_arguments_and_environment(server, monkeypatch, caplog):
    with pytest.raises(ValueError, match="max_queue_bytes"):
        OTLPMetricExporter(server.url, max_queue_bytes=-1)
    with pytest.raises(ValueError, match="max_spool_files"):
        OTLPMetricExporter(server.url, max_spool_files=0)
    monkeypatch.setenv("OTELMETRICS_EXPORTER_QUEUE_BYTES", "lots")
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        exp = OTLPMetricExporter(server.url)
    assert "OTELMETRICS_EXPORTER_QUEUE_BYTES" in caplog.text and exp._store.queue.max_bytes == 4 * 1024 * 1024
    monkeypatch.setenv("OTELMETRICS_EXPORTER_QUEUE_BYTES", "1000")
    assert OTLPMetricExporter(server.url)._store.queue.max_bytes == 1000
    assert OTLPMetricExporter(server.url, max_queue_bytes=5)._store.queue.max_bytes == 5


def test_gzip_requests_are_kept_compressed_and_resent_as_they_were(server):
    gw = Gateway(exporter_for(server.url, compression="gzip"))
    server.replies.append(UNAVAILABLE)
    gw.record(3)
    assert not gw.export()
    assert gw.exporter.stats()["queued_bytes"] == len(server.received[0].raw)
    gw.record(1)
    assert gw.export()
    assert server.received[1].raw == server.received[0].raw
    assert server.received[1].headers["content-encoding"] == "gzip"
    gw.close()


def test_shutdown_tries_the_memory_queue_once(server):
    gw = Gateway(exporter_for(server.url))
    server.replies[:] = [UNAVAILABLE] * 2
    for _ in range(2):
        gw.record(2)
        gw.export()
    # The provider's final export sends the queue, then its own (empty: all delta went out).
    gw.close()
    assert summed(server.received[2:]) == gw.recorded
    assert gw.exporter.stats()["requests_dropped_shutdown"] == 0


def test_shutdown_with_the_collector_down_loses_only_the_memory_queue_and_says_so(caplog):
    gw = Gateway(exporter_for("http://127.0.0.1:%d/v1/metrics" % free_port()))
    gw.record(2)
    gw.export()
    start = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="otelmetrics"):
        gw.close()
    assert time.monotonic() - start < 2.5
    stats = gw.exporter.stats()
    assert stats["requests_dropped_shutdown"] == 1 and stats["queued_requests"] == 0
    assert "spool_dir" in caplog.text
