"""The OTLP protocol, whatever carries it: what a request body is, what an answer means,
and how long to wait before trying again. No I/O here; transports (``otlp_http``,
``otlp_grpc``) move the bytes and report each try as an ``Outcome``.

- Encoding: a ``MetricsData`` becomes one request body per batch of at most
  ``max_export_batch_size`` data points and ``max_export_batch_bytes`` encoded bytes
  (before compression), in order, each repeating the resource, scope and metric framing of
  its points; protobuf (``cext/otlp_wire.pxi``) or OTLP/JSON, then gzip when asked. Only a
  single data point larger than the byte bound makes a larger request. A body is final: it
  is sent, kept and sent again byte for byte, and its ``flags`` (``otlp_queue.GZIP`` /
  ``JSON``) say how it was encoded; ``split_body`` cuts one in two by data points, as
  encoded, when a receiver or a store finds it too large.
- Answers: a try is ``DELIVERED`` (a ``partial_success`` is a note, not a failure),
  ``RETRYABLE`` (429, 502, 503, 504, connection errors; with the server's ``Retry-After``
  as a hint), ``TOO_LARGE`` (413: split it and send the halves) or ``PERMANENT`` (any
  other status: sending it again would fail again). A response body longer than
  ``MAX_DECODED_RESPONSE_BYTES`` is not decoded, so that a hostile one costs no memory.
  OTLP/gRPC statuses likewise (``grpc_outcome``: the retryable codes of the OTLP/gRPC
  specification, a ``RetryInfo`` as the hint), decoded here without a protobuf runtime.
- Waiting: ``retry_delay`` is the one place that decides the delay before a retry;
  exponential backoff with jitter is its floor, which ``Retry-After`` can only lengthen.

Imports: what only some configurations or answers need is imported where it is needed
(``DEFERRED`` in tests/test_layers.py): ``json`` and the OTLP/JSON encoder for http/json
or a JSON answer, ``gzip`` to split a compressed request (``zlib`` writes the gzip
member of every compressed body), ``email.utils`` for a Retry-After given as a date. The
jitter comes from ``os.urandom``, not ``random``.
"""
from __future__ import annotations

import logging
import math
import os
import struct
import time
import zlib
from typing import Iterator, List, Mapping, NamedTuple, Optional, Protocol, Tuple

from otelmetrics.export import otlp_settings
from otelmetrics._native import decode_fields, encode_request
from otelmetrics._model import count_points, point_count, points_slice
from otelmetrics._model import replace_fields as _replace
from otelmetrics.resources import __version__
from otelmetrics.export.otlp_queue import GZIP, JSON

_logger = logging.getLogger("otelmetrics.export.otlp")

USER_AGENT = "otelmetrics/" + __version__
RETRYABLE_HTTP_STATUSES = frozenset((429, 502, 503, 504))

# What became of one try (Outcome.kind), and of a request after its retries.
DELIVERED, RETRYABLE, PERMANENT = "delivered", "retryable", "permanent"
TOO_LARGE = "too large"      # the receiver refused the request's size: send it in parts

# A response body longer than this is not decoded: a partial-success or error message is
# short, and decoding a large hostile one costs many times its size in objects.
MAX_DECODED_RESPONSE_BYTES = 64 * 1024


class Outcome(NamedTuple):
    """One try at sending one request, as a transport reports it."""

    kind: str                            # DELIVERED, RETRYABLE, TOO_LARGE or PERMANENT
    detail: str = ""                     # for the log: what failed; when delivered, a partial success or ""
    retry_after: Optional[float] = None  # RETRYABLE: seconds the server asked us to wait, if it did


class Transport(Protocol):
    """What the exporter's retry loop needs from a transport (``otlp_http.HttpTransport``,
    ``otlp_grpc.GrpcTransport``)."""

    def send(self, body: bytes, headers: Mapping[str, str], timeout: float) -> Outcome:
        """One try, all of it (connect, send, receive) within ``timeout`` seconds whatever
        the server does; never raises (errors are RETRYABLE outcomes)."""

    def close(self) -> None:
        """Release the connection; the next ``send`` opens a new one."""

    def abort(self) -> None:
        """From another thread: make a ``send`` in progress return soon (as a failed try)."""

    def leave_to_parent(self) -> None:
        """In a forked child: let go of the parent's connection without touching it (it
        is the parent's still); the child's next ``send`` opens one of its own."""


# ---------------------------------------------------------------- requests

class RequestEncoder:
    """MetricsData -> request bodies, as configured. ``flags`` describe every body it makes."""

    def __init__(self, json: bool, gzip: bool, max_export_batch_size: Optional[int],
                 max_export_batch_bytes: int = otlp_settings.DEFAULT_BATCH_BYTES) -> None:
        self.json = json
        self.gzip = gzip
        self.max_export_batch_size = max_export_batch_size
        self.max_export_batch_bytes = max_export_batch_bytes
        self.flags = (GZIP if gzip else 0) | (JSON if json else 0)
        if json:
            # Deferred on purpose: the OTLP/JSON encoder (and json, base64) only for http/json.
            from otelmetrics.export.otlp_json import encode_request_json

            self._encode = encode_request_json
        else:
            self._encode = encode_request

    def bodies(self, metrics_data) -> Iterator[bytes]:
        """One request body per batch, already compressed when asked; encoded lazily."""
        limit = self.max_export_batch_size
        for batch in split_batches(metrics_data, limit) if limit else (metrics_data,):
            yield from self._bounded(batch)

    def _bounded(self, batch) -> Iterator[bytes]:
        """``batch`` as bodies of at most ``max_export_batch_bytes`` (before compression):
        encoded whole, and when too large split by data points into as many batches as
        its size asks for (plus a tenth), each checked again."""
        failed: list = []
        dropped: list = []
        body = self._encode(batch, failed, dropped)
        bound = self.max_export_batch_bytes
        if len(body) > bound:
            points = count_points(batch)
            if points > 1:
                parts = max(2, math.ceil(len(body) * 1.1 / bound))
                del body
                for part in split_batches(batch, math.ceil(points / parts)):
                    yield from self._bounded(part)
                return
            _logger.warning("OTLP: one data point of metric %r takes %d bytes encoded, more than "
                            "max_export_batch_bytes (%d); sent alone", first_metric_name(batch),
                            len(body), bound)
        for name, error in failed:
            _logger.warning("OTLP: metric %r left out of the export, it cannot be encoded: %s", name, error)
        if dropped:
            _logger.warning("OTLP: %d attribute(s) left out, their values cannot be sent (first: %r, %s)",
                            len(dropped), dropped[0][0], dropped[0][1])
        if self.gzip:
            body = gzip_member(body)
        yield body


def gzip_member(data: bytes) -> bytes:
    """``data`` as one gzip member, level 6, without a timestamp (the same bytes each
    time), written by zlib: the gzip module is not needed for it."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def first_metric_name(metrics_data) -> str:
    for rm in metrics_data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if point_count(metric.data):
                    return metric.name
    return ""


def split_batches(metrics_data, limit: int):
    """Batches of at most ``limit`` data points, in order; each batch repeats the
    resource, scope and metric framing of the points it carries. Metrics without
    points are left out, as the reference does when it splits. Points not built yet
    stay so: a batch carries a copy of their snapshot's records (``points_slice``)."""
    batch: list = []
    scopes: list = []
    metrics: list = []
    room = limit
    for rm in metrics_data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                start, n = 0, point_count(metric.data)
                while start < n:
                    take = min(room, n - start)
                    metrics.append(_replace(metric, data=points_slice(metric.data, start, start + take)))
                    start += take
                    room -= take
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


# ---------------------------------------------------------------- splitting an encoded request

# The repeated (or, for a metric, the one) child that carries data points at each level of
# an ExportMetricsServiceRequest, as protobuf field numbers and as OTLP/JSON keys: request ->
# resource_metrics -> scope_metrics -> metrics -> gauge/sum/histogram/exponential_histogram/
# summary -> data_points. Every other field is framing, repeated in both halves.
_PB_CHILDREN = ((1,), (2,), (2,), (5, 7, 9, 10, 11), (1,))
_JSON_CHILDREN = (("resourceMetrics",), ("scopeMetrics",), ("metrics",),
                  ("gauge", "sum", "histogram", "exponentialHistogram", "summary"), ("dataPoints",))
_LEAVES = len(_PB_CHILDREN) - 1      # the level whose children are data points
_METRIC = 3                          # the level whose child is one message, not a list
_LEN, _I64, _I32 = 2, 1, 5           # protobuf wire types (besides 0, varint)


class _Node(NamedTuple):
    framing: list     # protobuf: encoded fields; JSON: (key, value) pairs
    children: list    # [(field number or key, child _Node, or a data point at the last level)]


def _pb_node(data: bytes, level: int) -> _Node:
    framing, children = [], []
    for number, wire_type, value in decode_fields(data):
        if number in _PB_CHILDREN[level] and wire_type == _LEN:
            children.append((number, value if level == _LEAVES else _pb_node(value, level + 1)))
        else:
            framing.append(_pb_field(number, wire_type, value))
    return _Node(framing, children)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _pb_field(number: int, wire_type: int, value) -> bytes:
    key = _varint(number << 3 | wire_type)
    if wire_type == _LEN:
        return key + _varint(len(value)) + value
    if wire_type == _I64:
        return key + struct.pack("<Q", value)
    if wire_type == _I32:
        return key + struct.pack("<I", value)
    return key + _varint(value)


def _pb_bytes(node: _Node, level: int) -> bytes:
    return b"".join(node.framing) + b"".join(
        _pb_field(number, _LEN, child if level == _LEAVES else _pb_bytes(child, level + 1))
        for number, child in node.children)


def _json_node(obj: dict, level: int) -> _Node:
    framing, children = [], []
    for key, value in obj.items():
        if key not in _JSON_CHILDREN[level]:
            framing.append((key, value))
        elif level == _METRIC:
            children.append((key, _json_node(value, level + 1)))
        else:
            children.extend((key, item if level == _LEAVES else _json_node(item, level + 1)) for item in value)
    return _Node(framing, children)


def _json_obj(node: _Node, level: int) -> dict:
    out = dict(node.framing)
    for key, child in node.children:
        value = child if level == _LEAVES else _json_obj(child, level + 1)
        if level == _METRIC:
            out[key] = value
        else:
            out.setdefault(key, []).append(value)
    return out


def _count(node: _Node, level: int) -> int:
    if level == _LEAVES:
        return len(node.children)
    return sum(_count(child, level + 1) for _, child in node.children)


def _cut(node: _Node, level: int, k: int) -> Tuple[_Node, _Node]:
    """``node`` as two: its first ``k`` data points, and the others, each with its framing."""
    first: List[tuple] = []
    rest: List[tuple] = []
    for key, child in node.children:
        n = 1 if level == _LEAVES else _count(child, level + 1)
        if k >= n:
            first.append((key, child))
            k -= n
        elif k <= 0:
            rest.append((key, child))
        else:
            a, b = _cut(child, level + 1, k)
            first.append((key, a))
            rest.append((key, b))
            k = 0
    return _Node(node.framing, first), _Node(node.framing, rest)


def split_body(body: bytes, flags: int) -> Optional[Tuple[bytes, bytes]]:
    """An encoded request as two, encoded as it was: the first half of its data points and
    the second, each with the resource, scope and metric framing of its points. None when
    it carries fewer than two data points or cannot be read."""
    # Deferred on purpose: json for an OTLP/JSON request only, and gzip (whose decompress
    # reads every member of a body, checked) only to split a compressed one, after a 413.
    if flags & JSON:
        import json
    if flags & GZIP:
        import gzip
    try:
        raw = gzip.decompress(body) if flags & GZIP else body
        if flags & JSON:
            node = _json_node(json.loads(raw.decode("utf-8")), 0)
        else:
            node = _pb_node(raw, 0)
        del raw
        n = _count(node, 0)
        if n < 2:
            return None
        halves = _cut(node, 0, n // 2)
        if flags & JSON:
            parts = [json.dumps(_json_obj(h, 0), separators=(",", ":")).encode("utf-8") for h in halves]
        else:
            parts = [_pb_bytes(h, 0) for h in halves]
    except (ValueError, TypeError, AttributeError, EOFError, OSError, zlib.error) as e:
        _logger.warning("OTLP: cannot split a request of %d bytes: %s", len(body), e)
        return None
    if flags & GZIP:
        parts = [gzip_member(p) for p in parts]
    return parts[0], parts[1]


def http_headers(flags: int, configured: Mapping[str, str]) -> dict:
    """OTLP/HTTP request headers for a body encoded with ``flags``. Names are lower-case,
    as the configured ones are, so that a configured header replaces ours."""
    headers = {
        "content-type": "application/json" if flags & JSON else "application/x-protobuf",
        "user-agent": USER_AGENT,
    }
    if flags & GZIP:
        headers["content-encoding"] = "gzip"
    headers.update(configured)
    return headers


# ---------------------------------------------------------------- answers

def http_outcome(status: int, reason: str, headers: Mapping[str, str], payload: bytes,
                 json_default: bool) -> Outcome:
    """What an OTLP/HTTP response means. ``headers`` have lower-case names;
    ``json_default`` is how to read a body whose Content-Type says neither."""
    content_type = headers.get("content-type", "")
    if 200 <= status < 300:
        return Outcome(DELIVERED, partial_success(payload, content_type, json_default))
    if status not in RETRYABLE_HTTP_STATUSES:
        message = status_message(payload, content_type, json_default) or "(no message)"
        return Outcome(TOO_LARGE if status == 413 else PERMANENT, "HTTP %d %s: %s" % (status, reason, message))
    return Outcome(RETRYABLE, "HTTP %d %s" % (status, reason), retry_after(headers.get("retry-after")))


# gRPC status codes (their google.rpc.Code numbers) that OTLP/gRPC retries: CANCELLED,
# DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS; and RESOURCE_EXHAUSTED
# only when the server says when to try again (a RetryInfo), as the specification says.
GRPC_OK, GRPC_RESOURCE_EXHAUSTED = 0, 8
RETRYABLE_GRPC_CODES = frozenset((1, 4, 10, 11, 14, 15))
_RETRY_INFO_TYPE = b"type.googleapis.com/google.rpc.RetryInfo"


def grpc_outcome(code: int, name: str, details: str, trailers: Mapping[str, object],
                 payload: bytes = b"") -> Outcome:
    """What an OTLP/gRPC answer means: ``code`` is the status's number (``name`` for the
    log), ``trailers`` the trailing metadata, ``payload`` the ExportMetricsServiceResponse
    of an OK answer."""
    if code == GRPC_OK:
        return Outcome(DELIVERED, partial_success(payload, "application/x-protobuf", False))
    hint = grpc_retry_info(trailers)
    text = "gRPC %s: %s" % (name, details or "(no message)")
    if code in RETRYABLE_GRPC_CODES or (code == GRPC_RESOURCE_EXHAUSTED and hint is not None):
        return Outcome(RETRYABLE, text, hint)
    return Outcome(PERMANENT, text)


def grpc_retry_info(trailers: Mapping[str, object]) -> Optional[float]:
    """Seconds to wait from a ``google.rpc.RetryInfo``: among the details of the
    ``google.rpc.Status`` in ``grpc-status-details-bin`` (where the specification puts
    it), else alone in ``google.rpc.retryinfo-bin`` (where the reference looks). None
    when there is none or it cannot be read."""
    try:
        status = trailers.get("grpc-status-details-bin")
        for number, _, value in decode_fields(status) if isinstance(status, bytes) else ():
            if number == 3 and isinstance(value, bytes):       # Status.details: google.protobuf.Any
                any_fields = {n: v for n, _, v in decode_fields(value)}
                if any_fields.get(1) == _RETRY_INFO_TYPE:       # Any.type_url, then Any.value
                    return _retry_info_seconds(any_fields.get(2, b""))
        alone = trailers.get("google.rpc.retryinfo-bin")
        return _retry_info_seconds(alone) if isinstance(alone, bytes) else None
    except Exception as e:
        _logger.debug("OTLP: unreadable RetryInfo in a gRPC status: %s", e)
        return None


def _retry_info_seconds(retry_info: bytes) -> float:
    """RetryInfo.retry_delay (a google.protobuf.Duration) in seconds, at least 0."""
    seconds = nanos = 0
    for number, _, value in decode_fields(retry_info):
        if number == 1 and isinstance(value, bytes):           # retry_delay
            for n, _, v in decode_fields(value):
                if n == 1 and isinstance(v, int):               # seconds (int64)
                    seconds = _signed64(v)
                elif n == 2 and isinstance(v, int):             # nanos (int32, as a varint)
                    nanos = _signed64(v)
    return max(0.0, seconds + nanos / 1e9)


def _signed64(varint: int) -> int:
    """A negative int64 or int32 arrives as a 64-bit two's complement varint."""
    return varint - (1 << 64) if varint >= 1 << 63 else varint


def _decode(payload: bytes, content_type: str, json_default: bool):
    """The response body as a dict (JSON) or a field list (protobuf), by Content-Type;
    ValueError when it is longer than MAX_DECODED_RESPONSE_BYTES."""
    if len(payload) > MAX_DECODED_RESPONSE_BYTES:
        raise ValueError("a response body of %d bytes is not decoded (over %d)"
                         % (len(payload), MAX_DECODED_RESPONSE_BYTES))
    if "json" in content_type or ("protobuf" not in content_type and json_default):
        # Deferred on purpose: a protobuf exporter reads no JSON unless a server answers in it.
        import json

        return json.loads(payload.decode("utf-8"))
    return decode_fields(payload)


def partial_success(payload: bytes, content_type: str, json_default: bool) -> str:
    """"N data point(s) rejected: why" from an ``ExportMetricsServiceResponse``, or ""
    when it reports nothing (or cannot be read: success is success)."""
    if not payload:
        return ""
    try:
        body = _decode(payload, content_type, json_default)
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
                            rejected = _signed64(v)
                        elif n == 2 and isinstance(v, bytes):  # error_message
                            message = v.decode("utf-8", "replace")
    except Exception as e:
        _logger.debug("OTLP: undecodable success response body: %s", e)
        return ""
    if rejected or message:
        return "%d data point(s) rejected: %s" % (rejected, message or "(no message)")
    return ""


def status_message(payload: bytes, content_type: str, json_default: bool) -> str:
    """The ``message`` of a google.rpc.Status body, else the start of the body as text."""
    if not payload:
        return ""
    try:
        body = _decode(payload, content_type, json_default)
        if isinstance(body, dict):   # _decode read it as JSON, so json is loaded
            import json

            return str(body.get("message", "")) or json.dumps(body)[:200]
        for number, _, value in body:
            if number == 2 and isinstance(value, bytes):       # Status.message
                return value.decode("utf-8", "replace")
    except Exception:
        pass
    return payload[:200].decode("utf-8", "replace")


def retry_after(value: Optional[str]) -> Optional[float]:
    """``Retry-After`` as seconds to wait: delay-seconds or an HTTP-date (RFC 9110);
    None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        # Deferred on purpose: email.utils (and datetime, calendar, locale with it) only for
        # a Retry-After written as an HTTP-date.
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - time.time())
    return max(0.0, seconds) if seconds == seconds and seconds != float("inf") else None


# ---------------------------------------------------------------- waiting

def retry_delay(attempt: int, hint: Optional[float], base: float, cap: float, jitter: float) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): ``base * 2**attempt`` capped at
    ``cap``, times a random factor in [1 - jitter, 1 + jitter]; the server's ``hint``
    (Retry-After) when it asks for longer. A hint never shortens the backoff: an overloaded
    server answering "Retry-After: 0" must not be sent a request per round trip."""
    backoff = min(cap, base * (2 ** attempt)) * (1 - jitter + 2 * jitter * _uniform())
    return backoff if hint is None else max(backoff, hint)


def _uniform() -> float:
    """A random float in [0, 1], from os.urandom: the random module costs an import and,
    after a fork, would give every child the same jitter."""
    return int.from_bytes(os.urandom(7), "big") / float((1 << 56) - 1)
