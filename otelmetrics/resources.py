"""The entity producing telemetry: a set of attributes plus a schema URL; and
this SDK's identity in it (``telemetry.sdk.*``), whose version is the package's
(``otelmetrics.__version__``; pyproject.toml reads it here).

Anything with ``.attributes`` (a mapping) and ``.schema_url`` is accepted where a
Resource is expected, so opentelemetry-sdk's ``Resource`` works here unchanged.
"""
from __future__ import annotations

import logging
import os
import sys
from types import MappingProxyType
from typing import Mapping, Optional

from otelmetrics import _env
from otelmetrics._native import to_json

_logger = logging.getLogger("otelmetrics")

__version__ = "0.1.0"

TELEMETRY_SDK_NAME = "telemetry.sdk.name"
TELEMETRY_SDK_LANGUAGE = "telemetry.sdk.language"
TELEMETRY_SDK_VERSION = "telemetry.sdk.version"
SERVICE_NAME = "service.name"
SERVICE_INSTANCE_ID = "service.instance.id"

_SCALARS = (bool, str, int, float)


def _exact(value):
    """A primitive as its exact type, e.g. a (str, Enum) member as its text (a point's
    attributes are converted alike); anything else as it is."""
    if type(value) in _SCALARS:
        return value
    for kind in _SCALARS:       # bool before int: True is an int too
        if isinstance(value, kind):
            return str.__str__(value) if kind is str else kind(value)
    return value


def _clean_value(key, value):
    """The value as stored (sequences become tuples), or raise ValueError."""
    if isinstance(value, _SCALARS):
        return _exact(value)
    if isinstance(value, (list, tuple)):
        value = tuple(_exact(v) for v in value)
        kinds = {type(v) for v in value if v is not None}
        if len(kinds) > 1 or (kinds and not kinds.issubset(_SCALARS)):
            raise ValueError("a sequence must hold values of one primitive type")
        return value
    raise ValueError("type %s is not a primitive or a sequence of primitives" % type(value).__name__)


def _clean(attributes: Optional[Mapping]) -> dict:
    out = {}
    for key, value in (attributes or {}).items():
        if not isinstance(key, str) or not key:
            _logger.warning("Resource: dropping attribute %r, keys must be non-empty strings", key)
            continue
        try:
            out[_exact(key)] = _clean_value(key, value)
        except ValueError as e:
            _logger.warning("Resource: dropping attribute %r: %s", key, e)
    return out


class _ProcessInstance:
    """A random UUID (version 4) naming this process, as opentelemetry-sdk's
    ``Resource.create()`` adds it; a forked child gets a new one, so two processes
    never export under the same identity."""

    def __init__(self) -> None:
        self.id = ""
        _env.call_in_child_after_fork(self, "reset")

    def reset(self) -> None:
        self.id = ""

    def get(self) -> str:
        if not self.id:
            b = bytearray(os.urandom(16))
            b[6] = (b[6] & 0x0F) | 0x40        # version 4
            b[8] = (b[8] & 0x3F) | 0x80        # RFC 4122 variant
            h = b.hex()
            self.id = "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])
        return self.id


_INSTANCE = _ProcessInstance()


def _default_service_name() -> str:
    exe = os.path.basename(sys.executable or "")
    return "unknown_service:" + exe if exe else "unknown_service"


class Resource:
    """Immutable resource: ``attributes`` (a read-only mapping) and ``schema_url``."""

    __slots__ = ("_attributes", "_schema_url")

    def __init__(self, attributes: Optional[Mapping] = None, schema_url: Optional[str] = None):
        self._attributes = MappingProxyType(_clean(attributes))
        self._schema_url = schema_url or ""

    @property
    def attributes(self) -> Mapping:
        return self._attributes

    @property
    def schema_url(self) -> str:
        return self._schema_url

    @staticmethod
    def get_empty() -> "Resource":
        return _EMPTY

    @staticmethod
    def create(attributes: Optional[Mapping] = None, schema_url: Optional[str] = None) -> "Resource":
        """SDK identity, then ``OTEL_RESOURCE_ATTRIBUTES``, then ``OTEL_SERVICE_NAME``
        (which beats a service.name in the former), then ``attributes``, which win.
        ``service.name`` defaults to ``unknown_service:<executable>`` as the
        specification says."""
        attrs: dict = {
            TELEMETRY_SDK_LANGUAGE: "python",
            TELEMETRY_SDK_NAME: "otelmetrics",
            TELEMETRY_SDK_VERSION: __version__,
            SERVICE_INSTANCE_ID: _INSTANCE.get(),
        }
        attrs.update(_env.resource_attributes())
        service = _env.service_name()
        if service:
            attrs[SERVICE_NAME] = service
        attrs.update(attributes or {})
        if not attrs.get(SERVICE_NAME):
            attrs[SERVICE_NAME] = _default_service_name()
        return Resource(attrs, schema_url)

    def merge(self, other) -> "Resource":
        """A new Resource: the attributes of ``other`` win; a schema URL set on one side
        is kept; two different ones keep ours, with a warning."""
        attrs = dict(self._attributes)
        attrs.update(getattr(other, "attributes", None) or {})
        mine, theirs = self._schema_url, getattr(other, "schema_url", "") or ""
        if mine and theirs and mine != theirs:
            _logger.warning("Resource.merge: schema URLs %r and %r differ; keeping %r", mine, theirs, mine)
        return Resource(attrs, mine or theirs)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Resource):
            return NotImplemented
        return (dict(self._attributes), self._schema_url) == (dict(other._attributes), other._schema_url)

    def __hash__(self) -> int:
        return hash((frozenset(self._attributes.items()), self._schema_url))

    def __repr__(self) -> str:
        return "Resource(%r, %r)" % (dict(self._attributes), self._schema_url)

    def __reduce__(self):       # copy, deepcopy and pickle (the read-only mapping is not picklable)
        return Resource, (dict(self._attributes), self._schema_url)

    def to_json(self, indent: Optional[int] = 4) -> str:
        return to_json({"attributes": dict(self._attributes), "schema_url": self._schema_url}, indent)


def as_resource(resource) -> Resource:
    """Ours as-is; anything with ``.attributes`` / ``.schema_url`` (the reference's
    Resource) copied into ours; None means ``Resource.create()``."""
    if resource is None:
        return Resource.create()
    if isinstance(resource, Resource):
        return resource
    return Resource(getattr(resource, "attributes", None) or {}, getattr(resource, "schema_url", "") or "")


_EMPTY = Resource({})
