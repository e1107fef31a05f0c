"""The data model, one home for it: resource -> scope -> metric -> points.

Same classes and field names as opentelemetry-sdk's ``metrics.export`` data
model, so code that walks a reference ``MetricsData`` walks ours unchanged.
The point classes are compiled (``otelmetrics._native``, cext/points.pxi) so that a
collection builds them from C, and only when ``data_points`` is first read (an
OTLP encoder and a Prometheus scrape write bytes from the collection's snapshot
instead); the
containers here are immutable records. The
pipeline builds this model, readers and exporters consume it, and
``otelmetrics.export`` re-exports it under the reference's names.
"""
from __future__ import annotations

import dataclasses
from enum import IntEnum
from typing import Union

from otelmetrics._native import (
    Buckets,
    Exemplar,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    NumberDataPoint,
    Snapshot,
    dataclass_fields,
    fields_equal,
    fields_repr,
    to_json,
)

__all__ = [
    "AggregationTemporality", "Buckets", "Exemplar", "ExponentialHistogram",
    "ExponentialHistogramDataPoint", "Gauge", "Histogram", "HistogramDataPoint",
    "InstrumentationScope", "Metric", "MetricsData", "NumberDataPoint",
    "ResourceMetrics", "ScopeMetrics", "Sum", "DataT", "DataPointT",
]


class AggregationTemporality(IntEnum):
    """Values as in OTLP's metrics.proto (DELTA = 1, CUMULATIVE = 2)."""

    UNSPECIFIED = 0
    DELTA = 1
    CUMULATIVE = 2


class _Record:
    """Immutable record with fields, equality, repr and JSON, and the dataclass
    protocol (``dataclasses.fields``/``asdict``/``replace``, copy, pickle), as the
    reference's frozen dataclasses. Not made with ``@dataclass``: generating nine
    of them would double the import time. Field-wise equality, repr and JSON are
    the compiled points' own (``otelmetrics._native``, cext/points.pxi)."""

    __slots__ = ()
    _fields: tuple = ()
    _defaults: dict = {}

    def __init__(self, *args, **kwargs) -> None:
        if len(args) > len(self._fields):
            raise TypeError("%s takes %d arguments" % (type(self).__name__, len(self._fields)))
        values = dict(zip(self._fields, args))
        for k, v in kwargs.items():
            if k not in self._fields or k in values:
                raise TypeError("%s: unexpected or repeated argument %r" % (type(self).__name__, k))
            values[k] = v
        for f in self._fields:
            if f not in values:
                if f not in self._defaults:
                    raise TypeError("%s: missing argument %r" % (type(self).__name__, f))
                d = self._defaults[f]
                values[f] = d() if callable(d) else d
            object.__setattr__(self, f, values[f])

    def __setattr__(self, name, value):
        raise AttributeError("%s is immutable; use _replace()" % type(self).__name__)

    def _replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def __reduce__(self):
        return type(self), tuple(getattr(self, f) for f in self._fields)

    def __eq__(self, other):
        return fields_equal(self, other)

    def __repr__(self) -> str:
        return fields_repr(self)

    def __hash__(self) -> int:
        return hash(tuple(getattr(self, f) for f in self._fields))

    def to_dict(self) -> dict:
        return {f: getattr(self, f) for f in self._fields}

    def to_json(self, indent=4) -> str:
        return to_json(self, indent)


class _Data(_Record):
    """A metric's data (Sum, Gauge, Histogram, ExponentialHistogram), whose
    ``data_points`` may be a collection's ``Snapshot`` until first read: the points
    are built then, once, so an encoder that writes bytes from the snapshot never
    builds them and everyone else sees the points as ever."""

    __slots__ = ()

    @property
    def data_points(self):
        points = self._data_points
        if type(points) is Snapshot:
            points = points.points()
            object.__setattr__(self, "_data_points", points)
        return points

    @data_points.setter
    def data_points(self, points):   # for __init__ only: _Record.__setattr__ refuses the rest
        object.__setattr__(self, "_data_points", points)


def _record(name: str, fields: str, doc: str, **defaults) -> type:
    names = tuple(fields.split())
    base = _Data if "data_points" in names else _Record
    slots = tuple("_data_points" if n == "data_points" else n for n in names)
    return type(name, (base,), {"__slots__": slots, "_fields": names, "_defaults": defaults,
                                "__dataclass_fields__": dataclass_fields(names),
                                "__doc__": doc, "__module__": __name__})


InstrumentationScope = _record("InstrumentationScope", "name version schema_url attributes",
                               "The meter that produced some metrics.",
                               version=None, schema_url="", attributes=None)
Sum = _record("Sum", "data_points aggregation_temporality is_monotonic", "A sum metric's points.")
Gauge = _record("Gauge", "data_points", "A gauge metric's points.")
Histogram = _record("Histogram", "data_points aggregation_temporality",
                    "An explicit-bucket histogram metric's points.")
ExponentialHistogram = _record("ExponentialHistogram", "data_points aggregation_temporality",
                               "A base-2 exponential histogram metric's points.")
Metric = _record("Metric", "name description unit data", "One metric stream of a collection.")
ScopeMetrics = _record("ScopeMetrics", "scope metrics schema_url", "The metrics of one meter.",
                       schema_url="")
MetricsData = _record("MetricsData", "resource_metrics", "One collection.", resource_metrics=list)


class ResourceMetrics(_Record):
    """The metrics of one resource."""

    __slots__ = ("resource", "scope_metrics", "schema_url")
    _fields = __slots__
    _defaults = {"schema_url": ""}
    __dataclass_fields__ = dataclass_fields(_fields)

    def to_dict(self) -> dict:
        res = self.resource
        return {
            "resource": {
                "attributes": dict(getattr(res, "attributes", {}) or {}),
                "schema_url": getattr(res, "schema_url", "") or "",
            },
            "scope_metrics": self.scope_metrics,
            "schema_url": self.schema_url,
        }


def replace_fields(obj, **changes):
    """A copy with some fields changed, of ours or of opentelemetry-sdk's data model."""
    return dataclasses.replace(obj, **changes)


def point_count(data) -> int:
    """How many points a metric's data (ours or opentelemetry-sdk's) has, without
    building them from its snapshot."""
    raw = getattr(data, "_data_points", None)
    return len(raw) if type(raw) is Snapshot else len(data.data_points)


def points_slice(data, start: int, stop: int):
    """A copy of a metric's data with its points ``start`` to ``stop``: from its
    snapshot's records while its points are not built (the encoders write them
    without building them), else the points themselves."""
    raw = getattr(data, "_data_points", None)
    part = raw.slice(start, stop) if type(raw) is Snapshot else None
    return replace_fields(data, data_points=part if part is not None else list(data.data_points[start:stop]))


def count_points(metrics_data) -> int:
    """How many data points a MetricsData (ours or opentelemetry-sdk's) carries."""
    return sum(point_count(metric.data) for rm in metrics_data.resource_metrics
               for sm in rm.scope_metrics for metric in sm.metrics)


# The reference's type aliases, for annotations in user code and exporters: made on
# first use (PEP 562), as making a typing.Union of new types is 0.14 M instructions,
# 2% of what ``import otelmetrics`` adds to ``import opentelemetry.metrics``.
_ALIASES = {
    "DataT": lambda: Union[Sum, Gauge, Histogram, ExponentialHistogram],
    "DataPointT": lambda: Union[NumberDataPoint, HistogramDataPoint, ExponentialHistogramDataPoint],
}


def __getattr__(name):
    if name not in _ALIASES:
        raise AttributeError("module %r has no attribute %r" % (__name__, name))
    value = globals()[name] = _ALIASES[name]()
    return value
