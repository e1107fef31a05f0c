"""Readers and exporters, plus the data model they hand on, under the names of
``opentelemetry.sdk.metrics.export``. The data model itself lives in
``otelmetrics._model`` (the pipeline builds it; this package only re-exports it).

Heavy exporters (the OTLP exporter with its HTTP/TLS stack) load on first use
through this package's ``__getattr__``, so that ``import otelmetrics`` stays cheap.
"""
from otelmetrics._filter import AttributesFilterResult, MetricFilter, MetricFilterResult
from otelmetrics import _model
from otelmetrics._model import (
    AggregationTemporality,
    Buckets,
    Exemplar,
    ExponentialHistogram,
    ExponentialHistogramDataPoint,
    Gauge,
    Histogram,
    HistogramDataPoint,
    InstrumentationScope,
    Metric,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from otelmetrics.export._console import ConsoleMetricExporter
from otelmetrics.export._exporter import MetricExporter, MetricExportResult
from otelmetrics.export._readers import (
    CardinalityLimits,
    InMemoryMetricReader,
    InstrumentCardinalityKey,
    MetricProducer,
    MetricReader,
    PeriodicExportingMetricReader,
)

__all__ = [
    "CardinalityLimits", "DataPointT", "DataT", "InstrumentCardinalityKey",
    "AttributesFilterResult", "MetricFilter", "MetricFilterResult",
    "AggregationTemporality", "Buckets", "ConsoleMetricExporter", "Exemplar", "ExponentialHistogram",
    "ExponentialHistogramDataPoint", "Gauge", "Histogram", "HistogramDataPoint", "InMemoryMetricReader",
    "InstrumentationScope", "Metric", "MetricExportResult", "MetricExporter", "MetricProducer", "MetricReader",
    "MetricsData", "NumberDataPoint", "OTLPMetricExporter", "PeriodicExportingMetricReader",
    "ResourceMetrics", "ScopeMetrics", "Sum", "PrometheusMetricReader", "start_http_server",
]


def __getattr__(name):
    if name in ("DataT", "DataPointT"):   # typing aliases, made on first use (see _model)
        return getattr(_model, name)
    # The OTLP exporter (and its HTTP/TLS imports) loads only when asked for: a
    # deliberate deferred import (PEP 562), for import time.
    if name == "OTLPMetricExporter":
        from otelmetrics.export.otlp import OTLPMetricExporter

        return OTLPMetricExporter
    # Likewise the Prometheus endpoint (and the standard library's HTTP server).
    if name == "PrometheusMetricReader":
        from otelmetrics.export.prometheus import PrometheusMetricReader

        return PrometheusMetricReader
    if name == "start_http_server":
        from otelmetrics.export.prometheus import start_http_server

        return start_http_server
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
