"""otelmetrics: a compiled, bounded-memory OpenTelemetry Metrics SDK.

Names mirror ``opentelemetry.sdk.metrics``: migrating is changing imports.

On free-threaded CPython 3.13 with the GIL off, importing warns (RuntimeWarning)
that recording is exact only on 3.14t or with PYTHON_GIL=1 (README, "Threads").
"""
import sys
import warnings

from otelmetrics._version import __version__
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

if sys.version_info[:2] == (3, 13) and not getattr(sys, "_is_gil_enabled", lambda: True)():
    # 3.13's critical sections are not re-entrant: one begun on an object the thread already
    # holds suspends the outer one, so a bound handle re-pinned while readers change can lose
    # counts (tests/test_threads.py, seen on 3.13t only); 3.14 made them re-entrant.
    warnings.warn(
        "otelmetrics on free-threaded CPython 3.13 with the GIL off: recording is exact only on "
        "3.14t or with the GIL on. Set PYTHON_GIL=1 (or use CPython 3.14t): a bound handle "
        "recording while metric readers are added or removed can lose counts here.",
        RuntimeWarning, stacklevel=2)


def __getattr__(name):
    # configure() and what it builds from the environment load on first use: a
    # deliberate deferred import (PEP 562), for import time.
    if name == "configure":
        from otelmetrics._configure import configure

        return configure
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
