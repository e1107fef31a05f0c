"""The spool directory as a trust boundary: planted links are never followed, unsafe
directories (a link, another user's, writable by others) and a directory another
exporter holds are refused, modes are 0700/0600 whatever the umask, a large foreign
file costs neither memory nor valid requests, and the order holds past 10**12.
Each test checks that nothing outside the spool directory changed."""
import hashlib
import json
import logging
import os
import re
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
import zlib

import pytest

from otelmetrics.export.otlp import OTLPMetricExporter
from export.test_otlp_queue import Gateway, clean_env, exporter_for, server, summed  # noqa: F401
from export.test_otlp_spool import dead_url, outage, spooled

GIB = 1 << 30
ENV_DIR = "OTELMETRICS_EXPORTER_SPOOL_DIR"


def snapshot(root, skip=None):
    """Everything under ``root`` (but ``skip``): kind, mode, owner, size, content or target."""
    out = {}
    for top, dirs, files in os.walk(root):   # links are listed, never followed
        dirs[:] = [d for d in dirs if skip is None or os.path.join(top, d) != str(skip)]
        for name in dirs + files:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                what = "-> " + os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()
            else:
                what = None
            out[os.path.relpath(path, root)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                                st.st_uid, st.st_size, st.st_mtime_ns, what)
    return out


def assert_refused(root, directory, why, monkeypatch, caplog):
    """An explicit ``directory`` raises ValueError, the variable gets a warning and no spool,
    both saying ``why``; nothing under ``root`` changes, not even a lock file."""
    before = snapshot(root)
    with pytest.raises(ValueError, match="spool_dir.*" + re.escape(why)):
        OTLPMetricExporter(dead_url(), spool_dir=directory)
    monkeypatch.setenv(ENV_DIR, directory)
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        exp = OTLPMetricExporter(dead_url())
    monkeypatch.delenv(ENV_DIR)
    assert exp._store.spool is None and ENV_DIR in caplog.text and why in caplog.text
    assert snapshot(root) == before


@pytest.fixture
def outside(tmp_path):
    """A file the spool must never touch, next to the spool directory."""
    victim = tmp_path / "outside" / "victim.conf"
    victim.parent.mkdir()
    victim.write_bytes(b"precious configuration\n")
    return victim


def test_planted_links_are_never_followed_nor_read(tmp_path, outside, server):
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)
    # Planted before the exporter starts: under the first temporary name, under a request's
    # name (a symlink and a hard link), all pointing at a file outside.
    os.symlink(outside, spool / ".tmp-000000000000.otlp")
    os.symlink(outside, spool / "000000000005.otlp")
    os.link(outside, spool / "000000000006.otlp")
    before = snapshot(tmp_path, skip=spool)
    gw = Gateway(exporter_for(dead_url(), spool_dir=str(spool)))
    assert gw.exporter.stats()["spool_files_skipped"] == 3 and gw.exporter.stats()["spooled_requests"] == 0
    # Planted while it runs: under the next temporary names, then under the next final name.
    os.symlink(outside, spool / ".tmp-000000000001.otlp")
    os.symlink(outside, spool / ".tmp-000000000001.otlp.1")
    for n in (2, 4, 1):
        if n == 1:
            os.symlink(outside, spool / "000000000002.otlp")
        gw.record(n)
        assert not gw.export()
    gw.close()
    assert snapshot(tmp_path, skip=spool) == before
    assert outside.read_bytes() == b"precious configuration\n"
    assert [n for n in spooled(spool) if n[0] != "."] == ["000000000000.otlp", "000000000001.otlp", "000000000002.otlp",
                              "000000000005.otlp", "000000000006.otlp"]
    assert not os.path.islink(spool / "000000000002.otlp")   # the rename replaced the link itself
    assert gw.exporter.stats()["spooled_requests"] == 3

    exp = OTLPMetricExporter(server.url, spool_dir=str(spool))
    assert exp.force_flush() is True
    assert summed(server.received) == gw.recorded and len(server.received) == 3
    exp.shutdown()
    # The planted entries are still there, never followed, read or deleted.
    assert sorted(os.listdir(spool)) == [".lock", ".tmp-000000000000.otlp", ".tmp-000000000001.otlp",
                                         ".tmp-000000000001.otlp.1", "000000000005.otlp", "000000000006.otlp"]
    assert snapshot(tmp_path, skip=spool) == before


def test_files_swapped_after_the_scan_are_not_followed_nor_waited_on(tmp_path, outside, server):
    spool = tmp_path / "spool"
    kept = outage(spool, (1, 2, 3))
    exp = OTLPMetricExporter(server.url, spool_dir=str(spool))
    assert exp.stats()["spooled_requests"] == 3
    before = snapshot(tmp_path, skip=spool)
    os.unlink(spool / "000000000000.otlp")
    os.symlink(outside, spool / "000000000000.otlp")   # a link to a file outside
    os.unlink(spool / "000000000001.otlp")
    os.mkfifo(spool / "000000000001.otlp")              # a FIFO: opening it to read would block
    assert exp.force_flush(timeout_millis=5_000) is True
    assert [summed([r]) for r in server.received] == [Gateway.tally(3)]   # only the intact one
    assert exp.stats()["spool_files_skipped"] == 2
    assert sorted(os.listdir(spool)) == [".lock", "000000000000.otlp.corrupt", "000000000001.otlp.corrupt"]
    assert os.path.islink(spool / "000000000000.otlp.corrupt")   # the link itself was renamed
    assert snapshot(tmp_path, skip=spool) == before
    assert kept.exporter.stats()["spooled_requests"] == 3
    exp.shutdown()


@pytest.mark.parametrize("trailing_slash", [False, True])
def test_a_symlinked_spool_dir_is_refused(tmp_path, monkeypatch, caplog, trailing_slash):
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    link = str(tmp_path / "link") + ("/" if trailing_slash else "")
    os.symlink(real, tmp_path / "link")
    assert_refused(tmp_path, link, "is a symbolic link", monkeypatch, caplog)


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o757])
def test_a_directory_writable_by_others_is_refused(tmp_path, monkeypatch, caplog, mode):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    assert_refused(tmp_path, str(shared), "is writable by group or others (mode %04o)" % mode,
                   monkeypatch, caplog)


def test_a_world_writable_directory_with_the_sticky_bit_is_accepted(tmp_path):
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)   # as /tmp: others cannot delete or rename our files
    exp = OTLPMetricExporter(dead_url(), spool_dir=str(sticky))
    assert exp._store.spool is not None
    exp.shutdown()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_a_directory_owned_by_another_user_is_refused(tmp_path, monkeypatch, caplog):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 4242, 4242)
    assert_refused(tmp_path, str(theirs), "is owned by uid 4242, not by this process's user (uid 0)",
                   monkeypatch, caplog)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing to another uid needs root")
def test_a_process_of_another_user_refuses_roots_directory():
    """The check run with a changed uid: a forked child becomes uid 65534 (the interpreter
    is not reachable for that user, so no exec) and is given a root-owned 0755 directory."""
    top = tempfile.mkdtemp(prefix="spool-uid-")
    try:
        os.chmod(top, 0o755)
        rootdir = os.path.join(top, "root-owned")
        os.mkdir(rootdir, 0o755)
        before = snapshot(top)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:   # the child: never returns into pytest
            code = 2
            try:
                os.close(read)
                os.setgid(65534)
                os.setuid(65534)
                try:
                    OTLPMetricExporter(dead_url(), spool_dir=rootdir)
                    message, code = "accepted", 1
                except ValueError as e:
                    message, code = str(e), 0
                os.write(write, message.encode())
            finally:
                os._exit(code)
        os.close(write)
        with os.fdopen(read, "rb") as f:
            message = f.read().decode()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, message
        assert "owned by uid 0, not by this process's user (uid 65534)" in message
        assert snapshot(top) == before
    finally:
        subprocess.run(["rm", "-rf", top], check=True)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_modes_are_0700_and_0600_whatever_the_umask(tmp_path, umask):
    before = snapshot(tmp_path)
    old = os.umask(umask)
    try:
        spool = tmp_path / "a" / "b" / "spool"
        gw = Gateway(exporter_for(dead_url(), spool_dir=str(spool)))
        gw.record(1)
        assert not gw.export()
        gw.close()
        packaged = tmp_path / "packaged"   # as images ship them: 0755, created by someone else
        packaged.mkdir()
        packaged.chmod(0o755)
        outage(packaged, (1,))
    finally:
        os.umask(old)
    for d in (tmp_path / "a", tmp_path / "a" / "b", spool):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, d
    assert stat.S_IMODE(os.stat(packaged).st_mode) == 0o755
    for d in (spool, packaged):
        names = sorted(os.listdir(d))
        assert names == [".lock", "000000000000.otlp"]
        for name in names:
            assert stat.S_IMODE(os.stat(d / name).st_mode) == 0o600, (d, name)
    assert set(snapshot(tmp_path)) - set(before) == {"a", "a/b", "a/b/spool", "a/b/spool/.lock",
                                                     "a/b/spool/000000000000.otlp", "packaged",
                                                     "packaged/.lock", "packaged/000000000000.otlp"}


SECOND_PROCESS = textwrap.dedent("""
    import sys
    from otelmetrics.export.otlp import OTLPMetricExporter
    try:
        OTLPMetricExporter("http://127.0.0.1:9/v1/metrics", spool_dir=sys.argv[1])
    except ValueError as e:
        print(e)
        sys.exit(3)
""")


def test_a_second_exporter_on_a_locked_directory_is_refused(tmp_path, server, monkeypatch, caplog):
    spool = tmp_path / "spool"
    first = Gateway(exporter_for(dead_url(), spool_dir=str(spool)))
    first.record(3)
    assert not first.export()
    before = snapshot(tmp_path)
    assert_refused(tmp_path, str(spool), "is in use by another exporter", monkeypatch, caplog)
    other = subprocess.run([sys.executable, "-c", SECOND_PROCESS, str(spool)], cwd=str(tmp_path),
                           capture_output=True, text=True, timeout=60)
    assert other.returncode == 3 and "in use by another exporter" in other.stdout, other.stderr
    assert snapshot(tmp_path) == before   # the refused ones touched nothing, read nothing
    assert server.received == []
    first.close()   # shutdown unlocks: the next exporter sends what the first one kept
    after = OTLPMetricExporter(server.url, spool_dir=str(spool))
    assert after.force_flush() is True and summed(server.received) == first.recorded


def test_a_forked_child_does_not_spool_into_its_parents_directory(tmp_path):
    spool = tmp_path / "spool"
    exp = OTLPMetricExporter(dead_url(), spool_dir=str(spool))
    assert exp._store.spool.put(b"parent", 0)
    before = snapshot(tmp_path)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            s = exp._store.spool
            code = 0 if (not s.put(b"child", 0) and len(s) == 0 and s.oldest() is None) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert snapshot(tmp_path) == before
    with pytest.raises(ValueError, match="in use"):   # the child's exit did not unlock the parent's
        OTLPMetricExporter(dead_url(), spool_dir=str(spool))
    assert exp._store.spool.put(b"parent again", 0) and len(exp._store.spool) == 2
    exp.shutdown()


def test_sequence_numbers_keep_their_order_past_10_12(tmp_path, server):
    first = outage(tmp_path, (1, 2))
    os.rename(tmp_path / "000000000000.otlp", tmp_path / "999999999998.otlp")
    os.rename(tmp_path / "000000000001.otlp", tmp_path / "999999999999.otlp")
    second = outage(tmp_path, (3, 4))
    assert spooled(tmp_path) == ["1000000000000.otlp", "1000000000001.otlp",   # as text: out of order
                                 "999999999998.otlp", "999999999999.otlp"]
    exp = OTLPMetricExporter(server.url, spool_dir=str(tmp_path))
    assert exp.stats()["spool_files_skipped"] == 0
    assert exp.force_flush() is True
    assert [summed([got]) for got in server.received] == [Gateway.tally(n) for n in (1, 2, 3, 4)]
    assert summed(server.received) == first.recorded + second.recorded
    assert spooled(tmp_path) == []


RSS_PROBE = textwrap.dedent("""
    import json, resource, sys
    from otelmetrics.export.otlp import OTLPMetricExporter
    url, spool, bound = sys.argv[1], sys.argv[2], int(sys.argv[3])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    exp = OTLPMetricExporter(url, spool_dir=spool, max_spool_bytes=bound)
    at_start = exp.stats()
    flushed = exp.force_flush()
    exp.shutdown()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"growth_kib": peak - before, "peak_kib": peak, "flushed": flushed,
                      "at_start": at_start, "after": exp.stats()}))
""")


@pytest.mark.parametrize("bound", [64 << 20, 4 * GIB], ids=["default-bound", "4GiB-bound"])
def test_a_large_foreign_file_costs_no_memory_and_evicts_nothing(tmp_path, server, bound):
    spool = tmp_path / "spool"
    kept = outage(spool, (2, 3))   # two valid requests, oldest first
    # Sparse 1 GB files (no real disk use): zeros under a request's name, the same behind a
    # header that looks like ours, and a core dump under a name of its own.
    with open(spool / "000000000002.otlp", "wb") as f:
        f.truncate(GIB)
    with open(spool / "000000000003.otlp", "wb") as f:
        f.write(struct.pack("<4sBBHII", b"OTMS", 1, 0, 0, GIB - 16, zlib.crc32(b"")))
        f.truncate(GIB)
    with open(spool / "core", "wb") as f:
        f.truncate(GIB)
    assert os.stat(spool / "core").st_blocks * 512 < 1 << 20   # really sparse
    before = snapshot(tmp_path, skip=spool)
    probe = subprocess.run([sys.executable, "-c", RSS_PROBE, server.url, str(spool), str(bound)],
                           cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    got = json.loads(probe.stdout)
    print("peak RSS %d KiB, growth %d KiB (bound %d)" % (got["peak_kib"], got["growth_kib"], bound))
    assert got["growth_kib"] < 16 * 1024   # not 1 GiB, not even a chunk-sized multiple of it
    start = got["at_start"]
    assert start["spooled_requests"] == 2 and start["spool_files_skipped"] == 3
    assert start["spooled_bytes"] == kept.exporter.stats()["spooled_bytes"] < 1 << 20
    assert got["flushed"] is True and got["after"]["requests_dropped_queue_full"] == 0
    assert [summed([r]) for r in server.received] == [Gateway.tally(2), Gateway.tally(3)]
    assert sorted(os.listdir(spool)) == [".lock", "000000000002.otlp.corrupt", "000000000003.otlp.corrupt",
                                         "core"]
    assert snapshot(tmp_path, skip=spool) == before
