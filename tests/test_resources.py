"""Resource: defaults, environment, merging, and the reference's Resource accepted as ours."""
import logging
import os
import sys
import uuid

import pytest
from opentelemetry.sdk.resources import Resource as SDKResource

from otelmetrics.resources import __version__
from otelmetrics.resources import Resource, as_resource


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)


def test_create_defaults():
    r = Resource.create()
    assert dict(r.attributes) == {
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "otelmetrics",
        "telemetry.sdk.version": __version__,
        "service.name": "unknown_service:" + os.path.basename(sys.executable),
        "service.instance.id": r.attributes["service.instance.id"],
    }
    assert r.schema_url == ""


def test_environment_and_precedence(monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES",
                       "service.name=from-attrs, deployment.environment=prod,team=a%2Cb%3Dc ,empty=")
    assert Resource.create().attributes["service.name"] == "from-attrs"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-service-name")
    r = Resource.create({"host.id": "h1"}, "https://schema")
    assert r.attributes["service.name"] == "from-service-name"   # beats OTEL_RESOURCE_ATTRIBUTES
    assert r.attributes["team"] == "a,b=c" and r.attributes["empty"] == ""
    assert r.attributes["deployment.environment"] == "prod" and r.attributes["host.id"] == "h1"
    assert r.schema_url == "https://schema"
    assert Resource.create({"service.name": "code"}).attributes["service.name"] == "code"   # explicit wins


def test_same_service_name_rules_as_the_reference(monkeypatch):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=a,k=v")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "b")
    for given in ({}, {"service.name": "c"}):
        ours, ref = Resource.create(given).attributes, SDKResource.create(given).attributes
        assert ours["service.name"] == ref["service.name"] and ours["k"] == ref["k"]


def test_malformed_resource_attributes_are_discarded_whole(monkeypatch, caplog):
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "good=1,broken")
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        r = Resource.create()
    assert "good" not in r.attributes
    assert "OTEL_RESOURCE_ATTRIBUTES" in caplog.text


def test_invalid_attribute_values_are_dropped(caplog):
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        r = Resource({"ok": [1, 2], "mixed": [1, "a"], "obj": object(), "": 1, 5: "x", "none_in_seq": ["a", None]})
    assert dict(r.attributes) == {"ok": (1, 2), "none_in_seq": ("a", None)}
    assert "mixed" in caplog.text and "obj" in caplog.text


def test_immutable_hashable_and_comparable():
    r = Resource({"a": [1], "b": "x"}, "s")
    with pytest.raises(TypeError):
        r.attributes["a"] = 2
    assert r == Resource({"b": "x", "a": (1,)}, "s") and hash(r) == hash(Resource({"b": "x", "a": [1]}, "s"))
    assert r != Resource({"b": "x"}, "s") and r != Resource({"a": [1], "b": "x"}, "t")
    assert {r: 1}[Resource({"a": [1], "b": "x"}, "s")] == 1
    assert Resource.get_empty().attributes == {}


def test_merge_accepts_the_reference_resource(caplog):
    mine = Resource({"a": 1, "b": 2})
    merged = mine.merge(SDKResource({"b": 3, "c": 4}, "https://ref"))
    assert dict(merged.attributes) == {"a": 1, "b": 3, "c": 4} and merged.schema_url == "https://ref"
    with caplog.at_level(logging.WARNING, logger="otelmetrics"):
        conflict = Resource({}, "https://one").merge(Resource({}, "https://two"))
    assert conflict.schema_url == "https://one" and "differ" in caplog.text


def test_as_resource():
    ref = SDKResource({"x": "y"}, "https://s")
    r = as_resource(ref)
    assert isinstance(r, Resource) and dict(r.attributes) == {"x": "y"} and r.schema_url == "https://s"
    mine = Resource({"k": 1})
    assert as_resource(mine) is mine
    assert as_resource(None).attributes["telemetry.sdk.name"] == "otelmetrics"


def test_create_has_the_keys_of_opentelemetry_sdk_create():
    ref = set(SDKResource.create().attributes)
    if "service.instance.id" not in ref:
        # opentelemetry-sdk 1.41 (the newest for Python 3.9) does not add service.instance.id
        # yet; later releases do, as ours (its own test below).
        ref.add("service.instance.id")
    assert set(Resource.create().attributes) == ref


def test_service_instance_id_is_a_uuid4_per_process_and_new_in_a_forked_child():
    first = Resource.create().attributes["service.instance.id"]
    assert uuid.UUID(first).version == 4
    assert Resource.create().attributes["service.instance.id"] == first      # one per process
    assert Resource.create({"service.instance.id": "mine"}).attributes["service.instance.id"] == "mine"
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, Resource.create().attributes["service.instance.id"].encode())
        os._exit(0)
    os.close(w)
    child = os.read(r, 100).decode()
    os.waitpid(pid, 0)
    assert uuid.UUID(child).version == 4 and child != first
