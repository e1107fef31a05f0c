"""Exemplars, the user-facing choices: the filter (argument or
``OTEL_METRICS_EXEMPLAR_FILTER``), the reservoir classes a View may name, and
the specification's default reservoir per aggregation. Sampling and the
reservoirs themselves are compiled; nothing here runs per measurement.
"""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Optional

from opentelemetry import context as otel_context

from otelmetrics import _env
from otelmetrics._native import ALWAYS_OFF, ALWAYS_ON, TRACE_BASED, ExemplarSampler
from otelmetrics.view import ExplicitBucketHistogramAggregation, ExponentialBucketHistogramAggregation, reference_name

_logger = logging.getLogger("otelmetrics")

__all__ = ["AlwaysOffExemplarFilter", "AlwaysOnExemplarFilter", "AlignedHistogramBucketExemplarReservoir",
           "ExemplarFilter", "ExemplarReservoir", "SimpleFixedSizeExemplarReservoir",
           "TraceBasedExemplarFilter"]


class ExemplarFilter:
    """Which measurements may become exemplars."""

    _mode = ALWAYS_OFF

    def __repr__(self) -> str:
        return type(self).__name__ + "()"

    def __eq__(self, other) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


class AlwaysOffExemplarFilter(ExemplarFilter):
    """No exemplars and no exemplar work at all."""

    _mode = ALWAYS_OFF


class AlwaysOnExemplarFilter(ExemplarFilter):
    """Every measurement is eligible (with the active span's ids if there is one)."""

    _mode = ALWAYS_ON


class TraceBasedExemplarFilter(ExemplarFilter):
    """Measurements made inside a sampled span are eligible (the default)."""

    _mode = TRACE_BASED


_FILTERS = {"always_on": AlwaysOnExemplarFilter, "always_off": AlwaysOffExemplarFilter,
            "trace_based": TraceBasedExemplarFilter}
_BY_CLASS_NAME = {cls.__name__: cls for cls in _FILTERS.values()}


def filter_from_env() -> ExemplarFilter:
    return _FILTERS[_env.exemplar_filter()]()


def filter_mode(exemplar_filter: Optional[object]) -> Optional[int]:
    """The compiled sampling mode of a filter (ALWAYS_ON or TRACE_BASED), None when
    exemplars are off. A filter that is none of ours or the reference's is a TypeError."""
    f = exemplar_filter if exemplar_filter is not None else filter_from_env()
    if not isinstance(f, ExemplarFilter):
        # opentelemetry-sdk's filter classes, given by habit, map by name.
        cls = _BY_CLASS_NAME.get(reference_name(type(f)))
        if cls is None:
            raise TypeError("exemplar_filter must be AlwaysOnExemplarFilter, AlwaysOffExemplarFilter "
                            "or TraceBasedExemplarFilter, got %r" % (exemplar_filter,))
        f = cls()
    return None if f._mode == ALWAYS_OFF else f._mode


def make_sampler(mode: int) -> ExemplarSampler:
    """The compiled sampler for a mode of ``filter_mode``. The provider makes it with
    its first synchronous instrument: observable ones never sample exemplars."""
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    ctxvar = getattr(runtime, "_current_context", None)
    if type(ctxvar).__name__ != "ContextVar":
        ctxvar = None    # another runtime context: ask it through the API (slower)
    return ExemplarSampler(mode, ctxvar, otel_context.get_current)


class ExemplarReservoir(ABC):
    """A user reservoir, as opentelemetry-sdk's: ``View(exemplar_reservoir_factory=...)``
    makes one per series; it is offered each eligible measurement and collected
    with the series. (The built-in reservoirs below are compiled, in preallocated
    slots; they count as ExemplarReservoirs but are configured, not called.)"""

    @abstractmethod
    def offer(self, value, time_unix_nano: int, attributes, context) -> None:
        """Consider one measurement."""

    @abstractmethod
    def collect(self, point_attributes) -> list:
        """The exemplars of this interval (otelmetrics.Exemplar objects); then start afresh."""


class SimpleFixedSizeExemplarReservoir:
    """Uniform sample of ``size`` measurements per series and interval."""

    def __init__(self, size: int = 1) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError("SimpleFixedSizeExemplarReservoir size must be an int >= 1, got %r" % (size,))
        self.size = size

    def _configure(self, stream) -> None:
        stream.enable_exemplars(self.size, False)


class AlignedHistogramBucketExemplarReservoir:
    """One exemplar per histogram bucket (explicit-bucket histograms only)."""

    def _configure(self, stream) -> None:
        boundaries = getattr(stream, "boundaries", None)
        if boundaries is None:
            raise ValueError("AlignedHistogramBucketExemplarReservoir needs an explicit-bucket histogram")
        stream.enable_exemplars(len(boundaries) + 1, True)


ExemplarReservoir.register(SimpleFixedSizeExemplarReservoir)
ExemplarReservoir.register(AlignedHistogramBucketExemplarReservoir)


def configure_exemplars(instrument_name: str, stream, aggregation, factory) -> None:
    """Give a stream its reservoir: the view's factory's, else the specification's
    default for the aggregation (one per bucket for explicit histograms,
    ``min(20, max_size)`` for exponential ones, one otherwise)."""
    if factory is not None:
        try:
            reservoir = factory(type(aggregation))
            if hasattr(reservoir, "_configure"):          # a built-in, compiled reservoir
                reservoir._configure(stream)
                return
            if callable(getattr(reservoir, "offer", None)) and callable(getattr(reservoir, "collect", None)):
                # A user reservoir: the factory makes one per series (this one serves the first).
                stream.enable_custom_exemplars(factory, type(aggregation), reservoir)
                return
            raise TypeError("it returned %r, which is neither a built-in reservoir nor an object "
                            "with offer() and collect()" % (reservoir,))
        except Exception as e:
            _logger.warning("instrument %r: exemplar_reservoir_factory failed (%s: %s); using the "
                            "default reservoir", instrument_name, type(e).__name__, e)
    if isinstance(aggregation, ExplicitBucketHistogramAggregation) and len(stream.boundaries) > 0:
        AlignedHistogramBucketExemplarReservoir()._configure(stream)
    elif isinstance(aggregation, ExponentialBucketHistogramAggregation):
        SimpleFixedSizeExemplarReservoir(min(20, aggregation._max_size))._configure(stream)
    else:
        SimpleFixedSizeExemplarReservoir(1)._configure(stream)
