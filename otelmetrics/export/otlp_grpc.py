"""The OTLP/gRPC transport: sends request bodies, as ``otlp_protocol.RequestEncoder``
encoded them, through one grpcio channel with a generic unary call to
``/opentelemetry.proto.collector.metrics.v1.MetricsService/Export`` (identity
serializers: bytes in, bytes out, no protobuf runtime), and reports each try as an
``otlp_protocol.Outcome`` (``grpc_outcome`` reads the status, the ``RetryInfo`` and the
response's partial success).

- TLS when the endpoint is https (``otlp_settings.otlp_grpc_endpoint`` decides the scheme), with
  the CA file and client certificate of ``OTEL_EXPORTER_OTLP_[METRICS_]CERTIFICATE`` /
  ``CLIENT_KEY`` / ``CLIENT_CERTIFICATE``, checked as OTLP/HTTP checks them, or with the
  caller's ``grpc.ChannelCredentials``.
- gRPC compresses each message itself (``grpc-encoding: gzip``): bodies stay plain
  protobuf. A body kept gzip-compressed by an OTLP/HTTP run (spool) is decompressed
  first; an OTLP/JSON one cannot be sent over gRPC and is refused for good.
- ``send`` never raises. After UNAVAILABLE the channel is dropped, so that the next try
  connects at once instead of after grpcio's own reconnect backoff.
- Not thread-safe, except ``abort``: the exporter calls it with its export lock held.

grpcio is the optional extra ``otelmetrics[grpc]``; only this module imports it, and only
``otelmetrics.export.grpc`` imports this module.
"""
from __future__ import annotations

import gzip
import logging
import re
import zlib
from typing import Mapping, Optional, Sequence, Tuple

from otelmetrics.export import otlp_settings
from otelmetrics.export.otlp_http import tls_context
from otelmetrics.export.otlp_protocol import (
    GRPC_OK,
    PERMANENT,
    RETRYABLE,
    USER_AGENT,
    Outcome,
    grpc_outcome,
)

try:
    import grpc
except ImportError as e:  # grpcio is optional: imported only when the OTLP/gRPC exporter is used
    raise ImportError('The OTLP/gRPC exporter needs grpcio, the "grpc" extra: '
                      'pip install "otelmetrics[grpc]"') from e

_logger = logging.getLogger("otelmetrics.export.otlp")

EXPORT_METHOD = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
# OTLP/HTTP headers (``otlp_protocol.http_headers``) that are no gRPC metadata: gRPC sets
# its own content-type and user-agent; content-type and content-encoding say how a kept
# body was encoded.
_HTTP_ONLY = frozenset(("content-type", "content-encoding", "user-agent"))
_METADATA_KEY = re.compile(r"[0-9a-z_.\-]+\Z")
_METADATA_VALUE = re.compile(r"[\x20-\x7e]*\Z")


def compression_name(value) -> Optional[str]:
    """The reference's ``grpc.Compression`` (or a name) as ``otlp_settings`` takes it; None stays
    None (the environment decides). Deflate is not one of OTLP's: a ValueError."""
    if value is None or isinstance(value, str):
        return value
    names = {grpc.Compression.Gzip: "gzip", grpc.Compression.NoCompression: "none"}
    if value not in names:
        raise ValueError("OTLPMetricExporter compression %r: expected gzip or none "
                         "(grpc.Compression.Gzip or NoCompression)" % (value,))
    return names[value]


def channel_credentials(settings: otlp_settings.OTLPSettings, fall_back: bool) -> grpc.ChannelCredentials:
    """TLS credentials from the configured CA file and client certificate. The files are
    checked as OTLP/HTTP checks them (``otlp_http.tls_context``): with ``fall_back`` (they
    came from the environment) an unusable one is a warning and the system's CAs are used,
    otherwise a ValueError that says what to change."""
    try:
        tls_context(settings, fall_back=False)
    except ValueError:
        if not fall_back:
            raise
        tls_context(settings, fall_back=True)   # logs what it cannot load, as for OTLP/HTTP
        return grpc.ssl_channel_credentials()
    cert = settings.client_certificate_file
    return grpc.ssl_channel_credentials(
        root_certificates=_read(settings.certificate_file),
        private_key=_read(settings.client_key_file or cert) if cert else None,
        certificate_chain=_read(cert))


def _read(path: Optional[str]) -> Optional[bytes]:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


def check_metadata(headers: Mapping[str, str]) -> None:
    """A ValueError naming the first configured header that gRPC would refuse as metadata."""
    for key, value in headers.items():
        if not _METADATA_KEY.match(key) or not _METADATA_VALUE.match(value):
            raise ValueError("OTLPMetricExporter header %r: not valid as gRPC metadata (names of lower-case "
                             "letters, digits, '-', '_', '.'; values of printable ASCII)" % (key,))


class GrpcTransport:
    """``otlp_protocol.Transport`` over gRPC. ``tls_fall_back``: see ``channel_credentials``;
    ``credentials`` (a ``grpc.ChannelCredentials``) replaces the configured files."""

    def __init__(self, settings: otlp_settings.OTLPSettings, tls_fall_back: bool, credentials=None,
                 compression: str = "none", channel_options: Sequence[Tuple[str, object]] = ()) -> None:
        url = otlp_settings.split_endpoint(settings.endpoint)
        tls = url.scheme == "https"
        host, port = url.host, url.port or (443 if tls else 80)
        self._target = ("[%s]:%d" if ":" in host else "%s:%d") % (host, port)
        check_metadata(settings.headers)
        self._credentials = (credentials or channel_credentials(settings, tls_fall_back)) if tls else None
        self._compression = grpc.Compression.Gzip if compression == "gzip" else grpc.Compression.NoCompression
        self._options = (("grpc.primary_user_agent", USER_AGENT),) + tuple(channel_options)
        self._channel = None
        self._export = None                    # the channel's unary call
        self._future = None                    # the call in progress, for abort()
        self._metadata: Tuple[object, tuple] = (None, ())   # (headers, their metadata), last used

    def send(self, body: bytes, headers: Mapping[str, str], timeout: float) -> Outcome:
        if "json" in headers.get("content-type", ""):
            return Outcome(PERMANENT, "an OTLP/JSON request (kept by an OTLP/HTTP run) cannot be sent over gRPC")
        if headers.get("content-encoding") == "gzip":
            try:
                body = gzip.decompress(body)   # gRPC compresses the message itself, as configured
            except (OSError, EOFError, zlib.error) as e:
                return Outcome(PERMANENT, "a kept request cannot be decompressed: %s" % e)
        try:
            future = self._call().future(body, timeout=timeout, metadata=self._metadata_for(headers))
            self._future = future
            try:
                response = future.result()
            finally:
                self._future = None
        except grpc.FutureCancelledError:
            return Outcome(RETRYABLE, "gRPC call cancelled")
        except grpc.RpcError as e:
            code = e.code()
            if code == grpc.StatusCode.UNAVAILABLE:
                self.close()
            return grpc_outcome(code.value[0], code.name, e.details() or "", dict(e.trailing_metadata() or ()))
        except Exception as e:
            self.close()
            return Outcome(RETRYABLE, "gRPC error: %s" % (e or type(e).__name__))
        return grpc_outcome(GRPC_OK, "OK", "", {}, response)

    def close(self) -> None:
        channel, self._channel, self._export = self._channel, None, None
        if channel is not None:
            try:
                channel.close()
            except Exception:
                pass

    def abort(self) -> None:
        future = self._future
        if future is not None:
            future.cancel()   # the send in progress returns a RETRYABLE outcome

    def leave_to_parent(self) -> None:
        # Nothing to let go of: grpcio's own fork support (on unless GRPC_ENABLE_FORK_SUPPORT
        # turns it off) makes the inherited channel the child's; with it off, gRPC is not
        # usable in a forked child at all, with any channel.
        pass

    def _call(self):
        if self._export is None:
            if self._credentials is None:
                self._channel = grpc.insecure_channel(self._target, self._options, self._compression)
            else:
                self._channel = grpc.secure_channel(self._target, self._credentials, self._options,
                                                    self._compression)
            # No serializers: the body goes out as the bytes it is, the response comes back as bytes.
            self._export = self._channel.unary_unary(EXPORT_METHOD)
        return self._export

    def _metadata_for(self, headers: Mapping[str, str]) -> tuple:
        """The gRPC metadata of ``headers``, remembered for the next call with the same ones."""
        last, metadata = self._metadata
        if headers is not last:
            metadata = tuple((k, v) for k, v in headers.items() if k not in _HTTP_ONLY)
            self._metadata = (headers, metadata)
        return metadata
