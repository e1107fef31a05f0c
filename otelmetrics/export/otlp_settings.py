"""The OTLP exporters' settings, resolved from explicit arguments and the
``OTEL_EXPORTER_OTLP_[METRICS_]*`` and ``OTELMETRICS_EXPORTER_*`` variables: endpoint,
headers, timeout, compression, TLS files, and where undelivered requests are kept.
The variables are read through ``otelmetrics._env`` (the one reader of ``os.environ``),
by its rules: precedence, one warning naming an invalid variable.

Endpoints are read by ``split_endpoint``, which reads a URL as ``urllib.parse.urlsplit``
does without importing it (nor ``ipaddress``, which it may load): the OTLP/HTTP exporter
of a small device loads neither.
"""
from __future__ import annotations

import logging
import os
import socket
from typing import Dict, Mapping, NamedTuple, Optional, Tuple

from otelmetrics import _env

_logger = logging.getLogger("otelmetrics")

DEFAULT_OTLP_ENDPOINT = "http://localhost:4318"
DEFAULT_OTLP_GRPC_ENDPOINT = "http://localhost:4317"   # gRPC: no path, the method names the service
METRICS_PATH = "/v1/metrics"
DEFAULT_OTLP_TIMEOUT = 10.0  # seconds, as the exporter's ``timeout`` argument takes it
COMPRESSIONS = ("none", "gzip")


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
    protocol: str = _env.PROTOBUF


# What a header name may hold: RFC 9110's token characters.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def header_problem(name: str, value: str) -> Optional[str]:
    """Why the header ``name: value`` cannot be sent in an HTTP/1.1 request (it would be
    refused, or split the request), or None. The one check of a header: where settings
    are resolved, and by the OTLP/HTTP transport before a request goes out."""
    if not name or not all(c in _TOKEN for c in name):
        return "the name must be ASCII letters, digits or !#$%&'*+-.^_`|~ (no space, ':' or other characters)"
    if any(c in value for c in "\0\r\n"):
        return "the value has a NUL or a line break"
    if any(c > "\xff" for c in value):
        return "the value has characters beyond Latin-1 (U+00FF), which HTTP/1.1 cannot carry"
    return None


def parse_headers(raw: str, name: str = "OTEL_EXPORTER_OTLP_HEADERS") -> Dict[str, str]:
    """``key1=value1,key2=value2`` with percent-encoded parts (W3C baggage style); an item
    that is no header that can be sent is dropped with a warning naming the variable."""
    headers: Dict[str, str] = {}
    for number, (key, value, _) in enumerate(_env._key_values(raw), 1):
        value = value.strip()
        problem = "expected key=value" if key is None else header_problem(key, value)
        if problem:
            # by name or position only: a header's value is often a secret (an API key)
            _logger.warning("%s: ignoring %s: %s", name,
                            "item %d" % number if key is None else "the header %r" % key, problem)
            continue
        headers[key.lower()] = value
    return headers


def _explicit_headers(headers: Optional[Mapping[str, str]]) -> Dict[str, str]:
    """The ``headers`` argument with lower-case names; ValueError naming what to change
    when it is no mapping or holds a header that cannot be sent."""
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise ValueError("OTLPMetricExporter headers: expected a mapping of names to values, such as "
                         "{'api-key': '...'}, not %s" % type(headers).__name__)
    out = {}
    for key, value in headers.items():
        key, value = str(key), str(value)
        problem = header_problem(key, value)
        if problem:
            raise ValueError("OTLPMetricExporter header %r: %s" % (key, problem))
        out[key.lower()] = value
    return out


# ---------------------------------------------------------------- reading a URL

# What urlsplit strips from the start of a URL, and removes from anywhere in it.
_C0_OR_SPACE = "".join(map(chr, range(0x21)))
_UNSAFE = "\t\r\n"
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")


class Endpoint(NamedTuple):
    """An http(s) URL as a client needs it."""

    scheme: str            # lower case
    host: str              # lower case; an IPv6 address without its brackets
    port: Optional[int]    # None: the scheme's
    target: str            # the request target: the path ("/" when empty) and the query


def _split(url: str) -> Tuple[str, str, str, str]:
    """(scheme, netloc, path, query) of ``url``, as ``urllib.parse.urlsplit`` splits it
    (the fragment dropped); ValueError, as it raises, for an unmatched bracket in the
    netloc or a bracketed host that is not an IPv6 address."""
    url = url.lstrip(_C0_OR_SPACE)
    for c in _UNSAFE:
        url = url.replace(c, "")
    scheme = ""
    head, colon, rest = url.partition(":")
    if colon and head and head[0].isascii() and head[0].isalpha() and all(c in _SCHEME_CHARS for c in head):
        scheme, url = head.lower(), rest
    netloc = ""
    if url[:2] == "//":
        end = len(url)
        for c in "/?#":
            i = url.find(c, 2)
            if 0 <= i < end:
                end = i
        netloc, url = url[2:end], url[end:]
        if ("[" in netloc) != ("]" in netloc):
            raise ValueError("Invalid IPv6 URL")
        if "[" in netloc:
            _check_bracketed_host(netloc.partition("[")[2].partition("]")[0])
        if not netloc.isascii():
            _check_normalized(netloc)
    path, _, query = url.partition("#")[0].partition("?")
    return scheme, netloc, path, query


def _check_bracketed_host(host: str) -> None:
    if host.startswith("v"):                # IPvFuture (RFC 3986), as urlsplit reads it
        version, dot, rest = host[1:].partition(".")
        if not (version and dot and rest and all(c in "0123456789abcdefABCDEF" for c in version)):
            raise ValueError("IPvFuture address is invalid")
        return
    address, percent, zone = host.partition("%")   # an IPv6 address may name its zone: fe80::1%eth0
    try:
        if percent and (not zone or "%" in zone):
            raise ValueError
        socket.inet_pton(socket.AF_INET6, address)
    except (OSError, ValueError):
        raise ValueError("%r in brackets is not an IPv6 address" % host) from None


def _check_normalized(netloc: str) -> None:
    """urlsplit's check of a non-ASCII netloc: none of its characters may become one of
    ``/?#@:`` under NFKC normalization (a host that reads as another)."""
    # Deferred on purpose, as urlsplit defers it: only a non-ASCII host needs unicodedata.
    import unicodedata

    n = netloc
    for c in "@:#?":
        n = n.replace(c, "")
    normalized = unicodedata.normalize("NFKC", n)
    if n != normalized and any(c in normalized for c in "/?#@:"):
        raise ValueError("netloc %r contains invalid characters under NFKC normalization" % netloc)


def _host_port(netloc: str) -> Tuple[Optional[str], Optional[int]]:
    """urlsplit's ``hostname`` and ``port`` of a netloc: ValueError for a port that is not
    a number in 0-65535."""
    hostinfo = netloc.rpartition("@")[2]
    if "[" in hostinfo:
        host, _, port = hostinfo.partition("[")[2].partition("]")
        port = port.partition(":")[2]
    else:
        host, _, port = hostinfo.partition(":")
    number = None
    if port:
        if not (port.isdigit() and port.isascii()):
            raise ValueError("Port could not be cast to integer value as %r" % port)
        number = int(port)
        if not 0 <= number <= 65535:
            raise ValueError("Port out of range 0-65535")
    if not host:
        return None, number
    host, percent, zone = host.partition("%")
    return host.lower() + percent + zone, number


def split_endpoint(url: str) -> Endpoint:
    """``url`` read as ``urllib.parse.urlsplit`` reads it; ValueError when it is no usable
    http or https URL (the message says why)."""
    scheme, netloc, path, query = _split(url)
    host, port = _host_port(netloc)
    if scheme not in ("http", "https"):
        raise ValueError("the scheme must be http or https")
    if not host:
        raise ValueError("no host")
    return Endpoint(scheme, host, port, (path or "/") + ("?" + query if query else ""))


def _check_endpoint(url: str) -> Optional[str]:
    """What is wrong with ``url`` as an OTLP/HTTP endpoint, or None."""
    try:
        split_endpoint(url)
    except ValueError as e:
        return str(e)
    return None


def normalize_endpoint(url: str, scheme: str = "http") -> str:
    """``host:port/path`` without a scheme means ``scheme`` (http, as gRPC-style endpoints
    are often written to mean; OTLP/gRPC passes the one its ``insecure`` setting says)."""
    url = url.strip()
    if "://" not in url:
        url = scheme + "://" + url
    return url


def metrics_endpoint(endpoint: str) -> str:
    """A collector's address as the OTLP/HTTP metrics URL: like
    ``OTEL_EXPORTER_OTLP_ENDPOINT``, an address without a path gets ``/v1/metrics``
    (the agent's ``--endpoint``)."""
    url = normalize_endpoint(endpoint)
    return url.rstrip("/") + METRICS_PATH if _split(url)[2] in ("", "/") else url


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
        raw = _env.env(name)
        if raw is None:
            continue
        # The signal-specific variable is the full URL; the generic one is a base.
        url = normalize_endpoint(raw, scheme).rstrip("/") + suffix if suffix else normalize_endpoint(raw, scheme)
        problem = _check_endpoint(url)
        if problem is None:
            return url
        _env._warn_invalid(name, raw, "an http:// or https:// URL (%s)" % problem, "the next setting")
    return default


def _resolve_insecure(explicit: Optional[bool]) -> bool:
    if explicit is not None:
        return bool(explicit)
    name, raw = _env._otlp_env("INSECURE")
    if raw is None:
        return False
    if raw.lower() not in ("true", "false"):
        _env._warn_invalid(name, raw, "true or false", "false")
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


def _resolve_timeout(explicit: Optional[float]) -> float:
    if explicit is not None:
        value = float(explicit)
        if not value > 0:
            raise ValueError("OTLPMetricExporter timeout %r: expected a positive number of seconds" % (explicit,))
        return value
    name, raw = _env._otlp_env("TIMEOUT")
    if raw is None:
        return DEFAULT_OTLP_TIMEOUT
    millis = _env._positive_millis(name, raw, "%g s" % DEFAULT_OTLP_TIMEOUT)
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
    name, raw = _env._otlp_env(suffix)
    if raw is None:
        return None
    if not os.path.isfile(raw):
        _env._warn_invalid(name, raw, "the path of an existing file", "none")
        return None
    return raw


def otlp_compression(explicit: Optional[str] = None) -> str:
    """``OTEL_EXPORTER_OTLP_[METRICS_]COMPRESSION``: gzip or none (the default)."""
    return _env._resolve_choice(explicit, "COMPRESSION", COMPRESSIONS, "none", "compression")


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
    name, raw = _env._otlp_env("HEADERS")
    merged = parse_headers(raw, name) if raw else {}
    # As the reference does: variable headers, then explicit ones on top.
    merged.update(_explicit_headers(headers))
    return OTLPSettings(
        endpoint=(_resolve_endpoint(endpoint, "https", "", DEFAULT_OTLP_GRPC_ENDPOINT)
                  if protocol == _env.GRPC else _resolve_endpoint(endpoint)),
        headers=merged,
        timeout=_resolve_timeout(timeout),
        compression=otlp_compression(compression),
        certificate_file=_resolve_file(certificate_file, "CERTIFICATE"),
        client_key_file=_resolve_file(client_key_file, "CLIENT_KEY"),
        client_certificate_file=_resolve_file(client_certificate_file, "CLIENT_CERTIFICATE"),
        protocol=(_env.GRPC if protocol == _env.GRPC
                  else _env._resolve_choice(protocol, "PROTOCOL", _env.PROTOCOLS, _env.PROTOBUF, "protocol")),
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
    raw = _env.env(variable)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        _env._warn_invalid(variable, raw, expected, default)
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
        spool_dir = _env.env(OTELMETRICS_EXPORTER_SPOOL_DIR)
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
