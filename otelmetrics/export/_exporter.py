"""The push-exporter interface shared by every exporter, and the temporality and
aggregation preferences an exporter built from the environment hands its reader.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from enum import Enum
from typing import Dict, Mapping, Optional

from opentelemetry import metrics as api

from otelmetrics import _env
from otelmetrics._model import AggregationTemporality
from otelmetrics.view import ExplicitBucketHistogramAggregation, ExponentialBucketHistogramAggregation


class MetricExportResult(Enum):
    SUCCESS = 0
    FAILURE = 1


class MetricExporter(ABC):
    """Push exporter. ``preferred_temporality`` / ``preferred_aggregation`` map
    instrument classes (ours or the opentelemetry-api ones) to a temporality or
    an aggregation; the reader that drives the exporter adopts them."""

    def __init__(
        self,
        preferred_temporality: Optional[Dict[type, object]] = None,
        preferred_aggregation: Optional[Dict[type, object]] = None,
    ) -> None:
        self._preferred_temporality = preferred_temporality
        self._preferred_aggregation = preferred_aggregation

    @abstractmethod
    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        """Send one collection; return SUCCESS or FAILURE, never raise."""

    @abstractmethod
    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Deliver anything buffered; True on success."""

    @abstractmethod
    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        """Release resources; later exports fail."""


# The API classes preferences are keyed by (the synchronous Gauge keeps the default).
_KINDS = (api.Counter, api.UpDownCounter, api.Histogram,
          api.ObservableCounter, api.ObservableUpDownCounter, api.ObservableGauge)


def _by_api_class(preferences: Optional[Mapping[type, object]]) -> dict:
    """Key user preferences by the API instrument class they belong to, so that one
    given for our class, the API's or the reference SDK's replaces the default."""
    out: dict = {}
    for cls, value in (preferences or {}).items():
        for kind in _KINDS:
            if isinstance(cls, type) and issubclass(cls, kind):
                out[kind] = value
                break
        else:
            out[cls] = value
    return out


def preferred_temporality(explicit: Optional[Mapping[type, object]] = None) -> dict:
    """``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`` (cumulative, delta, lowmemory),
    mapped to instrument classes as the reference does, with ``explicit`` on top."""
    T = AggregationTemporality
    choice = _env.temporality_preference()
    delta_counters = T.DELTA if choice != "cumulative" else T.CUMULATIVE
    out = {
        api.Counter: delta_counters,
        api.UpDownCounter: T.CUMULATIVE,
        api.Histogram: delta_counters,
        api.ObservableCounter: T.DELTA if choice == "delta" else T.CUMULATIVE,
        api.ObservableUpDownCounter: T.CUMULATIVE,
        api.ObservableGauge: T.CUMULATIVE,
    }
    out.update(_by_api_class(explicit))
    return out


def preferred_aggregation(explicit: Optional[Mapping[type, object]] = None) -> dict:
    """``OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION``, with ``explicit`` on top."""
    exponential = _env.default_histogram_aggregation() == "base2_exponential_bucket_histogram"
    out = {api.Histogram: ExponentialBucketHistogramAggregation() if exponential
           else ExplicitBucketHistogramAggregation()}
    out.update(_by_api_class(explicit))
    return out
