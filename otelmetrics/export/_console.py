"""Console exporter: one JSON document per export, shaped like the reference's.

With the default formatter the document of one of our collections is written to
the stream in pieces as it is made (``to_json(..., write=)``): the memory it takes is a
piece's, not the document's (3 MB of text for 2000 series)."""
from __future__ import annotations

import os
import sys
import threading
from typing import IO, Callable, Optional

from otelmetrics._env import call_in_child_after_fork
from otelmetrics._model import MetricsData
from otelmetrics._native import to_json
from otelmetrics._provider import Diagnostics
from otelmetrics.export._exporter import MetricExporter, MetricExportResult


def _document(metrics_data) -> str:
    """The default formatter, the reference's: the JSON document and a line break."""
    return metrics_data.to_json() + os.linesep


class ConsoleMetricExporter(MetricExporter):
    """Writes ``formatter(metrics_data)`` to ``out`` (stdout by default)."""

    def __init__(
        self,
        out: IO = None,
        formatter: Callable = _document,
        preferred_temporality: Optional[dict] = None,
        preferred_aggregation: Optional[dict] = None,
    ) -> None:
        super().__init__(preferred_temporality, preferred_aggregation)
        self._out = out
        self._formatter = formatter
        self._lock = threading.Lock()
        self._shutdown = False
        self._failures = Diagnostics()   # a stream that fails every export warns once a minute
        call_in_child_after_fork(self, "_reinit_locks_after_fork")

    def _reinit_locks_after_fork(self) -> None:
        # A parent thread writing an export at the fork holds the lock forever in the child.
        self._lock = threading.Lock()
        self._failures._reinit_locks_after_fork()

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        if self._shutdown:
            return MetricExportResult.FAILURE
        out = self._out if self._out is not None else sys.stdout
        try:
            # The default document of our data is written in pieces; anything else whole.
            pieces = self._formatter is _document and type(metrics_data) is MetricsData
            text = os.linesep if pieces else self._formatter(metrics_data)
            with self._lock:
                if pieces:
                    to_json(metrics_data, 4, out.write)
                out.write(text)
                out.flush()
            return MetricExportResult.SUCCESS
        except Exception as e:
            self._failures.note(type(e), "ConsoleMetricExporter: export failed: %s: %s", type(e).__name__, e)
            return MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        self._shutdown = True
