"""The agent's instruments: names, units, kinds and attributes as the semantic
conventions define them, values from the fixture trees, and failure handling."""
import inspect
import logging
import os
import shutil

import pytest

from otelmetrics.agent.host import HostMetrics
from agent_trees import RPI, X86, StatVFS, fake_statvfs

KIB = 1024
RPI_SIZES = {"/": StatVFS(4096, 7_500_000, 5_000_000, 4_600_000),
             "/boot/firmware": StatVFS(512, 1_048_576, 800_000, 800_000),
             "/media/pi/USB STICK": StatVFS(4096, 1_000, 250, 250)}


def _otelmetrics():
    import otelmetrics
    from otelmetrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    return otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False), reader


def _reference_sdk():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    return MeterProvider(metric_readers=[reader], shutdown_on_exit=False), reader


def key(attributes):
    return frozenset(attributes.items())


def collect(reader):
    """name -> (unit, {frozenset(attributes): value})"""
    out = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                points = {key(p.attributes): p.value for p in m.data.data_points}
                out[m.name] = (m.unit, points)
    return out


@pytest.fixture(params=[_otelmetrics, _reference_sdk], ids=["otelmetrics", "opentelemetry-sdk"])
def sdk(request):
    provider, reader = request.param()
    yield provider, reader
    provider.shutdown()


def test_rpi_fixture_metrics(sdk):
    provider, reader = sdk
    HostMetrics(provider.get_meter("agent"), root=RPI, statvfs=fake_statvfs(RPI, RPI_SIZES))
    got = collect(reader)

    unit, cpu = got["system.cpu.time"]
    assert unit == "s" and len(cpu) == 4 * 7
    assert cpu[key({"cpu.mode": "user", "cpu.logical_number": 0})] == pytest.approx(660.14)

    assert got["system.cpu.frequency"][1] == {
        key({"cpu.logical_number": n}): hz for n, hz in enumerate((1.5e9, 1.5e9, 6e8, 1.8e9))}

    unit, memory = got["system.memory.usage"]
    assert unit == "By"
    assert memory == {key({"system.memory.state": s}): v * KIB for s, v in
                      (("used", 3884352 - 3271196), ("free", 2414520), ("buffers", 61480), ("cached", 859412))}
    assert got["system.memory.utilization"][1][key({"system.memory.state": "free"})] == \
        pytest.approx(2414520 / 3884352)

    assert got["system.paging.usage"][1] == {
        key({"system.device": "/var/swap", "system.paging.state": "used"}): 5120 * KIB,
        key({"system.device": "/var/swap", "system.paging.state": "free"}): 97276 * KIB}

    io = got["system.disk.io"][1]
    assert io[key({"system.device": "mmcblk0p2", "disk.io.direction": "write"})] == 486902 * 512
    assert len(io) == 3 * 2

    usage = got["system.filesystem.usage"][1]
    stick = {"system.device": "/dev/sda1", "system.filesystem.mountpoint": "/media/pi/USB STICK",
             "system.filesystem.type": "vfat", "system.filesystem.mode": "ro"}
    assert usage[key({**stick, "system.filesystem.state": "used"})] == 750 * 4096
    assert got["system.filesystem.utilization"][1][
        key({**stick, "system.filesystem.state": "used"})] == pytest.approx(0.75)
    assert len(usage) == 3 * 3

    net = got["system.network.io"][1]
    assert net[key({"network.interface.name": "eth0", "network.io.direction": "transmit"})] == 51234567
    assert got["system.network.errors"][1][
        key({"network.interface.name": "eth0", "network.io.direction": "receive"})] == 2
    assert got["system.network.packet.count"][1][
        key({"system.device": "eth0", "network.io.direction": "receive"})] == 701234

    assert got["system.process.count"][1] == {
        key({"process.state": s}): n
        for s, n in (("sleeping", 5), ("running", 1), ("stopped", 1), ("defunct", 1))}
    assert got["system.uptime"] == ("s", {frozenset(): 123456.78})
    assert got["system.cpu.load_average.15m"][1] == {frozenset(): 0.59}

    assert got["hw.temperature"] == ("Cel", {
        key({"hw.id": "thermal_zone0", "hw.name": "cpu-thermal"}): 48.686})
    throttled = got["rpi.throttled"][1]
    assert len(throttled) == 8
    assert throttled[key({"rpi.throttled.reason": "under_voltage", "rpi.throttled.period": "now"})] == 1
    assert throttled[key({"rpi.throttled.reason": "soft_temp_limit",
                                "rpi.throttled.period": "since_boot"})] == 0


def test_x86_fixture_has_no_raspberry_pi_metrics(sdk):
    provider, reader = sdk
    HostMetrics(provider.get_meter("agent"), root=X86, statvfs=fake_statvfs(X86, {}))
    got = collect(reader)
    assert "rpi.throttled" not in got
    assert len(got["hw.temperature"][1]) == 5
    assert "system.filesystem.usage" not in got  # nothing mounted, per the fake statvfs
    assert got["system.cpu.logical.count"][1] == {frozenset(): 2}


def _instrument_kinds(create):
    """name -> (kind, unit) for the instruments ``create(meter)`` makes; kind is
    counter, up_down_counter or gauge, synchronous or not (the conventions' package
    makes some synchronous, the agent observes them all)."""
    made = {}

    class RecordingMeter:
        def __getattr__(self, method):
            def create_instrument(name, callbacks=None, unit="", description=""):
                made[name] = (method.replace("create_", "").replace("observable_", ""), unit)
            return create_instrument

    create(RecordingMeter())
    return made


def test_names_units_and_kinds_match_the_semantic_conventions_package():
    from opentelemetry.semconv._incubating.metrics import hw_metrics, system_metrics

    conventions = {}
    for module in (system_metrics, hw_metrics):
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("create_"):
                takes_callbacks = "callbacks" in inspect.signature(fn).parameters
                conventions.update(_instrument_kinds(
                    lambda meter: fn(meter, callbacks=[]) if takes_callbacks else fn(meter)))
    ours = _instrument_kinds(lambda meter: HostMetrics(meter, root=RPI))
    checked = {name for name in ours if name in conventions}
    for name in checked:
        assert ours[name] == conventions[name], name
    # Everything but load average (no convention yet) and the Raspberry Pi flags.
    assert set(ours) - checked == {"system.cpu.load_average.1m", "system.cpu.load_average.5m",
                                   "system.cpu.load_average.15m", "rpi.throttled"}


def _writable_copy(tmp_path):
    root = tmp_path / "root"
    shutil.copytree(RPI, root)
    return root


def test_cpu_utilization_is_the_share_of_time_since_the_last_collection(tmp_path):
    root = _writable_copy(tmp_path)
    provider, reader = _otelmetrics()
    HostMetrics(provider.get_meter("agent"), root=str(root), max_age=0,
                statvfs=fake_statvfs(str(root), {}))
    stat = root / "proc" / "stat"
    lines = stat.read_text().splitlines()

    def shares(line):
        names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
        ticks = dict(zip(names, map(int, line.split()[1:9])))
        ticks["interrupt"] = ticks.pop("irq") + ticks.pop("softirq")
        total = sum(ticks.values())
        return {mode: t / total for mode, t in ticks.items()}

    def cpu(points, n):
        return {dict(k)["cpu.mode"]: v for k, v in points.items() if dict(k)["cpu.logical_number"] == n}

    # The first collection has no earlier sample: the shares since boot.
    first = collect(reader)["system.cpu.utilization"][1]
    assert cpu(first, 0) == pytest.approx(shares(lines[1]))
    # cpu0: +30 user, +10 system, +60 idle ticks since that collection.
    fields = lines[1].split()
    for column, ticks in ((1, 30), (3, 10), (4, 60)):
        fields[column] = str(int(fields[column]) + ticks)
    lines[1] = " ".join(fields)
    stat.write_text("\n".join(lines) + "\n")

    points = collect(reader)["system.cpu.utilization"][1]
    assert cpu(points, 0) == pytest.approx({"user": 0.3, "system": 0.1, "idle": 0.6, "nice": 0, "iowait": 0,
                                            "interrupt": 0, "steal": 0})
    # A CPU whose counters did not move (samples closer than a tick) reports since boot again.
    assert cpu(points, 1) == pytest.approx(shares(lines[2]))
    provider.shutdown()


def test_missing_or_malformed_files_are_skipped_with_one_warning_each(tmp_path, caplog):
    root = tmp_path / "root"
    (root / "proc" / "1").mkdir(parents=True)
    (root / "proc" / "1" / "stat").write_text("1 (init) S 0 1 1 0\n")
    (root / "proc" / "loadavg").write_text("not numbers\n")
    (root / "proc" / "uptime").write_text("4242.5 1000.0\n")
    provider, reader = _otelmetrics()
    with caplog.at_level(logging.WARNING, logger="otelmetrics.agent"):
        HostMetrics(provider.get_meter("agent"), root=str(root), max_age=0)
        first = collect(reader)
        second = collect(reader)
    provider.shutdown()

    # What can be read still is.
    assert first["system.uptime"][1] == {frozenset(): 4242.5}
    assert first["system.process.count"][1] == {key({"process.state": "sleeping"}): 1}
    assert set(first) == set(second) == {"system.uptime", "system.process.count"}
    warned = [r.getMessage().split(" is unreadable")[0] for r in caplog.records]
    assert sorted(warned) == sorted(["/proc/stat", "/proc/meminfo", "/proc/swaps", "/proc/diskstats",
                                     "/proc/net/dev", "/proc/mounts", "/proc/loadavg"])
    # Absent optional hardware (cpufreq, thermal, hwmon, Raspberry Pi firmware) is not warned about.


def test_one_read_serves_every_instrument_of_a_collection(monkeypatch):
    from otelmetrics.agent import procfs as readers

    calls = []
    original = readers.netdev
    monkeypatch.setattr(readers, "netdev", lambda root: calls.append(root) or original(root))
    provider, reader = _otelmetrics()
    HostMetrics(provider.get_meter("agent"), root=X86, max_age=60)
    collect(reader)
    collect(reader)
    provider.shutdown()
    assert len(calls) == 1  # four network instruments, two collections, one read


def test_live_machine_end_to_end():
    provider, reader = _otelmetrics()
    HostMetrics(provider.get_meter("agent"))
    got = collect(reader)
    provider.shutdown()
    for name in ("system.cpu.time", "system.memory.usage", "system.network.io", "system.process.count",
                 "system.uptime", "system.cpu.load_average.1m", "system.memory.utilization"):
        assert got[name][1], name
    assert all(0 <= v <= 1 for v in got["system.memory.utilization"][1].values())
    assert os.cpu_count() == got["system.cpu.logical.count"][1][frozenset()]
