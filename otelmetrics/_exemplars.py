"""Exemplar filters and reservoir choices (the sampling itself is compiled)."""
from __future__ import annotations

import logging
import os
from typing import Optional

from otelmetrics._native.instruments import ExemplarSampler

_logger = logging.getLogger("otelmetrics")

__all__ = ["AlwaysOffExemplarFilter", "AlwaysOnExemplarFilter", "AlignedHistogramBucketExemplarReservoir",
           "ExemplarFilter", "SimpleFixedSizeExemplarReservoir", "TraceBasedExemplarFilter"]


class ExemplarFilter:
    """Which measurements may become exemplars."""

    _mode = 0

    def __repr__(self) -> str:
        return type(self).__name__ + "()"

    def __eq__(self, other) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


class AlwaysOffExemplarFilter(ExemplarFilter):
    """No exemplars and no exemplar work at all."""

    _mode = 0


class AlwaysOnExemplarFilter(ExemplarFilter):
    """Every measurement is eligible (with the active span's ids if there is one)."""

    _mode = 1


class TraceBasedExemplarFilter(ExemplarFilter):
    """Measurements made inside a sampled span are eligible (the default)."""

    _mode = 2


_ENV_FILTERS = {"always_on": AlwaysOnExemplarFilter, "always_off": AlwaysOffExemplarFilter,
                "trace_based": TraceBasedExemplarFilter}


def filter_from_env() -> ExemplarFilter:
    raw = os.environ.get("OTEL_METRICS_EXEMPLAR_FILTER", "").strip().lower()
    if not raw:
        return TraceBasedExemplarFilter()
    cls = _ENV_FILTERS.get(raw)
    if cls is None:
        _logger.warning("OTEL_METRICS_EXEMPLAR_FILTER=%r is not one of always_on, always_off, "
                        "trace_based; using trace_based", raw)
        return TraceBasedExemplarFilter()
    return cls()


def sampler_for(exemplar_filter: Optional[object]) -> Optional[ExemplarSampler]:
    """The compiled sampler for a filter (None when exemplars are off)."""
    f = exemplar_filter if exemplar_filter is not None else filter_from_env()
    if not isinstance(f, ExemplarFilter):
        # opentelemetry-sdk's filter classes, given by habit, map by name.
        name = type(f).__name__
        f = {"AlwaysOnExemplarFilter": AlwaysOnExemplarFilter(),
             "AlwaysOffExemplarFilter": AlwaysOffExemplarFilter(),
             "TraceBasedExemplarFilter": TraceBasedExemplarFilter()}.get(name)
        if f is None:
            raise TypeError("exemplar_filter must be AlwaysOnExemplarFilter, AlwaysOffExemplarFilter "
                            "or TraceBasedExemplarFilter, got %r" % (exemplar_filter,))
    if f._mode == 0:
        return None
    from opentelemetry import context as otel_context
    from opentelemetry.trace.propagation import _SPAN_KEY

    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    ctxvar = getattr(runtime, "_current_context", None)
    if type(ctxvar).__name__ != "ContextVar":
        ctxvar = None    # another runtime context: ask it through the API (slower)
    return ExemplarSampler(f._mode, ctxvar, _SPAN_KEY, otel_context.get_current)


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
