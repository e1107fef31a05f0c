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

from otelmetrics import _model
from otelmetrics._model import AggregationTemporality
from otelmetrics.resources import Resource

# Classes of the reference's ``metrics.export`` built field by field from ours.
_DATACLASSES = ("MetricsData", "ResourceMetrics", "ScopeMetrics", "Metric", "Sum", "Gauge", "Histogram",
                "ExponentialHistogram", "NumberDataPoint", "HistogramDataPoint",
                "ExponentialHistogramDataPoint", "Buckets")
# The fields that hold model objects (or lists of them); every other field is a
# plain value (attributes, numbers, bucket sequences) and is handed over as it is.
_NESTED = frozenset(("resource_metrics", "resource", "scope_metrics", "scope", "metrics", "data",
                     "data_points", "exemplars", "positive", "negative", "aggregation_temporality"))

_builders: Optional[Dict[type, Callable]] = None


def _dataclass_builder(cls) -> Callable:
    plain = tuple(f for f in cls.__dataclass_fields__ if f not in _NESTED)
    nested = tuple(f for f in cls.__dataclass_fields__ if f in _NESTED)

    def build(obj):
        values = {f: getattr(obj, f) for f in plain}
        for f in nested:
            values[f] = _convert(getattr(obj, f))
        return cls(**values)
    return build


def _load() -> Dict[type, Callable]:
    """{our class: builder of the reference object}, made once."""
    global _builders
    if _builders is None:
        # opentelemetry-sdk is optional: imported only once one of its exporters
        # or readers was handed to us (so it is installed).
        from opentelemetry.sdk.metrics import Exemplar as RefExemplar
        from opentelemetry.sdk.metrics import export as ref_export
        from opentelemetry.sdk.resources import Resource as RefResource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope as RefScope

        builders = {getattr(_model, name): _dataclass_builder(getattr(ref_export, name))
                    for name in _DATACLASSES}
        builders[_model.Exemplar] = _dataclass_builder(RefExemplar)
        builders[Resource] = lambda r: RefResource(dict(r.attributes), r.schema_url)
        builders[_model.InstrumentationScope] = lambda s: RefScope(s.name, s.version, s.schema_url,
                                                                   s.attributes)
        builders[AggregationTemporality] = lambda t: ref_export.AggregationTemporality(int(t))
        _builders = builders
    return _builders


def _convert(value):
    build = _builders.get(type(value))
    if build is not None:
        return build(value)
    if type(value) is list or type(value) is tuple:
        return [_convert(v) for v in value]
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
