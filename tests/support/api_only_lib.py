"""An instrumented library written against the OpenTelemetry metrics API only:
it imports nothing from any SDK. Used by tests/test_api_only.py in a subprocess."""
from opentelemetry import metrics
from opentelemetry.metrics import Observation

# Obtained at import time, before any provider is set: the API hands out proxies
# that must forward to the provider set later.
_early_meter = metrics.get_meter("api_only_lib.early", "0.1")
early_counter = _early_meter.create_counter("lib.early.requests", unit="1")

_level = {"value": 0}


def _observe(options):
    return [Observation(_level["value"], {"pool": "main"})]


def make_instruments():
    """Instruments of every kind from the global provider (set by then)."""
    meter = metrics.get_meter("api_only_lib", "0.2", schema_url="https://example.com/s/1")
    return {
        "counter": meter.create_counter("lib.requests", unit="1", description="requests served"),
        "up_down_counter": meter.create_up_down_counter("lib.active"),
        "histogram": meter.create_histogram("lib.duration", unit="ms",
                                            explicit_bucket_boundaries_advisory=[10.0, 100.0]),
        "gauge": meter.create_gauge("lib.temperature"),
        "observable_counter": meter.create_observable_counter("lib.bytes", callbacks=[_observe]),
        "observable_up_down_counter": meter.create_observable_up_down_counter("lib.queue",
                                                                             callbacks=[_observe]),
        "observable_gauge": meter.create_observable_gauge("lib.load", callbacks=[_observe]),
    }


def do_work(instruments, n):
    """What the library records for ``n`` requests."""
    for i in range(n):
        attrs = {"route": "/a" if i % 2 else "/b"}
        early_counter.add(1, attrs)
        instruments["counter"].add(1, attrs)
        instruments["up_down_counter"].add(1)
        instruments["histogram"].record(5 * i, attrs)
        instruments["gauge"].set(20 + i)
    instruments["up_down_counter"].add(-1)
    _level["value"] = 7 * n
