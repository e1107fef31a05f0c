"""Readers, exporters and the exported data model (``opentelemetry.sdk.metrics.export`` names)."""
from otelmetrics.export._console import ConsoleMetricExporter
from otelmetrics.export._data import (
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
from otelmetrics.export._exporter import MetricExporter, MetricExportResult
from otelmetrics.export._filter import AttributesFilterResult, MetricFilter, MetricFilterResult
from otelmetrics.export._readers import (
    InMemoryMetricReader,
    MetricProducer,
    MetricReader,
    PeriodicExportingMetricReader,
)

__all__ = [
    "AttributesFilterResult", "MetricFilter", "MetricFilterResult",
    "AggregationTemporality", "Buckets", "ConsoleMetricExporter", "Exemplar", "ExponentialHistogram",
    "ExponentialHistogramDataPoint", "Gauge", "Histogram", "HistogramDataPoint", "InMemoryMetricReader",
    "InstrumentationScope", "Metric", "MetricExportResult", "MetricExporter", "MetricProducer", "MetricReader",
    "MetricsData", "NumberDataPoint", "OTLPMetricExporter", "PeriodicExportingMetricReader",
    "ResourceMetrics", "ScopeMetrics", "Sum", "PrometheusMetricReader", "start_http_server",
]


def __getattr__(name):
    # The OTLP exporter (and its HTTP/TLS imports) loads only when asked for.
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
