"""otelmetrics: a compiled, bounded-memory OpenTelemetry Metrics SDK.

Names mirror ``opentelemetry.sdk.metrics``: migrating is changing imports.
"""
from otelmetrics.resources import __version__
from otelmetrics._instruments import (
    Counter,
    Gauge,
    Histogram,
    ObservableCounter,
    ObservableGauge,
    ObservableUpDownCounter,
    UpDownCounter,
)
from otelmetrics._exemplars import (
    AlignedHistogramBucketExemplarReservoir,
    AlwaysOffExemplarFilter,
    AlwaysOnExemplarFilter,
    ExemplarFilter,
    ExemplarReservoir,
    SimpleFixedSizeExemplarReservoir,
    TraceBasedExemplarFilter,
)
from otelmetrics._meter import Meter
from otelmetrics._model import Exemplar
from otelmetrics._provider import MeterConfig, MeterProvider, MetricsTimeoutError
from otelmetrics.resources import Resource

__all__ = [
    "AlignedHistogramBucketExemplarReservoir", "AlwaysOffExemplarFilter", "AlwaysOnExemplarFilter",
    "Exemplar", "ExemplarFilter", "ExemplarReservoir", "SimpleFixedSizeExemplarReservoir",
    "TraceBasedExemplarFilter", "Counter", "Gauge", "Histogram", "Meter", "MeterConfig", "MeterProvider",
    "MetricsTimeoutError", "ObservableCounter", "ObservableGauge",
    "ObservableUpDownCounter", "Resource", "UpDownCounter", "__version__", "configure",
]


def __getattr__(name):
    # configure() and what it builds from the environment load on first use: a
    # deliberate deferred import (PEP 562), for import time.
    if name == "configure":
        from otelmetrics._configure import configure

        return configure
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
