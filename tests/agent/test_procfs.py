"""The agent's /proc and /sys readers, against fixture trees
(tests/data/agent/: a Raspberry Pi 4 and an x86 gateway, written from the kernel's
documented formats) and against the machine the tests run on."""
import os
import shutil

import pytest

from otelmetrics.agent import procfs as readers
from otelmetrics.agent.resource import host_attributes

from agent_trees import RPI, X86, StatVFS, fake_statvfs

KIB = 1024
TICK = readers._CLOCK_TICKS


# ---------------------------------------------------------------- Raspberry Pi 4

def test_rpi_proc_stat():
    stat = readers.proc_stat(RPI)
    assert sorted(stat.cpu_seconds) == [0, 1, 2, 3]
    assert stat.cpu_seconds[0] == pytest.approx({
        "user": 66014 / TICK, "nice": 297 / TICK, "system": 16072 / TICK, "idle": 2351378 / TICK,
        "iowait": 1409 / TICK, "interrupt": 3118 / TICK, "steal": 0.0})
    assert stat.processes_created == 48213


def test_rpi_memory_and_swap():
    info = readers.meminfo(RPI)
    assert info["MemTotal"] == 3884352 * KIB
    assert info["MemAvailable"] == 3271196 * KIB
    assert info["HugePages_Total"] == 0  # a count, not kB
    assert readers.swaps(RPI) == [readers.Swap("/var/swap", 102396 * KIB, 5120 * KIB)]


def test_rpi_diskstats_skip_pseudo_devices():
    disks = readers.diskstats(RPI)
    assert sorted(disks) == ["mmcblk0", "mmcblk0p1", "mmcblk0p2"]  # no ram0, loop0
    assert disks["mmcblk0"] == readers.DiskStats(
        reads=20573, writes=9812, read_bytes=1481510 * 512, write_bytes=486904 * 512,
        read_merged=7261, write_merged=11207, read_time=93.64, write_time=185.307, io_time=117.42)


def test_rpi_network_load_uptime():
    net = readers.netdev(RPI)
    assert sorted(net) == ["eth0", "lo", "wlan0"]
    assert net["eth0"] == readers.NetDev(918273645, 701234, 2, 5, 51234567, 312345, 1, 0)
    assert readers.loadavg(RPI) == (0.52, 0.58, 0.59)
    assert readers.uptime(RPI) == 123456.78


def test_rpi_process_states():
    # D and I count as sleeping; a command name with ") " does not confuse the parser.
    assert readers.process_states(RPI) == {"sleeping": 5, "running": 1, "stopped": 1, "defunct": 1}


def test_rpi_filesystems():
    sizes = {"/": StatVFS(4096, 7_500_000, 5_000_000, 4_600_000),
             "/boot/firmware": StatVFS(512, 1_048_576, 800_000, 800_000),
             "/media/pi/USB STICK": StatVFS(4096, 1_000, 250, 250)}
    found = readers.filesystems(RPI, fake_statvfs(RPI, sizes))
    assert found == [
        readers.Filesystem("/dev/mmcblk0p2", "/", "ext4", "rw", used=2_500_000 * 4096,
                           free=4_600_000 * 4096, reserved=400_000 * 4096),
        readers.Filesystem("/dev/mmcblk0p1", "/boot/firmware", "vfat", "rw", used=248_576 * 512,
                           free=800_000 * 512, reserved=0),
        readers.Filesystem("/dev/sda1", "/media/pi/USB STICK", "vfat", "ro", used=750 * 4096,
                           free=250 * 4096, reserved=0),
    ]


def test_rpi_cpufreq_temperature_throttling():
    assert readers.cpu_frequencies(RPI) == {0: 1.5e9, 1: 1.5e9, 2: 6e8, 3: 1.8e9}
    # hwmon0 "cpu_thermal" is thermal_zone0 again; hwmon1 (rpi_volt) has no temperature.
    assert readers.temperatures(RPI) == [readers.Temperature("thermal_zone0", "cpu-thermal", 48.686)]
    flags = readers.rpi_throttled(RPI)  # 0x50005
    assert {key for key, on in flags.items() if on} == {
        ("under_voltage", "now"), ("throttled", "now"),
        ("under_voltage", "since_boot"), ("throttled", "since_boot")}
    assert len(flags) == 8


@pytest.mark.parametrize("mask, on", [
    (0x0, set()),
    (0x1, {("under_voltage", "now")}),
    (0x2, {("arm_frequency_capped", "now")}),
    (0x4, {("throttled", "now")}),
    (0x8, {("soft_temp_limit", "now")}),
    (0x80000, {("soft_temp_limit", "since_boot")}),
    (0x20000, {("arm_frequency_capped", "since_boot")}),
    (0xF000F, {(r, p) for r in readers.THROTTLE_REASONS for p in ("now", "since_boot")}),
])
def test_throttle_bits(mask, on):
    assert {key for key, value in readers.decode_throttled(mask).items() if value} == on


# ---------------------------------------------------------------- x86 gateway

def test_x86_readers():
    assert sorted(readers.proc_stat(X86).cpu_seconds) == [0, 1]
    assert sorted(readers.diskstats(X86)) == ["nvme0n1", "nvme0n1p1", "nvme0n1p2", "sda"]
    # sda has the 14-column layout of kernels before 4.18.
    assert readers.diskstats(X86)["sda"].io_time == 5.0
    assert readers.swaps(X86) == [readers.Swap("/dev/nvme0n1p3", 2097148 * KIB, 97148 * KIB)]
    assert readers.netdev(X86)["enp3s0"].rx_bytes == 12345678901
    assert readers.process_states(X86) == {"sleeping": 2, "running": 1}
    # No cpufreq in sysfs: /proc/cpuinfo's "cpu MHz".
    assert readers.cpu_frequencies(X86) == {0: 2.9e9, 1: pytest.approx(4.712345e9)}
    assert readers.rpi_throttled(X86) == {}


def test_x86_filesystems_skip_virtual_network_and_repeated_devices():
    size = StatVFS(4096, 1000, 500, 400)
    sizes = {"/": size, "/boot/efi": size, "/var/lib/docker": size,
             "/var/lib/docker/overlay2/0f3a9c/merged": size, "/mnt/share": size, "/run": size}
    found = readers.filesystems(X86, fake_statvfs(X86, sizes))
    assert [(f.device, f.mountpoint, f.type) for f in found] == [
        ("/dev/nvme0n1p2", "/", "ext4"),
        ("/dev/nvme0n1p1", "/boot/efi", "vfat"),
        ("overlay", "/var/lib/docker/overlay2/0f3a9c/merged", "overlay"),
    ]


def test_x86_temperatures():
    assert readers.temperatures(X86) == [
        readers.Temperature("thermal_zone0", "acpitz", 27.8),
        readers.Temperature("thermal_zone1", "x86_pkg_temp", 45.0),
        readers.Temperature("hwmon1_temp1", "coretemp Package id 0", 45.0),
        readers.Temperature("hwmon1_temp2", "coretemp Core 0", 43.0),
        readers.Temperature("hwmon2_temp1", "nvme Composite", 38.85),
    ]


def test_malformed_files_raise(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "loadavg").write_text("n/a\n")
    (tmp_path / "proc" / "stat").write_text("intr 1 2 3\n")
    with pytest.raises(ValueError):
        readers.loadavg(str(tmp_path))
    with pytest.raises(ValueError):
        readers.proc_stat(str(tmp_path))
    with pytest.raises(OSError):
        readers.meminfo(str(tmp_path))
    # Optional hardware that is absent is no error.
    assert readers.temperatures(str(tmp_path)) == []
    assert readers.cpu_frequencies(str(tmp_path)) == {}
    assert readers.rpi_throttled(str(tmp_path)) == {}


HUGE = "9" * 400   # an integer no float holds: int / 1000 raises OverflowError


def _replace_field(path, line_start, index, value):
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.split()[:len(line_start.split())] == line_start.split():
            fields = line.split()
            fields[index] = value
            lines[i] = " ".join(fields)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("bad", [HUGE, "garbage"])
def test_a_huge_or_malformed_value_skips_its_line_only(tmp_path, bad):
    """A huge integer raised OverflowError out of the reader (it is not a ValueError), so
    one broken sensor, disk or CPU line lost every series read from its file."""
    x86, rpi = tmp_path / "x86", tmp_path / "rpi"
    shutil.copytree(X86, x86)
    shutil.copytree(RPI, rpi)
    (x86 / "sys/class/hwmon/hwmon1/temp2_input").write_text(bad + "\n")
    _replace_field(x86 / "proc/diskstats", "8 0 sda", 6, bad)          # sda's read_ms
    _replace_field(x86 / "proc/stat", "cpu1", 3, bad)                  # cpu1's system ticks
    (rpi / "sys/devices/system/cpu/cpu2/cpufreq/scaling_cur_freq").write_text(bad + "\n")
    assert [t.id for t in readers.temperatures(str(x86))] == [
        t.id for t in readers.temperatures(X86) if t.id != "hwmon1_temp2"]
    assert sorted(readers.diskstats(str(x86))) == ["nvme0n1", "nvme0n1p1", "nvme0n1p2"]
    assert sorted(readers.proc_stat(str(x86)).cpu_seconds) == [0]
    assert readers.cpu_frequencies(str(rpi)) == {0: 1.5e9, 1: 1.5e9, 3: 1.8e9}


def test_one_mount_line_statvfs_refuses_is_skipped_alone(tmp_path):
    """A mount point with an embedded NUL (\\000) made statvfs raise ValueError, which
    failed the whole /proc/mounts source for good: '/' was no longer reported either."""
    root = tmp_path / "root"
    shutil.copytree(X86, root)
    with open(root / "proc" / "mounts", "a") as f:
        f.write("/dev/sdz1 /mnt/bad\\000name ext4 rw 0 0\n")
    assert [fs.mountpoint for fs in readers.filesystems(str(root))] == \
        [fs.mountpoint for fs in readers.filesystems(X86)]


# ---------------------------------------------------------------- this machine

def test_live_machine_values_are_plausible():
    stat = readers.proc_stat("/")
    assert len(stat.cpu_seconds) == os.cpu_count()
    assert all(sum(modes.values()) > 0 for modes in stat.cpu_seconds.values())
    info = readers.meminfo("/")
    assert 32 * 2**20 < info["MemTotal"] < 2**50
    assert 0 <= info["MemFree"] <= info["MemTotal"]
    assert readers.uptime("/") > 0
    assert all(v >= 0 for v in readers.loadavg("/"))
    states = readers.process_states("/")
    if os.environ.get("OTELMETRICS_TEST_PROFILE") != "emulated":
        # qemu-user fakes /proc/self/stat with state 0: no process looks running there.
        assert states.get("running", 0) >= 1  # this test is running
    assert "lo" in readers.netdev("/")
    for fs in readers.filesystems("/"):
        assert min(fs.used, fs.free, fs.reserved) >= 0 and fs.used + fs.free > 0
    readers.diskstats("/")
    readers.swaps("/")
    assert all(1e7 < hz < 1e10 for hz in readers.cpu_frequencies("/").values())
    assert all(-40 < t.celsius < 150 for t in readers.temperatures("/"))
    attributes = host_attributes("/")
    assert attributes["host.name"] and attributes["os.type"] == "linux"
    assert attributes["host.arch"] in ("amd64", "arm64", "arm32", "x86", "ppc64", "s390x", "riscv64")
