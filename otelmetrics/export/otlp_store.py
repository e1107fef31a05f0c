"""The OTLP exporter's store of kept requests: drives the in-memory ``RetryQueue`` and the
on-disk ``Spool`` so that a request still undelivered when an export's time is up is sent
later, and counts what became of every request.

- Order: kept requests go before new data, oldest first (the spool's before the memory
  queue's: memory holds only what the spool could not take, and is moved to the spool,
  in order, before anything newer is written there). Once one cannot be delivered (or a
  spool file cannot be read just now), the new data is kept behind it without a try, so
  that it arrives in order.
- A request is removed only once delivered, or refused for good (sending it again would
  fail again); delivery is at least once. One the receiver finds too large (413) is split
  in two by data points and the halves sent in its place; one larger than the memory queue
  or the spool is split until its parts fit, never dropped for its size alone (only a
  single data point can be too large).
- Nothing accepted is lost silently: a request pushed out of a full queue or spool is
  counted there; one that can be kept nowhere at shutdown is counted and logged. One
  kept after shutdown closed the spool still goes to disk (the directory is taken again
  for that write).
- A forked child starts with nothing kept: the parent delivers what it kept before the fork.
- Not thread-safe: the exporter calls it with its export lock held. ``stopped`` (the
  exporter's shutdown event) may be set by another thread at any time.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Iterable, List, Optional, Tuple

from otelmetrics.export import otlp_settings
from otelmetrics.export.otlp_protocol import DELIVERED, PERMANENT, TOO_LARGE, split_body
from otelmetrics.export.otlp_queue import QueuedRequest, RetryQueue
from otelmetrics.export.otlp_spool import Spool

_logger = logging.getLogger("otelmetrics.export.otlp")

# send(body, flags, deadline) -> DELIVERED, PERMANENT, TOO_LARGE or RETRYABLE: one request, retries
# included, given up at ``deadline`` (a time.monotonic() value).
Send = Callable[[bytes, int, float], str]


class RequestStore:
    """Where undelivered requests wait, as ``otlp_settings.queue_settings`` resolved it."""

    def __init__(self, kept: otlp_settings.QueueSettings, stopped: threading.Event) -> None:
        self.queue = RetryQueue(kept.max_queue_bytes)
        self.spool = self._open_spool(kept) if kept.spool_dir else None
        self._stopped = stopped
        self._counts = dict.fromkeys((
            "requests_sent", "requests_replayed", "requests_queued", "requests_rejected",
            "requests_dropped_shutdown"), 0)

    @staticmethod
    def _open_spool(kept: otlp_settings.QueueSettings) -> Optional[Spool]:
        try:
            return Spool(kept.spool_dir, kept.max_spool_bytes, kept.max_spool_files)
        except OSError as e:
            if not kept.spool_dir_from_env:
                raise ValueError("OTLPMetricExporter spool_dir %r is unusable: %s" % (kept.spool_dir, e)) from e
            _logger.warning("%s=%r is unusable (%s); undelivered requests are kept in memory only",
                            otlp_settings.OTELMETRICS_EXPORTER_SPOOL_DIR, kept.spool_dir, e)
            return None

    def stats(self) -> dict:
        """Request counters since start, and what is kept right now."""
        out = dict(self._counts)
        queue, spool = self.queue, self.spool
        out["requests_dropped_queue_full"] = queue.dropped
        out["queued_requests"] = len(queue)
        out["queued_bytes"] = queue.bytes
        out.update(spooled_requests=0, spooled_bytes=0, spool_write_errors=0, spool_files_skipped=0)
        if spool is not None:
            out["requests_dropped_queue_full"] += spool.dropped
            out.update(spooled_requests=len(spool), spooled_bytes=spool.bytes,
                       spool_write_errors=spool.write_errors, spool_files_skipped=spool.skipped)
        return out

    def leave_to_parent(self) -> None:
        """In a forked child: what memory keeps is the parent's to deliver (sent from both
        processes it would arrive twice), and so are the spool and its files."""
        self.queue = RetryQueue(self.queue.max_bytes)
        if self.spool is not None:
            self.spool.leave_to_parent()

    def pending(self) -> bool:
        return bool(self.queue) or bool(self.spool)

    def oldest(self) -> Optional[QueuedRequest]:
        """The oldest kept request; None also while the spool's oldest cannot be read
        (memory's are newer: they wait behind it)."""
        spool = self.spool
        request = spool.oldest() if spool is not None else None
        if request is None and spool is not None and spool.unreadable:
            return None
        return request if request is not None else self.queue.oldest()

    def drain(self, send: Send, deadline: float) -> bool:
        """Send kept requests, oldest first, until none is left (True) or one cannot be
        delivered before ``deadline`` (a ``time.monotonic()`` value)."""
        while True:
            request = self.oldest()
            if request is None:
                return not (self.spool is not None and self.spool.unreadable)
            if time.monotonic() >= deadline:
                return False
            undelivered, _ = self._send(request.body, request.flags, send, deadline, replay=True)
            if undelivered and undelivered[0] is request.body:
                return False
            # Delivered or refused; or split for its size, and the parts not delivered yet
            # kept (after the other kept requests) before the request itself is forgotten.
            for part in undelivered:
                self.keep(QueuedRequest(part, request.flags))
            if request.key is not None:
                self.spool.remove(request)
            else:
                self.queue.remove(request)
            if undelivered:
                return False

    def deliver(self, bodies: Iterable[bytes], flags: int, send: Send, deadline: float) -> bool:
        """Kept requests first, then ``bodies`` (encoded with ``flags``); what cannot be
        delivered is kept. True if all arrived."""
        up = self.drain(send, deadline)
        ok = up
        for body in bodies:
            undelivered, refused = self._send(body, flags, send, deadline) if up else ([body], False)
            ok = ok and not refused and not undelivered
            up = up and not undelivered
            for part in undelivered:
                self.keep(QueuedRequest(part, flags))
        return ok

    def _send(self, body: bytes, flags: int, send: Send, deadline: float,
              replay: bool = False) -> Tuple[List[bytes], bool]:
        """Send one request, in halves (and their halves) while the receiver says it is too
        large; count what arrived or was refused. Returns the parts still undelivered, in
        order (``[body]`` when nothing was sent), and whether any part was refused."""
        outcome = send(body, flags, deadline)
        if outcome == TOO_LARGE:
            halves = split_body(body, flags)
            if halves is not None:
                _logger.warning("OTLP: the receiver refused a request of %d bytes as too large; "
                                "sending it in two parts (lower max_export_batch_bytes to avoid this)",
                                len(body))
                first, refused = self._send(halves[0], flags, send, deadline, replay)
                if first:
                    return first + [halves[1]], refused
                second, refused_too = self._send(halves[1], flags, send, deadline, replay)
                return second, refused or refused_too
            _logger.error("OTLP: the receiver refused a request of %d bytes, a single data point, "
                          "as too large; dropped", len(body))
            outcome = PERMANENT
        if outcome == DELIVERED:
            self._counts["requests_sent"] += 1
            self._counts["requests_replayed"] += replay
            return [], False
        if outcome == PERMANENT:
            self._counts["requests_rejected"] += 1
            return [], True
        return [body], False

    def keep(self, request: QueuedRequest) -> None:
        """Keep an undelivered request in the spool, else in memory; one larger than where
        it would go is split in halves until its parts fit (unless that room is smaller
        than the smallest bound a request can have: then splitting cannot help)."""
        spool = self.spool
        room = spool.max_body if spool is not None else self.queue.max_bytes
        if otlp_settings.MIN_BATCH_BYTES <= room < len(request.body):
            halves = split_body(request.body, request.flags)
            if halves is not None:
                for half in halves:
                    self.keep(QueuedRequest(half, request.flags))
                return
        if spool is not None and self._to_spool(spool) and self._put(spool, request):
            self._counts["requests_queued"] += 1
        elif self._stopped.is_set():
            # Nobody will send from memory after shutdown.
            self._counts["requests_dropped_shutdown"] += 1
            _logger.error("OTLP exporter shut down: 1 undelivered request is lost")
        else:
            self._counts["requests_queued"] += 1
            self.queue.put(request)

    def _to_spool(self, spool: Spool) -> bool:
        """Move what memory keeps (the spool could not take it then) to the spool, oldest
        first; True when memory is empty, so a newer request may go to the spool after it."""
        while self.queue:
            request = self.queue.oldest()
            if not self._put(spool, request):
                return False
            self.queue.remove(request)
        return True

    def _put(self, spool: Spool, request: QueuedRequest) -> bool:
        """Write ``request`` to the spool. After shutdown closed it (and released the
        directory for the next exporter), a late export, such as a reader handing over
        its last collection once the exporter has shut down, takes the directory again
        for this one write: a fresh ``Spool`` (lock, scan, write, release). It fails, and
        the caller counts the loss, when another spool holds the directory by then."""
        if not spool.closed:
            return spool.put(request.body, request.flags)
        if spool.forked:
            return False   # the parent's directory: never written from a forked child
        try:
            late = Spool(spool.directory, spool.max_bytes, spool.max_files)
        except OSError as e:
            _logger.error("OTLP exporter shut down: cannot reopen the spool %s (%s)", spool.directory, e)
            return False
        try:
            return late.put(request.body, request.flags)
        finally:
            late.close()

    def shutdown(self, send: Send, deadline: float) -> None:
        """Without a spool, one more try for what memory holds (``send`` returns early
        once ``stopped`` is set); then what is still in memory goes to the spool if it
        can, else it is lost, counted and logged."""
        if self.spool is None and self.queue:
            self.drain(send, deadline)
        lost = 0
        while self.queue:   # oldest first (the spool keeps the order); a failed write loses only itself
            request = self.queue.oldest()
            self.queue.remove(request)
            if self.spool is None or not self._put(self.spool, request):
                lost += 1
        if lost:
            self._counts["requests_dropped_shutdown"] += lost
            _logger.error("OTLP exporter shut down with %d undelivered request(s), now lost; %s", lost,
                          "spool_dir keeps them across restarts" if self.spool is None
                          else "the spool could not take them")
        if self.spool is not None:
            self.spool.close()   # unlocks the directory for the next exporter
