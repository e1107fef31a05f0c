"""The OTLP exporter's durable spool: undelivered requests written atomically to a
directory, bounded, replayed oldest first by the next exporter on the same directory
(a reboot) and deleted once delivered; shutdown with a collector that is gone."""
import errno
import logging
import os
import shutil
import socket
import time

import pytest

from otelmetrics.export import MetricExporter, MetricExportResult, MetricsData
from otelmetrics.export import otlp_spool
from otelmetrics.export.otlp import OTLPMetricExporter
from export.test_otlp_queue import DELTA, UNAVAILABLE, Gateway, clean_env, exporter_for, server, summed  # noqa: F401
from native.test_otlp_wire import json_to_proto
from otlp_receiver import OTLPServer, free_port

SUCCESS = MetricExportResult.SUCCESS


def dead_url():
    return "http://127.0.0.1:%d/v1/metrics" % free_port()


def spooled(directory):
    return sorted(n for n in os.listdir(directory) if n.endswith(".otlp"))


def outage(directory, intervals, **kw):
    """Record and fail to export ``intervals`` times into ``directory``; the gateway, shut down."""
    gw = Gateway(exporter_for(dead_url(), spool_dir=str(directory), **kw))
    for n in intervals:
        gw.record(n)
        assert not gw.export()
    gw.close()
    return gw


def test_spooled_requests_survive_a_restart_and_are_deleted_once_delivered(tmp_path, server):
    before = outage(tmp_path, (3, 1, 4))
    names = spooled(tmp_path)
    assert names == ["000000000000.otlp", "000000000001.otlp", "000000000002.otlp"]
    assert sorted(os.listdir(tmp_path)) == [".lock"] + names   # no temporary files left behind
    stats = before.exporter.stats()
    assert stats["requests_queued"] == 3 and stats["spooled_requests"] == 3
    assert stats["spooled_bytes"] == sum(os.path.getsize(tmp_path / n) for n in names)
    assert stats["queued_requests"] == 0 and stats["requests_dropped_shutdown"] == 0

    after = Gateway(exporter_for(server.url, spool_dir=str(tmp_path)))   # the reboot
    assert after.exporter.stats()["spooled_requests"] == 3
    after.record(2)
    assert after.export()
    assert len(server.received) == 4
    assert summed(server.received[:3]) == before.recorded
    assert summed(server.received[3:]) == after.recorded
    assert spooled(tmp_path) == []
    stats = after.exporter.stats()
    assert stats["requests_replayed"] == 3 and stats["spooled_requests"] == 0 and stats["spooled_bytes"] == 0
    after.close()


def test_sequence_numbers_continue_after_a_restart(tmp_path):
    outage(tmp_path, (1, 1))
    outage(tmp_path, (1,))
    assert spooled(tmp_path) == ["000000000000.otlp", "000000000001.otlp", "000000000002.otlp"]


@pytest.mark.parametrize("bound", ["files", "bytes"])
def test_a_full_spool_drops_the_oldest_files_and_counts_them(tmp_path, server, bound):
    probe = outage(tmp_path / "probe", (1,))
    size = probe.exporter.stats()["spooled_bytes"]
    kw = {"max_spool_files": 2} if bound == "files" else {"max_spool_bytes": 2 * size + size // 2}
    gw = Gateway(exporter_for(dead_url(), spool_dir=str(tmp_path / "spool"), **kw))
    for _ in range(5):
        gw.record(1)      # same shape every time: every file has the same size
        assert not gw.export()
    stats = gw.exporter.stats()
    assert stats["requests_dropped_queue_full"] == 3 and stats["spooled_requests"] == 2
    assert spooled(tmp_path / "spool") == ["000000000003.otlp", "000000000004.otlp"]
    gw.close()
    assert OTLPMetricExporter(server.url, spool_dir=str(tmp_path / "spool")).force_flush() is True
    assert [summed([got]) for got in server.received] == [Gateway.tally(1)] * 2


def test_a_spool_over_smaller_bounds_is_trimmed_at_start(tmp_path):
    outage(tmp_path, (1, 1, 1))
    exp = OTLPMetricExporter(dead_url(), spool_dir=str(tmp_path), max_spool_files=1)
    assert exp.stats()["requests_dropped_queue_full"] == 2
    assert spooled(tmp_path) == ["000000000002.otlp"]


def test_corrupt_and_foreign_files_are_skipped_with_a_warning(tmp_path, server, caplog):
    outage(tmp_path, (2, 3))
    good = spooled(tmp_path)
    (tmp_path / "notes.txt").write_text("not ours")
    (tmp_path / "sub").mkdir()
    with open(tmp_path / good[0], "r+b") as f:   # a flipped bit in the first body
        f.seek(20)
        byte = f.read(1)
        f.seek(20)
        f.write(bytes([byte[0] ^ 1]))
    (tmp_path / "000000000007.otlp").write_bytes(b"OTMS")   # truncated
    (tmp_path / ".tmp-000000000008.otlp").write_bytes(b"half a write")
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        exp = OTLPMetricExporter(server.url, spool_dir=str(tmp_path))
        assert not (tmp_path / ".tmp-000000000008.otlp").exists()
        assert exp.export(MetricsData([])) is SUCCESS
    assert "notes.txt" in caplog.text and "not a valid spooled request" in caplog.text
    assert len(server.received) == 1 and summed(server.received) == Gateway.tally(3)   # the intact one
    assert sorted(os.listdir(tmp_path)) == sorted([good[0] + ".corrupt", "000000000007.otlp.corrupt",
                                                   "notes.txt", "sub", ".lock"])
    assert exp.stats()["spool_files_skipped"] == 4
    exp.shutdown()   # one exporter per directory: the next one takes the lock
    # The skipped files are left alone by the next start too (with a warning), never sent.
    again = OTLPMetricExporter(server.url, spool_dir=str(tmp_path))
    assert again.force_flush() is True and len(server.received) == 1


def test_a_spooled_request_keeps_its_encoding_across_a_reconfiguration(tmp_path, server):
    before = outage(tmp_path, (3,), protocol="http/json", compression="gzip")
    exp = OTLPMetricExporter(server.url, spool_dir=str(tmp_path))   # protobuf, uncompressed
    assert exp.force_flush() is True
    (got,) = server.received
    assert got.headers["content-type"] == "application/json" and got.headers["content-encoding"] == "gzip"
    request = json_to_proto(got.body)
    got.request = lambda: request
    assert summed([got]) == before.recorded


def test_spool_write_failure_falls_back_to_memory(tmp_path, server):
    gw = Gateway(exporter_for(server.url, spool_dir=str(tmp_path / "spool")))
    (tmp_path / "spool" / ".lock").unlink()
    (tmp_path / "spool").rmdir()   # writes through the kept directory descriptor now fail
    (tmp_path / "spool").write_text("a file where the directory was")
    server.replies.append(UNAVAILABLE)
    gw.record(2)
    assert not gw.export()
    stats = gw.exporter.stats()
    assert stats["spool_write_errors"] == 1 and stats["queued_requests"] == 1
    assert gw.exporter.force_flush() is True
    assert summed(server.received[1:]) == gw.recorded
    gw.close()


def test_an_unusable_spool_dir(tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="spool_dir"):
        OTLPMetricExporter(dead_url(), spool_dir=str(blocker / "spool"))
    monkeypatch.setenv("OTELMETRICS_EXPORTER_SPOOL_DIR", str(blocker / "spool"))
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        exp = OTLPMetricExporter(dead_url())
    assert "OTELMETRICS_EXPORTER_SPOOL_DIR" in caplog.text and exp._store.spool is None
    monkeypatch.setenv("OTELMETRICS_EXPORTER_SPOOL_DIR", str(tmp_path / "env-spool"))
    monkeypatch.setenv("OTELMETRICS_EXPORTER_SPOOL_FILES", "7")
    exp = OTLPMetricExporter(dead_url())
    assert exp._store.spool.directory == str(tmp_path / "env-spool") and exp._store.spool.max_files == 7


@pytest.fixture
def blackhole():
    """A port that completes TCP handshakes and then never answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield "http://127.0.0.1:%d/v1/metrics" % s.getsockname()[1]


@pytest.mark.parametrize("collector", ["refused", "blackhole"])
def test_shutdown_with_an_unreachable_collector_returns_in_time_and_spools(tmp_path, blackhole, collector):
    url = dead_url() if collector == "refused" else blackhole
    gw = Gateway(exporter_for(url, timeout=10, spool_dir=str(tmp_path)))
    gw.record(5)
    start = time.monotonic()
    gw.provider.shutdown(timeout_millis=1_000)
    assert time.monotonic() - start < 1.6   # the exporter's own timeout is 10 s
    assert len(spooled(tmp_path)) == 1
    with OTLPServer() as server:
        assert OTLPMetricExporter(server.url, spool_dir=str(tmp_path)).force_flush() is True
        assert summed(server.received) == gw.recorded
    assert spooled(tmp_path) == []


class Capture(MetricExporter):
    """Keeps what it is given."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.batches = []

    def export(self, metrics_data, timeout_millis=10_000, **kw):
        self.batches.append(metrics_data)
        return SUCCESS

    def force_flush(self, timeout_millis=10_000):
        return True

    def shutdown(self, timeout_millis=30_000, **kw):
        pass


def test_a_batch_exported_after_shutdown_still_reaches_the_spool(tmp_path, server, caplog):
    """A reader may hand its last collection to an exporter that has already shut down
    (its export was aborted, and shutdown closed the spool meanwhile): the batch is
    written to the spool all the same, and replayed by the next run."""
    source = Gateway(Capture(preferred_temporality=DELTA))
    source.record(6)
    assert source.export()
    data, = source.exporter.batches
    source.close()
    exporter = exporter_for(dead_url(), spool_dir=str(tmp_path))
    exporter.shutdown()
    assert exporter.export(data) is not SUCCESS     # nothing is sent after shutdown...
    assert len(spooled(tmp_path)) == 1              # ...but the batch is on disk
    stats = exporter.stats()
    assert stats["requests_queued"] == 1 and stats["requests_dropped_shutdown"] == 0

    # While another exporter holds the directory the late batch cannot go there: it is
    # counted as lost and logged, not written behind the other one's back.
    holder = exporter_for(server.url, spool_dir=str(tmp_path))
    with caplog.at_level(logging.ERROR, logger="otelmetrics.export.otlp"):
        exporter.export(data)
    assert exporter.stats()["requests_dropped_shutdown"] == 1
    assert "in use by another exporter" in caplog.text
    assert holder.force_flush() is True                  # the replay: the first batch only
    assert summed(server.received) == source.recorded
    assert spooled(tmp_path) == []
    holder.shutdown()


def test_a_spool_file_that_cannot_be_read_for_a_moment_stays_and_is_sent_later(tmp_path, server, monkeypatch):
    """Out of descriptors (EMFILE) while the spool is read: the files are not corrupt, so
    they stay under their names and go out, in order, once they can be read; new data
    waits behind them."""
    before = outage(tmp_path, (3, 1, 4))
    names = spooled(tmp_path)
    after = Gateway(exporter_for(server.url, spool_dir=str(tmp_path)))
    real_open = otlp_spool.Spool._open

    def out_of_descriptors(self, name):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(otlp_spool.Spool, "_open", out_of_descriptors)
    assert after.exporter.force_flush() is False
    after.record(2)
    assert not after.export()                     # kept behind the spooled requests
    assert server.received == [] and spooled(tmp_path)[:3] == names
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".corrupt")]
    monkeypatch.setattr(otlp_spool.Spool, "_open", real_open)
    assert after.exporter.force_flush() is True
    assert len(server.received) == 4
    assert summed(server.received[:3]) == before.recorded and summed(server.received[3:]) == after.recorded
    assert spooled(tmp_path) == []
    after.close()


def test_a_request_one_file_cannot_hold_with_its_header_is_split(tmp_path):
    """A file is a 16-byte header and the request: a request within ``max_spool_bytes``
    but not within that less the header is split (it used to stay in memory, and be lost
    at shutdown), and the file bound is exact."""
    source = Gateway(Capture(preferred_temporality=DELTA))
    for i in range(100):            # a request of a few KB (bounds under 1 KB are not split for)
        source.packets.add(1, {"if": "eth%d" % i})
    assert source.export()
    data, = source.exporter.batches
    source.close()
    probe = exporter_for(dead_url(), timeout=0.2)
    probe.export(data)
    size = probe.stats()["queued_bytes"]
    probe.shutdown()
    exporter = exporter_for(dead_url(), timeout=0.2, spool_dir=str(tmp_path), max_spool_bytes=size + 8)
    spool = exporter._store.spool
    assert spool.max_body == size + 8 - 16
    exporter.export(data)
    stats = exporter.stats()
    assert stats["queued_requests"] == 0          # nothing left in memory: split, and on disk
    assert stats["spooled_requests"] + stats["requests_dropped_queue_full"] == 2   # the bound holds one half
    exporter.shutdown()
    assert exporter.stats()["requests_dropped_shutdown"] == 0


def test_a_spool_directory_removed_while_running_is_made_again(tmp_path, server):
    """A cleaner (or an operator) removes the directory under a running exporter: the next
    write makes it again, so what the outage keeps still reaches the disk and the next run."""
    directory = tmp_path / "spool"
    gw = Gateway(exporter_for(dead_url(), spool_dir=str(directory)))
    shutil.rmtree(directory)
    for n in (3, 1, 4):
        gw.record(n)
        assert not gw.export()
    stats = gw.exporter.stats()
    assert stats["spooled_requests"] == 3 and stats["queued_requests"] == 0 and stats["spool_write_errors"] == 0
    gw.close()
    assert len(spooled(directory)) == 3
    assert OTLPMetricExporter(server.url, spool_dir=str(directory)).force_flush() is True
    assert summed(server.received) == gw.recorded


def test_kept_requests_stay_in_order_when_one_spool_write_failed(tmp_path, server, monkeypatch):
    """One write fails (a full disk, a moment): that request waits in memory, and goes to
    the spool before anything newer does, so every request still arrives oldest first."""
    gw = Gateway(exporter_for(dead_url(), spool_dir=str(tmp_path)))
    real_write = otlp_spool.Spool._write
    failures = [1]

    def failing_once(self, body, flags):
        if failures:
            failures.pop()
            return False
        return real_write(self, body, flags)

    monkeypatch.setattr(otlp_spool.Spool, "_write", failing_once)
    sizes = (1, 2, 3)
    for n in sizes:
        gw.record(n)
        assert not gw.export()
    assert gw.exporter.stats()["spooled_requests"] == 3
    gw.close()
    assert OTLPMetricExporter(server.url, spool_dir=str(tmp_path)).force_flush() is True
    assert [len(summed([got])) for got in server.received] == [3 * min(n, 2) for n in sizes]
    assert summed(server.received) == gw.recorded
