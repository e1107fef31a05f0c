"""The shape of collected metrics: resource -> scope -> metric -> points.

Same classes and field names as opentelemetry-sdk's ``metrics.export`` data
model, so code that walks a reference ``MetricsData`` walks ours unchanged.
The point classes themselves live in the compiled core.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Optional, Sequence

from otelmetrics._native.points import (
    Buckets,
    Exemplar,
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    NumberDataPoint,
)

__all__ = [
    "AggregationTemporality", "Buckets", "Exemplar", "ExponentialHistogram",
    "ExponentialHistogramDataPoint", "Gauge", "Histogram", "HistogramDataPoint",
    "InstrumentationScope", "Metric", "MetricsData", "NumberDataPoint",
    "ResourceMetrics", "ScopeMetrics", "Sum",
]


class AggregationTemporality(IntEnum):
    """Values as in OTLP's metrics.proto (DELTA = 1, CUMULATIVE = 2)."""

    UNSPECIFIED = 0
    DELTA = 1
    CUMULATIVE = 2


def _plain(obj: Any) -> Any:
    """Recursively turn the data model into JSON-ready builtins."""
    if hasattr(obj, "to_dict"):
        return _plain(obj.to_dict())
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, bytes):
        return obj.hex()
    return obj


class _JSONable:
    def to_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}  # type: ignore[attr-defined]

    def to_json(self, indent: Optional[int] = 4) -> str:
        return json.dumps(_plain(self), indent=indent)


@dataclass(frozen=True)
class InstrumentationScope(_JSONable):
    name: str
    version: Optional[str] = None
    schema_url: Optional[str] = ""
    attributes: Optional[dict] = None


@dataclass(frozen=True)
class Sum(_JSONable):
    data_points: Sequence[NumberDataPoint]
    aggregation_temporality: AggregationTemporality
    is_monotonic: bool


@dataclass(frozen=True)
class Gauge(_JSONable):
    data_points: Sequence[NumberDataPoint]


@dataclass(frozen=True)
class Histogram(_JSONable):
    data_points: Sequence[HistogramDataPoint]
    aggregation_temporality: AggregationTemporality


@dataclass(frozen=True)
class ExponentialHistogram(_JSONable):
    data_points: Sequence[ExponentialHistogramDataPoint]
    aggregation_temporality: AggregationTemporality


@dataclass(frozen=True)
class Metric(_JSONable):
    name: str
    description: Optional[str]
    unit: Optional[str]
    data: Any


@dataclass(frozen=True)
class ScopeMetrics(_JSONable):
    scope: InstrumentationScope
    metrics: Sequence[Metric]
    schema_url: str = ""


@dataclass(frozen=True)
class ResourceMetrics(_JSONable):
    resource: Any
    scope_metrics: Sequence[ScopeMetrics]
    schema_url: str = ""

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


@dataclass(frozen=True)
class MetricsData(_JSONable):
    resource_metrics: Sequence[ResourceMetrics] = field(default_factory=list)
