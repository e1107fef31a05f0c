"""MetricFilter: a reader's choice of which streams and series to collect
(the specification's MetricFilter, Development status), and how the pipeline
applies it. A filter that raises or answers nonsense lets the data through."""
from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from enum import Enum

from otelmetrics._model import replace_fields

_logger = logging.getLogger("otelmetrics")


class MetricFilterResult(Enum):
    ACCEPT = "accept"
    DROP = "drop"
    ACCEPT_PARTIAL = "accept_partial"


class AttributesFilterResult(Enum):
    ACCEPT = "accept"
    DROP = "drop"


class MetricFilter(ABC):
    """``test_metric`` once per metric stream and collection (``kind`` is the
    point kind's data class: Sum, Gauge, Histogram or ExponentialHistogram);
    ``test_attributes`` per series when it answered ACCEPT_PARTIAL. A dropped
    stream is not collected at all (an observable's callbacks do not run for it)."""

    @abstractmethod
    def test_metric(self, scope, name: str, kind: type, unit: str) -> MetricFilterResult:
        """ACCEPT, DROP or ACCEPT_PARTIAL for a whole stream."""

    def test_attributes(self, scope, name: str, kind: type, unit: str, attributes) -> AttributesFilterResult:
        return AttributesFilterResult.ACCEPT


def decide(metric_filter, scope, name, kind, unit) -> MetricFilterResult:
    """The filter's answer; a filter that fails lets the data through, with a warning."""
    try:
        result = metric_filter.test_metric(scope, name, kind, unit)
    except Exception as e:
        _logger.warning("MetricFilter.test_metric failed for %r (%s: %s); keeping it", name, type(e).__name__, e)
        return MetricFilterResult.ACCEPT
    return result if isinstance(result, MetricFilterResult) else MetricFilterResult.ACCEPT


def keep_points(metric_filter, scope, name, kind, unit, points) -> list:
    out = []
    for p in points:
        try:
            keep = metric_filter.test_attributes(scope, name, kind, unit, p.attributes) \
                is not AttributesFilterResult.DROP
        except Exception as e:
            _logger.warning("MetricFilter.test_attributes failed for %r (%s: %s); keeping the point",
                            name, type(e).__name__, e)
            keep = True
        if keep:
            out.append(p)
    return out


def filter_metrics_data(metric_filter, data):
    """Apply a filter to MetricsData made elsewhere (a MetricProducer's)."""
    if data is None:
        return None
    resource_metrics = []
    for rm in data.resource_metrics:
        scope_metrics = []
        for sm in rm.scope_metrics:
            metrics = []
            for m in sm.metrics:
                kind = type(m.data)
                verdict = decide(metric_filter, sm.scope, m.name, kind, m.unit)
                if verdict is MetricFilterResult.DROP:
                    continue
                if verdict is MetricFilterResult.ACCEPT_PARTIAL:
                    points = keep_points(metric_filter, sm.scope, m.name, kind, m.unit, m.data.data_points)
                    if not points:
                        continue
                    m = replace_fields(m, data=replace_fields(m.data, data_points=points))
                metrics.append(m)
            if metrics:
                scope_metrics.append(replace_fields(sm, metrics=metrics))
        if scope_metrics:
            resource_metrics.append(replace_fields(rm, scope_metrics=scope_metrics))
    return replace_fields(data, resource_metrics=resource_metrics) if resource_metrics else None

