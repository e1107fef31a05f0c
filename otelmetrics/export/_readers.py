"""Metric readers: who collects, when, and in which temporality, aggregation and
cardinality limit. A reader belongs to one provider; it asks the provider for a
collection (``provider._collect``) and the pipeline asks it, per instrument
kind, for its choices. Nothing here raises into the application after
construction: a failing collection, producer or exporter is logged."""
from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from typing import Dict, Optional, Union

from otelmetrics import _env
from otelmetrics import _instruments as inst
from otelmetrics._filter import filter_metrics_data
from otelmetrics._model import AggregationTemporality, MetricsData, count_points
from otelmetrics.export._exporter import MetricExporter, MetricExportResult
from otelmetrics.view import (Aggregation, DefaultAggregation, by_kind, check_cardinality_limit,
                              subclasses_reference)

_logger = logging.getLogger("otelmetrics")

DEFAULT_CARDINALITY_LIMIT = 2000

# opentelemetry-sdk 1.45's names for the ``cardinality_limits`` argument's type.
InstrumentCardinalityKey = type
CardinalityLimits = Dict[InstrumentCardinalityKey, int]


def _by_kind(mapping: Optional[dict], what: str) -> Dict[type, object]:
    """{our instrument class: value} from a mapping keyed by a user's classes."""
    return by_kind(mapping, what, inst.ALL_KINDS)


def _limits_by_kind(mapping: Optional[dict], what: str) -> Dict[type, int]:
    """{our instrument class: cardinality limit}, each limit checked."""
    return {kind: check_cardinality_limit(v, "%s[%s]" % (what, kind.__name__))
            for kind, v in _by_kind(mapping, what).items()}


class MetricProducer(ABC):
    """A source of metrics besides the SDK's instruments (a bridge from another
    library, say). A reader given ``metric_producers`` exports their data with
    its own collection, as is: no temporality or aggregation is applied."""

    @abstractmethod
    def produce(self, timeout_millis: float = 10_000) -> Optional[MetricsData]:
        """Metrics now, or None."""


class MetricReader(ABC):
    """Base reader. ``preferred_temporality`` and ``preferred_aggregation`` map
    instrument classes to a temporality / aggregation (default: cumulative and
    each instrument's default aggregation); ``default_cardinality_limit`` is an
    int or a {class: int} mapping (default 2000; a view's limit wins)."""

    def __init__(
        self,
        preferred_temporality: Optional[Dict[type, AggregationTemporality]] = None,
        preferred_aggregation: Optional[Dict[type, object]] = None,
        default_cardinality_limit: Union[int, Dict[type, int], None] = None,
        metric_producers=(),
        metric_filter=None,
        cardinality_limits: Optional[CardinalityLimits] = None,
    ) -> None:
        if metric_filter is not None and not callable(getattr(metric_filter, "test_metric", None)):
            raise TypeError("metric_filter must be an otelmetrics.export.MetricFilter, got %r" % (metric_filter,))
        self._metric_filter = metric_filter

        self._producers = list(metric_producers or ())
        for p in self._producers:
            if not callable(getattr(p, "produce", None)):
                raise TypeError("metric_producers must have a produce(timeout_millis) method, got %r" % (p,))

        self._temporality = _by_kind(preferred_temporality, "preferred_temporality")
        for k, t in self._temporality.items():
            if t not in (AggregationTemporality.DELTA, AggregationTemporality.CUMULATIVE):
                raise ValueError("preferred_temporality[%s] must be AggregationTemporality.DELTA or "
                                 "CUMULATIVE, got %r" % (k.__name__, t))
        self._aggregation = _by_kind(preferred_aggregation, "preferred_aggregation")
        for k, a in self._aggregation.items():
            if not isinstance(a, Aggregation):
                raise TypeError("preferred_aggregation[%s] must be an otelmetrics.view aggregation, "
                                "got %r" % (k.__name__, a))
        if isinstance(default_cardinality_limit, dict):
            self._limits = _limits_by_kind(default_cardinality_limit, "default_cardinality_limit")
            self._limit = DEFAULT_CARDINALITY_LIMIT
        else:
            self._limits = {}
            self._limit = (DEFAULT_CARDINALITY_LIMIT if default_cardinality_limit is None else
                           check_cardinality_limit(default_cardinality_limit, "default_cardinality_limit"))
        # opentelemetry-sdk 1.45's spelling: {instrument class: limit}, on top.
        self._limits.update(_limits_by_kind(cardinality_limits, "cardinality_limits"))
        self._provider = None
        self._is_shut_down = False
        self._reader_lock = threading.Lock()

    # -- configuration the pipeline reads ----------------------------------------

    def _temporality_for(self, kind) -> AggregationTemporality:
        return self._temporality.get(kind, AggregationTemporality.CUMULATIVE)

    def _aggregation_for(self, kind):
        return self._aggregation.get(kind) or DefaultAggregation()

    def _cardinality_limit_for(self, kind) -> int:
        return self._limits.get(kind, self._limit)

    # -- lifecycle ---------------------------------------------------------------

    def _register(self, provider) -> None:
        with self._reader_lock:
            if self._provider is not None:
                raise ValueError("%s is already registered on %s MeterProvider; a reader belongs to one "
                                 "provider, once: create one reader per provider"
                                 % (type(self).__name__, "this" if self._provider is provider else "another"))
            # A strong reference: code that keeps only its instruments must not
            # lose its provider (and its data) to the garbage collector.
            self._provider = provider

    def _reinit_locks_after_fork(self) -> None:
        self._reader_lock = threading.Lock()
        if hasattr(self, "_lock"):
            self._lock = threading.Lock()

    def collect(self, timeout_millis: float = 10_000) -> bool:
        """Collect from the provider and hand the result to ``_receive_metrics``.
        False when the reader is shut down or not registered, or collection failed."""
        if self._is_shut_down:
            _logger.warning("%s.collect: the reader is shut down", type(self).__name__)
            return False
        try:
            data = self._collect_data(timeout_millis)
        except Exception as e:
            _logger.warning("%s.collect failed: %s: %s", type(self).__name__, type(e).__name__, e)
            return False
        if data is None:
            return self._provider is not None
        self._receive_metrics(data, timeout_millis=timeout_millis)
        return True

    def _collect_data(self, timeout_millis: float = 10_000) -> Optional[MetricsData]:
        provider = self._provider
        if provider is None:
            _logger.warning("%s.collect: the reader is not registered on a MeterProvider",
                            type(self).__name__)
            return None
        data = provider._collect(self, timeout_millis)
        if not self._producers:
            return data
        resource_metrics = list(data.resource_metrics) if data is not None else []
        for producer in self._producers:
            try:
                extra = producer.produce(timeout_millis=timeout_millis)
            except Exception as e:  # one bad producer must not lose the SDK's data
                _logger.warning("MetricProducer %r failed: %s: %s", producer, type(e).__name__, e)
                continue
            if extra is not None and self._metric_filter is not None:
                extra = filter_metrics_data(self._metric_filter, extra)
            if extra is not None:
                resource_metrics.extend(extra.resource_metrics)
        return MetricsData(resource_metrics) if resource_metrics else None

    @abstractmethod
    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs) -> None:
        """Do something with one collection."""

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        self.collect(timeout_millis=timeout_millis)
        return True

    @abstractmethod
    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        """Stop; later collections do nothing."""


class InMemoryMetricReader(MetricReader):
    """Pull reader for tests and local inspection: ``get_metrics_data()``."""

    def __init__(self, preferred_temporality=None, preferred_aggregation=None,
                 default_cardinality_limit=None, metric_producers=(), metric_filter=None,
                 cardinality_limits=None) -> None:
        super().__init__(preferred_temporality, preferred_aggregation, default_cardinality_limit,
                         metric_producers, metric_filter, cardinality_limits)
        self._lock = threading.Lock()
        self._data: Optional[MetricsData] = None

    def get_metrics_data(self) -> Optional[MetricsData]:
        """Collect now and return the result (None when nothing was recorded)."""
        if self._is_shut_down:
            return None
        with self._lock:
            self._data = None
            self.collect()
            data, self._data = self._data, None
            return data

    def _receive_metrics(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> None:
        self._data = metrics_data

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> bool:
        """True the first time; later calls return False."""
        with self._reader_lock:
            first = not self._is_shut_down
            self._is_shut_down = True
        return first


class _Backlog:
    """Collections waiting for the export lock, oldest first, at most ``limit``: a delta
    collection is the only copy of its data, so one collected while another export runs
    waits here and goes out right after it. Beyond the bound the oldest is dropped, counted
    in ``dropped`` (collections) and ``dropped_points``, and logged."""

    limit = 64

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._batches: deque = deque()
        self.dropped = 0
        self.dropped_points = 0

    def __len__(self) -> int:
        return len(self._batches)

    def add(self, batch: MetricsData) -> None:
        with self._lock:
            self._batches.append(batch)
            if len(self._batches) <= self.limit:
                return
            old = self._batches.popleft()
        self._count_dropped([old], "more than %d collections wait for a hung export" % self.limit)

    def take(self) -> Optional[MetricsData]:
        """The oldest collection waiting, or None."""
        with self._lock:
            return self._batches.popleft() if self._batches else None

    def drop_all(self, why: str) -> None:
        with self._lock:
            batches = list(self._batches)
            self._batches.clear()
        if batches:
            self._count_dropped(batches, why)

    def _count_dropped(self, batches, why: str) -> None:
        points = sum(count_points(batch) for batch in batches)
        with self._lock:
            self.dropped += len(batches)
            self.dropped_points += points
        _logger.error("%d collection(s) (%d data points) dropped unexported: %s", len(batches), points, why)


class PeriodicExportingMetricReader(MetricReader):
    """Collects every ``export_interval_millis`` on a daemon thread and hands the
    result to the exporter; exports never overlap. Defaults from
    OTEL_METRIC_EXPORT_INTERVAL (60000) and OTEL_METRIC_EXPORT_TIMEOUT (30000); the
    interval is clamped to [1 ms, ~24.8 days], the timeout to ~24.8 days, with a warning.
    ``export_interval_millis=math.inf`` (as opentelemetry-sdk documents it): no thread
    and no periodic collection, only on ``force_flush`` and ``shutdown``. An exporter
    written for opentelemetry-sdk (a subclass of its ``MetricExporter``) is accepted
    too: it receives that SDK's data classes."""

    def __init__(self, exporter: MetricExporter, export_interval_millis: Optional[float] = None,
                 export_timeout_millis: Optional[float] = None, metric_producers=(),
                 default_cardinality_limit=None, metric_filter=None, cardinality_limits=None) -> None:
        if subclasses_reference(exporter, "MetricExporter"):
            from otelmetrics.export._reference_exporter import ReferenceExporter
            exporter = ReferenceExporter(exporter)
        elif not isinstance(exporter, MetricExporter):
            raise TypeError("PeriodicExportingMetricReader: exporter must be an otelmetrics.export."
                            "MetricExporter (or an opentelemetry-sdk MetricExporter), got %r" % (exporter,))
        super().__init__(getattr(exporter, "_preferred_temporality", None),
                         getattr(exporter, "_preferred_aggregation", None),
                         default_cardinality_limit=default_cardinality_limit,
                         metric_producers=metric_producers, metric_filter=metric_filter,
                         cardinality_limits=cardinality_limits)
        self._exporter = exporter
        interval = _env.export_interval_millis(export_interval_millis)
        timeout = _env.export_timeout_millis(export_timeout_millis)
        if not isinstance(interval, (int, float)) or not interval > 0:
            raise ValueError("export_interval_millis must be a positive number of milliseconds (math.inf: "
                             "only on force_flush/shutdown), got %r" % (interval,))
        if not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ValueError("export_timeout_millis must be a positive number, got %r" % (timeout,))
        self._interval_s = interval / 1e3
        self._timeout_ms = timeout
        self._export_lock = threading.Lock()
        self._backlog = _Backlog()
        self._stop = threading.Event()
        self._shutdown_done = False
        self._shutdown_started = False
        self._thread: Optional[threading.Thread] = None

    def _register(self, provider) -> None:
        # The schedule starts when a provider registers the reader: before that a tick
        # would find nothing to collect (and flush the exporter for nothing), and where
        # building the provider takes longer than an interval (a slow device, emulation)
        # the first interval would pass without a collection.
        super()._register(provider)
        self._start_thread()

    def _start_thread(self) -> None:
        if self._interval_s == float("inf"):
            return      # collections on force_flush and shutdown only
        self._thread = threading.Thread(target=self._run, name="otelmetrics-periodic-reader", daemon=True)
        self._thread.start()

    def _reinit_locks_after_fork(self) -> None:
        # The parent's thread and locks do not exist in the child: fresh ones. The
        # provider calls this after re-creating its own locks, so the new thread
        # finds none of the parent's.
        super()._reinit_locks_after_fork()
        self._export_lock = threading.Lock()
        self._backlog = _Backlog()     # the parent exports what waited there
        self._stop = threading.Event()
        if not self._shutdown_done and self._provider is not None:
            self._start_thread()

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(self._interval_s):
            self._collect_and_export(self._timeout_ms)

    def _bounded(self, timeout_millis: float) -> bool:
        """Collect and export, but return after ``timeout_millis`` even if the
        exporter hangs (it then finishes, or not, on its own daemon thread; the
        collection waits in the backlog meanwhile)."""
        done = threading.Event()
        result = [False]

        def run() -> None:
            result[0] = self._collect_and_export(timeout_millis)
            done.set()

        t = threading.Thread(target=run, name="otelmetrics-final-export", daemon=True)
        t.start()
        if not done.wait(timeout_millis / 1e3):
            _logger.warning("export did not finish within %.0f ms; giving up on it", timeout_millis)
            return False
        return result[0]

    def _collect_and_export(self, timeout_millis: float) -> bool:
        try:
            if self._is_shut_down:
                return False
            data = self._collect_data(timeout_millis)
            if data is None:
                if len(self._backlog):
                    return self._export_backlog(timeout_millis)
                # Nothing new; an exporter still holding requests from an outage gets
                # its chance to deliver them (a no-op for the others).
                return self._flush_exporter(timeout_millis)
            self._receive_metrics(data, timeout_millis=timeout_millis)
            return self._last_ok
        except Exception as e:  # the background thread must survive anything
            _logger.warning("periodic export failed: %s: %s", type(e).__name__, e)
            return False

    _last_ok = True

    def _receive_metrics(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> None:
        # Exports never overlap. A collection made while another export runs is not
        # dropped: it waits in the backlog, and whoever holds the export lock sends it.
        self._backlog.add(metrics_data)
        self._last_ok = self._export_backlog(timeout_millis)

    def _export_backlog(self, timeout_millis: float) -> bool:
        """Export what waits in the backlog (one export per collection, oldest first), waiting at most
        ``timeout_millis`` for a running export; False when that one still runs (it
        exports the backlog once done) or an export failed."""
        ok = True
        wait = max(0.0, timeout_millis / 1e3)
        while True:
            if not self._export_lock.acquire(timeout=wait):
                if wait:
                    _logger.warning("export deferred: the previous export still runs after %.0f ms; "
                                    "%d collection(s) wait to be exported after it",
                                    timeout_millis, len(self._backlog))
                    return False
                return ok    # another export holds the lock: it sends what waits
            try:
                while True:
                    batch = self._backlog.take()
                    if batch is None:
                        break
                    ok = self._export(batch, timeout_millis) and ok
            finally:
                self._export_lock.release()
            if not len(self._backlog):
                return ok
            wait = 0.0   # added by a caller that gave up waiting just before the release

    def _export(self, batch: MetricsData, timeout_millis: float) -> bool:
        try:
            return self._exporter.export(batch, timeout_millis=timeout_millis) is MetricExportResult.SUCCESS
        except Exception as e:
            _logger.warning("exporter %s raised %s: %s", type(self._exporter).__name__,
                            type(e).__name__, e)
            return False

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        if self._shutdown_done:
            return False
        deadline = time.monotonic() + timeout_millis / 1e3
        self._last_ok = True
        ok = self._bounded(timeout_millis)
        return self._flush_exporter(max(0.0, (deadline - time.monotonic()) * 1e3)) and ok

    def _flush_exporter(self, timeout_millis: float) -> bool:
        """The exporter's force_flush, under the export lock like an export: an exporter
        busy flushing must not turn a collection away."""
        if not self._export_lock.acquire(timeout=timeout_millis / 1e3):
            return False
        try:
            return bool(self._exporter.force_flush(timeout_millis=timeout_millis))
        except Exception as e:
            _logger.warning("exporter force_flush raised %s: %s", type(e).__name__, e)
            return False
        finally:
            self._export_lock.release()

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> bool:
        """Within ``timeout_millis``: the last collection and an export of it (and of what
        waits in the backlog) get half of it; the exporter's shutdown, which aborts an
        export still running, a quarter; then what still waits is handed to the shut-down
        exporter (an OTLP exporter with a spool keeps it there) or counted as dropped."""
        with self._reader_lock:     # once, even when called from several threads at a time
            already = self._shutdown_started
            self._shutdown_started = True
        if already:
            _logger.warning("PeriodicExportingMetricReader.shutdown: already shut down")
            return False
        timeout = max(0.0, timeout_millis / 1e3)
        deadline = time.monotonic() + timeout
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            # A periodic collection in progress is handed to the backlog first; an export
            # of it that hangs is not waited for here.
            while thread.is_alive() and not self._export_lock.locked() and time.monotonic() < deadline:
                thread.join(0.01)
        self._last_ok = True
        ok = self._bounded(min(self._timeout_ms, max(1.0, (deadline - time.monotonic()) * 1e3 - timeout * 500)))
        self._shutdown_done = True
        self._is_shut_down = True      # later collect() calls fail without exporting
        try:
            self._exporter.shutdown(timeout_millis=max(0.0, (deadline - time.monotonic()) * 1e3 - timeout * 250))
        except Exception as e:
            _logger.warning("exporter shutdown raised %s: %s", type(e).__name__, e)
            ok = False
        # An export the exporter's shutdown aborted returns now, and its thread hands what
        # it took from the backlog to the shut-down exporter: shutdown returns only once
        # that is done (or its time is up), and once the periodic thread has ended.
        if self._export_lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            self._export_lock.release()
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, deadline - time.monotonic()))
        if len(self._backlog):
            ok = False
            self._export_backlog(max(0.0, (deadline - time.monotonic()) * 1e3))
            self._backlog.drop_all("an export still ran at the end of shutdown")
        return ok
