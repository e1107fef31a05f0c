"""Host state from /proc and /sys only (procfs and sysfs parsers for the agent).

Each reader takes ``root``, the directory that stands for "/" (so tests can point
it at a fixture tree and a container at the host's filesystem mounted elsewhere),
and returns plain data already in the units the OpenTelemetry conventions use:
bytes, seconds, hertz, degrees Celsius.

A required file that is missing or malformed raises ``OSError`` or ``ValueError``;
the agent then skips that reader. A value that cannot be read (garbage, or an integer
too large for a float: ``BAD_VALUE``) costs only its line or entry: one disk, network
interface, swap device, CPU, sensor or mount is left out, and the rest is read.
Optional hardware (cpufreq, thermal zones, hwmon, the Raspberry Pi firmware) that is
absent is not an error: its reader returns nothing.

Reads never wait on a writer and never run without end: only regular files are read
(every /proc and /sys file is one; a FIFO, socket or device found in their place, as
in a tampered or fake root, is unreadable: ``OSError``), opened non-blocking, and at
most ``MAX_FILE_BYTES``. A sysfs file whose driver hangs still blocks in the kernel,
where O_NONBLOCK has no effect: the agent's callbacks run on worker threads that the
SDK abandons, one per hung read, for that case.
"""
from __future__ import annotations

import errno
import os
import re
import stat
from collections import Counter
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

# /proc/stat counts CPU time in USER_HZ ticks; 100 on every Linux ABI in practice.
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

# /proc/stat columns after "cpuN", in order, and the cpu.mode each is reported as.
# guest and guest_nice are already included in user and nice, so they are not read.
_CPU_COLUMNS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
_CPU_MODE = {"irq": "interrupt", "softirq": "interrupt"}

# /proc/<pid>/stat state letters -> process.state (D and I are kinds of sleep).
_PROCESS_STATE = {"R": "running", "S": "sleeping", "D": "sleeping", "I": "sleeping",
                  "T": "stopped", "t": "stopped", "Z": "defunct"}

# Pseudo block devices whose counters say nothing about storage.
_SKIPPED_DISK = re.compile(r"^(loop|ram)\d+$")

# Filesystems that need no block device ("nodev" in /proc/filesystems) are skipped
# (proc, tmpfs, cgroup, and network filesystems whose statvfs can hang), except
# overlay: the root of containers and of Raspberry Pi OS's read-only overlay mode.
_KEPT_NODEV = frozenset(("overlay",))

# Raspberry Pi firmware get_throttled bits: the condition now (bit n) and whether it
# has occurred since boot (bit n + 16).
THROTTLE_REASONS = ("under_voltage", "arm_frequency_capped", "throttled", "soft_temp_limit")


# What parsing a value that is garbage, or an integer no float holds, raises.
BAD_VALUE = (ValueError, OverflowError)

# The largest file read; /proc/mounts of a host with thousands of mounts is well under it.
MAX_FILE_BYTES = 4 << 20


def read_text(root: str, path: str) -> str:
    """A regular file's text (undecodable bytes replaced), at most MAX_FILE_BYTES."""
    full = os.path.join(root, path.lstrip("/"))
    fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a FIFO, socket or device would block)", full)
        chunks, size = [], 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_FILE_BYTES:
                raise OSError(errno.EFBIG, "larger than %d bytes" % MAX_FILE_BYTES, full)
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8", errors="replace")


def _read_optional(root: str, path: str) -> Optional[str]:
    try:
        return read_text(root, path).strip()
    except OSError:
        return None


def _listdir(root: str, path: str) -> List[str]:
    try:
        return sorted(os.listdir(os.path.join(root, path.lstrip("/"))))
    except OSError:
        return []


# ---------------------------------------------------------------- /proc

class ProcStat(NamedTuple):
    cpu_seconds: Dict[int, Dict[str, float]]  # logical CPU -> cpu.mode -> seconds
    processes_created: int


def proc_stat(root: str) -> ProcStat:
    cpus: Dict[int, Dict[str, float]] = {}
    created = None
    for line in read_text(root, "/proc/stat").splitlines():
        name, _, rest = line.partition(" ")
        if name.startswith("cpu") and name[3:].isdigit():
            modes: Dict[str, float] = {}
            try:
                for column, ticks in zip(_CPU_COLUMNS, rest.split()):
                    mode = _CPU_MODE.get(column, column)
                    modes[mode] = modes.get(mode, 0.0) + int(ticks) / _CLOCK_TICKS
            except BAD_VALUE:
                continue
            cpus[int(name[3:])] = modes
        elif name == "processes":
            created = int(rest)
    if not cpus or created is None:
        raise ValueError("/proc/stat has no cpuN or processes lines")
    return ProcStat(cpus, created)


def meminfo(root: str) -> Dict[str, int]:
    """/proc/meminfo as field -> bytes (page counts such as HugePages_Total stay counts)."""
    out = {}
    for line in read_text(root, "/proc/meminfo").splitlines():
        key, _, rest = line.partition(":")
        fields = rest.split()
        if fields:
            try:
                out[key] = int(fields[0]) * (1024 if fields[1:] == ["kB"] else 1)
            except BAD_VALUE:
                continue
    if "MemTotal" not in out or "MemFree" not in out:
        raise ValueError("/proc/meminfo has no MemTotal or MemFree")
    return out


class Swap(NamedTuple):
    device: str
    size: int  # bytes
    used: int


def swaps(root: str) -> List[Swap]:
    out = []
    for line in read_text(root, "/proc/swaps").splitlines()[1:]:  # first line: column titles
        fields = line.split()
        if len(fields) < 4:
            continue
        try:
            out.append(Swap(_unescape(fields[0]), int(fields[2]) * 1024, int(fields[3]) * 1024))
        except BAD_VALUE:
            continue
    return out


class DiskStats(NamedTuple):
    reads: int
    writes: int
    read_bytes: int
    write_bytes: int
    read_merged: int
    write_merged: int
    read_time: float  # seconds spent by all reads
    write_time: float
    io_time: float  # seconds the device had I/O in flight


def diskstats(root: str) -> Dict[str, DiskStats]:
    """/proc/diskstats; sectors there are 512 bytes whatever the device's sector size."""
    out = {}
    for line in read_text(root, "/proc/diskstats").splitlines():
        fields = line.split()
        if len(fields) < 14:
            continue
        name = fields[2]
        if _SKIPPED_DISK.match(name):
            continue
        try:
            (reads, read_merged, read_sectors, read_ms,
             writes, write_merged, write_sectors, write_ms, _in_flight, io_ms) = map(int, fields[3:13])
            out[name] = DiskStats(reads, writes, read_sectors * 512, write_sectors * 512, read_merged,
                                  write_merged, read_ms / 1e3, write_ms / 1e3, io_ms / 1e3)
        except BAD_VALUE:
            continue
    return out


class NetDev(NamedTuple):
    rx_bytes: int
    rx_packets: int
    rx_errors: int
    rx_dropped: int
    tx_bytes: int
    tx_packets: int
    tx_errors: int
    tx_dropped: int


def netdev(root: str) -> Dict[str, NetDev]:
    out = {}
    for line in read_text(root, "/proc/net/dev").splitlines()[2:]:  # two header lines
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        try:
            f = [int(v) for v in rest.split()]
        except BAD_VALUE:
            continue
        if len(f) < 12:
            continue
        # receive: bytes packets errs drop fifo frame compressed multicast, then transmit: bytes packets ...
        out[name.strip()] = NetDev(f[0], f[1], f[2], f[3], f[8], f[9], f[10], f[11])
    return out


def loadavg(root: str) -> Tuple[float, float, float]:
    one, five, fifteen = read_text(root, "/proc/loadavg").split()[:3]
    return float(one), float(five), float(fifteen)


def uptime(root: str) -> float:
    return float(read_text(root, "/proc/uptime").split()[0])


def process_states(root: str) -> Dict[str, int]:
    """Processes (not threads) by process.state, from /proc/<pid>/stat."""
    counts: Counter = Counter()
    for pid in _listdir(root, "/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = read_text(root, "/proc/%s/stat" % pid)
        except OSError:  # the process exited while we looked
            continue
        # "pid (comm) S ...": comm may hold spaces and parentheses, so split at the last ")".
        state = stat[stat.rfind(")") + 2:][:1]
        if state in _PROCESS_STATE:
            counts[_PROCESS_STATE[state]] += 1
    if not counts:
        raise ValueError("no /proc/<pid>/stat could be read")
    return dict(counts)


class Filesystem(NamedTuple):
    device: str
    mountpoint: str
    type: str
    mode: str  # "rw" or "ro"
    used: int  # bytes; used + free + reserved = the filesystem's size
    free: int  # available to unprivileged users
    reserved: int  # free, but only for root


def _unescape(path: str) -> str:
    # /proc/mounts and /proc/swaps write space, tab, newline and backslash as \ooo.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def filesystems(root: str, statvfs: Callable = os.statvfs) -> List[Filesystem]:
    """Mounted block-device filesystems (one entry per device), sized by ``statvfs``."""
    nodev = set()
    for line in read_text(root, "/proc/filesystems").splitlines():
        fields = line.split()
        if len(fields) == 2 and fields[0] == "nodev":
            nodev.add(fields[1])
    out, seen = [], set()
    for line in read_text(root, "/proc/mounts").splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        device, mountpoint, fstype = _unescape(fields[0]), _unescape(fields[1]), fields[2]
        if (fstype in nodev and fstype not in _KEPT_NODEV) or device in seen:
            continue
        try:
            st = statvfs(os.path.join(root, mountpoint.lstrip("/")))
        except (OSError, ValueError):  # unmounted meanwhile, not ours to look at, or a NUL in its path
            continue
        if not st.f_blocks:
            continue
        seen.add(device)
        mode = "ro" if "ro" in fields[3].split(",") else "rw"
        out.append(Filesystem(device, mountpoint, fstype, mode,
                              used=(st.f_blocks - st.f_bfree) * st.f_frsize,
                              free=st.f_bavail * st.f_frsize,
                              reserved=(st.f_bfree - st.f_bavail) * st.f_frsize))
    return out


# ---------------------------------------------------------------- /sys

def cpu_frequencies(root: str) -> Dict[int, float]:
    """Logical CPU -> current frequency in Hz: cpufreq where the kernel has it, else
    the "cpu MHz" lines of /proc/cpuinfo (x86 virtual machines); empty if neither."""
    out = {}
    for name in _listdir(root, "/sys/devices/system/cpu"):
        if name.startswith("cpu") and name[3:].isdigit():
            khz = _read_optional(root, "/sys/devices/system/cpu/%s/cpufreq/scaling_cur_freq" % name)
            try:
                if khz:
                    out[int(name[3:])] = int(khz) * 1e3
            except BAD_VALUE:
                continue
    if out:
        return out
    cpu = None
    for line in (_read_optional(root, "/proc/cpuinfo") or "").splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        try:
            if key == "processor":
                cpu = int(value)
            elif key == "cpu MHz" and cpu is not None:
                out[cpu] = float(value) * 1e6
        except BAD_VALUE:
            cpu = None if key == "processor" else cpu
    return out


class Temperature(NamedTuple):
    id: str  # hw.id: unique on the host, e.g. "thermal_zone0", "hwmon1_temp2"
    name: str  # hw.name, e.g. "cpu-thermal", "coretemp Package id 0"
    celsius: float


def _millidegrees(root: str, path: str) -> Optional[float]:
    # A sensor that is asleep or broken answers EINVAL/ENODATA or garbage: skip it alone.
    raw = _read_optional(root, path)
    try:
        return int(raw) / 1000.0 if raw else None
    except BAD_VALUE:
        return None


def temperatures(root: str) -> List[Temperature]:
    """Thermal zones, then hwmon temperature inputs that are not thermal zones again."""
    out, zone_types = [], set()
    for zone in _listdir(root, "/sys/class/thermal"):
        if not zone.startswith("thermal_zone"):
            continue
        kind = _read_optional(root, "/sys/class/thermal/%s/type" % zone) or zone
        zone_types.add(kind.replace("-", "_"))
        celsius = _millidegrees(root, "/sys/class/thermal/%s/temp" % zone)
        if celsius is not None:
            out.append(Temperature(zone, kind, celsius))
    for chip in _listdir(root, "/sys/class/hwmon"):
        base = "/sys/class/hwmon/" + chip
        chip_name = _read_optional(root, base + "/name") or chip
        # The thermal core registers each zone as a hwmon chip too, named after the
        # zone's type with "-" written "_": that one is already reported above.
        if chip_name in zone_types:
            continue
        for entry in _listdir(root, base):
            if not (entry.startswith("temp") and entry.endswith("_input")):
                continue
            sensor = entry[:-len("_input")]
            celsius = _millidegrees(root, "%s/%s" % (base, entry))
            if celsius is None:
                continue
            label = _read_optional(root, "%s/%s_label" % (base, sensor))
            name = "%s %s" % (chip_name, label) if label else chip_name
            out.append(Temperature("%s_%s" % (chip, sensor), name, celsius))
    return out


RPI_THROTTLED = "/sys/devices/platform/soc/soc:firmware/get_throttled"


def rpi_throttled(root: str) -> Dict[Tuple[str, str], bool]:
    """The Raspberry Pi firmware's throttling flags, keyed by (reason, period) with
    period "now" or "since_boot"; empty where the firmware does not expose them."""
    raw = _read_optional(root, RPI_THROTTLED)
    if raw is None:
        return {}
    return decode_throttled(int(raw, 16))  # the firmware driver prints the mask in hex


def decode_throttled(mask: int) -> Dict[Tuple[str, str], bool]:
    out = {}
    for bit, reason in enumerate(THROTTLE_REASONS):
        out[(reason, "now")] = bool(mask >> bit & 1)
        out[(reason, "since_boot")] = bool(mask >> (bit + 16) & 1)
    return out
