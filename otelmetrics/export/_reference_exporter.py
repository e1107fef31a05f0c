"""An exporter written for opentelemetry-sdk (a subclass of its MetricExporter) behind
our MetricExporter interface, for PeriodicExportingMetricReader: each collection
reaches it as that SDK's data classes, converted for it alone; its preferred
temporality and aggregation become ours. Loaded only when such an exporter is given
(so opentelemetry-sdk is installed); the conversion is ``otelmetrics._reference``'s."""
from __future__ import annotations

from otelmetrics._reference import temporality_from_reference, to_reference
from otelmetrics._reference_reader import aggregation_from_reference, by_our_kind
from otelmetrics.export._exporter import MetricExporter, MetricExportResult


class ReferenceExporter(MetricExporter):
    """An exporter written for opentelemetry-sdk (a subclass of its MetricExporter)
    behind our interface: each collection reaches it as that SDK's data classes,
    converted for it alone; its preferred temporality and aggregation become ours."""

    def __init__(self, exporter) -> None:
        what = type(exporter).__name__
        super().__init__(
            by_our_kind(getattr(exporter, "_preferred_temporality", None), what + " preferred_temporality",
                        temporality_from_reference),
            by_our_kind(getattr(exporter, "_preferred_aggregation", None), what + " preferred_aggregation",
                        aggregation_from_reference))
        self._reference = exporter

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        result = self._reference.export(to_reference(metrics_data), timeout_millis=timeout_millis)
        # The reference's own MetricExportResult: the same names.
        ok = getattr(result, "name", None) == MetricExportResult.SUCCESS.name
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._reference.force_flush(timeout_millis=timeout_millis) is not False

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        self._reference.shutdown(timeout_millis=timeout_millis)
