"""OTLP/HTTP metric exporter: composes the protocol (``otlp_protocol``: request bodies,
what an answer means, backoff), the transport (``otlp_http``: connection, TLS, POST) and
the store of kept requests (``otlp_store``: retry queue and spool), and runs the retry
loop within each export's deadline, as the OTLP/HTTP specification asks.

- 2xx is success; a ``partial_success`` in the response body is logged.
- 429, 502, 503, 504 and connection errors are retried with exponential backoff and
  jitter, or after the server's ``Retry-After``, while the export's deadline allows.
- 413 (too large) splits the request in two by data points and sends the halves.
- Any other status fails at once; the server's ``google.rpc.Status`` message is logged,
  and the request is dropped: sending it again would fail again.
- Each export's deadline bounds everything it does (connect, send, receive, backoff),
  whatever the server does; the backoff is exponential with jitter and ``Retry-After``
  can only lengthen it.
- A request still undelivered when the export's time is up is kept, as encoded and
  compressed, in a bounded in-memory queue or, with ``spool_dir``, in files that survive
  a restart; every later export (and ``force_flush``) first sends what is kept, oldest
  first, then its own data. When full, the oldest are dropped and counted. Delivery is
  at least once: a request whose answer was lost is sent again.
- An export that cannot get the lock within its time (another export, or a
  ``force_flush``, still holds it) hands its requests over: whoever holds the lock next
  keeps them first, so they are sent before newer data and never dropped.
- One export at a time holds the lock (and so the transport and the store); the API
  never raises into the reader's thread.
- Shutdown gives a running export half its time, then aborts it; what it and the memory
  queue hold goes to the spool before shutdown returns. A batch exported after shutdown
  goes to the spool too (without one it is counted as dropped).

No protobuf runtime, no requests, no grpc, not even http.client: the transport speaks
HTTP/1.1 over ``socket`` and imports ``ssl`` only for an https endpoint, zlib writes the
gzip bodies, and ``otelmetrics.export`` imports this module only when asked for the
exporter, so importing otelmetrics stays cheap.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Deque, Mapping, Optional, Tuple

from otelmetrics import _env
from otelmetrics.export import otlp_settings
from otelmetrics.export import _exporter
from otelmetrics.export._exporter import MetricExporter, MetricExportResult
from otelmetrics.export.otlp_http import HttpTransport
from otelmetrics.export.otlp_protocol import (
    DELIVERED,
    PERMANENT,
    RETRYABLE,
    TOO_LARGE,
    RequestEncoder,
    Transport,
    http_headers,
    retry_delay,
)
from otelmetrics.export.otlp_queue import QueuedRequest
from otelmetrics.export.otlp_store import RequestStore

_logger = logging.getLogger("otelmetrics.export.otlp")

# Network I/O stops this long (at most a tenth of the timeout) before an export's deadline,
# so that a request still undelivered is queued or on disk before the caller gives up on us.
_KEEP_RESERVE = 0.2


class OTLPMetricExporter(MetricExporter):
    """Push metrics to an OTLP/HTTP receiver (the collector's ``:4318/v1/metrics``).

    Arguments are those of opentelemetry-sdk's OTLP/HTTP exporter plus ``protocol``
    ("http/protobuf" or "http/json"); each one left out is read from the standard
    ``OTEL_EXPORTER_OTLP_[METRICS_]*`` variables (see ``otelmetrics.export.otlp_settings``).
    Everything after ``endpoint`` is keyword-only: the reference orders its
    arguments differently, so positional calls would be ambiguous. ``timeout`` is
    in seconds and bounds each export, retries included.

    ``max_export_batch_bytes`` bounds a request's encoded size before compression
    (default 4 MiB, or ``OTELMETRICS_EXPORTER_BATCH_BYTES``): a larger batch is split by
    series. Undelivered requests: ``max_queue_bytes`` bounds the in-memory retry queue (0 turns
    it off); ``spool_dir`` keeps them in files instead, bounded by ``max_spool_bytes``
    and ``max_spool_files``, and sends the files left by an earlier run at the first
    export. Left out, these come from ``OTELMETRICS_EXPORTER_QUEUE_BYTES``,
    ``OTELMETRICS_EXPORTER_SPOOL_DIR``, ``_SPOOL_BYTES`` and ``_SPOOL_FILES``.
    ``stats()`` counts what was sent, kept and dropped.
    """

    # Backoff before retry n (0-based) is base * 2**n seconds, capped, times a jitter factor.
    _backoff_base = 1.0
    _backoff_max = 32.0
    _jitter = 0.2

    def __init__(
        self,
        endpoint: Optional[str] = None,
        *,
        headers: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
        compression=None,
        certificate_file: Optional[str] = None,
        client_key_file: Optional[str] = None,
        client_certificate_file: Optional[str] = None,
        preferred_temporality=None,
        preferred_aggregation=None,
        max_export_batch_size: Optional[int] = None,
        max_export_batch_bytes: Optional[int] = None,
        protocol: Optional[str] = None,
        max_queue_bytes: Optional[int] = None,
        spool_dir: Optional[str] = None,
        max_spool_bytes: Optional[int] = None,
        max_spool_files: Optional[int] = None,
    ) -> None:
        settings = otlp_settings.otlp_settings(
            endpoint=endpoint, headers=headers, timeout=timeout, compression=compression,
            certificate_file=certificate_file, client_key_file=client_key_file,
            client_certificate_file=client_certificate_file, protocol=protocol,
        )
        if max_export_batch_size is not None and (
            isinstance(max_export_batch_size, bool) or not isinstance(max_export_batch_size, int)
            or max_export_batch_size <= 0
        ):
            raise ValueError("max_export_batch_size %r: expected a positive integer" % (max_export_batch_size,))
        kept = otlp_settings.queue_settings(max_queue_bytes, spool_dir, max_spool_bytes, max_spool_files)
        super().__init__(
            preferred_temporality=_exporter.preferred_temporality(preferred_temporality),
            preferred_aggregation=_exporter.preferred_aggregation(preferred_aggregation),
        )
        self._settings = settings
        self._encoder = RequestEncoder(json=settings.protocol == _env.JSON,
                                       gzip=settings.compression == "gzip",
                                       max_export_batch_size=max_export_batch_size,
                                       max_export_batch_bytes=otlp_settings.batch_bytes(max_export_batch_bytes))
        # TLS files given as arguments must work; from the environment, a bad one is a warning.
        explicit_tls = any((certificate_file, client_key_file, client_certificate_file))
        self._transport = self._open_transport(settings, tls_fall_back=not explicit_tls)
        self._headers = http_headers(self._encoder.flags, settings.headers)
        self._lock = threading.Lock()
        self._handed: Deque[QueuedRequest] = deque()   # exports that could not get the lock: kept next
        self._shutdown_event = threading.Event()
        self._store = RequestStore(kept, self._shutdown_event)
        self._counts = dict.fromkeys(("exports_succeeded", "exports_failed"), 0)
        _env.call_in_child_after_fork(self, "_reinit_after_fork")

    def _reinit_after_fork(self) -> None:
        # A parent thread exporting at the fork holds the lock, and the connection and what
        # is kept are the parent's: the child's exports get a fresh lock, a connection of
        # their own, and nothing to send before their own data.
        self._lock = threading.Lock()
        self._handed = deque()
        self._transport.leave_to_parent()
        self._store.leave_to_parent()

    @staticmethod
    def _open_transport(settings: otlp_settings.OTLPSettings, tls_fall_back: bool) -> Transport:
        return HttpTransport(settings, tls_fall_back)

    @property
    def endpoint(self) -> str:
        return self._settings.endpoint

    def stats(self) -> dict:
        """Counters since start (exports, requests sent, kept, rejected, dropped) and what
        is kept right now; ``MeterProvider.stats()`` adds them up over its readers."""
        out = dict(self._counts)
        out.update(self._store.stats())
        return out

    # ------------------------------------------------------------ the exporter interface

    def _budget(self, timeout_millis: Optional[float]) -> Tuple[float, float]:
        """(seconds to wait for the connection lock, deadline for network I/O)."""
        timeout = self._settings.timeout
        if timeout_millis is not None and timeout_millis >= 0:
            timeout = min(timeout, timeout_millis / 1000.0)
        return timeout, time.monotonic() + timeout - min(_KEEP_RESERVE, timeout / 10)

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        stopped = self._shutdown_event.is_set()
        ok = False
        try:
            # An empty collection still sends what is queued: delta data kept during an outage.
            bodies = self._encoder.bodies(metrics_data) if metrics_data.resource_metrics else ()
            wait, deadline = self._budget(timeout_millis)
            if not self._lock.acquire(timeout=wait):
                self._handed.extend(QueuedRequest(body, self._encoder.flags) for body in bodies)
                _logger.warning("OTLP export: another export still holds the connection after %.1f s; "
                                "this one's data is kept and goes out first with the next", wait)
            else:
                try:
                    self._take_handed()
                    if stopped:
                        # After shutdown nothing is sent: the batch goes to the spool, or is
                        # counted as dropped (``RequestStore.keep``).
                        for body in bodies:
                            self._store.keep(QueuedRequest(body, self._encoder.flags))
                    else:
                        ok = self._store.deliver(bodies, self._encoder.flags, self._send, deadline)
                finally:
                    self._lock.release()
        except Exception:  # never into the reader's thread
            _logger.exception("OTLP export failed")
        self._counts["exports_succeeded" if ok else "exports_failed"] += 1
        return MetricExportResult.SUCCESS if ok else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        """Try to deliver what is queued or spooled; True when nothing is left."""
        if self._shutdown_event.is_set():
            return True   # nothing more will be sent; the spool waits for the next run
        if not self._store.pending() and not self._handed:
            return True
        wait, deadline = self._budget(timeout_millis)
        if not self._lock.acquire(timeout=wait):
            return False
        try:
            self._take_handed()
            return self._store.drain(self._send, deadline)
        finally:
            self._lock.release()

    def _take_handed(self) -> None:
        """Keep what exports that could not get the lock handed over (the lock is held)."""
        while self._handed:
            self._store.keep(self._handed.popleft())

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        """Within ``timeout_millis``: an export still running gets half of it, then is
        aborted (it keeps what it could not send); what memory holds gets one more try
        without a spool, else goes to the spool."""
        if self._shutdown_event.is_set():
            return
        timeout = max(timeout_millis, 0) / 1000.0
        end = time.monotonic() + timeout
        _, deadline = self._budget(timeout * 1000.0)
        self._shutdown_event.set()  # wakes an export sleeping before a retry
        if not self._lock.acquire(timeout=timeout / 2):
            self._transport.abort()   # an export is still in network I/O: make it return
            if not self._lock.acquire(timeout=max(0.0, end - time.monotonic())):
                _logger.error("OTLP exporter shutdown: an export still runs after %.1f s; what it "
                              "holds is kept only if it returns", timeout)
                return
        try:
            self._take_handed()
            self._store.shutdown(self._send, deadline)
            self._transport.close()
        finally:
            self._lock.release()

    # ------------------------------------------------------------ one request, retries included

    def _headers_for(self, flags: int) -> Mapping[str, str]:
        """Headers matching how a request was encoded, which a spool written by a
        differently configured run may not share with ours."""
        return self._headers if flags == self._encoder.flags else http_headers(flags, self._settings.headers)

    def _send(self, body: bytes, flags: int, deadline: float) -> str:
        """DELIVERED, PERMANENT (refused, not worth retrying), TOO_LARGE (to be split) or
        RETRYABLE (still undelivered at ``deadline``, or the exporter is shutting down)."""
        headers = self._headers_for(flags)
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _logger.error("OTLP export to %s timed out", self.endpoint)
                return RETRYABLE
            if attempt and self._shutdown_event.is_set():
                return RETRYABLE
            outcome = self._transport.send(body, headers, remaining)
            if outcome.kind == TOO_LARGE:
                return TOO_LARGE
            if outcome.kind == DELIVERED:
                if outcome.detail:
                    _logger.warning("OTLP partial success from %s: %s", self.endpoint, outcome.detail)
                return DELIVERED
            if outcome.kind == PERMANENT:
                _logger.error("OTLP export to %s failed with %s", self.endpoint, outcome.detail)
                return PERMANENT
            delay = retry_delay(attempt, outcome.retry_after, self._backoff_base, self._backoff_max, self._jitter)
            attempt += 1
            if time.monotonic() + delay >= deadline:
                _logger.error("OTLP export to %s failed (%s); the next try, in %.1f s, would pass "
                              "the export deadline", self.endpoint, outcome.detail, delay)
                return RETRYABLE
            _logger.debug("OTLP export to %s: %s; retrying in %.2f s", self.endpoint, outcome.detail, delay)
            if self._shutdown_event.wait(delay):
                return RETRYABLE
