"""The seven instruments. Each is an instance of the matching
``opentelemetry.metrics`` class; the synchronous ones record through their
compiled core (one C call per measurement).
"""
from __future__ import annotations

from types import GeneratorType
import logging
from typing import Callable, Optional, Sequence

from opentelemetry import metrics as api

from otelmetrics._native import CounterCore, GaugeCore, HistogramCore
from otelmetrics.view import (
    ExplicitBucketHistogramAggregation,
    LastValueAggregation,
    SumAggregation,
)

__all__ = ["Counter", "UpDownCounter", "Histogram", "Gauge",
           "ObservableCounter", "ObservableUpDownCounter", "ObservableGauge"]

_logger = logging.getLogger("otelmetrics")


class _Identity:
    """Name, unit, description and the meter's scope; set by the Meter."""

    _async = False
    _monotonic = False

    def _init_identity(self, name: str, unit: str, description: str, scope, advisory=None) -> None:
        self.name = name
        self.unit = unit
        self.description = description
        self._scope = scope
        self._advisory = advisory

    _has_streams = True
    _meter_enabled = True

    def enabled(self) -> bool:
        """False when measurements would be thrown away: every view drops this
        instrument, its meter is disabled, or the provider is shut down."""
        return self._has_streams and getattr(self, "_active", True)

    @classmethod
    def _default_aggregation(cls):
        return SumAggregation()

    def __repr__(self) -> str:
        return "%s(name=%r, unit=%r, description=%r)" % (type(self).__name__, self.name, self.unit,
                                                        self.description)


class Counter(CounterCore, _Identity, api.Counter):
    """Monotonic sum: ``add(amount >= 0, attributes)``."""

    _monotonic = True

    def __init__(self, *args, **kwargs) -> None:  # built by Meter.create_counter
        pass


class UpDownCounter(CounterCore, _Identity, api.UpDownCounter):
    """Non-monotonic sum: ``add(amount, attributes)``."""

    def __init__(self, *args, **kwargs) -> None:
        pass


class Histogram(HistogramCore, _Identity, api.Histogram):
    """Distribution of ``record(amount >= 0, attributes)`` measurements.

    Negative values are dropped (and counted), as in opentelemetry-sdk: the
    spec's Sum over a Histogram is monotonic. Record signed values with an
    UpDownCounter."""

    _monotonic = True

    def __init__(self, *args, **kwargs) -> None:
        pass

    @classmethod
    def _default_aggregation(cls):
        return ExplicitBucketHistogramAggregation()


class Gauge(GaugeCore, _Identity, api._Gauge):
    """Last value: ``set(amount, attributes)``."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    @classmethod
    def _default_aggregation(cls):
        return LastValueAggregation()


# The callbacks one observable instrument takes, over all its registrations: plenty for one
# per sensor of a device, and a bound for a program that creates it again at every reconnect.
MAX_CALLBACKS = 256


def _same_callback(a, b) -> bool:
    """``a`` and ``b`` are the same callback: one object, or equal (a method read twice from
    one object gives two equal objects). A user's ``__eq__`` that fails means no."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:
        return False


class _Observable(_Identity):
    """Asynchronous instrument: callbacks run at each collection of each reader."""

    _async = True

    def __init__(self, *args, **kwargs) -> None:
        pass

    _callbacks: tuple = ()

    def _add_callbacks(self, callbacks: Optional[Sequence[Callable]]) -> None:
        """Register callbacks: one equal to a registered one (the same function, the same
        method of the same object) is not added twice, and an instrument takes at most
        ``MAX_CALLBACKS``, so a program that creates it again at every reconnect does not
        grow without bound (past that, refused with a warning). The tuple is replaced,
        not changed, so a collection iterating the old one is unaffected."""
        known = list(self._callbacks)
        refused = 0
        for cb in callbacks or ():
            if any(_same_callback(cb, k) for k in known):
                continue
            if len(known) >= MAX_CALLBACKS:
                refused += 1
                continue
            known.append(cb)
        new = known[len(self._callbacks):]
        self._callbacks = tuple(known)
        if refused:
            _logger.warning("instrument %r: %d callback(s) refused, it has %d, the most one instrument "
                            "takes; create an observable instrument once (creating it again adds the new "
                            "callbacks to its own)", getattr(self, "name", "?"), refused, MAX_CALLBACKS)
        for cb in new:
            if isinstance(cb, GeneratorType):
                # The API's generator protocol: advanced to its first yield here,
                # then sent CallbackOptions at each collection.
                try:
                    next(cb)
                except Exception as e:
                    _logger.warning(
                        "instrument %r: generator callback failed to start: %s: %s",
                        getattr(self, "name", "?"), type(e).__name__, e)


class ObservableCounter(_Observable, api.ObservableCounter):
    _monotonic = True


class ObservableUpDownCounter(_Observable, api.ObservableUpDownCounter):
    pass


class ObservableGauge(_Observable, api.ObservableGauge):
    @classmethod
    def _default_aggregation(cls):
        return LastValueAggregation()


SYNC_KINDS = (Counter, UpDownCounter, Histogram, Gauge)
ASYNC_KINDS = (ObservableCounter, ObservableUpDownCounter, ObservableGauge)
ALL_KINDS = SYNC_KINDS + ASYNC_KINDS
