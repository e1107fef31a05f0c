"""otelmetrics-agent on an unlucky device: sensor files that block (FIFOs, a hung
driver), nothing readable at all, a collector that accepts and never answers while
SIGTERM arrives, and absurd durations. Each case was a hang or a traceback; each is
timed here against a bound."""
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

import otelmetrics
from otelmetrics.agent import procfs
from otelmetrics.agent.cli import AgentExporter, main
from otelmetrics.agent.host import HostMetrics
from otelmetrics.export import PeriodicExportingMetricReader
from otelmetrics.export.otlp_spool import Spool

from agent.test_cli import json_documents, metric_names
from agent_trees import X86
from otlp_receiver import OTLPServer, Reply
from test_callbacks_hung import Recorder


def agent(*args, timeout=120, env=None):
    """(CompletedProcess, seconds) of the installed agent, run away from the source tree,
    with no OTEL_* variable but those of ``env``; the seconds leave out what starting the
    interpreter and importing the agent takes (a fraction of a second natively, several
    seconds under qemu-user)."""
    env = dict({k: v for k, v in os.environ.items() if not k.startswith("OTEL")}, **(env or {}))
    t0 = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "otelmetrics.agent"] + list(args), capture_output=True,
                            text=True, timeout=timeout, env=env, cwd=tempfile.gettempdir())
    return result, time.monotonic() - t0 - _start_up_seconds()


@functools.lru_cache(maxsize=None)
def _start_up_seconds():
    """How long this interpreter takes to start and import the agent (measured once)."""
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", "import otelmetrics.agent.cli"], check=True, timeout=120,
                   cwd=tempfile.gettempdir())
    return time.monotonic() - t0


@pytest.fixture
def fifo_root(tmp_path):
    """The x86 fixture with FIFOs (no writer) in place of a required file, an optional
    sensor and a file read for the resource: an open or read of any of them blocks."""
    root = tmp_path / "root"
    shutil.copytree(X86, root)
    for path in ("proc/loadavg", "sys/class/hwmon/hwmon1/temp1_input", "proc/sys/kernel/hostname"):
        os.unlink(root / path)
        os.mkfifo(root / path)
    return str(root)


def test_fifo_files_are_skipped_not_waited_on(fifo_root):
    result, seconds = agent("--count", "3", "--interval", "0.2", "--root", fifo_root)
    print("--count 3 at 0.2 s with FIFOs under --root: exit %d after %.2f s" % (result.returncode, seconds))
    assert result.returncode == 0, result.stderr
    assert seconds < 10     # three collections; it used to block on the first FIFO forever
    docs = json_documents(result.stdout)
    assert len(docs) == 3
    names = metric_names(docs[-1])
    assert "system.cpu.load_average.1m" not in names           # the FIFO'd required file
    assert {"system.cpu.time", "system.memory.usage", "hw.temperature"} <= names
    # The FIFO'd sensor alone is left out; the other hwmon1 sensor is reported.
    temps = [m for rm in docs[-1]["resource_metrics"] for sm in rm["scope_metrics"] for m in sm["metrics"]
             if m["name"] == "hw.temperature"][0]
    ids = {p["attributes"]["hw.id"] for p in temps["data"]["data_points"]}
    assert "hwmon1_temp2" in ids and "hwmon1_temp1" not in ids
    assert "/proc/loadavg is unreadable" in result.stderr and "not a regular file" in result.stderr


def test_read_text_refuses_non_regular_files_at_once(fifo_root):
    t0 = time.monotonic()
    with pytest.raises(OSError, match="not a regular file"):
        procfs.read_text(fifo_root, "/proc/loadavg")
    assert time.monotonic() - t0 < 1
    with pytest.raises(OSError, match="not a regular file"):
        procfs.read_text("/", "/dev/zero")     # endless: would never finish
    assert procfs.read_text(fifo_root, "/proc/uptime").startswith(procfs.read_text(X86, "/proc/uptime"))


def test_a_file_larger_than_the_bound_is_refused(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * (procfs.MAX_FILE_BYTES + 1))
    with pytest.raises(OSError, match="larger than"):
        procfs.read_text(str(tmp_path), "/big")


def test_a_hung_driver_holds_one_thread_and_blocks_nothing_else():
    # A sysfs read whose driver never answers blocks in the kernel whatever the flags:
    # here statvfs of the mounts, shared by three instruments.
    release = threading.Event()
    calls = []

    def hung_statvfs(path):
        calls.append(path)
        release.wait(60)
        raise OSError("released")

    exporter = Recorder()
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=50, export_timeout_millis=200)
    mp = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    before = threading.active_count()
    HostMetrics(mp.get_meter("agent"), root=X86, max_age=0.02, statvfs=hung_statvfs)
    counts = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.0:
        counts.append(threading.active_count())
        time.sleep(0.05)
    print("threads before %d, peak %d over 2 s; %d exports; statvfs entered %d time(s)"
          % (before, max(counts), len(exporter.exports), len(calls)))
    assert len(calls) == 1                 # one hung read, never a second on another thread
    assert max(counts) - before <= 2       # that read's thread, and the worker for the rest
    assert len(exporter.exports) >= 10
    assert all("system.cpu.time" in n and "system.filesystem.usage" not in n for n in exporter.exports)
    release.set()
    mp.shutdown(timeout_millis=2000)


def test_count_ends_with_nothing_readable(tmp_path):
    (tmp_path / "proc").mkdir()     # a locked-down /proc: nothing in it can be read
    result, seconds = agent("--count", "3", "--interval", "0.1", "--root", str(tmp_path))
    print("--count 3 at 0.1 s with nothing readable: exit %d after %.2f s" % (result.returncode, seconds))
    assert result.returncode == 0, result.stderr
    assert seconds < 10 and result.stdout == ""


def test_empty_collections_count():
    done = threading.Event()
    wrapped = AgentExporter(Recorder(), 2, done)
    assert wrapped.force_flush() is True and not done.is_set()   # an empty collection
    assert wrapped.force_flush() is True and done.is_set()
    assert wrapped.failures == 0


@pytest.fixture
def silent():
    """An OTLP collector on 127.0.0.1 that accepts, reads every request, and never answers."""
    server = OTLPServer()
    server.replies = [Reply(delay=120) for _ in range(100)]
    yield server
    server.close()


def _sigterm_during_hung_export(silent, *extra, signals=(signal.SIGTERM,)):
    proc = subprocess.Popen([sys.executable, "-m", "otelmetrics.agent", "--endpoint", silent.url,
                             "--interval", "0.3"] + list(extra),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items() if not k.startswith("OTEL")},
                            cwd=tempfile.gettempdir())
    try:
        deadline = time.monotonic() + 20
        while not silent.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert silent.received, "the agent sent nothing"
        time.sleep(0.3)                          # the export now waits for an answer
        t0 = time.monotonic()
        for i, signum in enumerate(signals):
            time.sleep(0.5 if i else 0)
            proc.send_signal(signum)
        _, stderr = proc.communicate(timeout=60)
        return proc.returncode, time.monotonic() - t0, stderr
    finally:
        proc.kill()


@pytest.mark.parametrize("shutdown_timeout,signals", [
    (2.0, (signal.SIGTERM,)), (4.0, (signal.SIGTERM,)),
    # A second signal during the shutdown: the default handlers were back by then, so
    # it killed the agent (rc -15, or a KeyboardInterrupt traceback) before it spooled.
    (4.0, (signal.SIGTERM, signal.SIGTERM)), (4.0, (signal.SIGINT, signal.SIGINT)),
], ids=["SIGTERM-2s", "SIGTERM-4s", "SIGTERM-twice", "SIGINT-twice"])
def test_sigterm_during_a_hung_export_stops_in_time_and_spools(silent, tmp_path, shutdown_timeout, signals):
    spool = tmp_path / "spool"
    rc, seconds, stderr = _sigterm_during_hung_export(silent, "--spool-dir", str(spool),
                                                      "--shutdown-timeout", str(shutdown_timeout),
                                                      signals=signals)
    kept = Spool(str(spool), max_bytes=1 << 30, max_files=1000)
    try:
        count, oldest = len(kept), kept.oldest()
    finally:
        kept.close()
    print("--shutdown-timeout %g: stopped %.2f s after SIGTERM; %d request(s) received unanswered, "
          "%d spooled" % (shutdown_timeout, seconds, len(silent.received), count))
    assert seconds < shutdown_timeout + 0.5, stderr
    assert rc == 0, stderr
    assert "Traceback" not in stderr
    # The request the collector never answered is in the spool, byte for byte.
    assert count >= 1, stderr
    assert oldest.body == silent.received[0].raw
    request = ExportMetricsServiceRequest.FromString(silent.received[0].body)
    names = {m.name for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {"system.cpu.time", "system.memory.usage"} <= names


def test_sigterm_during_a_hung_export_without_a_spool_stops_in_time(silent):
    rc, seconds, stderr = _sigterm_during_hung_export(silent, "--shutdown-timeout", "2")
    print("no spool: stopped %.2f s after SIGTERM" % seconds)
    assert seconds < 2.5, stderr
    assert rc == 0
    assert "lost" in stderr         # the undelivered request is not lost silently


@pytest.mark.parametrize("option,value", [
    ("--interval", "inf"), ("--interval", "1e300"), ("--interval", "nan"), ("--interval", "0"),
    ("--interval", "-1"), ("--interval", "0.001"), ("--interval", "ten"),
    ("--shutdown-timeout", "inf"), ("--shutdown-timeout", "0"), ("--shutdown-timeout", "1e300"),
])
def test_absurd_durations_are_refused_with_the_range(option, value, capsys):
    with pytest.raises(SystemExit) as exc:
        main([option, value, "--count", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument %s" % option in err and "Traceback" not in err
    if value != "ten":
        assert "out of range: give" in err


def test_absurd_interval_variable_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "1e300")
    assert main(["--count", "1"]) == 2
    assert "OTEL_METRIC_EXPORT_INTERVAL=1e300 is out of range: give 10 to 86400000 milliseconds" \
        in capsys.readouterr().err


@pytest.mark.parametrize("name,value", [
    ("OTEL_METRIC_EXPORT_INTERVAL", "inf"), ("OTEL_METRIC_EXPORT_INTERVAL", "nan"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "-1"), ("OTEL_METRIC_EXPORT_INTERVAL", "0"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "ten"), ("OTEL_METRIC_EXPORT_TIMEOUT", "inf"),
    ("OTEL_METRIC_EXPORT_TIMEOUT", "0"), ("OTEL_METRIC_EXPORT_TIMEOUT", "ten"),
    ("OTEL_METRIC_EXPORT_TIMEOUT", "1e300"),
])
def test_invalid_duration_variables_are_refused_at_start(name, value):
    """Only 1e300 was refused: inf, nan, -1, 0 and 'ten' ran the agent at the SDK's 60 s
    (not the agent's 10 s) after a warning, and a bad export timeout fell back to 30 s."""
    interval = ["--interval", "0.1"] if name.endswith("TIMEOUT") else []
    result, seconds = agent("--count", "1", *interval, env={name: value}, timeout=20)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("otelmetrics-agent: %s=%s " % (name, value)), result.stderr
    assert result.stderr.count("\n") == 1 and result.stdout == ""


def test_absurd_interval_from_the_command_line_exits_at_once():
    result, seconds = agent("--interval", "1e300", timeout=30)
    assert result.returncode == 2 and seconds < 10
    assert "--interval" in result.stderr and "Traceback" not in result.stderr
