"""The agent's host resource (otelmetrics/agent/resource.py): what it detects on the
fixture trees, and the environment on top."""
from otelmetrics.agent.resource import agent_resource, host_attributes

from agent_trees import RPI, X86


def test_rpi_resource():
    assert host_attributes(RPI) == {
        "host.name": "raspberrypi",
        "host.arch": "arm64",
        "os.type": "linux",
        "os.name": "Debian GNU/Linux",
        "os.description": "Debian GNU/Linux 12 (bookworm)",
        "os.version": "6.6.51+rpt-rpi-v8",
        "device.model.name": "Raspberry Pi 4 Model B Rev 1.4",
        "device.model.identifier": "raspberrypi,4-model-b",
    }


def test_x86_resource():
    attributes = host_attributes(X86)
    assert attributes["host.arch"] == "amd64"
    assert attributes["host.name"] == "gateway-x86"
    assert attributes["os.description"] == "Ubuntu 22.04.4 LTS"
    assert attributes["device.model.name"] == "OptiPlex 7080"
    assert attributes["device.manufacturer"] == "Dell Inc."
    assert "device.model.identifier" not in attributes


def test_resource_defaults_and_environment(monkeypatch):
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "host.name=kitchen-pi,site=lab")
    attributes = agent_resource(RPI).attributes
    assert attributes["service.name"] == "otelmetrics-agent"
    assert attributes["host.name"] == "kitchen-pi"  # the environment wins over detection
    assert attributes["site"] == "lab"
    assert attributes["device.model.name"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert attributes["telemetry.sdk.name"] == "otelmetrics"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "greenhouse")
    assert agent_resource(RPI).attributes["service.name"] == "greenhouse"
