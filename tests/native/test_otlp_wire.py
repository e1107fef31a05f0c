"""The OTLP encoders (protobuf in cext/otlp_wire.pxi, JSON in otlp_json.py), checked
with the official opentelemetry-proto classes and against the reference encoder."""
import base64
import enum
import json
import math
import sys
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st
from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics import export as sdk_export
from opentelemetry.sdk.resources import Resource as SDKResource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope as SDKScope

import otelmetrics
from otelmetrics._native import Snapshot, decode_fields, encode_request
from otelmetrics import _model as ours
from otelmetrics.export.otlp_protocol import split_batches as _split
from otelmetrics.export import InMemoryMetricReader
from otelmetrics.export.otlp_json import encode_request_json
from otelmetrics.resources import Resource
from _util import assert_nothing_per_series, quiet_for_counting


def decode(data) -> ExportMetricsServiceRequest:
    return ExportMetricsServiceRequest.FromString(encode_request(data))


def canonical(msg) -> bytes:
    # Deterministic bytes compare NaN payloads bit for bit, where message equality cannot.
    return msg.SerializeToString(deterministic=True)


def json_to_proto(body: bytes) -> ExportMetricsServiceRequest:
    """Parse OTLP/JSON with the official mapping; OTLP's hex ids become base64 first."""
    doc = json.loads(body)

    def fix(node):
        if isinstance(node, dict):
            for key in ("traceId", "spanId"):
                if key in node:
                    node[key] = base64.b64encode(bytes.fromhex(node[key])).decode()
            for v in node.values():
                fix(v)
        elif isinstance(node, list):
            for v in node:
                fix(v)

    fix(doc)
    return json_format.ParseDict(doc, ExportMetricsServiceRequest())


ATTRS = {"s": "välue", "b": True, "i": -(2 ** 63), "f": 0.25, "sa": ["x", "y"], "ba": [True, False],
         "ia": [1, 2 ** 62], "fa": [1.5, -0.0], "long": "z" * 300, "empty": ""}


def sdk_data(points_per_metric=3):
    """Every metric and point kind, through the reference's data classes."""
    ex = [Exemplar({"fa": 1}, 2.5, 11, span_id=0xDEADBEEF, trace_id=2 ** 127 + 5),
          Exemplar({}, 7, 12, span_id=None, trace_id=None)]
    n = range(points_per_metric)
    metrics = [
        sdk_export.Metric("sum", "a sum", "By", sdk_export.Sum(
            [sdk_export.NumberDataPoint(dict(ATTRS, n=i), 100, 200 + i, i * 3, ex) for i in n],
            sdk_export.AggregationTemporality.CUMULATIVE, True)),
        sdk_export.Metric("updown", "", "", sdk_export.Sum(
            [sdk_export.NumberDataPoint({"n": i}, 100, 200, -1.5 * i) for i in n],
            sdk_export.AggregationTemporality.DELTA, False)),
        sdk_export.Metric("gauge", "g", "1", sdk_export.Gauge(
            [sdk_export.NumberDataPoint({"n": i}, 0, 300, float(i) + 0.5, ex[:1]) for i in n])),
        sdk_export.Metric("hist", "h", "ms", sdk_export.Histogram(
            [sdk_export.HistogramDataPoint({"n": i}, 100, 200, 6, 12.5, [1, 2, 3, 0], [0.0, 5.0, 10.0],
                                           0.0, 9.5, ex) for i in n],
            sdk_export.AggregationTemporality.DELTA)),
        sdk_export.Metric("expo", "e", "s", sdk_export.ExponentialHistogram(
            [sdk_export.ExponentialHistogramDataPoint(
                {"n": i}, 100, 200, 9, -3.25, -2, 2, sdk_export.Buckets(-3, [1, 0, 300]),
                sdk_export.Buckets(5, [2, 1]), 0, -4.0, 1000.0, ex) for i in n]
             + [sdk_export.ExponentialHistogramDataPoint(
                 {}, 100, 200, 0, 0.0, 20, 0, sdk_export.Buckets(0, []), sdk_export.Buckets(0, []),
                 0, 0.0, 0.0)],
            sdk_export.AggregationTemporality.CUMULATIVE)),
    ]
    scope = SDKScope("lib", "1.2", "https://schema/scope", {"scope.attr": 1})
    resource = SDKResource({"service.name": "svc", "r": [1, 2]}, "https://schema/resource")
    return sdk_export.MetricsData([sdk_export.ResourceMetrics(
        resource, [sdk_export.ScopeMetrics(scope, metrics, "https://schema/scope")], "https://schema/resource")])


def test_sdk_data_encodes_exactly_as_the_reference():
    data = sdk_data()
    assert decode(data) == encode_metrics(data)


def test_our_data_classes_encode_every_field():
    ex = ours.Exemplar({"k": "v"}, 4, 55, span_id=b"\x01" * 8, trace_id=b"\x02" * 16)
    data = ours.MetricsData([ours.ResourceMetrics(SDKResource({"a": 1}), [ours.ScopeMetrics(
        ours.InstrumentationScope("s", "v", "https://scope", {"x": "y"}), [
            ours.Metric("c", "d", "u", ours.Sum([ours.NumberDataPoint({"a": 1}, 1, 2, 2 ** 64, [ex])],
                                                ours.AggregationTemporality.DELTA, True)),
            ours.Metric("h", None, None, ours.Histogram([ours.HistogramDataPoint(
                {}, 1, 2, 3, 4.5, [1, 2], [1.0], 0.5, 3.0, [ex])], ours.AggregationTemporality.CUMULATIVE)),
            ours.Metric("e", "", "", ours.ExponentialHistogram([ours.ExponentialHistogramDataPoint(
                {"z": 0.5}, 1, 2, 10, -1.0, 3, 4, ours.Buckets(-1, [5]), ours.Buckets(2, [0, 1]),
                1, -2.0, 2.0)], ours.AggregationTemporality.DELTA)),
        ])], "")])
    req = decode(data)
    rm = req.resource_metrics[0]
    assert [kv.key for kv in rm.resource.attributes] == ["a"]
    sm = rm.scope_metrics[0]
    assert (sm.scope.name, sm.scope.version, sm.schema_url) == ("s", "v", "https://scope")
    assert sm.scope.attributes[0].value.string_value == "y"
    s, h, e = sm.metrics
    assert (s.name, s.description, s.unit, s.sum.is_monotonic, s.sum.aggregation_temporality) == ("c", "d", "u", True, 1)
    p = s.sum.data_points[0]
    assert p.WhichOneof("value") == "as_double" and p.as_double == 2.0 ** 64  # beyond int64
    assert (p.start_time_unix_nano, p.time_unix_nano) == (1, 2)
    x = p.exemplars[0]
    assert (x.as_int, x.time_unix_nano, x.span_id, x.trace_id) == (4, 55, b"\x01" * 8, b"\x02" * 16)
    assert x.filtered_attributes[0].key == "k"
    hp = h.histogram.data_points[0]
    assert (hp.count, hp.sum, list(hp.bucket_counts), list(hp.explicit_bounds), hp.min, hp.max) == (
        3, 4.5, [1, 2], [1.0], 0.5, 3.0)
    assert h.histogram.aggregation_temporality == 2
    ep = e.exponential_histogram.data_points[0]
    assert (ep.count, ep.sum, ep.scale, ep.zero_count, ep.flags, ep.min, ep.max) == (10, -1.0, 3, 4, 1, -2.0, 2.0)
    assert (ep.positive.offset, list(ep.positive.bucket_counts)) == (-1, [5])
    assert (ep.negative.offset, list(ep.negative.bucket_counts)) == (2, [0, 1])
    assert ep.attributes[0].value.double_value == 0.5


def test_full_range_of_unsigned_fields():
    top = 2 ** 64 - 1
    data = sdk_export.MetricsData([sdk_export.ResourceMetrics(SDKResource({}), [sdk_export.ScopeMetrics(
        SDKScope("s"), [
            sdk_export.Metric("s", "", "", sdk_export.Sum([sdk_export.NumberDataPoint({}, top, top, -(2 ** 63))],
                                                          sdk_export.AggregationTemporality.DELTA, True)),
            sdk_export.Metric("h", "", "", sdk_export.Histogram([sdk_export.HistogramDataPoint(
                {}, top, top, top, 1.0, [top, 0], [1.0], 0.0, 1.0, [])], sdk_export.AggregationTemporality.DELTA)),
            sdk_export.Metric("e", "", "", sdk_export.ExponentialHistogram([sdk_export.ExponentialHistogramDataPoint(
                {}, top, top, top, 1.0, -(2 ** 31), top, sdk_export.Buckets(2 ** 31 - 1, [top]),
                sdk_export.Buckets(-(2 ** 31), [1]), 2 ** 32 - 1, 0.0, 1.0, [])],
                sdk_export.AggregationTemporality.DELTA)),
        ], "")], "")])
    failed = []
    req = ExportMetricsServiceRequest.FromString(encode_request(data, failed))
    assert failed == [] and req == encode_metrics(data)


def test_long_messages_get_multi_byte_lengths():
    # Lengths of 128+ and 16384+ bytes, at both the patched and the deferred levels.
    big = "x" * 20000
    pts = [ours.NumberDataPoint({"k": big if i == 0 else "v%d" % i, "pad": "p" * 150}, 1, 2, i)
           for i in range(300)]
    data = ours.MetricsData([ours.ResourceMetrics(SDKResource({"big": big}), [ours.ScopeMetrics(
        ours.InstrumentationScope("s"), [ours.Metric("m" * 200, big, "", ours.Gauge(pts))])])])
    req = decode(data)
    m = req.resource_metrics[0].scope_metrics[0].metrics[0]
    assert m.name == "m" * 200 and m.description == big
    assert [p.as_int for p in m.gauge.data_points] == list(range(300))
    assert m.gauge.data_points[0].attributes[0].value.string_value == big


def test_bad_attribute_values_are_dropped_alone_and_reported():
    dropped, failed = [], []
    pt = ours.NumberDataPoint({"ok": 1, "obj": object(), "huge": 2 ** 70, "nested_bad": [object()],
                               "last": "kept"}, 1, 2, 5)
    data = ours.MetricsData([ours.ResourceMetrics(SDKResource({}), [ours.ScopeMetrics(
        ours.InstrumentationScope("s"), [ours.Metric("m", "", "", ours.Gauge([pt]))])])])
    req = ExportMetricsServiceRequest.FromString(encode_request(data, failed, dropped))
    p = req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0]
    assert [kv.key for kv in p.attributes] == ["ok", "last"]
    assert sorted(k for k, _ in dropped) == ["huge", "nested_bad", "obj"]
    assert failed == []


def test_a_malformed_metric_is_left_out_and_the_others_sent():
    class Weird:
        data_points = []

    good = ours.Metric("good", "", "", ours.Gauge([ours.NumberDataPoint({}, 0, 1, 1)]))
    bad_point = ours.Metric("badpoint", "", "", ours.Sum([ours.NumberDataPoint({}, -5, 1, 1)],
                                                         ours.AggregationTemporality.DELTA, True))
    data = ours.MetricsData([ours.ResourceMetrics(SDKResource({}), [ours.ScopeMetrics(
        ours.InstrumentationScope("s"), [bad_point, ours.Metric("weird", "", "", Weird()), good])])])
    failed = []
    req = ExportMetricsServiceRequest.FromString(encode_request(data, failed))
    assert [m.name for m in req.resource_metrics[0].scope_metrics[0].metrics] == ["good"]
    assert [name for name, _ in failed] == ["badpoint", "weird"]


def test_decode_fields_reads_every_wire_type_and_rejects_garbage():
    from google.rpc import status_pb2

    msg = status_pb2.Status(code=3, message="bad metric ü")
    assert decode_fields(msg.SerializeToString()) == [(1, 0, 3), (2, 2, "bad metric ü".encode())]
    assert decode_fields(b"\x09" + (7).to_bytes(8, "little") + b"\x15" + (9).to_bytes(4, "little")) == [
        (1, 1, 7), (2, 5, 9)]
    for garbage in (b"\x12\x05ab", b"\x08", b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", b"\x0b"):
        with pytest.raises(ValueError):
            decode_fields(garbage)


# ---------------------------------------------------------------- property: any data, same as the reference

int64 = st.integers(-(2 ** 63), 2 ** 63 - 1)
# NaN as the one JSON can carry: its payload bits do not survive "NaN".
doubles = st.one_of(st.floats(allow_nan=False), st.just(math.nan))
scalar = st.one_of(st.text(max_size=20), st.booleans(), int64, doubles)
attr_value = st.one_of(scalar, st.lists(st.text(max_size=5), max_size=3), st.lists(st.booleans(), max_size=3),
                       st.lists(int64, max_size=3), st.lists(doubles, max_size=3))
attrs = st.dictionaries(st.text(max_size=10), attr_value, max_size=4)
times = st.integers(0, 2 ** 64 - 1)
u64 = st.integers(0, 2 ** 64 - 1)
exemplar = st.builds(Exemplar, attrs, st.one_of(int64, doubles), times,
                     st.integers(0, 2 ** 64 - 1), st.integers(0, 2 ** 128 - 1))
number_point = st.builds(sdk_export.NumberDataPoint, attrs, times, times, st.one_of(int64, doubles),
                         st.lists(exemplar, max_size=2))
hist_point = st.builds(sdk_export.HistogramDataPoint, attrs, times, times, u64, doubles,
                       st.lists(u64, max_size=5), st.lists(doubles, max_size=4), doubles, doubles,
                       st.lists(exemplar, max_size=2))
buckets = st.builds(sdk_export.Buckets, st.integers(-(2 ** 31), 2 ** 31 - 1), st.lists(u64, min_size=1, max_size=5))
expo_point = st.builds(sdk_export.ExponentialHistogramDataPoint, attrs, times, times, u64, doubles,
                       st.integers(-10, 20), u64, buckets, buckets, st.integers(0, 2 ** 32 - 1), doubles, doubles,
                       st.lists(exemplar, max_size=2))
temporality = st.sampled_from([sdk_export.AggregationTemporality.DELTA, sdk_export.AggregationTemporality.CUMULATIVE])
metric_data = st.one_of(
    st.builds(sdk_export.Sum, st.lists(number_point, min_size=1, max_size=3), temporality, st.booleans()),
    st.builds(sdk_export.Gauge, st.lists(number_point, min_size=1, max_size=3)),
    st.builds(sdk_export.Histogram, st.lists(hist_point, min_size=1, max_size=3), temporality),
    st.builds(sdk_export.ExponentialHistogram, st.lists(expo_point, min_size=1, max_size=3), temporality),
)
metrics = st.lists(st.builds(sdk_export.Metric, st.text(max_size=10), st.text(max_size=10), st.text(max_size=5),
                             metric_data), min_size=1, max_size=4)


@given(metrics, attrs)
def test_any_data_decodes_to_what_the_reference_encodes(ms, resource_attrs):
    data = sdk_export.MetricsData([sdk_export.ResourceMetrics(SDKResource(resource_attrs), [
        sdk_export.ScopeMetrics(SDKScope("scope", "1"), ms, "")], "")])
    expected = canonical(encode_metrics(data))
    assert canonical(decode(data)) == expected
    assert canonical(json_to_proto(encode_request_json(data))) == expected


# ---------------------------------------------------------------- JSON and batching

def test_json_follows_the_otlp_mapping():
    data = sdk_data(1)
    doc = json.loads(encode_request_json(data))
    point = doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["dataPoints"][0]
    assert point["asInt"] == "0" and point["startTimeUnixNano"] == "100"
    assert point["exemplars"][0]["traceId"] == (2 ** 127 + 5).to_bytes(16, "big").hex()
    assert point["exemplars"][0]["spanId"] == "00000000deadbeef"
    assert doc["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["aggregationTemporality"] == 2
    assert canonical(json_to_proto(encode_request_json(data))) == canonical(encode_metrics(data))


def test_json_non_finite_doubles_are_strings():
    data = ours.MetricsData([ours.ResourceMetrics(SDKResource({}), [ours.ScopeMetrics(
        ours.InstrumentationScope("s"), [ours.Metric("m", "", "", ours.Gauge(
            [ours.NumberDataPoint({"f": -math.inf}, 0, 1, math.nan)]))])])])
    body = encode_request_json(data)
    assert b'"asDouble":"NaN"' in body and b'"doubleValue":"-Infinity"' in body
    assert math.isnan(json_to_proto(body).resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_double)


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 100])
def test_split_keeps_every_point_once_in_order(limit):
    data = sdk_data(4)
    batches = list(_split(data, limit))
    seen = []
    for batch in batches:
        req = decode(batch)
        n = 0
        for rm in req.resource_metrics:
            assert rm.schema_url == "https://schema/resource"
            for sm in rm.scope_metrics:
                assert sm.scope.name == "lib"
                for m in sm.metrics:
                    pts = getattr(m, m.WhichOneof("data")).data_points
                    n += len(pts)
                    seen += [(m.name, canonical(p)) for p in pts]
        assert 0 < n <= limit
    whole = decode(data)
    expected = [(m.name, canonical(p)) for m in whole.resource_metrics[0].scope_metrics[0].metrics
                for p in getattr(m, m.WhichOneof("data")).data_points]
    assert seen == expected
    assert len(batches) == math.ceil(len(expected) / limit)


# ---------------------------------------------------------------- straight from a collection's snapshot

def _provider(delta, exemplar_filter=None, limit=None):
    import otelmetrics
    from otelmetrics.export import InMemoryMetricReader
    from otelmetrics.view import ExplicitBucketHistogramAggregation, ExponentialBucketHistogramAggregation, View

    temporality = ours.AggregationTemporality.DELTA if delta else ours.AggregationTemporality.CUMULATIVE
    kinds = (otelmetrics.Counter, otelmetrics.UpDownCounter, otelmetrics.Histogram, otelmetrics.Gauge,
             otelmetrics.ObservableCounter, otelmetrics.ObservableUpDownCounter, otelmetrics.ObservableGauge)
    reader = InMemoryMetricReader(preferred_temporality={k: temporality for k in kinds})
    if limit is not None:
        reader._cardinality_limit_for = lambda kind: limit
    views = [View(instrument_name="expo", aggregation=ExponentialBucketHistogramAggregation()),
             View(instrument_name="no_min_max", aggregation=ExplicitBucketHistogramAggregation(
                 boundaries=(0.0, 10.0), record_min_max=False)),
             View(instrument_name="one_bucket", aggregation=ExplicitBucketHistogramAggregation(boundaries=())),
             View(instrument_name="hist"), View(instrument_name="hist", name="hist.device",
                                                attribute_keys={"device"})]
    kwargs = {"exemplar_filter": exemplar_filter} if exemplar_filter is not None else {}
    mp = otelmetrics.MeterProvider(metric_readers=[reader], views=views, shutdown_on_exit=False,
                                   resource=SDKResource({"service.name": "s"}), **kwargs)
    return mp, reader


def _record_everything(mp, round_):
    meter = mp.get_meter("m", "1.0")
    if round_ == 0:
        mp._everything = {n: getattr(meter, "create_" + kind)(n) for n, kind in (
            ("ints", "counter"), ("floats", "counter"), ("big", "counter"), ("updown", "up_down_counter"),
            ("gauge", "gauge"), ("hist", "histogram"), ("no_min_max", "histogram"),
            ("one_bucket", "histogram"), ("expo", "histogram"))}

        def observe(options):
            from opentelemetry.metrics import Observation
            return [Observation(5 * (mp._round + 1), {"cpu": 0}), Observation(2.5 * mp._round, {"cpu": 1})]
        for kind in ("observable_counter", "observable_up_down_counter", "observable_gauge"):
            getattr(meter, "create_" + kind)("obs_" + kind, callbacks=[observe])
    mp._round = round_
    i = mp._everything
    for d in range(6):
        a = {"device": "d%d" % d, "n": d - 3, "f": d / 4, "ok": d % 2 == 0, "tags": ("x", "y"), "s": "välue",
             "": "", "long": "z" * (100 + 10 * d), "i64": -(2 ** 63)}
        i["ints"].add(d + round_, a)
        i["floats"].add(d * 0.5 + 0.25, a)
        i["big"].add(2 ** 62, a)
        i["updown"].add(-d, a)
        i["gauge"].set(d - round_ * 0.5, a)
        for v in (d, d * 7, 100 + d):
            i["hist"].record(v, a)
            i["no_min_max"].record(v + 0.5, a)
            i["one_bucket"].record(v, a)
            i["expo"].record(v + 0.125, a)
    i["hist"].record(1.5, {})


def _with_points(data):
    """``data`` with every metric's points built (and held as a list)."""
    r = ours.replace_fields
    return r(data, resource_metrics=[r(rm, scope_metrics=[r(sm, metrics=[
        r(m, data=r(m.data, data_points=list(m.data.data_points))) for m in sm.metrics])
        for sm in rm.scope_metrics]) for rm in data.resource_metrics])


def _snapshot_backed(data):
    return {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
            if type(m.data._data_points) is Snapshot and not m.data._data_points.points_built}


# What _record_everything's collections leave on the snapshot path (points not built):
# the synchronous number and explicit-histogram metrics unless exemplars were taken, and
# the observable ones. Exponential histograms are built at once (their records are cells
# in use).
LAZY = {"ints", "floats", "big", "updown", "gauge", "hist", "hist.device", "no_min_max", "one_bucket"}
OBSERVED = {"obs_observable_counter", "obs_observable_up_down_counter", "obs_observable_gauge"}


def collections_of_everything(delta, exemplars, limit):
    """Three collections of every instrument (``_record_everything``), each checked to be on
    the snapshot path where it should: the data the byte writers' equality tests share."""
    import otelmetrics

    mp, reader = _provider(delta, otelmetrics.AlwaysOnExemplarFilter() if exemplars else None, limit)
    try:
        for round_ in range(3):
            _record_everything(mp, round_)
            data = reader.get_metrics_data()
            assert _snapshot_backed(data) == OBSERVED | (set() if exemplars else LAZY)
            yield data
    finally:
        mp.shutdown()


@pytest.mark.parametrize("delta", [False, True])
@pytest.mark.parametrize("exemplars", [False, True])
@pytest.mark.parametrize("limit", [None, 4])
def test_a_collection_encodes_from_its_snapshot_as_from_its_points(delta, exemplars, limit, bucket_width):
    for data in collections_of_everything(delta, exemplars, limit):
        lazy = _snapshot_backed(data)
        failed, dropped, dropped_points = [], [], []
        body = encode_request(data, failed, dropped)
        assert _snapshot_backed(data) == lazy            # encoding built no points
        expected = encode_request(_with_points(data), [], dropped_points)
        assert body == expected
        assert failed == [] and dropped == dropped_points == []
        assert canonical(ExportMetricsServiceRequest.FromString(body)) == canonical(
            encode_metrics(_to_sdk(_with_points(data))))
        if limit:
            names = {kv.key for m in ExportMetricsServiceRequest.FromString(body).resource_metrics[0]
                     .scope_metrics[0].metrics for p in getattr(m, m.WhichOneof("data")).data_points
                     for kv in p.attributes}
            assert "otel.metric.overflow" in names


def _to_sdk(data):
    from otelmetrics._reference import to_reference
    return to_reference(data)


def test_a_snapshot_held_by_an_exporter_outlives_later_collections():
    """Delta batches are never lost: a collection still waiting (outage queue, backlog)
    keeps its data whatever later collections do with the cells and their buffers."""
    mp, reader = _provider(delta=True)
    _record_everything(mp, 0)
    held = reader.get_metrics_data()
    assert _snapshot_backed(held)
    expected = encode_request(held)
    for round_ in range(1, 4):
        _record_everything(mp, round_)
        encode_request(reader.get_metrics_data())   # its buffer goes back to the stream, for the next
    assert _snapshot_backed(held)
    assert encode_request(held) == expected
    assert encode_request(_with_points(held)) == expected
    assert encode_request(held) == expected
    mp.shutdown()


def _collect_encode_blocks(series, delta, encode=encode_request, parse=ExportMetricsServiceRequest.FromString):
    """Blocks still allocated after one collect + ``encode`` (the body alive), in steady
    state; ``parse`` reads the body back."""
    mp, reader = _provider(delta)
    meter = mp.get_meter("m")
    counter, hist = meter.create_counter("c"), meter.create_histogram("h")
    attrs = [{"device": "d%d" % i, "site": "s%d" % (i % 7)} for i in range(series)]

    def cycle():
        for a in attrs:
            counter.add(1, a)
            hist.record(2.5, a)
        return encode(reader.get_metrics_data())

    cycle()
    cycle()
    with quiet_for_counting():
        for a in attrs:
            counter.add(1, a)
            hist.record(2.5, a)
        before = sys.getallocatedblocks()
        body = encode(reader.get_metrics_data())
        blocks = sys.getallocatedblocks() - before
        tracemalloc.start()
        cycle()
        held = tracemalloc.get_traced_memory()[0]
        for _ in range(5):
            cycle()
        grown = tracemalloc.get_traced_memory()[0] - held
        tracemalloc.stop()
    assert len(parse(body).resource_metrics[0].scope_metrics[0].metrics[1].histogram.data_points) == series
    mp.shutdown()
    return blocks, grown


@pytest.mark.parametrize("delta", [False, True])
def test_collect_and_encode_allocate_nothing_per_series(delta):
    """No Python object per series on the export path, and nothing kept from one
    collection to the next (each stream keeps one buffer for its next snapshot)."""
    small, small_grown = _collect_encode_blocks(200, delta)
    large, large_grown = _collect_encode_blocks(2000, delta)
    assert_nothing_per_series(small, large)
    assert small_grown < 4096 and large_grown < 4096


def test_histogram_int_extremes_encode_exactly_from_the_snapshot():
    """Int min and max past 2**53 and at int64's end, encoded from the snapshot's records
    (no points built) as the nearest doubles, in both encodings: never wrapped negative."""
    mp, reader = _provider(False)
    h = mp.get_meter("m").create_histogram("h")
    for v in (2 ** 63 - 1, 2 ** 53 + 1):
        h.record(v)
    data = reader.get_metrics_data()
    assert _snapshot_backed(data) == {"h"}
    for request in (ExportMetricsServiceRequest.FromString(encode_request(data)),
                    json_to_proto(encode_request_json(data))):
        (p,) = request.resource_metrics[0].scope_metrics[0].metrics[0].histogram.data_points
        assert (p.min, p.max, p.sum) == (float(2 ** 53 + 1), float(2 ** 63 - 1), float(2 ** 63 - 1 + 2 ** 53 + 1))
    mp.shutdown()


def test_str_subclass_keys_and_values_are_sent_as_their_text():
    """A (str, Enum) member in a resource, scope or point, as a key, a value or in a list, is
    sent as its text ("prod"), not its str() ("Env.PROD"), in both encodings, as the reference."""
    class Env(str, enum.Enum):
        PROD = "prod"

    class Key(str, enum.Enum):
        A = "a.key"

    reader = InMemoryMetricReader()
    mp = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False,
                                   resource=Resource({Key.A: Env.PROD, "list": [Env.PROD]}))
    mp.get_meter("m", attributes={Key.A: Env.PROD}).create_counter("c").add(1, {Key.A: Env.PROD})
    data = reader.get_metrics_data()
    for request in (ExportMetricsServiceRequest.FromString(encode_request(data)),
                    json_to_proto(encode_request_json(data))):
        rm = request.resource_metrics[0]
        sm = rm.scope_metrics[0]
        point = sm.metrics[0].sum.data_points[0]
        assert {kv.key: json_format.MessageToDict(kv.value) for kv in rm.resource.attributes} == {
            "a.key": {"stringValue": "prod"}, "list": {"arrayValue": {"values": [{"stringValue": "prod"}]}}}
        for attributes in (sm.scope.attributes, point.attributes):
            assert [(kv.key, kv.value.string_value) for kv in attributes] == [("a.key", "prod")]
    mp.shutdown()
