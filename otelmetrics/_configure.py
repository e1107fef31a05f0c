"""``configure()``: the whole pipeline from the standard environment in one call.

    import otelmetrics
    provider = otelmetrics.configure()          # reads OTEL_* variables
    provider = otelmetrics.configure(exporter="console", export_interval_millis=5000)

builds the resource, one PeriodicExportingMetricReader per exporter named by
``OTEL_METRICS_EXPORTER`` (otlp, console, none; otlp over gRPC when
``OTEL_EXPORTER_OTLP_PROTOCOL`` or ``protocol=`` says grpc), the MeterProvider, and registers
it with ``opentelemetry.metrics.set_meter_provider``. Keyword arguments beat the
environment.
"""
from __future__ import annotations

import logging
from typing import Iterable, Optional, Sequence, Union

from opentelemetry import metrics as api

from otelmetrics import _env, export
from otelmetrics._provider import MeterProvider
from otelmetrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader
from otelmetrics.resources import Resource, as_resource

_logger = logging.getLogger("otelmetrics")

_OTLP_OPTIONS = frozenset((
    "endpoint", "headers", "timeout", "compression", "certificate_file", "client_key_file",
    "client_certificate_file", "preferred_temporality", "preferred_aggregation",
    "max_export_batch_size", "protocol", "max_queue_bytes", "spool_dir", "max_spool_bytes",
    "max_spool_files", "insecure", "credentials", "channel_options",
))
_GRPC_ONLY_OPTIONS = ("insecure", "credentials", "channel_options")


def _exporter(name: str, otlp_options: dict):
    if name != "otlp":
        return ConsoleMetricExporter()
    protocol = _env.otlp_protocol(otlp_options.get("protocol"))   # grpc, http/protobuf or http/json
    options = {k: v for k, v in otlp_options.items() if k != "protocol"}
    if protocol == _env.GRPC:
        # Deferred: grpcio is an optional extra, imported only when OTLP/gRPC is chosen.
        from otelmetrics.export.grpc import OTLPMetricExporter as OTLPGrpcMetricExporter

        return OTLPGrpcMetricExporter(**options)
    given = [k for k in _GRPC_ONLY_OPTIONS if k in options]
    if given:
        raise ValueError("configure(%s=...): only for OTLP/gRPC; pass protocol='grpc' or set "
                         "OTEL_EXPORTER_OTLP_PROTOCOL=grpc" % given[0])
    return export.OTLPMetricExporter(protocol=protocol, **options)   # loads the OTLP stack on first use


def configure(
    *,
    resource=None,
    exporter: Union[None, str, object, Sequence] = None,
    views: Iterable = (),
    export_interval_millis: Optional[float] = None,
    export_timeout_millis: Optional[float] = None,
    set_global: bool = True,
    **overrides,
):
    """Build, register and return the MeterProvider.

    - ``resource``: ours or any object with ``.attributes`` / ``.schema_url``; merged over
      ``Resource.create()`` (SDK identity, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_SERVICE_NAME``).
    - ``exporter``: "otlp", "console", "none", a list of those, or exporter instances;
      default ``OTEL_METRICS_EXPORTER`` (otlp).
    - ``views``, ``export_interval_millis``, ``export_timeout_millis``: as the
      provider and reader take them (the latter default to ``OTEL_METRIC_EXPORT_*``).
    - any ``OTLPMetricExporter`` argument (``endpoint``, ``headers``, ``protocol``, ...)
      goes to the OTLP exporter; any other keyword goes to ``MeterProvider``.
    - ``set_global=False`` skips ``set_meter_provider`` (tests, several providers).

    With ``OTEL_SDK_DISABLED=true`` it returns the API's no-op provider and registers nothing.
    """
    if _env.sdk_disabled():
        _logger.info("OTEL_SDK_DISABLED is true; metrics are not recorded")
        return api.NoOpMeterProvider()

    otlp_options = {k: overrides.pop(k) for k in list(overrides) if k in _OTLP_OPTIONS}
    if exporter is None:
        exporters = _env.metrics_exporters()
    elif isinstance(exporter, (str, bytes)) or not isinstance(exporter, (list, tuple)):
        exporters = [exporter]
    else:
        exporters = list(exporter)

    readers = []
    for item in exporters:
        if isinstance(item, str):
            name = item.strip().lower()
            if name == "none":
                continue
            if name not in _env.EXPORTERS:
                raise ValueError("configure(exporter=%r): expected otlp, console, none or an exporter" % item)
            item = _exporter(name, otlp_options)
        readers.append(PeriodicExportingMetricReader(
            item,
            export_interval_millis=_env.export_interval_millis(export_interval_millis),
            export_timeout_millis=_env.export_timeout_millis(export_timeout_millis),
        ))

    merged = Resource.create().merge(as_resource(resource)) if resource is not None else Resource.create()
    provider = MeterProvider(resource=merged, metric_readers=readers, views=list(views), **overrides)
    if set_global:
        api.set_meter_provider(provider)
    return provider
