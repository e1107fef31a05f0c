"""The environment variables (``OTEL_*`` and ``OTELMETRICS_*``), read and
validated in one place: no other module reads ``os.environ``. This module only
reads and checks values; what builds exporters and readers from them lives with
those (``otelmetrics.export``). It imports nothing of otelmetrics.

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
from typing import Dict, List, Mapping, NamedTuple, Optional, Tuple
from urllib.parse import unquote, urlsplit

_logger = logging.getLogger("otelmetrics")

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
DEFAULT_OTLP_ENDPOINT = "http://localhost:4318"
DEFAULT_OTLP_GRPC_ENDPOINT = "http://localhost:4317"   # gRPC: no path, the method names the service
METRICS_PATH = "/v1/metrics"
DEFAULT_OTLP_TIMEOUT = 10.0  # seconds, as the exporter's ``timeout`` argument takes it

PROTOBUF = "http/protobuf"
JSON = "http/json"
GRPC = "grpc"
PROTOCOLS = (PROTOBUF, JSON)            # what the OTLP/HTTP exporter speaks
ALL_PROTOCOLS = (GRPC, PROTOBUF, JSON)  # what OTEL_EXPORTER_OTLP_PROTOCOL may choose in configure()
COMPRESSIONS = ("none", "gzip")
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


def metrics_exporters() -> List[str]:
    """``OTEL_METRICS_EXPORTER``: a comma-separated list of otlp, console, none (default otlp).

    "none" alone means no exporter; an unknown name is skipped with a warning, and a
    list left empty by that falls back to the default.
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


# ---------------------------------------------------------------- OTLP exporter

class OTLPSettings(NamedTuple):
    """Everything an OTLP exporter needs, resolved. For OTLP/gRPC (protocol "grpc") the
    endpoint's scheme says plaintext (http) or TLS (https), see ``otlp_grpc_endpoint``."""

    endpoint: str = DEFAULT_OTLP_ENDPOINT + METRICS_PATH
    headers: Dict[str, str] = {}   # never mutated: otlp_settings() passes a fresh dict
    timeout: float = DEFAULT_OTLP_TIMEOUT          # seconds
    compression: str = "none"
    certificate_file: Optional[str] = None
    client_key_file: Optional[str] = None
    client_certificate_file: Optional[str] = None
    protocol: str = PROTOBUF


def parse_headers(raw: str, name: str = "OTEL_EXPORTER_OTLP_HEADERS") -> Dict[str, str]:
    """``key1=value1,key2=value2`` with percent-encoded parts (W3C baggage style)."""
    headers: Dict[str, str] = {}
    for key, value, item in _key_values(raw):
        if key is None or any(c in key for c in " \t\r\n:") or "\n" in value or "\r" in value:
            _logger.warning("%s: ignoring %r, expected key=value", name, item)
            continue
        headers[key.lower()] = value.strip()
    return headers


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


def _check_endpoint(url: str) -> Optional[str]:
    """What is wrong with ``url`` as an OTLP/HTTP endpoint, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a bad port)
    except ValueError as e:
        return str(e)
    if parts.scheme not in ("http", "https"):
        return "the scheme must be http or https"
    if not parts.hostname:
        return "no host"
    return None


def normalize_endpoint(url: str, scheme: str = "http") -> str:
    """``host:port/path`` without a scheme means ``scheme`` (http, as gRPC-style endpoints
    are often written to mean; OTLP/gRPC passes the one its ``insecure`` setting says)."""
    url = url.strip()
    if "://" not in url:
        url = scheme + "://" + url
    return url


def _resolve_endpoint(explicit: Optional[str], scheme: str = "http", generic_suffix: str = METRICS_PATH,
                      default: str = DEFAULT_OTLP_ENDPOINT + METRICS_PATH) -> str:
    if explicit is not None:
        url = normalize_endpoint(str(explicit), scheme)
        problem = _check_endpoint(url)
        if problem:
            raise ValueError("OTLPMetricExporter endpoint %r: %s" % (explicit, problem))
        return url
    for name, suffix in (("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", ""),
                         ("OTEL_EXPORTER_OTLP_ENDPOINT", generic_suffix)):
        raw = env(name)
        if raw is None:
            continue
        # The signal-specific variable is the full URL; the generic one is a base.
        url = normalize_endpoint(raw, scheme).rstrip("/") + suffix if suffix else normalize_endpoint(raw, scheme)
        problem = _check_endpoint(url)
        if problem is None:
            return url
        _warn_invalid(name, raw, "an http:// or https:// URL (%s)" % problem, "the next setting")
    return default


def _resolve_insecure(explicit: Optional[bool]) -> bool:
    if explicit is not None:
        return bool(explicit)
    name, raw = _otlp_env("INSECURE")
    if raw is None:
        return False
    if raw.lower() not in ("true", "false"):
        _warn_invalid(name, raw, "true or false", "false")
        return False
    return raw.lower() == "true"


def otlp_grpc_endpoint(explicit: Optional[str] = None, insecure: Optional[bool] = None) -> str:
    """The OTLP/gRPC endpoint as an http:// (plaintext) or https:// (TLS) URL: the
    argument, else ``OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT`` (both as they are: gRPC
    has no path to add), else http://localhost:4317. The scheme decides, as the
    specification says; ``insecure`` (else ``OTEL_EXPORTER_OTLP_[METRICS_]INSECURE``,
    default false) only chooses for an endpoint written without one. An explicit
    ``insecure=False`` with an http:// endpoint is a contradiction (the reference
    would use TLS there): a ValueError that says to write https://."""
    scheme = "http" if _resolve_insecure(insecure) else "https"
    url = _resolve_endpoint(explicit, scheme, "", DEFAULT_OTLP_GRPC_ENDPOINT)
    if insecure is not None and not insecure and url.startswith("http://"):
        raise ValueError("OTLPMetricExporter: insecure=False, but endpoint %s is plaintext; "
                         "write https:// for TLS" % url)
    return url


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


def _resolve_timeout(explicit: Optional[float]) -> float:
    if explicit is not None:
        value = float(explicit)
        if not value > 0:
            raise ValueError("OTLPMetricExporter timeout %r: expected a positive number of seconds" % (explicit,))
        return value
    name, raw = _otlp_env("TIMEOUT")
    if raw is None:
        return DEFAULT_OTLP_TIMEOUT
    millis = _positive_millis(name, raw, "%g s" % DEFAULT_OTLP_TIMEOUT)
    if millis is None:
        return DEFAULT_OTLP_TIMEOUT
    if millis < 100:
        _logger.warning("%s=%r is read as milliseconds, as the specification says; "
                        "write %g for %s seconds", name, raw, millis * 1000, raw)
    return millis / 1000.0


def _resolve_file(explicit: Optional[str], suffix: str) -> Optional[str]:
    if explicit is not None:
        if not os.path.isfile(explicit):
            raise ValueError("OTLPMetricExporter: %s file %r does not exist" % (suffix.lower(), explicit))
        return explicit
    name, raw = _otlp_env(suffix)
    if raw is None:
        return None
    if not os.path.isfile(raw):
        _warn_invalid(name, raw, "the path of an existing file", "none")
        return None
    return raw


def otlp_protocol(explicit: Optional[str] = None) -> str:
    """``OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL``: which OTLP exporter ``configure()``
    builds, grpc, http/protobuf (the default) or http/json."""
    return _resolve_choice(explicit, "PROTOCOL", ALL_PROTOCOLS, PROTOBUF, "protocol")


def otlp_compression(explicit: Optional[str] = None) -> str:
    """``OTEL_EXPORTER_OTLP_[METRICS_]COMPRESSION``: gzip or none (the default)."""
    return _resolve_choice(explicit, "COMPRESSION", COMPRESSIONS, "none", "compression")


def otlp_settings(
    endpoint: Optional[str] = None,
    headers: Optional[Mapping[str, str]] = None,
    timeout: Optional[float] = None,
    compression: Optional[str] = None,
    certificate_file: Optional[str] = None,
    client_key_file: Optional[str] = None,
    client_certificate_file: Optional[str] = None,
    protocol: Optional[str] = None,
) -> OTLPSettings:
    """Resolve the exporter's settings from explicit arguments and the environment.
    ``protocol="grpc"`` (only ever explicit: the OTLP/gRPC exporter passes it, with the
    endpoint from ``otlp_grpc_endpoint``) resolves as OTLP/gRPC."""
    name, raw = _otlp_env("HEADERS")
    merged = parse_headers(raw, name) if raw else {}
    # As the reference does: variable headers, then explicit ones on top.
    merged.update({str(k).lower(): str(v) for k, v in (headers or {}).items()})
    return OTLPSettings(
        endpoint=(_resolve_endpoint(endpoint, "https", "", DEFAULT_OTLP_GRPC_ENDPOINT) if protocol == GRPC
                  else _resolve_endpoint(endpoint)),
        headers=merged,
        timeout=_resolve_timeout(timeout),
        compression=otlp_compression(compression),
        certificate_file=_resolve_file(certificate_file, "CERTIFICATE"),
        client_key_file=_resolve_file(client_key_file, "CLIENT_KEY"),
        client_certificate_file=_resolve_file(client_certificate_file, "CLIENT_CERTIFICATE"),
        protocol=(GRPC if protocol == GRPC
                  else _resolve_choice(protocol, "PROTOCOL", PROTOCOLS, PROTOBUF, "protocol")),
    )


# ---------------------------------------------------------------- OTLP retry queue and spool

OTELMETRICS_EXPORTER_QUEUE_BYTES = "OTELMETRICS_EXPORTER_QUEUE_BYTES"
OTELMETRICS_EXPORTER_SPOOL_DIR = "OTELMETRICS_EXPORTER_SPOOL_DIR"
OTELMETRICS_EXPORTER_SPOOL_BYTES = "OTELMETRICS_EXPORTER_SPOOL_BYTES"
OTELMETRICS_EXPORTER_SPOOL_FILES = "OTELMETRICS_EXPORTER_SPOOL_FILES"
OTELMETRICS_EXPORTER_BATCH_BYTES = "OTELMETRICS_EXPORTER_BATCH_BYTES"

DEFAULT_QUEUE_BYTES = 4 * 1024 * 1024
DEFAULT_SPOOL_BYTES = 64 * 1024 * 1024
DEFAULT_SPOOL_FILES = 10_000
# A request's bound, encoded and before compression: a collector's default limit is 4 MiB
# over gRPC (20 MiB over HTTP), and the default retry queue holds 4 MiB.
DEFAULT_BATCH_BYTES = 4 * 1024 * 1024
MIN_BATCH_BYTES = 1024


class QueueSettings(NamedTuple):
    """Where the OTLP exporter keeps requests it could not deliver yet, and how many."""

    max_queue_bytes: int = DEFAULT_QUEUE_BYTES     # in memory; 0 turns the queue off
    spool_dir: Optional[str] = None                # on disk, surviving a restart
    max_spool_bytes: int = DEFAULT_SPOOL_BYTES
    max_spool_files: int = DEFAULT_SPOOL_FILES
    spool_dir_from_env: bool = False               # an unusable one is then a warning, not an error


def _resolve_size(explicit: Optional[int], name: str, default: int, minimum: int) -> int:
    expected = "an integer >= %d" % minimum
    if explicit is not None:
        if isinstance(explicit, bool) or not isinstance(explicit, int) or explicit < minimum:
            raise ValueError("OTLPMetricExporter %s %r: expected %s" % (name, explicit, expected))
        return explicit
    variable = {"max_queue_bytes": OTELMETRICS_EXPORTER_QUEUE_BYTES,
                "max_spool_bytes": OTELMETRICS_EXPORTER_SPOOL_BYTES,
                "max_spool_files": OTELMETRICS_EXPORTER_SPOOL_FILES,
                "max_export_batch_bytes": OTELMETRICS_EXPORTER_BATCH_BYTES}[name]
    raw = env(variable)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        _warn_invalid(variable, raw, expected, default)
        return default
    return value


def queue_settings(
    max_queue_bytes: Optional[int] = None,
    spool_dir: Optional[str] = None,
    max_spool_bytes: Optional[int] = None,
    max_spool_files: Optional[int] = None,
) -> QueueSettings:
    """Resolve the retry queue and spool settings from explicit arguments and the environment."""
    from_env = spool_dir is None
    if from_env:
        spool_dir = env(OTELMETRICS_EXPORTER_SPOOL_DIR)
    else:
        spool_dir = os.fspath(spool_dir) or None
    return QueueSettings(
        max_queue_bytes=_resolve_size(max_queue_bytes, "max_queue_bytes", DEFAULT_QUEUE_BYTES, 0),
        spool_dir=spool_dir,
        max_spool_bytes=_resolve_size(max_spool_bytes, "max_spool_bytes", DEFAULT_SPOOL_BYTES, 1),
        max_spool_files=_resolve_size(max_spool_files, "max_spool_files", DEFAULT_SPOOL_FILES, 1),
        spool_dir_from_env=from_env,
    )


def batch_bytes(explicit: Optional[int] = None) -> int:
    """The OTLP exporter's bound on one request, in encoded bytes: ``max_export_batch_bytes``,
    else ``OTELMETRICS_EXPORTER_BATCH_BYTES``, else 4 MiB."""
    return _resolve_size(explicit, "max_export_batch_bytes", DEFAULT_BATCH_BYTES, MIN_BATCH_BYTES)


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
