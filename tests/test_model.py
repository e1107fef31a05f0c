"""The data model behaves like opentelemetry-sdk's frozen dataclasses on every
level, points included: fields, asdict, replace, equality, copy, deepcopy,
pickle and to_json(indent=...)."""
import copy
import dataclasses
import json
import pickle

import pytest
from opentelemetry.sdk.metrics import export as ref

import otelmetrics
from otelmetrics import export
from otelmetrics.export import AggregationTemporality, InMemoryMetricReader
from otelmetrics.view import ExponentialBucketHistogramAggregation, View


@pytest.fixture(scope="module")
def data():
    reader = InMemoryMetricReader()
    provider = otelmetrics.MeterProvider(
        metric_readers=[reader], shutdown_on_exit=False, exemplar_filter=otelmetrics.AlwaysOnExemplarFilter(),
        views=[View(instrument_name="e", aggregation=ExponentialBucketHistogramAggregation())])
    meter = provider.get_meter("m", "1.0")
    meter.create_counter("c").add(3, {"k": "v"})
    meter.create_gauge("g").set(1.5, {"k": "w"})
    meter.create_histogram("h").record(7.0)
    meter.create_histogram("e").record(0.25)
    meter.create_histogram("e").record(-0.0)
    return reader.get_metrics_data()


def _every_level(data):
    (rm,) = data.resource_metrics
    (sm,) = rm.scope_metrics
    out = [data, rm, sm, sm.scope]
    for m in sm.metrics:
        out += [m, m.data]
        for p in m.data.data_points:
            out.append(p)
            out += list(p.exemplars)
            if isinstance(p, export.ExponentialHistogramDataPoint):
                out += [p.positive, p.negative]
    return out


def test_every_kind_is_covered(data):
    kinds = {type(o).__name__ for o in _every_level(data)}
    assert kinds >= {"MetricsData", "ResourceMetrics", "ScopeMetrics", "InstrumentationScope", "Metric", "Sum",
                     "Gauge", "Histogram", "ExponentialHistogram", "NumberDataPoint", "HistogramDataPoint",
                     "ExponentialHistogramDataPoint", "Buckets", "Exemplar"}


def test_dataclass_protocol_copy_and_pickle_on_every_level(data):
    for obj in _every_level(data):
        name = type(obj).__name__
        assert dataclasses.is_dataclass(obj), name
        fields = [f.name for f in dataclasses.fields(obj)]
        assert fields == list(type(obj)._fields), name
        ref_cls = getattr(ref, name, None)
        if ref_cls is not None and dataclasses.is_dataclass(ref_cls):
            assert fields == [f.name for f in dataclasses.fields(ref_cls)], name
        as_dict = dataclasses.asdict(obj)
        assert list(as_dict) == fields, name
        assert dataclasses.replace(obj) == obj, name
        first = fields[0]
        changed = dataclasses.replace(obj, **{first: "x"})
        assert getattr(changed, first) == "x" and changed != obj, name
        assert copy.copy(obj) == obj and copy.deepcopy(obj) == obj, name
        assert pickle.loads(pickle.dumps(obj)) == obj, name
        for indent in (None, 2):
            assert isinstance(json.loads(obj.to_json(indent=indent)), dict), name
        with pytest.raises((AttributeError, TypeError)):
            setattr(obj, first, "y")          # frozen, as the reference's


def test_to_json_shape_matches_the_reference_field_names(data):
    doc = json.loads(data.to_json())
    metric = doc["resource_metrics"][0]["scope_metrics"][0]["metrics"][0]
    assert set(metric) == {"name", "description", "unit", "data"}
    assert set(doc["resource_metrics"][0]["resource"]) == {"attributes", "schema_url"}


def test_asdict_keeps_values(data):
    d = dataclasses.asdict(data)
    sums = [m for m in d["resource_metrics"][0]["scope_metrics"][0]["metrics"] if m["name"] == "c"]
    (point,) = sums[0]["data"]["data_points"]
    assert point["value"] == 3 and point["attributes"] == {"k": "v"}
    assert sums[0]["data"]["aggregation_temporality"] is AggregationTemporality.CUMULATIVE


def _lazy_sum():
    """A Sum whose points are still its collection's snapshot (the default exemplar filter
    takes no exemplar without a span, so nothing makes the points early)."""
    reader = InMemoryMetricReader()
    provider = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    provider.get_meter("m").create_counter("c").add(3, {"k": "v"})
    data = reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics[0].data
    assert not data._data_points.points_built
    return data


def test_json_writes_a_snapshot_s_points_without_keeping_them():
    """``to_json`` (the console's document) builds each point as it writes it and lets it
    go: the points stay a snapshot, and whoever reads them later gets them built once."""
    data = _lazy_sum()
    text, line = data.to_json(), data.to_json(None)
    assert type(data._data_points) is not list      # written, not built
    (p,) = data.data_points
    assert type(data._data_points) is list and json.loads(text)["data_points"] == [p.to_dict()]
    assert (data.to_json(), data.to_json(None)) == (text, line)    # the same text from the built points


@pytest.mark.parametrize("touch", [
    lambda d: d.data_points, lambda d: dataclasses.asdict(d)["data_points"], lambda d: d.to_dict()["data_points"],
    lambda d: dataclasses.replace(d).data_points, lambda d: pickle.loads(pickle.dumps(d)).data_points,
    lambda d: copy.deepcopy(d).data_points,
])
def test_points_from_a_snapshot_are_built_on_first_read_whatever_reads_them(touch):
    data = _lazy_sum()
    points = touch(data)
    assert type(data._data_points) is list      # built once, kept
    (p,) = data.data_points
    assert data.data_points is data.data_points
    assert (p.attributes, p.value) == ({"k": "v"}, 3)
    assert [x if isinstance(x, dict) else x.to_dict() for x in points] == [p.to_dict()]
    assert data == dataclasses.replace(data, data_points=[p]) and "value=3" in repr(data)
    with pytest.raises(AttributeError):
        data.data_points = []
