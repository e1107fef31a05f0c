"""The OTLP/gRPC metric exporter, under the name and arguments of opentelemetry-sdk's
``opentelemetry.exporter.otlp.proto.grpc.metric_exporter.OTLPMetricExporter``:

    from otelmetrics.export.grpc import OTLPMetricExporter
    exporter = OTLPMetricExporter(endpoint="http://collector:4317")

It is the OTLP/HTTP exporter (``otlp.OTLPMetricExporter``: the same encoder, retries
within each export's timeout, outage queue and durable spool, counters) with the gRPC
transport (``otlp_grpc``). Importing this module imports grpcio, the optional extra
``otelmetrics[grpc]``; without it the ImportError says so.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence, Tuple, Union

from otelmetrics import _env
from otelmetrics.export import otlp_settings
from otelmetrics.export import otlp
from otelmetrics.export.otlp_grpc import GrpcTransport, compression_name

__all__ = ["OTLPMetricExporter"]


class OTLPMetricExporter(otlp.OTLPMetricExporter):
    """Push metrics to an OTLP/gRPC receiver (the collector's ``:4317``).

    The reference's arguments, in its order: ``endpoint`` (default
    ``OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT``, else http://localhost:4317; https means
    TLS), ``insecure`` (plaintext for an endpoint written without a scheme; default
    ``OTEL_EXPORTER_OTLP_[METRICS_]INSECURE``, else false), ``credentials`` (a
    ``grpc.ChannelCredentials`` for TLS; default the CA file and client certificate of
    the ``OTEL_EXPORTER_OTLP_*CERTIFICATE`` / ``CLIENT_KEY`` variables, else the system's
    CAs), ``headers`` (a mapping, ``(key, value)`` pairs or "k=v,k2=v2"), ``timeout``
    (seconds, retries included), ``compression`` (``grpc.Compression.Gzip`` /
    ``NoCompression`` or "gzip" / "none"), ``preferred_temporality``,
    ``preferred_aggregation``, ``max_export_batch_size``, ``channel_options`` (grpcio
    channel arguments). Keyword-only, as ``otlp.OTLPMetricExporter`` takes them: the
    certificate files, ``max_queue_bytes``, ``spool_dir``, ``max_spool_bytes`` and
    ``max_spool_files``. Not taken: the reference's ``retryable_error_codes`` (the
    specification's list applies) and ``meter_provider``.
    """

    def __init__(
        self,
        endpoint: Optional[str] = None,
        insecure: Optional[bool] = None,
        credentials=None,
        headers: Union[None, str, Mapping[str, str], Sequence[Tuple[str, str]]] = None,
        timeout: Optional[float] = None,
        compression=None,
        preferred_temporality=None,
        preferred_aggregation=None,
        max_export_batch_size: Optional[int] = None,
        channel_options: Optional[Sequence[Tuple[str, object]]] = None,
        *,
        certificate_file: Optional[str] = None,
        client_key_file: Optional[str] = None,
        client_certificate_file: Optional[str] = None,
        max_queue_bytes: Optional[int] = None,
        spool_dir: Optional[str] = None,
        max_spool_bytes: Optional[int] = None,
        max_spool_files: Optional[int] = None,
    ) -> None:
        if isinstance(headers, str):
            headers = otlp_settings.parse_headers(headers, "headers")
        elif headers is not None and not isinstance(headers, Mapping):
            headers = dict(headers)
        # For _open_transport, which the base class calls from its __init__. gRPC compresses
        # each message itself, so the base encodes (and keeps) plain protobuf: compression="none".
        self._grpc_options = (credentials, otlp_settings.otlp_compression(compression_name(compression)),
                              tuple(channel_options or ()))
        super().__init__(
            otlp_settings.otlp_grpc_endpoint(endpoint, insecure), headers=headers, timeout=timeout,
            compression="none",
            certificate_file=certificate_file, client_key_file=client_key_file,
            client_certificate_file=client_certificate_file, preferred_temporality=preferred_temporality,
            preferred_aggregation=preferred_aggregation, max_export_batch_size=max_export_batch_size,
            protocol=_env.GRPC, max_queue_bytes=max_queue_bytes, spool_dir=spool_dir,
            max_spool_bytes=max_spool_bytes, max_spool_files=max_spool_files,
        )

    def _open_transport(self, settings: otlp_settings.OTLPSettings, tls_fall_back: bool) -> GrpcTransport:
        credentials, compression, channel_options = self._grpc_options
        return GrpcTransport(settings, tls_fall_back, credentials, compression, channel_options)
