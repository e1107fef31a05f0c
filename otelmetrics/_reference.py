"""Our data model as opentelemetry-sdk's own dataclasses, for the exporters and
readers written for that SDK (a vendor's ``MetricExporter``, the Prometheus
reader), and their temporality choices as ours.

Invariants: used only for such an object, so opentelemetry-sdk is installed
whenever a conversion runs; it is imported here on the first conversion, never
by ``import otelmetrics``. Conversion goes by class and field name: each
reference dataclass is built from the same-named fields of our object, which is
why the two models keep the reference's names. Values that are not ours (a
reference ``Resource`` given to our provider, a producer's reference data) pass
through unchanged. Our data is never modified.
"""
from __future__ import annotations

from typing import Callable, Dict, Optional

from otelmetrics._model import AggregationTemporality

_OURS = ("otelmetrics.",)
# Classes of the reference's ``metrics.export`` built field by field from ours.
_DATACLASSES = ("MetricsData", "ResourceMetrics", "ScopeMetrics", "Metric", "Sum", "Gauge", "Histogram",
                "ExponentialHistogram", "NumberDataPoint", "HistogramDataPoint",
                "ExponentialHistogramDataPoint", "Buckets")

_builders: Optional[Dict[str, Callable]] = None
_reference_temporality = None


def _dataclass_builder(cls) -> Callable:
    names = tuple(cls.__dataclass_fields__)

    def build(obj):
        return cls(**{f: _convert(getattr(obj, f)) for f in names})
    return build


def _load() -> Dict[str, Callable]:
    """{our class name: builder of the reference object}, made once."""
    global _builders, _reference_temporality
    if _builders is None:
        # opentelemetry-sdk is optional: imported only once one of its exporters
        # or readers was handed to us (so it is installed).
        from opentelemetry.sdk.metrics import Exemplar
        from opentelemetry.sdk.metrics import export as ref_export
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        builders = {name: _dataclass_builder(getattr(ref_export, name)) for name in _DATACLASSES}
        builders["Exemplar"] = _dataclass_builder(Exemplar)
        builders["Resource"] = lambda r: Resource(dict(r.attributes), r.schema_url)
        builders["InstrumentationScope"] = lambda s: InstrumentationScope(
            s.name, s.version, s.schema_url, s.attributes)
        _reference_temporality = ref_export.AggregationTemporality
        _builders = builders
    return _builders


def _ours(value) -> bool:
    return type(value).__module__.startswith(_OURS)


def _convert(value):
    if isinstance(value, AggregationTemporality):
        return _reference_temporality(int(value))
    if isinstance(value, (list, tuple)):
        # Lists of model objects (points, metrics...); attribute and bucket
        # sequences hold plain values and are kept as they are.
        return [_convert(v) for v in value] if value and _ours(value[0]) else value
    if _ours(value):
        build = _builders.get(type(value).__name__)
        if build is not None:
            return build(value)
    return value


def to_reference(metrics_data):
    """The reference SDK's ``MetricsData`` for one of our collections."""
    _load()
    return _convert(metrics_data)


def temporality_from_reference(temporality) -> AggregationTemporality:
    """Ours for the reference's ``AggregationTemporality`` (same OTLP values);
    ValueError for anything else than DELTA or CUMULATIVE."""
    value = AggregationTemporality(int(temporality))
    if value is AggregationTemporality.UNSPECIFIED:
        raise ValueError("temporality must be DELTA or CUMULATIVE, got %r" % (temporality,))
    return value
