"""From instruments to MetricsData: resolves views into streams for each
reader, runs asynchronous callbacks, and assembles a reader's collection.

Invariants: every stream of an instrument starts at the instrument's creation;
every point of one collection ends at the same instant, after its callbacks; a
reader's collections take their snapshots one at a time; a callback that hangs
or raises never stops a collection, and its late observations never leak into
the next one; one callback run hands over a bounded number of observations
(``MAX_OBSERVATIONS``) and is no longer iterated once its collection gave up.
Readers are duck-typed: the pipeline asks a reader only for its temporality,
aggregation, cardinality limit and metric filter per kind.
"""
from __future__ import annotations

from functools import partial
from types import GeneratorType
import logging
import threading
import time
from typing import Dict, List, Optional

from opentelemetry.metrics import CallbackOptions, Observation

from otelmetrics._native import observe, time_ns
from otelmetrics._model import (
    AggregationTemporality,
    ExponentialHistogram,
    Gauge,
    Histogram,
    Metric,
    MetricsData,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from otelmetrics.view import (
    DefaultAggregation,
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    LastValueAggregation,
    SumAggregation,
    safe_repr,
)
from otelmetrics import _instruments as inst
from otelmetrics._exemplars import configure_exemplars

_logger = logging.getLogger("otelmetrics")


class _StreamOut:
    """One exported metric stream: its identity, its compiled stream, and the
    data class (Sum, Gauge, Histogram, ExponentialHistogram) its points go in."""

    __slots__ = ("name", "description", "unit", "stream", "temporality", "monotonic", "data_type")

    def __init__(self, name, description, unit, stream, temporality, monotonic, data_type):
        self.name = name
        self.description = description
        self.unit = unit
        self.stream = stream
        self.temporality = temporality
        self.monotonic = monotonic
        self.data_type = data_type

    def metric(self, points) -> Metric:
        if self.data_type is Sum:
            data = Sum(points, self.temporality, self.monotonic)
        elif self.data_type is Gauge:
            data = Gauge(points)
        else:
            data = self.data_type(points, self.temporality)
        return Metric(self.name, self.description, self.unit, data)


def _data_type_for(aggregation):
    if isinstance(aggregation, SumAggregation):
        return Sum
    if isinstance(aggregation, LastValueAggregation):
        return Gauge
    if isinstance(aggregation, ExplicitBucketHistogramAggregation):
        return Histogram
    if isinstance(aggregation, ExponentialBucketHistogramAggregation):
        return ExponentialHistogram
    raise TypeError("no data type for aggregation %r" % (aggregation,))


def _aggregation_applies(aggregation, kind) -> bool:
    """Histograms need synchronous measurements (the spec's compatibility table)."""
    if isinstance(aggregation, (ExplicitBucketHistogramAggregation, ExponentialBucketHistogramAggregation)):
        return kind in inst.SYNC_KINDS
    return True


def _stream_identity(instrument, out) -> tuple:
    """What a backend sees of a stream besides its name (the spec's metric identity)."""
    return (type(instrument), out.unit, out.description, out.data_type, out.temporality)


def _name(callback) -> str:
    """How a warning names a callback: its ``__name__``, else its repr, else its
    type's name. Never raises: user objects may fail at all three."""
    try:
        name = getattr(callback, "__name__", None)
    except Exception:
        name = None
    return name if isinstance(name, str) and name else safe_repr(callback)


def _error_text(error: BaseException) -> str:
    """``Type: message`` of a callback's exception, whose ``__str__`` may raise too."""
    try:
        return "%s: %s" % (type(error).__name__, error)
    except Exception:
        return "%s (unprintable)" % type(error).__name__


# What one callback run may hand over: at most this many observations, or the largest
# cardinality limit of the instrument's streams if that is more. A callback within its
# limit is never cut short; one that never stops yielding costs bounded memory.
MAX_OBSERVATIONS = 100_000


def _materialise(run, options, cancelled, cap: int):
    """(observations, error, truncated): what the callback yielded before any failure
    is kept. Iteration stops once the collection has stopped waiting (what would
    follow is discarded anyway) or after ``cap`` observations (``truncated``)."""
    out: list = []
    append = out.append
    stopped = cancelled.is_set
    try:
        for obs in run(options) or ():
            if len(out) >= cap:
                return out, None, True
            append(obs)
            if stopped():
                break
    except StopIteration:
        raise
    except Exception as e:
        return out, e, False
    return out, None, False


class Pipeline:
    """All instruments of one MeterProvider and their streams per reader."""

    def __init__(self, provider) -> None:
        self._provider = provider
        self._lock = threading.RLock()
        self._instruments: List = []                         # registration order
        self._outs: Dict[int, Dict[int, List[_StreamOut]]] = {}  # id(reader) -> id(instrument) -> outs
        self._callback_lock = threading.Lock()
        self._collecting: Dict[int, threading.RLock] = {}   # id(reader) -> held by its collection
        self._runner = None   # a CallbackRunner, made at the first callback (after a fork: again)
        self._identities: Dict[tuple, object] = {}  # first instrument behind each metric name
        self._renamed_by: Dict[int, object] = {}    # renaming view -> first instrument it matched
        self._warned_views: set = set()

    def _reinit_locks_after_fork(self) -> None:
        self._lock = threading.RLock()
        self._callback_lock = threading.Lock()
        self._collecting = {}
        self._runner = None   # the parent's worker threads are gone: a new runner at first use

    # -- registration ----------------------------------------------------------

    def register(self, instrument) -> None:
        start_ns = time_ns()
        with self._lock:
            for reader in self._provider._readers:
                self._add_streams(instrument, reader, start_ns)
            self._instruments.append(instrument)
            self._wire(instrument)
            if not type(instrument)._async:
                instrument._set_sampler(self._provider._sampler)
                if self._provider._is_shutdown:
                    instrument._deactivate()

    def add_reader(self, reader) -> None:
        """Streams for ``reader`` on every instrument made so far (they start now);
        the provider has already put it in its readers."""
        start_ns = time_ns()
        with self._lock:
            for instrument in self._instruments:
                self._add_streams(instrument, reader, start_ns)
                self._wire(instrument)

    def remove_reader(self, reader) -> None:
        """Forget ``reader``'s streams; the provider has already taken it out of its readers."""
        with self._lock:
            self._outs.pop(id(reader), None)
            self._collecting.pop(id(reader), None)
            self._identities = {k: v for k, v in self._identities.items() if k[0] != id(reader)}
            for instrument in self._instruments:
                self._wire(instrument)

    def _add_streams(self, instrument, reader, start_ns: int) -> None:
        outs = self._resolve(instrument, type(instrument), reader, start_ns) if instrument._meter_enabled else []
        self._outs.setdefault(id(reader), {})[id(instrument)] = outs
        for out in outs:
            self._check_identity(reader, instrument, out)

    def _wire(self, instrument) -> None:
        """Point the instrument at the streams of the provider's current readers (a
        synchronous instrument's bound handles follow at their next measurement)."""
        kind = type(instrument)
        streams = tuple(o.stream for r in self._provider._readers
                        for o in self._outs.get(id(r), {}).get(id(instrument), ()))
        instrument._has_streams = bool(streams)
        if not kind._async:
            instrument._bind_core(streams, kind._monotonic,
                                  self._provider._diagnostics.reporter(instrument.name))

    def _resolve(self, instrument, kind, reader, start_ns: int) -> List[_StreamOut]:
        views = []
        for v in self._provider._views:
            if not v._match(instrument):
                continue
            if not _aggregation_applies(v._aggregation, kind):
                # The spec: a view that cannot apply is treated as if it did not exist.
                _logger.warning("instrument %r: %s cannot aggregate a %s; the view is ignored for it",
                                instrument.name, type(v._aggregation).__name__, kind.__name__)
                continue
            if v._name is not None:
                self._check_renaming_view(v, instrument)
            views.append(v)
        temporality = reader._temporality_for(kind)
        delta = temporality is AggregationTemporality.DELTA
        outs = []
        # (name, description, allowed, excluded, aggregation, limit, reservoir factory, advisory)
        if not views:
            spec = [(instrument.name, instrument.description, None, None,
                     self._reader_aggregation(reader, instrument, kind),
                     reader._cardinality_limit_for(kind), None, instrument._advisory)]
        else:
            spec = []
            for v in views:
                from_view = not isinstance(v._aggregation, DefaultAggregation)
                agg = v._aggregation if from_view else self._reader_aggregation(reader, instrument, kind)
                spec.append((v._name or instrument.name,
                             v._description if v._description is not None else instrument.description,
                             v._attribute_keys, v._excluded_attribute_keys, agg,
                             v._cardinality_limit or reader._cardinality_limit_for(kind),
                             v._exemplar_reservoir_factory,
                             # A view that chooses the histogram chooses its boundaries too.
                             None if from_view else instrument._advisory))
        for name, description, allowed, excluded, agg, limit, factory, advisory in spec:
            stream = agg._build(kind, delta=delta, limit=limit, allowed=allowed, excluded=excluded,
                                advisory=advisory)
            if stream is None:
                continue
            stream.set_start(start_ns)   # every stream of an instrument starts at its creation
            if not kind._async:
                stream.set_owner(instrument)   # guarded by the core's critical section (cext/README.md)
            if not kind._async and self._provider._sampler is not None:
                configure_exemplars(instrument.name, stream, agg, factory)
            outs.append(_StreamOut(name, description, instrument.unit, stream, temporality,
                                   kind._monotonic, _data_type_for(agg)))
        return outs

    @staticmethod
    def _reader_aggregation(reader, instrument, kind):
        """The reader's preferred aggregation for ``kind``, resolved; its default
        when the preferred one cannot aggregate this kind. (A view's own
        aggregation is checked where the view is matched.)"""
        agg = reader._aggregation_for(kind)
        if isinstance(agg, DefaultAggregation):
            return kind._default_aggregation()
        if not _aggregation_applies(agg, kind):
            _logger.warning("instrument %r: %s cannot aggregate a %s; using its default "
                            "aggregation instead", instrument.name, type(agg).__name__, kind.__name__)
            return kind._default_aggregation()
        return agg

    def _check_renaming_view(self, view, instrument) -> None:
        first = self._renamed_by.setdefault(id(view), instrument)
        if first is not instrument and id(view) not in self._warned_views:
            self._warned_views.add(id(view))
            _logger.warning(
                "View(name=%r) matches more than one instrument (%s %r of meter %r and %s %r of meter %r): "
                "every match is exported under that name. A view that renames must select one "
                "instrument: add instrument_name= and meter_name= to it", view._name,
                type(first).__name__, first.name, first._scope.name, type(instrument).__name__,
                instrument.name, instrument._scope.name)

    def _check_identity(self, reader, instrument, out: _StreamOut) -> None:
        """Two instruments whose streams share a name in one meter are both
        exported (the spec), with a warning that says how to separate them."""
        scope = instrument._scope
        key = (id(reader), scope.name, scope.version, scope.schema_url, out.name.lower())
        first, first_out = self._identities.setdefault(key, (instrument, out))
        if first is instrument and first_out is not out:
            _logger.warning("meter %r: two views give instrument %r two streams named %r; both are "
                            "exported: give the views different names", scope.name, instrument.name, out.name)
        elif first is not instrument and _stream_identity(first, first_out) != _stream_identity(instrument, out):
            _logger.warning(
                "meter %r: metric %r is produced by two different instruments (%s %r and %s %r); both "
                "are exported and backends may merge or reject them. Rename one with a View, e.g. "
                "View(instrument_name=%r, meter_name=%r, name=%r)",
                scope.name, out.name, type(first).__name__, first.name, type(instrument).__name__,
                instrument.name, instrument.name, scope.name, out.name + "." + type(instrument).__name__.lower())

    # -- collection ------------------------------------------------------------

    @staticmethod
    def _filter_verdicts(reader, instruments, per_reader) -> Dict[int, str]:
        """The reader's MetricFilter answer per stream, as MetricFilterResult's value
        ("accept", "drop" or "accept_partial"); empty without a filter."""
        f = getattr(reader, "_metric_filter", None)
        if f is None:
            return {}
        from otelmetrics._filter import decide
        return {id(o): decide(f, i._scope, o.name, o.data_type, o.unit).value
                for i in instruments for o in per_reader.get(id(i), ())}

    def _run_callbacks(self, jobs, deadline: float) -> None:
        """Run every callback of this collection on the runner's workers, bounded by
        the collection's deadline (``_callbacks``: one that hangs is left on its own
        thread and the ones behind it move on). Observations are recorded callback by
        callback under ``record_lock``; once the collector stops waiting, a late
        callback's observations are discarded, so they cannot leak into the next
        collection. A callback still running since an earlier collection is skipped
        (counted) until it returns: a hung callback holds one thread, not one per
        collection."""
        diagnostics = self._provider._diagnostics
        cancelled = threading.Event()
        record_lock = threading.Lock()
        instrument_of = {}
        work = []
        for instrument, streams in jobs:
            for callback in instrument._callbacks:
                key = (id(instrument), id(callback))
                instrument_of[key] = (instrument, callback)
                work.append((key, partial(self._run_one, instrument, streams, callback, deadline,
                                          cancelled, record_lock)))
        if self._runner is None:
            from otelmetrics._callbacks import CallbackRunner
            self._runner = CallbackRunner()
        outcome = self._runner.run(work, deadline)
        cancelled.set()
        with record_lock:   # no recording is half done from here on
            pass
        for key, _ in outcome.stuck:
            instrument, callback = instrument_of[key]
            diagnostics.note((instrument.name, "callback timeout"),
                             "instrument %r: callback %s did not return before the collection's timeout; "
                             "it is skipped until it returns", instrument.name, _name(callback))
        if outcome.not_started:
            _logger.warning("the collection's timeout was used up before %d callback(s) ran, of "
                            "instrument(s) %s", len(outcome.not_started),
                            ", ".join(sorted({repr(instrument_of[k][0].name) for k, _ in outcome.not_started})))
        for reason, items in (("callback stuck", outcome.skipped), ("callback timeout", outcome.not_started)):
            for key, _ in items:
                diagnostics.record_drop(instrument_of[key][0].name, reason)
        for (key, _), error in outcome.failed:   # what _run_one lets through: KeyboardInterrupt, ...
            self._callback_failed(*instrument_of[key], error)

    def _callback_failed(self, instrument, callback, error: BaseException) -> None:
        """Counted, and warned about like every drop: once an interval per instrument."""
        self._provider._diagnostics.note((instrument.name, "callback error"),
                                         "instrument %r: callback %s raised %s", instrument.name,
                                         _name(callback), _error_text(error))

    def _run_one(self, instrument, streams, callback, deadline, cancelled, record_lock) -> None:
        diagnostics = self._provider._diagnostics
        report = diagnostics.reporter(instrument.name)
        options = CallbackOptions(timeout_millis=max(0.0, (deadline - time.monotonic()) * 1e3))
        run = callback.send if isinstance(callback, GeneratorType) else callback
        cap = max(MAX_OBSERVATIONS, max((s.limit for s in streams), default=0))
        try:
            observations, error, truncated = _materialise(run, options, cancelled, cap)
        except StopIteration:
            report("dropped: generator callback is exhausted")
            return
        with record_lock:
            if cancelled.is_set():
                return
            if truncated:
                report("dropped: callback made more than %d observations" % cap)
            for obs in observations:
                try:
                    if isinstance(obs, Observation):
                        if streams:
                            observe(streams, obs.value, obs.attributes, report)
                    else:
                        report("dropped: callback returned %s, not an Observation" % type(obs).__name__)
                except Exception as e:     # an Observation whose properties raise
                    error = error or e
        if error is not None:  # a callback's failure must not stop collection
            self._callback_failed(instrument, callback, error)

    def collect(self, reader, timeout_millis: float = 10_000) -> Optional[MetricsData]:
        """One collection for ``reader``; None when there is nothing to report."""
        provider = self._provider
        with self._lock:
            instruments = list(self._instruments)
            per_reader = self._outs.get(id(reader), {})
            # Re-entrant: a finaliser the garbage collector runs amid a collection may collect.
            collecting = self._collecting.setdefault(id(reader), threading.RLock())
        by_scope: Dict[object, List[Metric]] = {}
        scopes = {}
        deadline = time.monotonic() + timeout_millis / 1e3   # bounds all callbacks together
        verdicts = self._filter_verdicts(reader, instruments, per_reader)
        jobs = [(i, tuple(o.stream for o in per_reader[id(i)])) for i in instruments
                if type(i)._async and per_reader.get(id(i)) and i._callbacks
                and any(verdicts.get(id(o)) != "drop" for o in per_reader[id(i)])]
        if jobs:
            with self._callback_lock:
                self._run_callbacks(jobs, deadline)
        # One collection of a reader at a time (a periodic export and a force_flush, or two
        # scrapes, may ask at once): an exponential histogram's points are built from cells
        # its stream goes on using, which a second collection would merge into or swap
        # while the first builds them (on 3.11 a finaliser run by the garbage collector
        # amid the build lets another thread in, even with the GIL).
        with collecting:
            now = time_ns()   # every point of a collection ends at the same instant
            for instrument in instruments:
                outs = per_reader.get(id(instrument))
                if not outs:
                    continue
                for out in outs:
                    # Even when filtered: the interval moves on. Points are built only
                    # when someone reads them (an OTLP encoder writes from the snapshot).
                    points = out.stream.collect_snapshot(now)
                    verdict = verdicts.get(id(out))
                    if verdict == "drop":
                        continue
                    if verdict == "accept_partial":
                        from otelmetrics._filter import keep_points
                        points = keep_points(reader._metric_filter, instrument._scope, out.name, out.data_type,
                                             out.unit, points.points())
                    if len(points):
                        scope = instrument._scope
                        scopes[id(scope)] = scope
                        by_scope.setdefault(id(scope), []).append(out.metric(points))
        if not by_scope:
            return None
        resource = provider._resource
        scope_metrics = [ScopeMetrics(scopes[k], metrics, scopes[k].schema_url or "")
                         for k, metrics in by_scope.items()]
        return MetricsData([ResourceMetrics(resource, scope_metrics,
                                            getattr(resource, "schema_url", "") or "")])
