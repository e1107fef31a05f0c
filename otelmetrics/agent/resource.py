"""The host the agent runs on, as resource attributes (host.*, os.*, device.*)."""
from __future__ import annotations

import os
from typing import Dict, Optional

from otelmetrics import Resource
from otelmetrics.agent.procfs import read_text

SERVICE_NAME = "otelmetrics-agent"

# uname machine -> host.arch's well-known values; others are reported as they are.
_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
         "i386": "x86", "i486": "x86", "i586": "x86", "i686": "x86", "ia64": "ia64",
         "ppc": "ppc32", "ppc64": "ppc64", "ppc64le": "ppc64", "s390x": "s390x"}


def _read(root: str, path: str) -> Optional[str]:
    try:
        # device-tree strings end in NUL, and "compatible" is a NUL-separated list.
        return read_text(root, path).split("\0")[0].strip() or None
    except OSError:
        return None


def _os_release(root: str) -> Dict[str, str]:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        text = _read(root, path)
        if text:
            out = {}
            for line in text.splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    out[key.strip()] = value.strip().strip("\"'")
            return out
    return {}


def host_attributes(root: str = "/") -> Dict[str, str]:
    """Detected attributes; those whose source is missing are left out."""
    local = os.path.abspath(root) == "/"
    uname = os.uname()
    machine = _read(root, "/proc/sys/kernel/arch") or (uname.machine if local else None)
    release = _read(root, "/proc/sys/kernel/osrelease")
    os_release = _os_release(root)
    attributes = {
        # uname's nodename is what socket.gethostname() returns on Linux, without importing socket.
        "host.name": _read(root, "/proc/sys/kernel/hostname") or (uname.nodename if local else None),
        "host.arch": _ARCH.get(machine, "arm32" if (machine or "").startswith("arm") else machine),
        "os.type": "linux",
        "os.name": os_release.get("NAME"),
        "os.description": os_release.get("PRETTY_NAME") or (release and "Linux " + release),
        "os.version": release,
        # Boards with a device tree (Raspberry Pi and most ARM gateways) name their model
        # there; PCs and servers in DMI.
        "device.model.name": _read(root, "/proc/device-tree/model")
        or _read(root, "/sys/class/dmi/id/product_name"),
        "device.model.identifier": _read(root, "/proc/device-tree/compatible"),
        "device.manufacturer": _read(root, "/sys/class/dmi/id/sys_vendor"),
    }
    return {k: v for k, v in attributes.items() if v}


def agent_resource(root: str = "/") -> Resource:
    """The host's attributes under the SDK's defaults, with service.name
    "otelmetrics-agent"; OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME still win."""
    from_env = dict(Resource.create().attributes)
    if from_env.get("service.name", "").startswith("unknown_service"):
        from_env["service.name"] = SERVICE_NAME
    return Resource({**host_attributes(root), **from_env})
