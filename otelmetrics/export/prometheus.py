"""Prometheus pull endpoint: a reader whose cumulative collections are scraped over HTTP.

One job: turn a reader's collection into the Prometheus text exposition format
0.0.4 or OpenMetrics 1.0 text, as the OpenTelemetry "Prometheus and OpenMetrics
compatibility" specification says, and serve it (``start_http_server``, or
prometheus_client's registry when that package is installed).

Invariants:
- Always cumulative: the reader takes no temporality preference.
- One scrape = one collection per reader (a reader's collections never overlap),
  one translation, one encoding. Nothing here raises into the application or
  kills the serving thread: a failed scrape answers 500, a scrape of a reader
  that is shutting down answers 503, each with a rate-limited warning.
- One TYPE line and at most one HELP and UNIT line per family per scrape; a
  metric whose type conflicts with an earlier family of the same name is
  dropped from the scrape, counted and warned about.
- Every metric name matches ``[a-zA-Z_:][a-zA-Z0-9_:]*`` and every label name
  ``[a-zA-Z_][a-zA-Z0-9_]*``; label values and HELP text are escaped, and the
  body is valid UTF-8, so anything the API accepted is exposition Prometheus parses.
- Exponential histograms (which the text formats cannot carry as native
  histograms) are exposed as classic ``le`` buckets at their bucket boundaries,
  which the specification allows, rather than dropped; a side (negative, positive)
  nobody recorded into has no bucket.
- In OpenMetrics a histogram series has ``_count`` and ``_sum`` only where OpenMetrics
  allows ``_sum``: no negative bucket threshold, a sum neither negative nor NaN. The
  text format 0.0.4 keeps them. prometheus_client's registry writes either format
  from the same samples: its collector follows OpenMetrics' rule for both.
- An exemplar's labels are unique: ``trace_id`` and ``span_id`` are its span's, and a
  filtered attribute whose label name is one of them is left out.
- A Sum, Gauge or explicit Histogram whose points were never built (its data still
  holds the collection's snapshot) has its sample lines written from the snapshot's
  records by the compiled core (``prometheus_samples``), with no Python object per
  series: the same bytes as its points would give, in both formats. This module
  decides when: for render(), not for prometheus_client's collector, which needs the
  points, nor for a histogram with a negative bucket threshold (its OpenMetrics lines
  differ); the core answers None when it cannot (also for a series whose sum is below
  zero), and the points are used.
"""
from __future__ import annotations

import errno
import gzip
import json
import logging
import math
import re
import socket
import threading
import weakref
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain, count
from typing import Callable, List, Optional, Tuple

from otelmetrics._env import call_in_child_after_fork
from otelmetrics._native import Snapshot, prometheus_samples
from otelmetrics._provider import Diagnostics
from otelmetrics.export._readers import MetricReader

__all__ = ["PrometheusMetricReader", "PrometheusServer", "start_http_server"]

_logger = logging.getLogger("otelmetrics")

TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_OPENMETRICS_VERSIONS = ("", "1.0.0", "0.0.1")
_TEXT_VERSIONS = ("", "0.0.4")
_EXEMPLAR_MAX_RUNES = 128       # OpenMetrics: the exemplar's label names and values together
_EXEMPLAR_ID_LABELS = ("trace_id", "span_id")

# -- names, units and labels ------------------------------------------------------

_BAD_NAME_RUN = re.compile(r"[^a-zA-Z0-9:]+")     # also collapses "__" runs, as the spec asks
_BAD_LABEL_RUN = re.compile(r"[^a-zA-Z0-9]+")
_UNIT_ANNOTATION = re.compile(r"\{[^}]*\}")

# UCUM abbreviations to the words Prometheus names use (the specification's and
# the collector's table).
_UNIT_WORDS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
    "us": "microseconds", "ns": "nanoseconds",
    "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes", "TiBy": "tebibytes",
    "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "TBy": "terabytes",
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams",
    "Cel": "celsius", "Hz": "hertz", "%": "percent",
}
_PER_UNIT_WORDS = {"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week",
                   "mo": "month", "y": "year"}

_CACHE_MAX = 4096
_label_cache: dict = {}
_unit_cache: dict = {}


def _first_digit_replaced(s: str) -> str:
    return "_" + s[1:] if s[:1].isdigit() else s


def metric_name(name: str, prefix: str = "") -> str:
    """An OTel metric name (with the reader's prefix) as a valid Prometheus name:
    invalid characters, runs of them and of ``_`` become one ``_``; a leading digit becomes ``_``."""
    if prefix:
        name = prefix + "_" + name
    return _BAD_NAME_RUN.sub("_", _first_digit_replaced(name)) or "_"


def label_name(key: str) -> str:
    """An attribute key as a valid Prometheus label name (same rules, no ``:``)."""
    out = _label_cache.get(key)
    if out is None:
        out = _BAD_LABEL_RUN.sub("_", _first_digit_replaced(key)) or "_"
        if len(_label_cache) >= _CACHE_MAX:
            _label_cache.clear()
        _label_cache[key] = out
    return out


def _clean_unit_part(s: str) -> str:
    return _BAD_NAME_RUN.sub("_", s).strip("_")


def unit_suffix(unit: str, is_gauge: bool) -> str:
    """The Prometheus unit word for an OTel (UCUM) unit: ``ms`` -> ``milliseconds``,
    ``By/s`` -> ``bytes_per_second``, ``{packets}`` -> nothing, ``1`` -> ``ratio``
    on gauges (nothing on counters and histograms, where a ratio makes no sense)."""
    key = (unit, is_gauge)
    out = _unit_cache.get(key)
    if out is not None:
        return out
    u = _UNIT_ANNOTATION.sub("", unit or "")
    if u == "1":
        out = "ratio" if is_gauge else ""
    elif u in _UNIT_WORDS:
        out = _UNIT_WORDS[u]
    else:
        top, per, bottom = u.partition("/")
        bottom = _clean_unit_part(bottom)
        if per and bottom:
            top = _clean_unit_part(top)
            top = _UNIT_WORDS.get(top, top)
            bottom = _PER_UNIT_WORDS.get(bottom, bottom)
            out = top + "_per_" + bottom if top else "per_" + bottom
        else:
            out = _clean_unit_part(u)
    if len(_unit_cache) >= _CACHE_MAX:
        _unit_cache.clear()
    _unit_cache[key] = out
    return out


def label_value(value) -> str:
    """Attribute values as label values: strings as they are, others as JSON
    (``true``, ``3``, ``1.5``, ``["a", "b"]``), as the attribute specification says."""
    return value if type(value) is str else json.dumps(value, default=str)


def _labels(pairs, histogram: bool) -> List[Tuple[str, str]]:
    """(original key, value) pairs -> sorted [(label name, label value)]. Keys
    that sanitise to the same name are merged: values joined with ``;`` in the
    order of the original keys (the specification's rule). On a histogram an
    attribute named ``le`` becomes ``_le`` (``le`` is the bucket's)."""
    out = {}
    merged = None
    for key, value in pairs:
        name = label_name(key)
        if histogram and name == "le":
            name = "_le"
        if name in out:
            if merged is None:
                merged = {}
            merged.setdefault(name, [out[name]]).append((key, label_value(value)))
        else:
            out[name] = (key, label_value(value))
    if merged:
        for name, kvs in merged.items():
            kvs.sort()
            out[name] = ("", ";".join(v for _, v in kvs))
    return sorted((name, kv[1]) for name, kv in out.items())


def _escape_label_value(v: str) -> str:
    if "\\" in v or "\n" in v or '"' in v:
        v = v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
    return v


def _escape_help(text: str, openmetrics: bool) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if openmetrics else text


def _number(v) -> str:
    """A sample value as Prometheus spells it (Go's ParseFloat reads all of these)."""
    if type(v) is int:
        return str(v)
    v = float(v)
    if v != v:
        return "NaN"
    if v == math.inf:
        return "+Inf"
    if v == -math.inf:
        return "-Inf"
    return repr(v)


def _render_labels(labels) -> str:
    return ",".join('%s="%s"' % (k, _escape_label_value(v)) for k, v in labels)


# -- translation -------------------------------------------------------------------


class _Family:
    """One Prometheus metric family: OpenMetrics name (no ``_total``), type, help, unit, points.
    Points are (labels, value, exemplar) for counters, gauges and info, and
    (labels, [le], [cumulative count], sum, count, [exemplar per bucket] or None) for histograms;
    or, in a translation for text, bytes: one metric's sample lines, rendered from its
    collection's snapshot (``_Translation._snapshot_samples``)."""

    __slots__ = ("name", "type", "help", "unit", "points")

    def __init__(self, name: str, typ: str, help_text: str, unit: str) -> None:
        self.name = name
        self.type = typ
        self.help = help_text
        self.unit = unit
        self.points: list = []


def _latest(exemplars):
    best = None
    for ex in exemplars:
        if best is None or (ex.time_unix_nano or 0) >= (best.time_unix_nano or 0):
            best = ex
    return best


def _bucket_exemplars(exemplars, bounds: List[float]):
    """One exemplar per bucket (the largest value that falls in it); a bucket
    without one repeats the highest of a lower bucket (the specification's rule)."""
    if not exemplars:
        return None
    chosen = [None] * (len(bounds) + 1)
    for ex in exemplars:
        v = ex.value
        i = 0
        while i < len(bounds) and v > bounds[i]:
            i += 1
        if chosen[i] is None or v > chosen[i].value:
            chosen[i] = ex
    last = None
    for i, ex in enumerate(chosen):
        if ex is None:
            chosen[i] = last
        else:
            last = ex
    return chosen


_bounds_cache: dict = {}


def _explicit_bounds(explicit_bounds) -> Tuple[List[float], List[str]]:
    """(bounds as floats, their ``le`` strings with "+Inf"), computed once per bucket layout."""
    key = tuple(explicit_bounds)
    hit = _bounds_cache.get(key)
    if hit is None:
        bounds = [float(b) for b in key]
        hit = (bounds, [_number(b) for b in bounds] + ["+Inf"])
        if len(_bounds_cache) >= _CACHE_MAX:
            _bounds_cache.clear()
        _bounds_cache[key] = hit
    return hit


def _negative_threshold(les) -> bool:
    """Whether a histogram's first (lowest) bucket threshold, of its ``le`` strings, is below zero."""
    return float(les[0]) < 0


def _openmetrics_count_and_sum(les, total) -> bool:
    """Whether OpenMetrics lets a histogram point carry ``_count`` and ``_sum``: ``_sum`` only
    with no negative bucket threshold and as a counter-like sample (known, not negative, not
    NaN), ``_count`` only beside ``_sum``. The text format 0.0.4 has no such rule."""
    return total is not None and total >= 0 and not _negative_threshold(les)


def _expo_bound(index: int, scale: int) -> float:
    try:
        if scale <= 0:
            return math.ldexp(1.0, index << -scale)
        return 2.0 ** (index / (1 << scale))
    except OverflowError:
        return math.inf if index > 0 else 0.0


def _expo_as_buckets(p) -> Tuple[List[float], List[int]]:
    """An exponential histogram point as classic buckets: upper bounds of its
    negative buckets, the zero bucket (le=0) and its positive buckets, with the
    cumulative count at each; the caller adds +Inf. A side nobody recorded into has
    no bucket (the SDK's point holds such a side as one bucket of count 0): no
    negative threshold where no negative value was recorded."""
    bounds: List[float] = []
    counts: List[int] = []
    neg, pos, scale = p.negative, p.positive, p.scale
    if neg is not None and not any(neg.bucket_counts):
        neg = None
    if pos is not None and not any(pos.bucket_counts):
        pos = None
    run = 0
    if neg is not None:
        nc = list(neg.bucket_counts)
        for k in range(len(nc) - 1, -1, -1):
            run += nc[k]
            bounds.append(-_expo_bound(neg.offset + k, scale))
            counts.append(run)
    run += p.zero_count or 0
    bounds.append(0.0)
    counts.append(run)
    if pos is not None:
        for k, c in enumerate(pos.bucket_counts):
            run += c
            b = _expo_bound(pos.offset + k + 1, scale)
            if b == math.inf:
                break
            bounds.append(b)
            counts.append(run)
    return bounds, counts


# The sample names a family of each type writes besides its own name; two
# families must not share any (a gauge "x_total" and a counter "x" would).
_SAMPLE_SUFFIXES = {"counter": ("_total", "_created"), "gauge": (), "info": ("_info",),
                    "histogram": ("_bucket", "_count", "_sum", "_created")}


_TARGET = _Family("target", "info", "Target metadata", "")


class _Options:
    __slots__ = ("prefix", "target_info", "scope_labels", "resource_filter")

    def __init__(self, prefix, target_info, scope_labels, resource_filter) -> None:
        self.prefix = prefix
        self.target_info = target_info
        self.scope_labels = scope_labels
        self.resource_filter = resource_filter


class _Translation:
    """Families of one scrape, built from one or more readers' collections."""

    def __init__(self, warn: Callable[[str, str], None], text: bool = True) -> None:
        self.families: dict = {}
        self._claims: dict = {}      # family and sample names in use -> their family
        self.target: dict = {}
        self._warn = warn
        # For render() (text): a metric whose points were never built is rendered from
        # its snapshot's records, in C; prometheus_client's collector needs the points.
        self._text = text
        self._label_names: dict = {}     # attribute key -> label name, for prometheus_samples

    def add(self, data, opts: _Options) -> None:
        if data is None:
            return
        for rm in data.resource_metrics:
            resource_attrs = dict(getattr(rm.resource, "attributes", None) or {})
            if opts.target_info and resource_attrs:
                self.target.update(resource_attrs)
                self._claims.setdefault("target", _TARGET)
                self._claims.setdefault("target_info", _TARGET)
            extra = []
            if opts.resource_filter is not None:
                extra = [(k, v) for k, v in resource_attrs.items() if opts.resource_filter(k)]
            for sm in rm.scope_metrics:
                scope_extra = list(extra)
                scope = sm.scope
                if opts.scope_labels and scope is not None:
                    for k, v in (getattr(scope, "attributes", None) or {}).items():
                        scope_extra.append(("otel_scope_" + k, v))
                    for key, v in (("otel_scope_name", scope.name),
                                   ("otel_scope_version", scope.version),
                                   ("otel_scope_schema_url", getattr(scope, "schema_url", None))):
                        if v:
                            scope_extra.append((key, v))
                for metric in sm.metrics:
                    self._metric(metric, scope_extra, opts)

    def _family(self, metric, typ: str, unit: str, opts: _Options) -> Optional[_Family]:
        name = metric_name(metric.name, opts.prefix)
        if typ == "counter" and name.endswith("_total"):
            name = name[:-6] or "_"
        if unit and not name.endswith("_" + unit):
            name = name + "_" + unit
        fam = self.families.get(name)
        if fam is None:
            claims = [name] + [name + suffix for suffix in _SAMPLE_SUFFIXES[typ]]
            taken = next((self._claims[c] for c in claims if c in self._claims), None)
            if taken is not None:
                self._warn(metric.name, "dropped from the Prometheus scrape: its %s family %r would clash with "
                           "the %s family %r (rename one with a View)" % (typ, name, taken.type, taken.name))
                return None
            fam = self.families[name] = _Family(name, typ, metric.description or "", unit)
            for c in claims:
                self._claims[c] = fam
        elif fam.type != typ:
            self._warn(metric.name, "dropped from the Prometheus scrape: family %r is already a %s, "
                       "this metric is a %s (rename one with a View)" % (name, fam.type, typ))
            return None
        else:
            fam.help = fam.help or metric.description or ""
            fam.unit = fam.unit or unit
        return fam

    def _metric(self, metric, extra, opts: _Options) -> None:
        data = metric.data
        kind = type(data).__name__
        if kind == "Sum":
            temporality = int(getattr(data, "aggregation_temporality", 2))
            if temporality != 2:
                self._warn(metric.name, "dropped from the Prometheus scrape: a delta sum "
                           "(from a MetricProducer) cannot be exposed")
                return
            typ = "counter" if data.is_monotonic else "gauge"
        elif kind == "Gauge":
            typ = "gauge"
        elif kind in ("Histogram", "ExponentialHistogram"):
            if int(getattr(data, "aggregation_temporality", 2)) != 2:
                self._warn(metric.name, "dropped from the Prometheus scrape: a delta histogram "
                           "(from a MetricProducer) cannot be exposed")
                return
            typ = "histogram"
        else:
            self._warn(metric.name, "dropped from the Prometheus scrape: unknown data %s" % kind)
            return
        fam = self._family(metric, typ, unit_suffix(metric.unit or "", typ == "gauge"), opts)
        if fam is None:
            return
        points = fam.points
        if self._text and kind != "ExponentialHistogram" and self._snapshot_samples(data, fam, extra):
            return
        if typ != "histogram":
            counter = typ == "counter"
            for p in data.data_points:
                labels = _labels(chain(extra, p.attributes.items()), False)
                points.append((labels, p.value, _latest(p.exemplars) if counter and p.exemplars else None))
            return
        expo = kind == "ExponentialHistogram"
        for p in data.data_points:
            labels = _labels(chain(extra, p.attributes.items()), True)
            if expo:
                bounds, cum = _expo_as_buckets(p)
                les = [_number(b) for b in bounds]
                les.append("+Inf")
            else:
                bounds, les = _explicit_bounds(p.explicit_bounds)
                cum, run = [], 0
                for c in p.bucket_counts:
                    run += c
                    cum.append(run)
                del cum[len(bounds):]
            cum.append(p.count)
            points.append((labels, les, cum, p.sum, p.count, _bucket_exemplars(p.exemplars, bounds)))

    def _snapshot_samples(self, data, fam: _Family, extra) -> bool:
        """The metric's sample lines straight from its collection's snapshot (no point
        objects), the same bytes as the points give; False when its points are (to be)
        built instead: they exist already, or the records do not suit (see prometheus_samples)."""
        snap = getattr(data, "_data_points", None)
        if type(snap) is not Snapshot:
            return False
        les = None
        if fam.type == "histogram":
            boundaries = getattr(snap.stream, "boundaries", None)
            if boundaries is None:
                return False
            les = tuple(_explicit_bounds(boundaries)[1])
            if _negative_threshold(les):        # OpenMetrics writes its series differently: render() decides
                return False
        sample = fam.name + "_total" if fam.type == "counter" else fam.name
        text = prometheus_samples(snap, sample, tuple(chain.from_iterable(extra)), les, self._label_names,
                                  label_name, label_value)
        if text is None:
            return False
        fam.points.append(text)
        return True

    def ordered(self) -> List[_Family]:
        fams = []
        if self.target:
            info = _Family(_TARGET.name, _TARGET.type, _TARGET.help, "")
            info.points.append((_labels(self.target.items(), False), 1, None))
            fams.append(info)
        fams.extend(self.families.values())
        return fams


def _exemplar_labels(ex) -> List[Tuple[str, str]]:
    """An exemplar's labels: its span's ``trace_id`` and ``span_id``, then its filtered
    attributes as labels (named and merged as a series' are): all of them, or none when they
    would pass OpenMetrics' 128 runes. ``trace_id`` and ``span_id`` are the span's alone: a
    filtered attribute whose label name is one of them is left out (label names are unique)."""
    labels = []
    if ex.trace_id:
        labels.append(("trace_id", _hex_id(ex.trace_id, 32)))
    if ex.span_id:
        labels.append(("span_id", _hex_id(ex.span_id, 16)))
    runes = sum(len(k) + len(v) for k, v in labels)
    attrs = [(k, v) for k, v in _labels((ex.filtered_attributes or {}).items(), False)
             if k not in _EXEMPLAR_ID_LABELS]
    if attrs and runes + sum(len(k) + len(v) for k, v in attrs) <= _EXEMPLAR_MAX_RUNES:
        labels.extend(attrs)
    return labels


def _exemplar_text(ex) -> str:
    labels = _exemplar_labels(ex)
    ts = ex.time_unix_nano
    return " # {%s} %s%s" % (_render_labels(labels), _number(ex.value),
                             " %.9f" % (ts / 1e9) if ts else "")


def _hex_id(value, width: int) -> str:
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return "%0*x" % (width, value)


def render(families: List[_Family], openmetrics: bool) -> bytes:
    """The exposition of ``families`` in UTF-8 (a lone surrogate as ``?``): text format
    0.0.4, or OpenMetrics 1.0 (with ``# UNIT``, exemplars and ``# EOF``)."""
    out: List[str] = []
    w = out.append
    chunks: List[bytes] = []        # out's text so far, encoded, and the lines rendered as bytes
    for f in families:
        name, typ = f.name, f.type
        if typ == "counter":
            sample = name + "_total"
        elif typ == "info":
            sample = name + "_info"
        else:
            sample = name
        if openmetrics:
            w("# TYPE %s %s\n" % (name, typ))
            if f.unit:
                w("# UNIT %s %s\n" % (name, f.unit))
            if f.help:
                w("# HELP %s %s\n" % (name, _escape_help(f.help, True)))
        else:
            if f.help:
                w("# HELP %s %s\n" % (sample, _escape_help(f.help, False)))
            w("# TYPE %s %s\n" % (sample, "gauge" if typ == "info" else typ))
        if typ == "histogram":
            for p in f.points:
                if type(p) is bytes:    # sample lines rendered from a snapshot
                    chunks.append("".join(out).encode("utf-8", "replace"))
                    out.clear()
                    chunks.append(p)
                    continue
                labels, les, cum, total, n, exemplars = p
                ls = _render_labels(labels)
                bucket = name + "_bucket{" + ls + ("," if ls else "") + 'le="'
                for i, le in enumerate(les):
                    ex = exemplars[i] if openmetrics and exemplars and i < len(exemplars) else None
                    w("%s%s\"} %d%s\n" % (bucket, le, cum[i], _exemplar_text(ex) if ex is not None else ""))
                if openmetrics and not _openmetrics_count_and_sum(les, total):
                    continue
                braces = "{" + ls + "}" if ls else ""
                w("%s_count%s %d\n" % (name, braces, n))
                if total is not None:
                    w("%s_sum%s %s\n" % (name, braces, _number(total)))
        else:
            for p in f.points:
                if type(p) is bytes:
                    chunks.append("".join(out).encode("utf-8", "replace"))
                    out.clear()
                    chunks.append(p)
                    continue
                labels, value, ex = p
                ls = _render_labels(labels)
                w("%s%s %s%s\n" % (sample, "{" + ls + "}" if ls else "", _number(value),
                                   _exemplar_text(ex) if openmetrics and ex is not None else ""))
    if openmetrics:
        w("# EOF\n")
    chunks.append("".join(out).encode("utf-8", "replace"))
    return b"".join(chunks)


# -- content negotiation -----------------------------------------------------------


def _media_ranges(header: str):
    """(media type, {param: value}, q) of each entry of an Accept-like header."""
    for entry in (header or "").split(","):
        parts = [p.strip() for p in entry.split(";")]
        if not parts[0]:
            continue
        params = {}
        for p in parts[1:]:
            k, _, v = p.partition("=")
            params[k.strip().lower()] = v.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 0.0
        yield parts[0].lower(), params, q


def wants_openmetrics(accept: str) -> bool:
    """True when the scraper's Accept header prefers OpenMetrics text (1.0.0 or
    0.0.1) to the 0.0.4 text format, by q-value, earlier entries winning ties."""
    best_q, best_om = 0.0, False
    for media, params, q in _media_ranges(accept):
        version = params.get("version", "")
        if media == "application/openmetrics-text" and version in _OPENMETRICS_VERSIONS:
            om = True
        elif media in ("text/plain", "text/*", "*/*") and version in _TEXT_VERSIONS:
            om = False
        else:
            continue
        if q > best_q:
            best_q, best_om = q, om
    return best_om


def accepts_gzip(accept_encoding: str) -> bool:
    """True when the Accept-Encoding header allows gzip: by gzip's own q-value when it is listed,
    else by ``*``'s (RFC 9110 12.5.3: ``*`` matches only the codings not listed)."""
    qs: dict = {}
    for coding, _, q in _media_ranges(accept_encoding):
        qs[coding] = max(q, qs.get(coding, 0.0))
    return qs.get("gzip", qs.get("*", 0.0)) > 0


# -- the reader --------------------------------------------------------------------

_live_readers: "weakref.WeakValueDictionary[int, PrometheusMetricReader]" = weakref.WeakValueDictionary()
_reader_ids = count()
_DEFAULT_REGISTRY = object()


# Warnings of scrapes and of metrics dropped outside any provider, counted and rate-limited.
_warnings = Diagnostics()
call_in_child_after_fork(_warnings, "_reinit_locks_after_fork")


class PrometheusMetricReader(MetricReader):
    """Pull reader in Prometheus format. Same constructor as
    ``opentelemetry.exporter.prometheus.PrometheusMetricReader``:

    - ``disable_target_info``: no ``target_info`` family (the resource's attributes).
    - ``prefix``: prepended (with ``_``) to every metric name.
    - ``scope_info_enabled``: ``otel_scope_name`` / ``otel_scope_version`` (and
      scope attribute) labels on every series (default True).
    - ``resource_attribute_filter``: a callable(key) -> bool choosing resource
      attributes to copy onto every series as labels.
    - ``registry``: a prometheus_client ``CollectorRegistry`` to register on, or
      None for none; by default ``prometheus_client.REGISTRY`` when prometheus_client
      is installed (so ``prometheus_client.start_http_server`` serves this reader too).
    - ``cardinality_limits`` (or ``default_cardinality_limit``): as every reader.

    Serve it with ``otelmetrics.export.start_http_server(port)``, or take the
    bytes from ``exposition()``. Collections are always cumulative.
    """

    def __init__(self, disable_target_info: bool = False, prefix: str = "", scope_info_enabled: bool = True,
                 *, resource_attribute_filter: Optional[Callable[[str], bool]] = None,
                 registry=_DEFAULT_REGISTRY, cardinality_limits=None, default_cardinality_limit=None,
                 metric_producers=(), metric_filter=None) -> None:
        if not isinstance(prefix, str):
            raise TypeError("PrometheusMetricReader: prefix must be a str, got %r" % (prefix,))
        if resource_attribute_filter is not None and not callable(resource_attribute_filter):
            raise TypeError("PrometheusMetricReader: resource_attribute_filter must be a callable(key) -> "
                            "bool, got %r" % (resource_attribute_filter,))
        super().__init__(None, None, default_cardinality_limit=default_cardinality_limit,
                         metric_producers=metric_producers, metric_filter=metric_filter,
                         cardinality_limits=cardinality_limits)
        self._options = _Options(prefix, not disable_target_info, bool(scope_info_enabled),
                                 resource_attribute_filter)
        self._lock = threading.Lock()
        self._data = None
        self._shutting_down = False
        self._servers: List[PrometheusServer] = []
        if registry is _DEFAULT_REGISTRY:
            registry = _default_client_registry()
        elif registry is not None and not callable(getattr(registry, "register", None)):
            raise TypeError("PrometheusMetricReader: registry must be a prometheus_client CollectorRegistry "
                            "or None, got %r" % (registry,))
        self._registry = registry
        self._client_collector = None
        if registry is not None:
            self._client_collector = _ClientCollector(self)
            registry.register(self._client_collector)
        self._live_id = next(_reader_ids)
        _live_readers[self._live_id] = self

    # -- collection ------------------------------------------------------------

    def _receive_metrics(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> None:
        self._data = metrics_data

    def _snapshot(self):
        """Collect now (collections of this reader never overlap)."""
        with self._lock:
            self._data = None
            self.collect()
            data, self._data = self._data, None
            return data

    def _warn_drop(self, name: str, reason: str) -> None:
        diagnostics = getattr(self._provider, "_diagnostics", None)
        if diagnostics is not None:
            diagnostics.record_drop(name, reason)
        else:
            _warn_drop_global(name, reason)

    def _translate_into(self, translation: _Translation) -> bool:
        """Add this reader's collection to ``translation``; False if the reader is shutting down."""
        if self._shutting_down:
            return False
        data = self._snapshot()
        if self._shutting_down:
            return False
        translation.add(data, self._options)
        return True

    def _families(self, text: bool = True) -> Optional[List[_Family]]:
        """This scrape's families; ``text``: for render() (else every point a tuple)."""
        t = _Translation(self._warn_drop, text)
        return t.ordered() if self._translate_into(t) else None

    def exposition(self, openmetrics: bool = False) -> bytes:
        """One scrape's body: collect now and encode (text 0.0.4, or OpenMetrics 1.0).
        Empty when the reader is shut down."""
        fams = self._families()
        return b"" if fams is None else render(fams, openmetrics)

    # -- lifecycle -------------------------------------------------------------

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> bool:
        """Scrapes answer 503 from now on; waits (up to the timeout) for a scrape's
        collection in progress, unregisters from prometheus_client, stops the
        servers started for this reader. True the first time."""
        with self._reader_lock:
            first = not self._shutting_down
            self._shutting_down = True
        if not first:
            _logger.warning("PrometheusMetricReader.shutdown: already shut down")
            return False
        got = self._lock.acquire(timeout=max(0.0, timeout_millis / 1e3))
        self._is_shut_down = True
        if got:
            self._lock.release()
        if self._client_collector is not None:
            try:
                self._registry.unregister(self._client_collector)
            except Exception as e:  # already unregistered by the application
                _logger.warning("PrometheusMetricReader.shutdown: unregister: %s: %s", type(e).__name__, e)
        for server in list(self._servers):
            server.stop()
        _live_readers.pop(self._live_id, None)
        return True


def _default_client_registry():
    # prometheus_client is optional: imported here, only when a reader is
    # created, and only if it is installed (otelmetrics does not depend on it).
    try:
        from prometheus_client import REGISTRY
    except ImportError:
        return None
    return REGISTRY


class _ClientCollector:
    """The reader as a prometheus_client collector (same families, same labels)."""

    def __init__(self, reader: PrometheusMetricReader) -> None:
        self._reader = reader

    def describe(self):
        # No names up front: the registry then does not collect at registration
        # (before the reader belongs to a provider) to check for duplicates.
        return []

    def collect(self):
        # Optional dependency, present because this collector was registered on it.
        from prometheus_client.core import Metric
        from prometheus_client.samples import Exemplar

        fams = self._reader._families(text=False) or []
        out = []
        for f in fams:
            m = Metric(f.name, f.help, f.type, f.unit)
            if f.type == "histogram":
                for labels, les, cum, total, n, exemplars in f.points:
                    base = dict(labels)
                    for i, le in enumerate(les):
                        ex = exemplars[i] if exemplars else None
                        m.add_sample(f.name + "_bucket", {**base, "le": le}, cum[i],
                                     exemplar=_client_exemplar(Exemplar, ex))
                    # The registry writes either format from these samples: OpenMetrics' rule for
                    # both (as prometheus_client's HistogramMetricFamily does for negative thresholds).
                    if _openmetrics_count_and_sum(les, total):
                        m.add_sample(f.name + "_count", base, n)
                        m.add_sample(f.name + "_sum", base, total)
            else:
                sample = f.name + {"counter": "_total", "info": "_info"}.get(f.type, "")
                for labels, value, ex in f.points:
                    m.add_sample(sample, dict(labels), value, exemplar=_client_exemplar(Exemplar, ex))
            out.append(m)
        return out


def _client_exemplar(cls, ex):
    if ex is None:
        return None
    return cls(dict(_exemplar_labels(ex)), ex.value, ex.time_unix_nano / 1e9 if ex.time_unix_nano else None)


# -- the HTTP server ---------------------------------------------------------------


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    exporter: "PrometheusServer"

    def handle_error(self, request, client_address) -> None:
        # A scraper that hangs up mid-answer is not worth a traceback on stderr.
        _logger.debug("prometheus endpoint: connection from %s failed", client_address, exc_info=True)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "otelmetrics"

    def do_GET(self) -> None:
        path = self.path.partition("?")[0]
        if path not in ("/metrics", "/"):
            self._answer(404, "text/plain; charset=utf-8", b"not found: try /metrics\n", False)
            return
        try:
            status, ctype, body = self.server.exporter._scrape(self.headers.get("Accept", ""))
            zipped = status == 200 and accepts_gzip(self.headers.get("Accept-Encoding", ""))
            if zipped:
                body = gzip.compress(body, compresslevel=6)
        except Exception as e:
            _warnings.note("scrape", "prometheus scrape failed: %s: %s", type(e).__name__, e)
            status, ctype, body, zipped = 500, "text/plain; charset=utf-8", b"scrape failed\n", False
        self._answer(status, ctype, body, zipped)

    def _answer(self, status: int, ctype: str, body: bytes, zipped: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        if zipped:
            self.send_header("Content-Encoding", "gzip")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass    # no line on stderr per scrape


class PrometheusServer:
    """A running endpoint: ``port`` (the bound one, useful with port 0) and ``stop()``."""

    def __init__(self, port: int, addr: str, reader: Optional[PrometheusMetricReader]) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError("start_http_server: port must be an int in 0..65535, got %r" % (port,))
        if not isinstance(addr, str):
            raise TypeError("start_http_server: addr must be a str, got %r" % (addr,))
        if reader is not None and not isinstance(reader, PrometheusMetricReader):
            raise TypeError("start_http_server: reader must be a PrometheusMetricReader, got %r" % (reader,))
        cls = _HTTPServer6 if ":" in addr else _HTTPServer
        try:
            httpd = cls((addr, port), _Handler)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise OSError(e.errno, "start_http_server: port %d on %s is already in use; stop what listens "
                                       "there or choose another port" % (port, addr)) from None
            raise OSError(e.errno, "start_http_server: cannot listen on %s port %d: %s"
                          % (addr, port, e.strerror)) from None
        httpd.exporter = self
        self._httpd = httpd
        self._reader = reader
        self._stopping = False
        self.addr = addr
        self.port = httpd.server_address[1]
        if reader is not None:
            reader._servers.append(self)
        self._thread = threading.Thread(target=httpd.serve_forever, name="otelmetrics-prometheus-http",
                                        daemon=True)
        self._thread.start()
        call_in_child_after_fork(self, "_leave_to_parent")

    def _leave_to_parent(self) -> None:
        # The serving thread is the parent's: a forked child leaves the endpoint to it. Its
        # copy of the listening socket is closed (the port stays the parent's alone) and the
        # server counts as stopped, so ``stop`` has no thread to wait for (it would wait forever).
        self._stopping = True
        self._httpd.server_close()
        self._detach()

    def _detach(self) -> None:
        """No longer one of its reader's servers (which its reader's shutdown stops)."""
        if self._reader is not None and self in self._reader._servers:
            self._reader._servers.remove(self)

    def _scrape(self, accept: str) -> Tuple[int, str, bytes]:
        readers = [self._reader] if self._reader is not None else list(_live_readers.values())
        if self._stopping or any(r._shutting_down for r in readers):
            return 503, "text/plain; charset=utf-8", b"shutting down\n"
        openmetrics = wants_openmetrics(accept)
        translation = _Translation(readers[0]._warn_drop if readers else _warn_drop_global)
        for r in readers:
            if not r._translate_into(translation):
                return 503, "text/plain; charset=utf-8", b"shutting down\n"
        body = render(translation.ordered(), openmetrics)
        return 200, OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE, body

    def stop(self) -> None:
        """Stop listening (scrapes in flight finish); idempotent."""
        if self._stopping:
            return
        self._stopping = True
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not threading.current_thread():
            self._thread.join(5.0)
        self._detach()

    shutdown = stop


def _warn_drop_global(name: str, reason: str) -> None:
    _warnings.note((name, reason), "metric %r %s", name, reason)


def start_http_server(port: int, addr: str = "0.0.0.0",
                      reader: Optional[PrometheusMetricReader] = None) -> PrometheusServer:
    """Serve ``GET /metrics`` on ``addr:port`` from a daemon thread (standard
    library HTTP server): every live PrometheusMetricReader, or only ``reader``
    (whose shutdown then stops this server). Raises OSError naming the port when
    it is in use; nothing is left running then."""
    return PrometheusServer(port, addr, reader)
