"""OTLP/HTTP metric exporter: our protobuf (or JSON) encoder over one kept-alive
``http.client`` connection, with retries as the OTLP/HTTP specification asks.

- 2xx is success; a ``partial_success`` in the response body is logged.
- 429, 502, 503, 504 and connection errors are retried with exponential backoff and
  jitter, or after the server's ``Retry-After``, while the export's deadline allows.
- Any other status fails at once; the server's ``google.rpc.Status`` message is logged,
  and the request is dropped: sending it again would fail again.
- A request still undelivered when the export's time is up is kept, as encoded and
  compressed, in a bounded in-memory queue or, with ``spool_dir``, in files that survive
  a restart; every later export (and ``force_flush``) first sends what is kept, oldest
  first, then its own data. When full, the oldest are dropped and counted. Delivery is
  at least once: a request whose answer was lost is sent again.

No protobuf runtime, no requests, no grpc: http.client, ssl and gzip come from the
standard library and are imported when first needed, so importing this module is cheap.
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from typing import Iterator, Mapping, Optional, Tuple
from urllib.parse import urlsplit

from otelmetrics import _env
from otelmetrics._native.otlp_wire import decode_fields, encode_request
from otelmetrics._model import replace_fields as _replace
from otelmetrics._version import __version__
from otelmetrics.export import _exporter
from otelmetrics.export._exporter import MetricExporter, MetricExportResult
from otelmetrics.export.otlp_queue import GZIP, JSON, QueuedRequest, RetryQueue

_logger = logging.getLogger("otelmetrics.export.otlp")

_RETRYABLE = frozenset((429, 502, 503, 504))
_MAX_RESPONSE_BYTES = 1 << 20   # a larger body is cut and the connection dropped
_USER_AGENT = "otelmetrics/" + __version__
# Network I/O stops this long (at most a tenth of the timeout) before an export's deadline,
# so that a request still undelivered is queued or on disk before the caller gives up on us.
_KEEP_RESERVE = 0.2

# What became of one request.
_SENT, _REJECTED, _RETRY = "sent", "rejected", "retry"


class OTLPMetricExporter(MetricExporter):
    """Push metrics to an OTLP/HTTP receiver (the collector's ``:4318/v1/metrics``).

    Arguments are those of opentelemetry-sdk's OTLP/HTTP exporter plus ``protocol``
    ("http/protobuf" or "http/json"); each one left out is read from the standard
    ``OTEL_EXPORTER_OTLP_[METRICS_]*`` variables (see ``otelmetrics._env``).
    Everything after ``endpoint`` is keyword-only: the reference orders its
    arguments differently, so positional calls would be ambiguous. ``timeout`` is
    in seconds and bounds each export, retries included.

    Undelivered requests: ``max_queue_bytes`` bounds the in-memory retry queue (0 turns
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
        protocol: Optional[str] = None,
        max_queue_bytes: Optional[int] = None,
        spool_dir: Optional[str] = None,
        max_spool_bytes: Optional[int] = None,
        max_spool_files: Optional[int] = None,
    ) -> None:
        settings = _env.otlp_settings(
            endpoint=endpoint, headers=headers, timeout=timeout, compression=compression,
            certificate_file=certificate_file, client_key_file=client_key_file,
            client_certificate_file=client_certificate_file, protocol=protocol,
        )
        if max_export_batch_size is not None and (
            isinstance(max_export_batch_size, bool) or not isinstance(max_export_batch_size, int)
            or max_export_batch_size <= 0
        ):
            raise ValueError("max_export_batch_size %r: expected a positive integer" % (max_export_batch_size,))
        kept = _env.queue_settings(max_queue_bytes, spool_dir, max_spool_bytes, max_spool_files)
        super().__init__(
            preferred_temporality=_exporter.preferred_temporality(preferred_temporality),
            preferred_aggregation=_exporter.preferred_aggregation(preferred_aggregation),
        )
        self._settings = settings
        self._max_export_batch_size = max_export_batch_size
        url = urlsplit(settings.endpoint)
        if url.path in ("", "/"):
            _logger.warning("OTLP endpoint %s has no path; receivers expect %s",
                            settings.endpoint, _env.METRICS_PATH)
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port
        self._path = (url.path or "/") + ("?" + url.query if url.query else "")
        self._json = settings.protocol == _env.JSON
        self._gzip = settings.compression == "gzip"
        self._ssl_context = None
        if self._https:
            explicit = any((certificate_file, client_key_file, client_certificate_file))
            self._ssl_context = self._make_ssl_context(fall_back=not explicit)
        # Lower-case names, as the configured ones are, so that a configured one replaces ours.
        self._headers = {
            "content-type": "application/json" if self._json else "application/x-protobuf",
            "user-agent": _USER_AGENT,
        }
        if self._gzip:
            self._headers["content-encoding"] = "gzip"
        self._headers.update(settings.headers)
        self._flags = (GZIP if self._gzip else 0) | (JSON if self._json else 0)
        self._conn = None
        self._lock = threading.Lock()
        self._shutdown_event = threading.Event()
        self._queue = RetryQueue(kept.max_queue_bytes)
        self._spool = self._open_spool(kept) if kept.spool_dir else None
        self._counts = dict.fromkeys((
            "exports_succeeded", "exports_failed", "requests_sent", "requests_replayed",
            "requests_queued", "requests_rejected", "requests_dropped_shutdown"), 0)

    @property
    def endpoint(self) -> str:
        return self._settings.endpoint

    @staticmethod
    def _open_spool(kept):
        from otelmetrics.export.otlp_spool import Spool

        try:
            return Spool(kept.spool_dir, kept.max_spool_bytes, kept.max_spool_files)
        except OSError as e:
            if not kept.spool_dir_from_env:
                raise ValueError("OTLPMetricExporter spool_dir %r is unusable: %s" % (kept.spool_dir, e)) from e
            _logger.warning("%s=%r is unusable (%s); undelivered requests are kept in memory only",
                            _env.OTELMETRICS_EXPORTER_SPOOL_DIR, kept.spool_dir, e)
            return None

    def stats(self) -> dict:
        """Counters since start (exports, requests sent, kept, rejected, dropped) and what
        is kept right now; ``MeterProvider.stats()`` adds them up over its readers."""
        out = dict(self._counts)
        queue, spool = self._queue, self._spool
        out["requests_dropped_queue_full"] = queue.dropped
        out["queued_requests"] = len(queue)
        out["queued_bytes"] = queue.bytes
        out.update(spooled_requests=0, spooled_bytes=0, spool_write_errors=0, spool_files_skipped=0)
        if spool is not None:
            out["requests_dropped_queue_full"] += spool.dropped
            out.update(spooled_requests=len(spool), spooled_bytes=spool.bytes,
                       spool_write_errors=spool.write_errors, spool_files_skipped=spool.skipped)
        return out

    def _make_ssl_context(self, fall_back: bool):
        """CA file and client certificate as configured; with ``fall_back`` (they came from
        the environment) an unusable file is a warning and the system's CAs are used."""
        import ssl

        s = self._settings
        try:
            ctx = ssl.create_default_context(cafile=s.certificate_file)
            if s.client_certificate_file:
                ctx.load_cert_chain(s.client_certificate_file, s.client_key_file)
            return ctx
        except (OSError, ssl.SSLError) as e:
            if not fall_back:
                raise ValueError("OTLPMetricExporter: cannot load the TLS certificate or key: %s" % e) from e
            _logger.warning("OTEL_EXPORTER_OTLP_[METRICS_]CERTIFICATE / CLIENT_CERTIFICATE / CLIENT_KEY: "
                            "cannot load %s; using the system's CAs without a client certificate", e)
            return ssl.create_default_context()

    # ------------------------------------------------------------ encoding

    def _bodies(self, metrics_data) -> Iterator[bytes]:
        """One request body per batch, already compressed when asked."""
        batches = (_split(metrics_data, self._max_export_batch_size)
                   if self._max_export_batch_size else (metrics_data,))
        for batch in batches:
            failed: list = []
            dropped: list = []
            if self._json:
                from otelmetrics.export.otlp_json import encode_request_json

                body = encode_request_json(batch, failed, dropped)
            else:
                body = encode_request(batch, failed, dropped)
            for name, error in failed:
                _logger.warning("OTLP: metric %r left out of the export, it cannot be encoded: %s", name, error)
            if dropped:
                _logger.warning("OTLP: %d attribute(s) left out, their values cannot be sent (first: %r, %s)",
                                len(dropped), dropped[0][0], dropped[0][1])
            if self._gzip:
                import gzip

                body = gzip.compress(body, compresslevel=6, mtime=0)
            yield body

    # ------------------------------------------------------------ the exporter interface

    def _budget(self, timeout_millis: Optional[float]) -> Tuple[float, float]:
        """(seconds to wait for the connection lock, deadline for network I/O)."""
        timeout = self._settings.timeout
        if timeout_millis is not None and timeout_millis >= 0:
            timeout = min(timeout, timeout_millis / 1000.0)
        return timeout, time.monotonic() + timeout - min(_KEEP_RESERVE, timeout / 10)

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        if self._shutdown_event.is_set():
            _logger.warning("OTLP exporter is shut down; dropping the batch")
            self._counts["exports_failed"] += 1
            return MetricExportResult.FAILURE
        ok = False
        try:
            # An empty collection still sends what is queued: delta data kept during an outage.
            bodies = self._bodies(metrics_data) if metrics_data.resource_metrics else ()
            wait, deadline = self._budget(timeout_millis)
            if not self._lock.acquire(timeout=wait):
                _logger.warning("OTLP export skipped: another export still holds the connection")
            else:
                try:
                    ok = self._deliver(bodies, deadline)
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
        if not self._pending():
            return True
        wait, deadline = self._budget(timeout_millis)
        if not self._lock.acquire(timeout=wait):
            return False
        try:
            return self._drain(deadline)
        finally:
            self._lock.release()

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        if self._shutdown_event.is_set():
            return
        _, deadline = self._budget(max(timeout_millis, 0))
        self._shutdown_event.set()  # wakes an export sleeping before a retry
        if not self._lock.acquire(timeout=max(timeout_millis, 0) / 1000.0):
            # An export is still in network I/O: cut its socket so that it returns.
            conn = self._conn
            if conn is not None and conn.sock is not None:
                import socket

                try:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return
        try:
            if self._spool is None and self._queue:
                self._drain(deadline)   # one try each: the shutdown event cuts the retries short
            self._release_queue()
            self._close()
        finally:
            self._lock.release()

    # ------------------------------------------------------------ kept requests

    def _pending(self) -> bool:
        return bool(self._queue) or bool(self._spool)

    def _oldest(self) -> Optional[QueuedRequest]:
        # The spool first: the memory queue holds only what the spool could not take.
        request = self._spool.oldest() if self._spool is not None else None
        return request if request is not None else self._queue.oldest()

    def _drain(self, deadline: float) -> bool:
        """Send kept requests, oldest first, until none is left (True) or one cannot be delivered."""
        while True:
            request = self._oldest()
            if request is None:
                return True
            if time.monotonic() >= deadline:
                return False
            outcome = self._send(request.body, deadline, self._headers_for(request.flags))
            if outcome is _RETRY:
                return False
            if request.key is not None:
                self._spool.remove(request)
            else:
                self._queue.remove(request)
            if outcome is _SENT:
                self._counts["requests_sent"] += 1
                self._counts["requests_replayed"] += 1
            else:
                self._counts["requests_rejected"] += 1

    def _deliver(self, bodies, deadline: float) -> bool:
        """Kept requests first, then ``bodies``; once one cannot be delivered the rest are
        kept behind it without a try, so that they arrive in order. True if all arrived."""
        up = self._drain(deadline)
        ok = up
        for body in bodies:
            if up:
                outcome = self._send(body, deadline, self._headers)
                if outcome is _SENT:
                    self._counts["requests_sent"] += 1
                    continue
                if outcome is _REJECTED:
                    self._counts["requests_rejected"] += 1
                    ok = False
                    continue
                up = False
            ok = False
            self._keep(QueuedRequest(body, self._flags))
        return ok

    def _keep(self, request: QueuedRequest) -> None:
        if self._spool is not None and self._spool.put(request.body, request.flags):
            self._counts["requests_queued"] += 1
        elif self._shutdown_event.is_set():
            # Nobody will send from memory after shutdown.
            self._counts["requests_dropped_shutdown"] += 1
            _logger.error("OTLP exporter shut down: 1 undelivered request is lost")
        else:
            self._counts["requests_queued"] += 1
            self._queue.put(request)

    def _release_queue(self) -> None:
        """At shutdown: what is still in memory goes to the spool if it can, else it is lost."""
        lost = 0
        while True:
            request = self._queue.oldest()
            if request is None:
                break
            self._queue.remove(request)
            if self._spool is None or not self._spool.put(request.body, request.flags):
                lost += 1
        if lost:
            self._counts["requests_dropped_shutdown"] += lost
            _logger.error("OTLP exporter shut down with %d undelivered request(s), now lost; "
                          "spool_dir keeps them across restarts", lost)

    def _headers_for(self, flags: int) -> dict:
        """Headers matching how a kept request was encoded, which a spool written by a
        differently configured run may not share with ours."""
        if flags == self._flags:
            return self._headers
        headers = dict(self._headers)
        headers["content-type"] = "application/json" if flags & JSON else "application/x-protobuf"
        if flags & GZIP:
            headers["content-encoding"] = "gzip"
        else:
            headers.pop("content-encoding", None)
        return headers

    # ------------------------------------------------------------ transport

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def _connection(self, timeout: float):
        if self._conn is None:
            import http.client

            if self._https:
                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=timeout, context=self._ssl_context)
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        return self._conn

    def _post(self, body: bytes, timeout: float, headers: dict) -> Tuple[int, str, dict, bytes]:
        """One request on the kept-alive connection: (status, reason, headers, body)."""
        conn = self._connection(timeout)
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        conn.request("POST", self._path, body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read(_MAX_RESPONSE_BYTES + 1)
        if len(payload) > _MAX_RESPONSE_BYTES or not response.isclosed():
            payload = payload[:_MAX_RESPONSE_BYTES]
            self._close()
        elif response.will_close:
            self._close()
        headers = {k.lower(): v for k, v in response.getheaders()}
        return response.status, response.reason, headers, payload

    def _backoff(self, attempt: int) -> float:
        delay = min(self._backoff_max, self._backoff_base * (2 ** attempt))
        return delay * random.uniform(1 - self._jitter, 1 + self._jitter)

    def _send(self, body: bytes, deadline: float, request_headers: dict) -> str:
        """_SENT, _REJECTED (a status not worth retrying) or _RETRY (still undelivered)."""
        attempt = 0
        fresh_retry_done = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _logger.error("OTLP export to %s timed out", self.endpoint)
                return _RETRY
            reused = self._conn is not None and self._conn.sock is not None
            try:
                status, reason, headers, payload = self._post(body, remaining, request_headers)
            except Exception as e:  # OSError, http.client.HTTPException, ssl errors
                self._close()
                if reused and not fresh_retry_done:
                    # A kept-alive connection the server has since closed: retry at once.
                    fresh_retry_done = True
                    continue
                what, retry_after = "connection error: %s" % (e or type(e).__name__), None
            else:
                if 200 <= status < 300:
                    self._log_partial_success(headers, payload)
                    return _SENT
                if status not in _RETRYABLE:
                    _logger.error("OTLP export to %s failed with HTTP %d %s: %s", self.endpoint, status,
                                  reason, self._status_message(headers, payload) or "(no message)")
                    return _REJECTED
                what = "HTTP %d %s" % (status, reason)
                retry_after = _retry_after(headers.get("retry-after"))
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            attempt += 1
            if time.monotonic() + delay >= deadline:
                _logger.error("OTLP export to %s failed (%s); the next try, in %.1f s, would pass "
                              "the export deadline", self.endpoint, what, delay)
                return _RETRY
            _logger.debug("OTLP export to %s: %s; retrying in %.2f s", self.endpoint, what, delay)
            if self._shutdown_event.wait(delay):
                return _RETRY

    # ------------------------------------------------------------ responses

    def _decode(self, headers: dict, payload: bytes):
        """The response body as a dict (JSON) or a field list (protobuf), by Content-Type."""
        kind = headers.get("content-type", "")
        if "json" in kind or ("protobuf" not in kind and self._json):
            return json.loads(payload.decode("utf-8"))
        return decode_fields(payload)

    def _log_partial_success(self, headers: dict, payload: bytes) -> None:
        if not payload:
            return
        try:
            body = self._decode(headers, payload)
            if isinstance(body, dict):
                partial = body.get("partialSuccess") or body.get("partial_success") or {}
                rejected = int(partial.get("rejectedDataPoints", partial.get("rejected_data_points", 0)) or 0)
                message = str(partial.get("errorMessage", partial.get("error_message", "")) or "")
            else:
                rejected, message = 0, ""
                for number, _, value in body:
                    if number == 1 and isinstance(value, bytes):   # ExportMetricsPartialSuccess
                        for n, _, v in decode_fields(value):
                            if n == 1 and isinstance(v, int):      # rejected_data_points (int64)
                                rejected = v - (1 << 64) if v >= 1 << 63 else v
                            elif n == 2 and isinstance(v, bytes):  # error_message
                                message = v.decode("utf-8", "replace")
        except Exception as e:
            _logger.debug("OTLP: undecodable success response body: %s", e)
            return
        if rejected or message:
            _logger.warning("OTLP partial success from %s: %d data point(s) rejected: %s",
                            self.endpoint, rejected, message or "(no message)")

    def _status_message(self, headers: dict, payload: bytes) -> str:
        """The ``message`` of a google.rpc.Status body, else the start of the body as text."""
        if not payload:
            return ""
        try:
            body = self._decode(headers, payload)
            if isinstance(body, dict):
                return str(body.get("message", "")) or json.dumps(body)[:200]
            for number, _, value in body:
                if number == 2 and isinstance(value, bytes):       # Status.message
                    return value.decode("utf-8", "replace")
        except Exception:
            pass
        return payload[:200].decode("utf-8", "replace")


def _retry_after(value: Optional[str]) -> Optional[float]:
    """``Retry-After`` as seconds to wait: delay-seconds or an HTTP-date (RFC 9110)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - time.time())
    return max(0.0, seconds) if seconds == seconds and seconds != float("inf") else None


def _split(metrics_data, limit: int):
    """Batches of at most ``limit`` data points, in order; each batch repeats the
    resource, scope and metric framing of the points it carries. Metrics without
    points are left out, as the reference does when it splits."""
    batch: list = []
    scopes: list = []
    metrics: list = []
    room = limit
    for rm in metrics_data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                points = metric.data.data_points
                start, n = 0, len(points)
                while start < n:
                    take = points[start:start + room]
                    start += len(take)
                    room -= len(take)
                    metrics.append(_replace(metric, data=_replace(metric.data, data_points=list(take))))
                    if room == 0:
                        scopes.append(_replace(sm, metrics=metrics))
                        batch.append(_replace(rm, scope_metrics=scopes))
                        yield _replace(metrics_data, resource_metrics=batch)
                        batch, scopes, metrics, room = [], [], [], limit
            if metrics:
                scopes.append(_replace(sm, metrics=metrics))
                metrics = []
        if scopes:
            batch.append(_replace(rm, scope_metrics=scopes))
            scopes = []
    if batch:
        yield _replace(metrics_data, resource_metrics=batch)
