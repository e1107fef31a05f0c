"""The process's environment: its variables (``OTEL_*`` and ``OTELMETRICS_*``), read
and validated in one place, and its forks: no other module reads ``os.environ`` or
registers a fork hook (``call_in_child_after_fork`` re-initialises an object's
threads and locks, or its identity, in a forked child; one process-wide hook calls
them all, in the order they asked, and forgets an object once it is collected). This module only
reads and checks values; what builds exporters and readers from them lives with
those (``otelmetrics.export``). It imports nothing of otelmetrics. The OTLP
exporters' own settings (endpoint, headers, timeout, compression, TLS files, the
retry queue and spool) are resolved in ``otelmetrics.export.otlp_settings`` from
variables read here, which loads only with an OTLP exporter, never with
``import otelmetrics``.

Precedence everywhere: an explicit argument, then the signal-specific variable
(``OTEL_EXPORTER_OTLP_METRICS_*``), then the generic one (``OTEL_EXPORTER_OTLP_*``),
then the specification's default. An invalid variable logs one warning that names
it and the default is used instead; an invalid explicit argument raises ValueError,
since that is a mistake in code, found at start-up.

Durations in variables are milliseconds, as the specification says. (opentelemetry-
python reads ``OTEL_EXPORTER_OTLP_TIMEOUT`` as seconds; a value small enough to be
one of those gets a warning.)
"""
from __future__ import annotations

import logging
import os
import re
import threading
import weakref
from itertools import count
from typing import Dict, List, Optional, Tuple

_logger = logging.getLogger("otelmetrics")


# Objects to re-initialise in a forked child, in the order they asked: one process-wide
# hook calls them (``os.register_at_fork`` has no unregister, so a hook per object would
# grow for as long as a program makes providers and exporters). An entry leaves when its
# object is collected.
_in_child: Dict[int, Tuple["weakref.ref", str]] = {}
_in_child_keys = count()
_in_child_lock = threading.Lock()    # re-created in the child: a parent thread may hold it


def call_in_child_after_fork(obj, method_name: str) -> None:
    """Call ``obj.<method_name>()`` in every child forked from now on, as long as
    ``obj`` is alive (held weakly: the hook does not keep it), after the calls asked
    for before it."""
    if not hasattr(os, "register_at_fork"):
        return
    with _in_child_lock:
        key = next(_in_child_keys)
        _in_child[key] = (weakref.ref(obj, lambda _, key=key: _in_child.pop(key, None)), method_name)


def _after_fork_in_child() -> None:
    global _in_child_lock
    _in_child_lock = threading.Lock()
    for ref, method_name in list(_in_child.values()):
        target = ref()
        if target is not None:
            try:
                getattr(target, method_name)()
            except Exception:   # one object's failure must not leave the others un-reset
                _logger.exception("otelmetrics: re-initialising %r in a forked child failed", target)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


OTEL_SDK_DISABLED = "OTEL_SDK_DISABLED"
OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"
OTEL_RESOURCE_ATTRIBUTES = "OTEL_RESOURCE_ATTRIBUTES"
OTEL_METRICS_EXPORTER = "OTEL_METRICS_EXPORTER"
OTEL_METRIC_EXPORT_INTERVAL = "OTEL_METRIC_EXPORT_INTERVAL"
OTEL_METRIC_EXPORT_TIMEOUT = "OTEL_METRIC_EXPORT_TIMEOUT"
OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE = "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"
OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION = (
    "OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION"
)

DEFAULT_EXPORT_INTERVAL_MILLIS = 60_000.0
DEFAULT_EXPORT_TIMEOUT_MILLIS = 30_000.0
# The export interval and timeout are clamped to these, with a warning: a shorter interval
# would collect in a busy loop, a longer duration overflows the reader's waits.
MIN_EXPORT_INTERVAL_MILLIS = 1.0
MAX_EXPORT_MILLIS = 2.0 ** 31 - 1   # about 24.8 days

PROTOBUF = "http/protobuf"
JSON = "http/json"
GRPC = "grpc"
PROTOCOLS = (PROTOBUF, JSON)            # what the OTLP/HTTP exporter speaks
ALL_PROTOCOLS = (GRPC, PROTOBUF, JSON)  # what OTEL_EXPORTER_OTLP_PROTOCOL may choose in configure()
EXPORTERS = ("otlp", "console", "none")


def _warn_invalid(name: str, value: str, expected: str, default: object) -> None:
    _logger.warning("%s=%r is invalid (expected %s); using %s", name, value, expected, default)


def env(name: str) -> Optional[str]:
    """The stripped value of ``name``; None when unset or blank."""
    value = os.environ.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None


def _otlp_env(suffix: str) -> Tuple[str, Optional[str]]:
    """``OTEL_EXPORTER_OTLP_METRICS_<suffix>`` if set, else ``OTEL_EXPORTER_OTLP_<suffix>``."""
    for name in ("OTEL_EXPORTER_OTLP_METRICS_" + suffix, "OTEL_EXPORTER_OTLP_" + suffix):
        value = env(name)
        if value is not None:
            return name, value
    return "OTEL_EXPORTER_OTLP_" + suffix, None


def clamp_millis(name: str, value: float, minimum: float) -> float:
    """A positive finite duration in ms within [minimum, MAX_EXPORT_MILLIS]; a warning names
    ``name`` when it was not. Anything else is returned as it is, for the caller to refuse."""
    if not 0 < value < float("inf"):
        return value
    bounded = min(max(value, minimum), MAX_EXPORT_MILLIS)
    if bounded != value:
        _logger.warning("%s=%r ms is outside [%.15g, %.15g] ms; using %.15g ms", name, value, minimum,
                        MAX_EXPORT_MILLIS, bounded)
    return bounded


def _positive_millis(name: str, raw: str, shown_default: str) -> Optional[float]:
    """``raw`` as a positive, finite number of milliseconds; None (with a warning
    naming the variable and ``shown_default``) when it is not one."""
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        _warn_invalid(name, raw, "a positive number of milliseconds", shown_default)
        return None
    return value


def _millis(name: str, default: float, minimum: float) -> float:
    raw = env(name)
    if raw is None:
        return default
    value = _positive_millis(name, raw, "%g ms" % default)
    return default if value is None else clamp_millis(name, value, minimum)


# One or more percent-escapes in a row: they decode together, as UTF-8 (a character
# may take several escapes). Compiled at first use (re's cache), not at import.
_ESCAPES = r"(?:%[0-9A-Fa-f]{2})+"


def _decode_escapes(match) -> str:
    return bytes.fromhex(match.group().replace("%", "")).decode("utf-8", "replace")


def unquote(text: str) -> str:
    """``urllib.parse.unquote(text)``: %XX escapes decoded as UTF-8, a malformed one
    kept as it is, invalid UTF-8 replaced by U+FFFD. Written here so that reading
    ``OTEL_RESOURCE_ATTRIBUTES`` does not import urllib.parse (and ipaddress with it)."""
    if "%" not in text:
        return text
    return re.sub(_ESCAPES, _decode_escapes, text)


def _key_values(raw: str):
    """``key1=value1,key2=value2`` with percent-encoded parts (W3C baggage style):
    (key, value, item) per non-blank item, key None when the item is malformed."""
    for item in raw.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = unquote(key).strip()
        yield (key if sep and key else None), unquote(value.strip()), item.strip()


# ---------------------------------------------------------------- general SDK

def sdk_disabled() -> bool:
    """``OTEL_SDK_DISABLED``: "true" (any case) turns the SDK into a no-op."""
    raw = env(OTEL_SDK_DISABLED)
    if raw is None:
        return False
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    _warn_invalid(OTEL_SDK_DISABLED, raw, "true or false", "false")
    return False


def metrics_exporters(strict: bool = False) -> List[str]:
    """``OTEL_METRICS_EXPORTER``: a comma-separated list of otlp, console, none (default otlp).

    "none" alone means no exporter; an unknown name is skipped with a warning, and a
    list left empty by that falls back to the default. ``strict`` (the agent, which
    refuses to start on a bad variable): an unknown name raises ValueError naming the
    variable and the accepted names instead.
    """
    raw = env(OTEL_METRICS_EXPORTER)
    if raw is None:
        return ["otlp"]
    names: List[str] = []
    invalid = False
    for item in raw.split(","):
        name = item.strip().lower()
        if not name:
            continue
        if name not in EXPORTERS:
            if strict:
                raise ValueError("%s=%s: %r is no exporter (expected otlp, console or none)"
                                 % (OTEL_METRICS_EXPORTER, raw, name))
            _warn_invalid(OTEL_METRICS_EXPORTER, name, "otlp, console or none", "the others")
            invalid = True
        elif name not in names:
            names.append(name)
    if not names and invalid:
        _warn_invalid(OTEL_METRICS_EXPORTER, raw, "otlp, console or none", "otlp")
        return ["otlp"]
    if "none" in names:
        if len(names) > 1:
            _logger.warning("%s=%r: 'none' ignores the other exporters listed", OTEL_METRICS_EXPORTER, raw)
        return []
    return names


def export_interval_millis(explicit: Optional[float] = None) -> float:
    """``OTEL_METRIC_EXPORT_INTERVAL`` (default 60000 ms), clamped to [1 ms, MAX_EXPORT_MILLIS]."""
    if explicit is not None:
        return clamp_millis("export_interval_millis", float(explicit), MIN_EXPORT_INTERVAL_MILLIS)
    return _millis(OTEL_METRIC_EXPORT_INTERVAL, DEFAULT_EXPORT_INTERVAL_MILLIS, MIN_EXPORT_INTERVAL_MILLIS)


def export_timeout_millis(explicit: Optional[float] = None) -> float:
    """``OTEL_METRIC_EXPORT_TIMEOUT`` (default 30000 ms), clamped to MAX_EXPORT_MILLIS."""
    if explicit is not None:
        return clamp_millis("export_timeout_millis", float(explicit), 0.0)
    return _millis(OTEL_METRIC_EXPORT_TIMEOUT, DEFAULT_EXPORT_TIMEOUT_MILLIS, 0.0)


# ---------------------------------------------------------------- resource and exemplars

def resource_attributes() -> Dict[str, str]:
    """``OTEL_RESOURCE_ATTRIBUTES``: comma-separated ``key=value``, percent-decoded.
    As the specification says, a value with any malformed pair is discarded whole."""
    raw = env(OTEL_RESOURCE_ATTRIBUTES)
    out: Dict[str, str] = {}
    for key, value, item in _key_values(raw or ""):
        if key is None:
            _logger.warning("%s=%r is invalid (%r is not key=value); ignoring the variable",
                            OTEL_RESOURCE_ATTRIBUTES, raw, item)
            return {}
        out[key] = value
    return out


def service_name() -> Optional[str]:
    """``OTEL_SERVICE_NAME``, or None."""
    return env(OTEL_SERVICE_NAME)


OTEL_METRICS_EXEMPLAR_FILTER = "OTEL_METRICS_EXEMPLAR_FILTER"
EXEMPLAR_FILTERS = ("always_on", "always_off", "trace_based")


def exemplar_filter() -> str:
    """``OTEL_METRICS_EXEMPLAR_FILTER``: always_on, always_off or trace_based (the default)."""
    raw = env(OTEL_METRICS_EXEMPLAR_FILTER)
    if raw is None:
        return "trace_based"
    if raw.lower() not in EXEMPLAR_FILTERS:
        _logger.warning("%s=%r is not one of always_on, always_off, trace_based; using trace_based",
                        OTEL_METRICS_EXEMPLAR_FILTER, raw.lower())
        return "trace_based"
    return raw.lower()


# ---------------------------------------------------------------- OTLP: protocol and compression choices

def _resolve_choice(explicit: Optional[str], suffix: str, choices: Tuple[str, ...], default: str,
                    what: str) -> str:
    if explicit is not None:
        value = str(getattr(explicit, "value", explicit)).strip().lower()
        if value not in choices:
            raise ValueError("OTLPMetricExporter %s %r: expected one of %s" % (what, explicit, ", ".join(choices)))
        return value
    name, raw = _otlp_env(suffix)
    if raw is None:
        return default
    value = raw.lower()
    if value not in choices:
        expected = " or ".join(choices)
        if value == GRPC:
            expected += " (grpc: configure() or otelmetrics.export.grpc.OTLPMetricExporter)"
        _warn_invalid(name, raw, expected, default)
        return default
    return value


def otlp_protocol(explicit: Optional[str] = None) -> str:
    """``OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL``: which OTLP exporter ``configure()``
    builds, grpc, http/protobuf (the default) or http/json."""
    return _resolve_choice(explicit, "PROTOCOL", ALL_PROTOCOLS, PROTOBUF, "protocol")


def temporality_preference() -> str:
    """``OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE``: cumulative (default), delta or lowmemory."""
    raw = env(OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE)
    choice = (raw or "cumulative").lower()
    if choice not in ("cumulative", "delta", "lowmemory"):
        _warn_invalid(OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, raw,
                      "cumulative, delta or lowmemory", "cumulative")
        return "cumulative"
    return choice


def default_histogram_aggregation() -> str:
    """``OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION``: explicit_bucket_histogram
    (default) or base2_exponential_bucket_histogram."""
    raw = env(OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION)
    choice = (raw or "explicit_bucket_histogram").lower()
    if choice not in ("explicit_bucket_histogram", "base2_exponential_bucket_histogram"):
        _warn_invalid(OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION, raw,
                      "explicit_bucket_histogram or base2_exponential_bucket_histogram",
                      "explicit_bucket_histogram")
        return "explicit_bucket_histogram"
    return choice
