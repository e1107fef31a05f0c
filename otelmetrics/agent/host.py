"""The agent's host metrics as observable instruments on any opentelemetry-api Meter.

    from otelmetrics.agent.host import HostMetrics
    HostMetrics(provider.get_meter("otelmetrics.agent"))

Names, units and attributes follow the OpenTelemetry semantic conventions for
system and hardware metrics. Each instrument's callback reads its source
(``procfs``) and turns the data into Observations; sources are memoised for
``max_age`` seconds, so the instruments fed by one file read it once per collection.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from typing import Callable, Dict, List

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from otelmetrics.agent import procfs

_logger = logging.getLogger("otelmetrics.agent")


class Source:
    """One reader, memoised for ``max_age`` seconds; after its first failure it is
    skipped for good, with one warning, so a missing file never stops the agent.
    One read at a time: while a read hangs (a sysfs driver that never answers),
    the other callbacks of that source get nothing at once instead of hanging
    on another thread too."""

    def __init__(self, name: str, read: Callable[[str], object], root: str, max_age: float) -> None:
        self.name = name
        self._read = read
        self._root = root
        self._max_age = max_age
        self._value = None
        self._read_at = float("-inf")
        self._reading = threading.Lock()
        self.failed = False

    def get(self):
        if self.failed or not self._reading.acquire(blocking=False):
            return None
        try:
            now = time.monotonic()
            if now - self._read_at >= self._max_age:
                try:
                    self._value = self._read(self._root)
                except (OSError, LookupError) + procfs.BAD_VALUE as e:
                    self.failed = True
                    self._value = None
                    _logger.warning("%s is unreadable (%s: %s); skipping the metrics read from it",
                                    self.name, type(e).__name__, e)
                    return None
                self._read_at = now
            return self._value
        finally:
            self._reading.release()


def _callback(source: Source, observe: Callable[[object], List[Observation]]):
    def callback(options: CallbackOptions) -> List[Observation]:
        data = source.get()
        return [] if data is None else observe(data)

    return callback


# ---------------------------------------------------------------- data -> Observations
# Pure functions, one per instrument (or family of instruments on the same data).

def cpu_time(stat: procfs.ProcStat) -> List[Observation]:
    return [Observation(seconds, {"cpu.mode": mode, "cpu.logical_number": cpu})
            for cpu, modes in stat.cpu_seconds.items() for mode, seconds in modes.items()]


def cpu_logical_count(stat: procfs.ProcStat) -> List[Observation]:
    return [Observation(len(stat.cpu_seconds))]


def processes_created(stat: procfs.ProcStat) -> List[Observation]:
    return [Observation(stat.processes_created)]


class CpuUtilization:
    """Per logical CPU and mode: the mode's share of the CPU time that passed since
    the previous sample (a fraction, 0 to 1). With no earlier sample (or none a
    clock tick ago) the share since boot is reported, so the first export of a
    freshly started agent already has the metric."""

    def __init__(self) -> None:
        self._previous: Dict[int, Dict[str, float]] = {}

    def __call__(self, stat: procfs.ProcStat) -> List[Observation]:
        out: List[Observation] = []
        for cpu, modes in stat.cpu_seconds.items():
            before = self._previous.get(cpu, {})
            spent = {mode: max(0.0, seconds - before.get(mode, 0.0)) for mode, seconds in modes.items()}
            total = sum(spent.values())
            if total <= 0:  # no tick since the previous sample: keep it, report since boot
                spent, total = dict(modes), sum(modes.values())
            else:
                self._previous[cpu] = modes
            if total > 0:
                out += [Observation(s / total, {"cpu.mode": mode, "cpu.logical_number": cpu})
                        for mode, s in spent.items()]
        return out


def cpu_frequency(hz_by_cpu: Dict[int, float]) -> List[Observation]:
    return [Observation(hz, {"cpu.logical_number": cpu}) for cpu, hz in hz_by_cpu.items()]


def _memory_states(info: Dict[str, int]) -> Dict[str, int]:
    # "used" is MemTotal - MemAvailable, as the conventions say, with the older
    # formula for kernels before 3.14 that lack MemAvailable.
    buffers, cached = info.get("Buffers", 0), info.get("Cached", 0)
    available = info.get("MemAvailable", info["MemFree"] + buffers + cached)
    return {"used": info["MemTotal"] - available, "free": info["MemFree"],
            "buffers": buffers, "cached": cached}


def memory_usage(info: Dict[str, int]) -> List[Observation]:
    return [Observation(b, {"system.memory.state": s}) for s, b in _memory_states(info).items()]


def memory_utilization(info: Dict[str, int]) -> List[Observation]:
    total = info["MemTotal"]
    if not total:
        return []
    return [Observation(b / total, {"system.memory.state": s}) for s, b in _memory_states(info).items()]


def memory_limit(info: Dict[str, int]) -> List[Observation]:
    return [Observation(info["MemTotal"])]


def memory_available(info: Dict[str, int]) -> List[Observation]:
    return [Observation(info["MemAvailable"])] if "MemAvailable" in info else []


def paging_usage(swaps: List[procfs.Swap]) -> List[Observation]:
    out = []
    for swap in swaps:
        out.append(Observation(swap.used, {"system.device": swap.device, "system.paging.state": "used"}))
        out.append(Observation(swap.size - swap.used,
                               {"system.device": swap.device, "system.paging.state": "free"}))
    return out


def paging_utilization(swaps: List[procfs.Swap]) -> List[Observation]:
    out = []
    for swap in swaps:
        if swap.size:
            used = swap.used / swap.size
            out.append(Observation(used, {"system.device": swap.device, "system.paging.state": "used"}))
            out.append(Observation(1 - used, {"system.device": swap.device, "system.paging.state": "free"}))
    return out


def _per_disk(read_value: Callable, write_value: Callable):
    def observe(disks: Dict[str, procfs.DiskStats]) -> List[Observation]:
        out = []
        for device, d in disks.items():
            out.append(Observation(read_value(d), {"system.device": device, "disk.io.direction": "read"}))
            out.append(Observation(write_value(d), {"system.device": device, "disk.io.direction": "write"}))
        return out

    return observe


disk_io = _per_disk(lambda d: d.read_bytes, lambda d: d.write_bytes)
disk_operations = _per_disk(lambda d: d.reads, lambda d: d.writes)
disk_operation_time = _per_disk(lambda d: d.read_time, lambda d: d.write_time)
disk_merged = _per_disk(lambda d: d.read_merged, lambda d: d.write_merged)


def disk_io_time(disks: Dict[str, procfs.DiskStats]) -> List[Observation]:
    return [Observation(d.io_time, {"system.device": device}) for device, d in disks.items()]


def _per_interface(receive: Callable, transmit: Callable, device_key: str = "network.interface.name"):
    def observe(interfaces: Dict[str, procfs.NetDev]) -> List[Observation]:
        out = []
        for name, n in interfaces.items():
            out.append(Observation(receive(n), {device_key: name, "network.io.direction": "receive"}))
            out.append(Observation(transmit(n), {device_key: name, "network.io.direction": "transmit"}))
        return out

    return observe


network_io = _per_interface(lambda n: n.rx_bytes, lambda n: n.tx_bytes)
network_errors = _per_interface(lambda n: n.rx_errors, lambda n: n.tx_errors)
network_dropped = _per_interface(lambda n: n.rx_dropped, lambda n: n.tx_dropped)
# The conventions name the interface system.device on this one metric.
network_packets = _per_interface(lambda n: n.rx_packets, lambda n: n.tx_packets, device_key="system.device")


def _filesystem_attributes(fs: procfs.Filesystem) -> dict:
    return {"system.device": fs.device, "system.filesystem.mountpoint": fs.mountpoint,
            "system.filesystem.type": fs.type, "system.filesystem.mode": fs.mode}


def filesystem_usage(filesystems: List[procfs.Filesystem]) -> List[Observation]:
    out = []
    for fs in filesystems:
        attributes = _filesystem_attributes(fs)
        for state, size in (("used", fs.used), ("free", fs.free), ("reserved", fs.reserved)):
            out.append(Observation(size, {**attributes, "system.filesystem.state": state}))
    return out


def filesystem_utilization(filesystems: List[procfs.Filesystem]) -> List[Observation]:
    out = []
    for fs in filesystems:
        total = fs.used + fs.free + fs.reserved
        attributes = _filesystem_attributes(fs)
        for state, size in (("used", fs.used), ("free", fs.free), ("reserved", fs.reserved)):
            out.append(Observation(size / total, {**attributes, "system.filesystem.state": state}))
    return out


def filesystem_limit(filesystems: List[procfs.Filesystem]) -> List[Observation]:
    return [Observation(fs.used + fs.free + fs.reserved, _filesystem_attributes(fs)) for fs in filesystems]


def process_count(states: Dict[str, int]) -> List[Observation]:
    return [Observation(n, {"process.state": state}) for state, n in states.items()]


def temperature(sensors: List[procfs.Temperature]) -> List[Observation]:
    return [Observation(t.celsius, {"hw.id": t.id, "hw.name": t.name}) for t in sensors]


def rpi_throttled(flags: Dict[tuple, bool]) -> List[Observation]:
    return [Observation(int(on), {"rpi.throttled.reason": reason, "rpi.throttled.period": period})
            for (reason, period), on in flags.items()]


# ---------------------------------------------------------------- the instruments

class HostMetrics:
    """Creates the host metric instruments on ``meter``.

    ``root`` is the directory that stands for "/" (for a container watching its host,
    the host's root mounted inside); ``max_age`` is how long one read of a file serves
    the instruments that share it: less than the export interval, more than one collection.
    """

    def __init__(self, meter: Meter, root: str = "/", max_age: float = 1.0,
                 statvfs: Callable = os.statvfs) -> None:
        def source(name: str, read: Callable[[str], object]) -> Source:
            return Source(name, read, root, max_age)

        stat = source("/proc/stat", procfs.proc_stat)
        memory = source("/proc/meminfo", procfs.meminfo)
        swaps = source("/proc/swaps", procfs.swaps)
        disks = source("/proc/diskstats", procfs.diskstats)
        network = source("/proc/net/dev", procfs.netdev)
        mounts = source("/proc/mounts", lambda r: procfs.filesystems(r, statvfs))
        load = source("/proc/loadavg", procfs.loadavg)
        uptime = source("/proc/uptime", procfs.uptime)
        processes = source("/proc/<pid>/stat", procfs.process_states)
        frequency = source("cpufreq", procfs.cpu_frequencies)
        sensors = source("thermal zones and hwmon", procfs.temperatures)
        throttled = source(procfs.RPI_THROTTLED, procfs.rpi_throttled)
        self.sources = [stat, memory, swaps, disks, network, mounts, load, uptime, processes,
                        frequency, sensors, throttled]

        utilization = CpuUtilization()

        counter = meter.create_observable_counter
        updown = meter.create_observable_up_down_counter
        gauge = meter.create_observable_gauge
        self.instruments = [
            counter("system.cpu.time", [_callback(stat, cpu_time)], unit="s",
                    description="Seconds each logical CPU spent on each mode."),
            gauge("system.cpu.utilization", [_callback(stat, utilization)], unit="1",
                  description="Share of each logical CPU's time spent in each mode since the last collection."),
            gauge("system.cpu.frequency", [_callback(frequency, cpu_frequency)], unit="Hz",
                  description="Operating frequency of the logical CPU in Hertz."),
            updown("system.cpu.logical.count", [_callback(stat, cpu_logical_count)], unit="{cpu}",
                   description="Number of logical CPUs."),
            # Load average has no convention yet; these are the names the Collector's hostmetrics uses.
            gauge("system.cpu.load_average.1m", [_callback(load, lambda l: [Observation(l[0])])],
                  unit="{thread}", description="Average CPU load over the last minute."),
            gauge("system.cpu.load_average.5m", [_callback(load, lambda l: [Observation(l[1])])],
                  unit="{thread}", description="Average CPU load over the last 5 minutes."),
            gauge("system.cpu.load_average.15m", [_callback(load, lambda l: [Observation(l[2])])],
                  unit="{thread}", description="Average CPU load over the last 15 minutes."),
            updown("system.memory.usage", [_callback(memory, memory_usage)], unit="By",
                   description="Reports memory in use by state."),
            gauge("system.memory.utilization", [_callback(memory, memory_utilization)], unit="1",
                  description="Fraction of memory bytes in use, by state."),
            updown("system.memory.limit", [_callback(memory, memory_limit)], unit="By",
                   description="Total memory available in the system."),
            updown("system.memory.linux.available", [_callback(memory, memory_available)], unit="By",
                   description="Memory available for starting new applications without swapping."),
            updown("system.paging.usage", [_callback(swaps, paging_usage)], unit="By",
                   description="Swap usage."),
            gauge("system.paging.utilization", [_callback(swaps, paging_utilization)], unit="1",
                  description="Swap utilization."),
            counter("system.disk.io", [_callback(disks, disk_io)], unit="By",
                    description="Disk bytes transferred."),
            counter("system.disk.operations", [_callback(disks, disk_operations)], unit="{operation}",
                    description="Disk operations count."),
            counter("system.disk.io_time", [_callback(disks, disk_io_time)], unit="s",
                    description="Time disk spent activated."),
            counter("system.disk.operation_time", [_callback(disks, disk_operation_time)], unit="s",
                    description="Sum of the time each operation took to complete."),
            counter("system.disk.merged", [_callback(disks, disk_merged)], unit="{operation}",
                    description="The number of disk reads/writes merged into single physical disk accesses."),
            updown("system.filesystem.usage", [_callback(mounts, filesystem_usage)], unit="By",
                   description="Filesystem space usage by state."),
            gauge("system.filesystem.utilization", [_callback(mounts, filesystem_utilization)], unit="1",
                  description="Fraction of filesystem bytes in each state."),
            updown("system.filesystem.limit", [_callback(mounts, filesystem_limit)], unit="By",
                   description="The total storage capacity of the filesystem."),
            counter("system.network.io", [_callback(network, network_io)], unit="By",
                    description="The number of bytes transmitted and received."),
            counter("system.network.packet.count", [_callback(network, network_packets)], unit="{packet}",
                    description="The number of packets transferred."),
            counter("system.network.errors", [_callback(network, network_errors)], unit="{error}",
                    description="Count of network errors detected."),
            counter("system.network.packet.dropped", [_callback(network, network_dropped)], unit="{packet}",
                    description="Count of packets dropped or discarded even though there was no error."),
            updown("system.process.count", [_callback(processes, process_count)], unit="{process}",
                   description="Total number of processes in each state."),
            counter("system.process.created", [_callback(stat, processes_created)], unit="{process}",
                    description="Total number of processes created over uptime of the host."),
            gauge("system.uptime", [_callback(uptime, lambda s: [Observation(s)])], unit="s",
                  description="The time the system has been running."),
            gauge("hw.temperature", [_callback(sensors, temperature)], unit="Cel",
                  description="Temperature in degrees Celsius."),
            # No convention covers the Raspberry Pi firmware's flags: a namespace of our own.
            gauge("rpi.throttled", [_callback(throttled, rpi_throttled)], unit="1",
                  description="Raspberry Pi firmware throttling flags: 1 while the condition holds "
                              "(period=now) or if it has held since boot (period=since_boot)."),
        ]
