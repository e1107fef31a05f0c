"""OTLP/JSON encoding of an ExportMetricsServiceRequest (the ``http/json`` protocol).

The protobuf JSON mapping with OTLP's exceptions: lowerCamelCase field names, trace
and span ids as hex (not base64), enums as integers, 64-bit integers as decimal
strings, and the non-finite doubles as "NaN", "Infinity", "-Infinity". What is sent
and what is left out follows the binary encoder (cext/otlp_wire.pxi).

The request is written as UTF-8 pieces joined once. A Sum, Gauge or Histogram whose
data still holds its collection's snapshot gets its ``dataPoints`` array from the
compiled core (``json_data_points``, cext/otlp_json.pxi: the same bytes, written from
the snapshot's records with no Python object per point); other points are encoded
here, and everything around the arrays is encoded here, by ``json``.
"""
from __future__ import annotations

import base64
import json
import math
from typing import Any, List, Optional, Tuple

from otelmetrics._native import json_data_points

_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_KINDS = {"Gauge": "gauge", "Sum": "sum", "Histogram": "histogram",
          "ExponentialHistogram": "exponentialHistogram"}


# The one encoder of every JSON value here: compact, UTF-8 as sent (a lone surrogate as "?").
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _json(value) -> bytes:
    return _encoder.encode(value).encode("utf-8", "replace")


class _Invalid(Exception):
    pass


def _double(v) -> Any:
    v = float(v)
    if math.isfinite(v):
        return v
    return "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")


def _key(k) -> str:
    """An attribute key as text: a str subclass (a (str, Enum) member) is its text, not its str()."""
    return str.__str__(k) if isinstance(k, str) else str(k)


def _any_value(v) -> dict:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, str):
        return {"stringValue": v}
    if isinstance(v, int):
        if not _INT64_MIN <= v <= _INT64_MAX:
            raise _Invalid("integer out of int64 range")
        return {"intValue": str(int(v))}
    if isinstance(v, float):
        return {"doubleValue": _double(v)}
    if v is None:
        return {}
    if isinstance(v, (bytes, bytearray)):
        return {"bytesValue": base64.b64encode(bytes(v)).decode("ascii")}
    if hasattr(v, "items"):
        return {"kvlistValue": {"values": [{"key": _key(k), "value": _any_value(x)} for k, x in v.items()]}}
    if isinstance(v, (list, tuple)) or hasattr(v, "__iter__"):
        return {"arrayValue": {"values": [_any_value(x) for x in v]}}
    raise _Invalid("unsupported type %s" % type(v).__name__)


def _attributes(attrs, dropped: list) -> List[dict]:
    out = []
    for key, value in (attrs or {}).items():
        try:
            out.append({"key": _key(key), "value": _any_value(value)})
        except _Invalid as e:
            dropped.append((key, str(e)))
    return out


def _put(d: dict, key: str, value, keep_zero: bool = False) -> None:
    """Leave proto3 defaults out, as the binary encoder does."""
    if value or (keep_zero and value is not None):
        d[key] = value


def _number(d: dict, v) -> None:
    if isinstance(v, int) and not isinstance(v, float) and _INT64_MIN <= v <= _INT64_MAX:
        d["asInt"] = str(int(v))
    else:
        d["asDouble"] = _double(v)


def _id_hex(ident, size: int) -> str:
    if isinstance(ident, (bytes, bytearray)):
        return bytes(ident).hex()
    return ident.to_bytes(size, "big").hex()


def _exemplars(exemplars, dropped: list) -> List[dict]:
    out = []
    for e in exemplars or ():
        d: dict = {}
        _put(d, "filteredAttributes", _attributes(e.filtered_attributes, dropped))
        _put(d, "timeUnixNano", str(e.time_unix_nano) if e.time_unix_nano else None)
        if e.span_id is not None and e.trace_id is not None:
            d["spanId"] = _id_hex(e.span_id, 8)
            d["traceId"] = _id_hex(e.trace_id, 16)
        _number(d, e.value)
        out.append(d)
    return out


def _common(d: dict, p, dropped: list, with_start: bool = True) -> None:
    _put(d, "attributes", _attributes(p.attributes, dropped))
    if with_start:
        _put(d, "startTimeUnixNano", str(p.start_time_unix_nano) if p.start_time_unix_nano else None)
    _put(d, "timeUnixNano", str(p.time_unix_nano) if p.time_unix_nano else None)
    _put(d, "exemplars", _exemplars(p.exemplars, dropped))
    _put(d, "flags", int(getattr(p, "flags", 0) or 0))


def _optional_doubles(d: dict, p, names: Tuple[str, ...]) -> None:
    for name in names:
        v = getattr(p, name)
        if v is not None:
            d[name] = _double(v)


def _buckets(b) -> Optional[dict]:
    if b is None or not b.bucket_counts:
        return None
    d: dict = {"bucketCounts": [str(int(c)) for c in b.bucket_counts]}
    _put(d, "offset", int(b.offset))
    return d


def _point(kind: str, p, dropped: list) -> dict:
    d: dict = {}
    _common(d, p, dropped, with_start=kind != "gauge")
    if kind in ("gauge", "sum"):
        _number(d, p.value)
        return d
    _put(d, "count", str(int(p.count)) if p.count else None)
    _optional_doubles(d, p, ("sum", "min", "max"))
    if kind == "histogram":
        _put(d, "bucketCounts", [str(int(c)) for c in p.bucket_counts])
        _put(d, "explicitBounds", [_double(b) for b in p.explicit_bounds])
        return d
    _put(d, "scale", int(p.scale or 0))
    _put(d, "zeroCount", str(int(p.zero_count)) if p.zero_count else None)
    _put(d, "positive", _buckets(p.positive))
    _put(d, "negative", _buckets(p.negative))
    zero_threshold = getattr(p, "zero_threshold", None)
    _put(d, "zeroThreshold", _double(zero_threshold) if zero_threshold else None)
    return d


def _kind(data) -> str:
    for cls in type(data).__mro__:
        if cls.__name__ in _KINDS:
            return _KINDS[cls.__name__]
    raise TypeError("unsupported metric data type %s" % type(data).__name__)


def _object(out: list, head: dict, key: bytes, value: list, tail: dict) -> None:
    """Append to ``out`` the JSON object of ``head``'s fields, then ``key`` with ``value``
    (already encoded, in pieces), then ``tail``'s fields."""
    h, t = _json(head)[1:-1], _json(tail)[1:-1]
    out.append(b"".join((b"{", h, b',"' if h else b'"', key, b'":')))
    out.extend(value)
    out.append(b"," + t + b"}" if t else b"}")


def _metric(metric, dropped: list) -> list:
    data = metric.data
    kind = _kind(data)
    points = json_data_points(data)
    if points is None:
        points = _json([_point(kind, p, dropped) for p in data.data_points])
    body: dict = {}
    if kind != "gauge":
        _put(body, "aggregationTemporality", int(data.aggregation_temporality))
    if kind == "sum":
        _put(body, "isMonotonic", bool(data.is_monotonic))
    d: dict = {"name": metric.name or ""}
    _put(d, "description", metric.description)
    _put(d, "unit", metric.unit)
    inner: list = []
    _object(inner, {}, b"dataPoints", [points], body)
    out: list = []
    _object(out, d, kind.encode(), inner, {})
    return out


def _scope_metrics(out: list, sm, failed: list, dropped: list) -> None:
    scope = sm.scope
    metrics: list = []
    for metric in sm.metrics:
        try:
            encoded = _metric(metric, dropped)
        except Exception as e:  # one malformed metric must not cost the others
            failed.append((getattr(metric, "name", None), e))
            continue
        if metrics:
            metrics.append(b",")
        metrics.extend(encoded)
    head: dict = {}
    if scope is not None:
        sd: dict = {}
        _put(sd, "name", scope.name)
        _put(sd, "version", scope.version)
        _put(sd, "attributes", _attributes(getattr(scope, "attributes", None), dropped))
        head["scope"] = sd
    tail: dict = {}
    _put(tail, "schemaUrl", getattr(sm, "schema_url", None) or getattr(scope, "schema_url", None))
    _object(out, head, b"metrics", [b"["] + metrics + [b"]"], tail)


def _resource_metrics(out: list, rm, failed: list, dropped: list) -> None:
    resource = rm.resource
    scopes: list = []
    for sm in rm.scope_metrics:
        if scopes:
            scopes.append(b",")
        _scope_metrics(scopes, sm, failed, dropped)
    head: dict = {"resource": {}}
    if resource is not None:
        _put(head["resource"], "attributes", _attributes(resource.attributes, dropped))
    tail: dict = {}
    _put(tail, "schemaUrl", getattr(resource, "schema_url", None) or getattr(rm, "schema_url", None))
    _object(out, head, b"scopeMetrics", [b"["] + scopes + [b"]"], tail)


def encode_request_json(metrics_data, failed: Optional[list] = None, dropped: Optional[list] = None) -> bytes:
    """UTF-8 JSON bytes of the ExportMetricsServiceRequest for ``metrics_data``.

    A metric that cannot be encoded is left out and appended to ``failed`` as
    ``(name, exception)``; an attribute whose value OTLP cannot carry is left out and
    appended to ``dropped`` as ``(key, reason)`` (as ``encode_request``)."""
    failed = [] if failed is None else failed
    dropped = [] if dropped is None else dropped
    out = [b'{"resourceMetrics":[']
    for rm in metrics_data.resource_metrics:
        if len(out) > 1:
            out.append(b",")
        _resource_metrics(out, rm, failed, dropped)
    out.append(b"]}")
    return b"".join(out)
