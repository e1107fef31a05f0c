"""MeterProvider: the SDK's entry point, an opentelemetry-api MeterProvider.

It owns the resource, views, readers and the pipeline, hands out one Meter per
scope, and runs force_flush/shutdown over its readers within one deadline.
It also owns its ``Diagnostics``: what the SDK dropped and why, counted always and
warned about rarely (the reference SDK logs every bad call, which floods a device's
log; here each (instrument, reason) pair warns at most once per
``WARN_INTERVAL_S`` seconds, with how many were dropped since the last warning).
``Diagnostics`` is the one rate-limited warning of the SDK: exporters and servers
keep one for their failures.
Readers are duck-typed (anything with the reader protocol of
``otelmetrics.export.MetricReader``), so this layer never imports export/; a
reader written for opentelemetry-sdk is held in a ``ReferenceReader`` that
drives it through that SDK's reader protocol.
"""
from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import Counter as _Tally
from typing import Callable, Dict, Optional, Sequence

from opentelemetry import metrics as api

from otelmetrics._exemplars import filter_mode, make_sampler
from otelmetrics._env import call_in_child_after_fork
from otelmetrics._meter import Meter, as_text
from otelmetrics._model import InstrumentationScope
from otelmetrics._pipeline import Pipeline
from otelmetrics.resources import Resource
from otelmetrics.view import View, safe_repr, subclasses_reference

_logger = logging.getLogger("otelmetrics")

WARN_INTERVAL_S = 60.0


class Diagnostics:
    """Events counted always and warned about rarely: each key warns at most once per
    ``WARN_INTERVAL_S`` seconds, with how many times it happened since its last
    warning. A provider's counts the measurements it dropped, by (instrument name,
    reason); an exporter or a server keeps its own for its failures."""

    def __init__(self) -> None:
        self.counts: _Tally = _Tally()           # key -> how many times, ever
        self._last_warn: Dict[object, float] = {}
        self._since_warn: _Tally = _Tally()
        self._lock = threading.Lock()   # re-created in a forked child by its owner's fork hook

    def note(self, key, message: str, *args) -> None:
        """Count one event under ``key``; log ``message % args`` unless ``key`` was
        warned about less than ``WARN_INTERVAL_S`` seconds ago."""
        now = time.monotonic()
        with self._lock:
            self.counts[key] += 1
            self._since_warn[key] += 1
            last = self._last_warn.get(key)
            if last is not None and now - last < WARN_INTERVAL_S:
                return
            self._last_warn[key] = now
            n = self._since_warn.pop(key)
        _logger.warning(message + " (%d time(s)%s)", *args, n,
                        "" if last is None else " in the last %.0f s" % (now - last))

    def _reinit_locks_after_fork(self) -> None:
        self._lock = threading.Lock()

    def reporter(self, instrument_name: str) -> Callable[[str], None]:
        """The callable an instrument core calls with a drop reason."""
        def report(reason: str, _name: str = instrument_name) -> None:
            self.record_drop(_name, reason)
        return report

    def record_drop(self, name: str, reason: str) -> None:
        self.note((name, reason), "instrument %r: measurement %s", name, reason)

    def totals_by_reason(self) -> Dict[str, int]:
        with self._lock:
            out: _Tally = _Tally()
            for (_, reason), n in self.counts.items():
                out[reason] += n
            return dict(out)


def _scope_attributes(attributes) -> Optional[dict]:
    """get_meter's attributes as a dict, None when empty; what is not a mapping is
    logged and ignored (the meter works, without attributes)."""
    if attributes is None:
        return None
    try:
        return dict(attributes) or None
    except Exception as e:
        _logger.warning("get_meter: attributes must be a mapping, got %s (%s); the meter has none",
                        safe_repr(attributes), safe_repr(e))
        return None


def _freeze(attributes) -> tuple:
    try:
        return tuple(sorted((str(k), repr(v)) for k, v in dict(attributes or {}).items()))
    except Exception:
        return ()


class MetricsTimeoutError(Exception):
    """opentelemetry-sdk's name for a timed-out operation. otelmetrics never raises
    it into the application (force_flush and shutdown return False instead); it
    exists so that code which catches it keeps working."""


class MeterConfig:
    """What a meter_configurator returns for a scope (the spec's MeterConfig)."""

    __slots__ = ("enabled",)

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = bool(enabled)

    def __repr__(self) -> str:
        return "MeterConfig(enabled=%r)" % self.enabled


def _configurator(cfg):
    """A callable scope -> MeterConfig/bool; a {meter-name pattern: bool} mapping
    (``*``/``?`` wildcards, first match wins) is accepted as a shortcut."""
    if cfg is None:
        return lambda scope: True
    if callable(cfg):
        return cfg
    if isinstance(cfg, dict):
        rules = list(cfg.items())
        for pattern, enabled in rules:
            if not isinstance(pattern, str) or not isinstance(enabled, bool):
                raise TypeError("meter_configurator: a mapping must be {meter name pattern: bool}, got "
                                "%r: %r" % (pattern, enabled))

        from fnmatch import fnmatchcase

        def by_pattern(scope):
            for pattern, enabled in rules:
                if fnmatchcase(scope.name, pattern):
                    return enabled
            return True
        return by_pattern
    raise TypeError("meter_configurator must be a callable (scope -> MeterConfig) or a "
                    "{meter name pattern: bool} mapping, got %r" % (cfg,))


def _is_reader(obj) -> bool:
    """The reader protocol the provider and pipeline use (otelmetrics.export.MetricReader's)."""
    return all(callable(getattr(obj, name, None)) for name in (
        "_register", "_temporality_for", "_aggregation_for", "_cardinality_limit_for",
        "force_flush", "shutdown", "_reinit_locks_after_fork"))


def _adopt(reader, where: str):
    """What the provider keeps for a user's reader: ours as it is, opentelemetry-sdk's
    in its adapter; TypeError for anything else."""
    if _is_reader(reader):
        return reader
    if subclasses_reference(reader, "MetricReader"):
        from otelmetrics._reference_reader import ReferenceReader
        return ReferenceReader(reader)
    raise TypeError("%s: expected an otelmetrics.export.MetricReader (or an opentelemetry-sdk "
                    "MetricReader), got %r" % (where, reader))


def _holds(entry, reader) -> bool:
    """Whether the provider's ``entry`` is the user's ``reader``, or its adapter."""
    return entry is reader or getattr(entry, "_reference", None) is reader


class MeterProvider(api.MeterProvider):
    """Owns the readers, views and resource; hands out Meters.

    After ``opentelemetry.metrics.set_meter_provider(provider)``, code that knows
    only the API records into it.
    """

    def __init__(
        self,
        metric_readers: Sequence = (),
        resource: Optional[object] = None,
        shutdown_on_exit: bool = True,
        views: Sequence = (),
        exemplar_filter: Optional[object] = None,
        meter_configurator=None,
        self_metrics: bool = False,
    ) -> None:
        self._resource = resource if resource is not None else Resource.create()
        if not hasattr(self._resource, "attributes"):
            raise TypeError("MeterProvider: resource must have .attributes (an otelmetrics or "
                            "opentelemetry-sdk Resource), got %r" % (resource,))
        self._views = list(views or ())
        for v in self._views:
            if not isinstance(v, View):
                raise TypeError("MeterProvider: views must be otelmetrics.view.View objects, got %r" % (v,))
        self._readers = [_adopt(reader, "MeterProvider: metric_readers") for reader in metric_readers or ()]
        self._exemplar_mode = filter_mode(exemplar_filter)
        self._made_sampler = None
        self._meter_configurator = _configurator(meter_configurator)
        self._diagnostics = Diagnostics()
        self._pipeline = Pipeline(self)
        self._meters: Dict[tuple, Meter] = {}
        self._lock = threading.Lock()
        self._is_shutdown = False
        self._shutdown_once = threading.Lock()
        for reader in self._readers:
            reader._register(self)
        call_in_child_after_fork(self, "_reinit_locks_after_fork")
        if self_metrics:
            from otelmetrics import _self_metrics
            _self_metrics.register(self)
        self._atexit = None
        if shutdown_on_exit:
            ref = weakref.ref(self)

            def _on_exit() -> None:
                provider = ref()
                if provider is not None:
                    provider.shutdown()

            self._atexit = _on_exit
            atexit.register(_on_exit)

    @property
    def _sampler(self):
        """The exemplar sampler of the synchronous instruments, None when exemplars are
        off. Made on first use: a provider of observable instruments only (the agent's)
        never imports opentelemetry.trace for it."""
        if self._exemplar_mode is None:
            return None
        if self._made_sampler is None:
            self._made_sampler = make_sampler(self._exemplar_mode)
        return self._made_sampler

    def add_metric_reader(self, metric_reader) -> None:
        """Register one more reader: it sees every instrument, those made before it
        too (their streams start now). A reader of another provider is refused."""
        entry = _adopt(metric_reader, "MeterProvider.add_metric_reader")
        with self._pipeline._lock:
            if any(_holds(r, metric_reader) for r in self._readers):
                _logger.warning("MeterProvider.add_metric_reader: %r is registered already", metric_reader)
                return
            entry._register(self)      # raises if another provider has it
            self._readers = self._readers + [entry]     # copied: iterations in flight stay valid
            self._pipeline.add_reader(entry)

    def remove_metric_reader(self, metric_reader) -> None:
        """Stop collecting for a reader and shut it down (as opentelemetry-sdk does)."""
        with self._pipeline._lock:
            entry = next((r for r in self._readers if _holds(r, metric_reader)), None)
            if entry is None:
                _logger.warning("MeterProvider.remove_metric_reader: %r is not registered", metric_reader)
                return
            self._readers = [r for r in self._readers if r is not entry]
            self._pipeline.remove_reader(entry)
        try:
            entry.shutdown()
        except Exception as e:
            _logger.warning("MeterProvider.remove_metric_reader: %r.shutdown() failed: %s", metric_reader, e)

    def _reinit_locks_after_fork(self) -> None:
        """A lock held by a parent thread at fork time stays held forever in the
        child, where that thread does not exist: every lock gets a fresh copy."""
        self._lock = threading.Lock()
        self._diagnostics._reinit_locks_after_fork()
        self._pipeline._reinit_locks_after_fork()
        for meter in list(self._meters.values()):
            meter._lock = threading.Lock()
        for reader in self._readers:
            reader._reinit_locks_after_fork()

    @property
    def resource(self):
        return self._resource

    def get_meter(self, name: str, version: Optional[str] = None, schema_url: Optional[str] = None,
                  attributes=None) -> api.Meter:
        if not isinstance(name, str) or not name:
            text = as_text(name, "get_meter: meter name")
            _logger.warning("get_meter: invalid meter name %s; using it as %r — pass the name of the "
                            "instrumenting library", safe_repr(name), text)
            name = text
        attributes = _scope_attributes(attributes)
        key = (name, version, schema_url, _freeze(attributes))
        with self._lock:
            meter = self._meters.get(key)
            if meter is None:
                scope = InstrumentationScope(name, version, schema_url or "", attributes)
                meter = self._meters[key] = Meter(scope, self._pipeline)
                meter._enabled = self._meter_enabled(scope)
            return meter

    def _meter_enabled(self, scope) -> bool:
        try:
            config = self._meter_configurator(scope)
        except Exception as e:
            _logger.warning("meter_configurator raised %s: %s; meter %r stays enabled",
                            type(e).__name__, e, scope.name)
            return True
        if config is None:       # "use the default"
            return True
        return bool(getattr(config, "enabled", config))

    def _collect(self, reader, timeout_millis: float = 10_000):
        return self._pipeline.collect(reader, timeout_millis)

    def _each_reader(self, what: str, timeout_millis: float, call):
        """Yield ``call(reader, ms left)`` for every reader within one deadline: a
        reader that raises yields False (logged); running out of time stops the loop
        and yields False once."""
        deadline = time.monotonic() + timeout_millis / 1e3
        for reader in list(self._readers):
            left = (deadline - time.monotonic()) * 1e3
            if left <= 0:
                _logger.warning("MeterProvider.%s: timed out after %.0f ms", what, timeout_millis)
                yield False
                return
            try:
                yield call(reader, left)
            except Exception as e:
                _logger.warning("MeterProvider.%s: reader %r failed: %s", what, reader, e)
                yield False

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Collect and export on every reader; True if all succeeded in time."""
        results = self._each_reader("force_flush", timeout_millis,
                                    lambda reader, left: bool(reader.force_flush(timeout_millis=left)))
        return all(list(results))

    def shutdown(self, timeout_millis: float = 30_000) -> bool:
        """Flush and shut down every reader; later measurements are ignored.
        Returns False if called twice, a reader failed, or time ran out."""
        if not self._shutdown_once.acquire(blocking=False):
            _logger.warning("MeterProvider.shutdown: already shut down")
            return False
        self._is_shutdown = True
        for instrument in list(self._pipeline._instruments):
            if hasattr(instrument, "_deactivate"):
                instrument._deactivate()
        results = self._each_reader("shutdown", timeout_millis,
                                    lambda reader, left: reader.shutdown(timeout_millis=left) is not False)
        ok = all(list(results))
        if self._atexit is not None:
            atexit.unregister(self._atexit)
            self._atexit = None
        return ok

    def stats(self) -> dict:
        """What was dropped and why, per instrument and in total; how many measurements
        went to an overflow series, per stream; and the counters of every reader's
        exporter that has a ``stats()`` (the OTLP exporter's), added up."""
        d = self._diagnostics
        with d._lock:
            per = {"%s: %s" % k: n for k, n in d.counts.items()}
        out = {"dropped_by_reason": d.totals_by_reason(), "dropped": per}
        overflowed: Dict[str, int] = {}
        with self._pipeline._lock:
            for by_instrument in self._pipeline._outs.values():
                for outs in by_instrument.values():
                    for o in outs:
                        n = getattr(o.stream, "overflowed", 0)
                        if n:
                            overflowed[o.name] = overflowed.get(o.name, 0) + n
        out["overflowed"] = sum(overflowed.values())
        out["overflowed_by_stream"] = overflowed
        for reader in self._readers:
            exporter_stats = getattr(getattr(reader, "_exporter", None), "stats", None)
            if not callable(exporter_stats):
                continue
            try:
                counts = exporter_stats()
            except Exception as e:
                _logger.warning("MeterProvider.stats: %r.stats() failed: %s", reader._exporter, e)
                continue
            for key, value in counts.items():
                out[key] = out.get(key, 0) + value
        return out
