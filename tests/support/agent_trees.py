"""The agent's fixture trees (tests/data/agent/: a Raspberry Pi 4 and an x86 gateway,
written from the kernel's documented formats) and a statvfs for them. No tests here."""
import os
from collections import namedtuple

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "agent")
RPI = os.path.join(DATA, "rpi4")
X86 = os.path.join(DATA, "x86")

StatVFS = namedtuple("StatVFS", "f_frsize f_blocks f_bfree f_bavail")


def fake_statvfs(root, sizes):
    """statvfs for a fixture tree: mountpoint -> StatVFS; others are not mounted."""
    def statvfs(path):
        mountpoint = "/" + os.path.relpath(path, root).lstrip(".")
        if mountpoint not in sizes:
            raise FileNotFoundError(path)
        return sizes[mountpoint]
    return statvfs
