"""Exporter interface shared by the console, in-memory and OTLP exporters."""
from __future__ import annotations

from abc import ABC, abstractmethod
from enum import Enum
from typing import Dict, Optional


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
