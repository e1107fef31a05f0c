"""Console exporter: one JSON document per export, shaped like the reference's."""
from __future__ import annotations

import logging
import os
import sys
import threading
from typing import IO, Callable, Optional

from otelmetrics.export._exporter import MetricExporter, MetricExportResult

_logger = logging.getLogger("otelmetrics")


class ConsoleMetricExporter(MetricExporter):
    """Writes ``formatter(metrics_data)`` to ``out`` (stdout by default)."""

    def __init__(
        self,
        out: IO = None,
        formatter: Callable = lambda metrics_data: metrics_data.to_json() + os.linesep,
        preferred_temporality: Optional[dict] = None,
        preferred_aggregation: Optional[dict] = None,
    ) -> None:
        super().__init__(preferred_temporality, preferred_aggregation)
        self._out = out
        self._formatter = formatter
        self._lock = threading.Lock()
        self._shutdown = False

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        if self._shutdown:
            return MetricExportResult.FAILURE
        out = self._out if self._out is not None else sys.stdout
        try:
            text = self._formatter(metrics_data)
            with self._lock:
                out.write(text)
                out.flush()
            return MetricExportResult.SUCCESS
        except Exception as e:
            _logger.warning("ConsoleMetricExporter: %s: %s", type(e).__name__, e)
            return MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        self._shutdown = True
