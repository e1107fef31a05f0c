"""The SDK's own health as metrics (``MeterProvider(self_metrics=True)``).

Observable instruments on the meter "otelmetrics" that read ``provider.stats()``
at each collection, so a backend sees drops, overflow and export trouble next
to the application's metrics.
"""
from __future__ import annotations

from opentelemetry.metrics import Observation

from otelmetrics.resources import __version__

_REQUEST_OUTCOMES = {
    "requests_sent": "sent", "requests_replayed": "replayed", "requests_queued": "queued",
    "requests_rejected": "rejected", "requests_dropped_queue_full": "dropped_queue_full",
    "requests_dropped_shutdown": "dropped_shutdown",
}


def register(provider) -> None:
    meter = provider.get_meter("otelmetrics", __version__)

    def dropped(options):
        return [Observation(n, {"reason": reason})
                for reason, n in provider.stats()["dropped_by_reason"].items()]

    def overflowed(options):
        return [Observation(n, {"metric": name})
                for name, n in provider.stats()["overflowed_by_stream"].items()]

    def exports(options):
        s = provider.stats()
        return [Observation(s[k], {"outcome": k.split("_")[1]})
                for k in ("exports_succeeded", "exports_failed") if k in s]

    def requests(options):
        s = provider.stats()
        return [Observation(s[k], {"outcome": v}) for k, v in _REQUEST_OUTCOMES.items() if k in s]

    def kept(options):
        s = provider.stats()
        return [Observation(s[k], {"store": store})
                for k, store in (("queued_bytes", "memory"), ("spooled_bytes", "spool")) if k in s]

    meter.create_observable_counter("otelmetrics.measurements.dropped", [dropped], "{measurement}",
                                    "Measurements dropped or kept without invalid attributes, by reason")
    meter.create_observable_counter("otelmetrics.measurements.overflowed", [overflowed], "{measurement}",
                                    "Measurements aggregated into a cardinality overflow series")
    meter.create_observable_counter("otelmetrics.exporter.exports", [exports], "{export}",
                                    "OTLP exports that delivered everything, or did not")
    meter.create_observable_counter("otelmetrics.exporter.requests", [requests], "{request}",
                                    "OTLP requests by outcome")
    meter.create_observable_up_down_counter("otelmetrics.exporter.kept", [kept], "By",
                                            "Bytes kept for later delivery, in memory or in the spool")
