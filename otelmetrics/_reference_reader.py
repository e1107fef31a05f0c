"""Readers written for opentelemetry-sdk (subclasses of its ``MetricReader``: the
Prometheus reader of opentelemetry-exporter-prometheus, its in-memory and
periodic readers, a vendor's) registered on our provider, and the reference's
aggregation objects as ours.

The provider wraps such a reader in ``ReferenceReader``, which speaks our
reader protocol to the pipeline and the reference's to the reader: the reader's
``_set_collect_callback`` receives a callback that collects from our provider
and returns the reference's ``MetricsData``; its ``_instrument_class_temporality``,
``_instrument_class_aggregation`` and ``_instrument_class_cardinality_limit``
decide, per instrument kind, what our streams do for it. Invariants: nothing
of opentelemetry-sdk is imported here (its classes are recognised by name);
an aggregation without an equivalent of ours fails at registration.
"""
from __future__ import annotations

import logging
import threading

from otelmetrics import _instruments as inst
from otelmetrics import view
from otelmetrics._model import AggregationTemporality
from otelmetrics._reference import temporality_from_reference, to_reference
from otelmetrics.view import by_kind, check_cardinality_limit, reference_name

_logger = logging.getLogger("otelmetrics")

# What opentelemetry-sdk before 1.45 (no per-reader limits) applied to every stream.
_REFERENCE_DEFAULT_LIMIT = 2000

# The constructor arguments of the reference's aggregations, kept as ``_<name>``.
_AGGREGATION_ARGS = {
    "ExplicitBucketHistogramAggregation": ("boundaries", "record_min_max"),
    "ExponentialBucketHistogramAggregation": ("max_size", "max_scale", "record_min_max"),
}


def aggregation_from_reference(aggregation):
    """Our aggregation for one of the reference's (same class name and arguments);
    ours are returned as they are. TypeError for anything else."""
    if isinstance(aggregation, view.Aggregation):
        return aggregation
    name = reference_name(type(aggregation))
    ours = getattr(view, name, None) if name in view.__all__ else None
    if not (isinstance(ours, type) and issubclass(ours, view.Aggregation)):
        raise TypeError("%r is not an aggregation otelmetrics knows: use one of otelmetrics.view's "
                        "(or opentelemetry-sdk's of the same names)" % (aggregation,))
    return ours(**{arg: getattr(aggregation, "_" + arg) for arg in _AGGREGATION_ARGS.get(name, ())
                   if hasattr(aggregation, "_" + arg)})


def by_our_kind(mapping, what: str, convert) -> dict:
    """{our instrument class: convert(value)} from a mapping keyed by the reference's classes."""
    return {kind: convert(value) for kind, value in by_kind(mapping, what, inst.ALL_KINDS).items()}


class ReferenceReader:
    """Our reader protocol over an opentelemetry-sdk ``MetricReader``."""

    def __init__(self, reader) -> None:
        self._reference = reader
        what = type(reader).__name__
        self._temporality = by_our_kind(getattr(reader, "_instrument_class_temporality", None),
                                        what + " temporality", temporality_from_reference)
        self._aggregation = by_our_kind(getattr(reader, "_instrument_class_aggregation", None),
                                        what + " aggregation", aggregation_from_reference)
        self._limits = by_our_kind(getattr(reader, "_instrument_class_cardinality_limit", None),
                                   what + " cardinality limit",
                                   lambda v: check_cardinality_limit(v, what + " cardinality limit"))
        self._provider = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return repr(self._reference)

    @property
    def _exporter(self):
        """The reader's exporter, if it has one (the provider's stats() adds up its counters)."""
        return getattr(self._reference, "_exporter", None)

    # -- what the pipeline asks ---------------------------------------------------

    def _temporality_for(self, kind) -> AggregationTemporality:
        return self._temporality.get(kind, AggregationTemporality.CUMULATIVE)

    def _aggregation_for(self, kind):
        return self._aggregation.get(kind) or view.DefaultAggregation()

    def _cardinality_limit_for(self, kind) -> int:
        return self._limits.get(kind, _REFERENCE_DEFAULT_LIMIT)

    # -- the reference's protocol -------------------------------------------------

    def _register(self, provider) -> None:
        reader = self._reference
        with self._lock:
            if self._provider is not None or getattr(reader, "_collect", None) is not None:
                raise ValueError("%s is already registered on a MeterProvider; a reader belongs to one "
                                 "provider, once: create one reader per provider" % type(reader).__name__)
            self._provider = provider
        reader._set_collect_callback(self._collect)
        set_provider = getattr(reader, "_set_meter_provider", None)
        if callable(set_provider):      # the reader's own metrics, when the reference enables them
            try:
                set_provider(provider)
            except Exception as e:
                _logger.warning("%s._set_meter_provider failed: %s: %s", type(reader).__name__,
                                type(e).__name__, e)

    def _collect(self, reader, timeout_millis: float = 10_000):
        """The callback the reference reader calls: one collection of ours, as its data classes."""
        data = self._provider._collect(self, timeout_millis)
        return None if data is None else to_reference(data)

    def collect(self, timeout_millis: float = 10_000):
        return self._reference.collect(timeout_millis=timeout_millis)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._reference.force_flush(timeout_millis=timeout_millis) is not False

    def shutdown(self, timeout_millis: float = 30_000, **kwargs):
        return self._reference.shutdown(timeout_millis=timeout_millis)

    def _reinit_locks_after_fork(self) -> None:
        # The reference reader re-arms its own thread and locks after a fork.
        self._lock = threading.Lock()
