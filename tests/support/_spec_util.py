"""Helpers for the tests named after the specification's sections (spec/test_*.py)."""
import logging
import threading
import time

from otelmetrics.export import MetricExporter, MetricExportResult


class RecordingExporter(MetricExporter):
    """Counts calls, records overlapping exports; ``delay`` seconds per export,
    ``result`` what export returns, ``block`` an Event an export waits on."""

    def __init__(self, delay=0.0, result=MetricExportResult.SUCCESS, block=None, **kw):
        super().__init__(**kw)
        self.delay, self.result, self.block = delay, result, block
        self.exports, self.flushes, self.shutdowns = [], 0, 0
        self.active = self.max_active = 0
        self._lock = threading.Lock()

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        with self._lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            if self.block is not None:
                self.block.wait()
            if self.delay:
                time.sleep(self.delay)
            self.exports.append(metrics_data)
            return self.result
        finally:
            with self._lock:
                self.active -= 1

    def force_flush(self, timeout_millis=10_000):
        self.flushes += 1
        return True

    def shutdown(self, timeout_millis=30_000, **kwargs):
        self.shutdowns += 1


def metrics_of(data):
    """[Metric] of a MetricsData (None -> [])."""
    if data is None:
        return []
    return [m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics]


def warnings_about(caplog, *words):
    """Messages logged on 'otelmetrics' at WARNING or above that contain every word."""
    return [r.getMessage() for r in caplog.records
            if r.name == "otelmetrics" and r.levelno >= logging.WARNING
            and all(w in r.getMessage() for w in words)]
