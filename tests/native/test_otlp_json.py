"""OTLP/JSON data points straight from a collection's snapshot (cext/otlp_json.pxi):
the same bytes as the points give through otelmetrics/export/otlp_json.py, whatever
the instruments, temporalities, attributes and collections, with no Python object
per series."""
import logging
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

import otelmetrics
from otelmetrics._native import Snapshot, encode_request, json_data_points
from otelmetrics.export.otlp_json import encode_request_json
from native.test_otlp_wire import (
    _collect_encode_blocks,
    _provider,
    _record_everything,
    _snapshot_backed,
    _with_points,
    canonical,
    collections_of_everything,
    json_to_proto,
)
from _util import assert_nothing_per_series


def _same_from_snapshot_and_points(data):
    """The JSON from ``data``'s snapshots (which it builds no points for) and from its
    points, byte for byte, with the same reports; and what the protobuf encoder says."""
    lazy = _snapshot_backed(data)
    failed, dropped = [], []
    body = encode_request_json(data, failed, dropped)
    assert _snapshot_backed(data) == lazy            # encoding built no points
    points_failed, points_dropped = [], []
    assert body == encode_request_json(_with_points(data), points_failed, points_dropped)
    assert (failed, dropped) == (points_failed, points_dropped)
    # The official JSON mapping reads what the protobuf encoder writes (NaN's sign and
    # payload bits, which JSON's "NaN" does not carry, made the same on both sides).
    pb = ExportMetricsServiceRequest.FromString(encode_request(data))
    assert canonical(json_to_proto(body)) == canonical(json_format.ParseDict(
        json_format.MessageToDict(pb), ExportMetricsServiceRequest()))
    return body, lazy


@pytest.mark.parametrize("delta", [False, True])
@pytest.mark.parametrize("exemplars", [False, True])
@pytest.mark.parametrize("limit", [None, 4])
def test_a_collection_encodes_from_its_snapshot_as_from_its_points(delta, exemplars, limit, bucket_width):
    for data in collections_of_everything(delta, exemplars, limit):
        body, _ = _same_from_snapshot_and_points(data)
        if limit:
            assert b'"key":"otel.metric.overflow","value":{"boolValue":true}' in body


ODD_STRINGS = ['"quoted"', "back\\slash", "ctl\x00\x01\x1f\x7f\n\r\t\b\f", "välue", "日本語", "\U0001F600",
               "lone \ud800 surrogate", "x\udfff", "\u2028</script>", ""]
ODD_VALUES = ODD_STRINGS + [
    0, -1, 2 ** 63 - 1, -(2 ** 63), 2 ** 63, -(2 ** 63) - 1, 2 ** 100, 0.0, -0.0, 0.1, 1e16, 1e-7, 5e-324,
    1.7976931348623157e308, math.nan, math.inf, -math.inf, True, False, 2.0 ** 53 - 1, 2.0 ** 53, -(2.0 ** 53) - 2,
    9999999999999998.0, 123456789012.0, -7.0,
    ("a", '"', "ü"), [1, -(2 ** 63), None], (0.5, math.nan, -math.inf), [True, None, False], (), [],
]


def _record_odd(mp, attribute_sets):
    """Every synchronous number and histogram instrument, ints and floats, with each set."""
    meter = mp.get_meter("odd")
    instruments = [(meter.create_counter("c").add, (1, 2.5, 2 ** 62)),
                   (meter.create_up_down_counter("u").add, (-3, 0.5, -(2 ** 63) + 1)),
                   (meter.create_histogram("h").record, (7, 0, 1e300)),
                   (meter.create_histogram("hf").record, (0.3, 2.5)),
                   (meter.create_gauge("g").set, (2 ** 62, -1.5, 1e-7))]
    for attrs in attribute_sets:
        for record, values in instruments:
            for v in values:
                record(v, attrs)


@pytest.mark.parametrize("delta", [False, True])
def test_odd_attributes_encode_from_the_snapshot_as_from_the_points(delta):
    logging.disable(logging.WARNING)      # sanitised attribute sets are reported: not the point here
    try:
        mp, reader = _provider(delta)
        sets = [{"k%d" % i: v} for i, v in enumerate(ODD_VALUES)]
        sets += [{s or "empty": s for s in ODD_STRINGS}, dict(zip(ODD_STRINGS[:-1], ODD_VALUES[10:])), {}]
        for round_ in range(2):
            _record_odd(mp, sets)
            body, lazy = _same_from_snapshot_and_points(reader.get_metrics_data())
            assert lazy == {"c", "u", "h", "hf", "g"}
            for text in ('"Infinity"', '"-Infinity"', '"NaN"', '"9223372036854775807"', '"-9223372036854775808"',
                         '"9223372036854775808"', "5e-324", "1e+16", "-0.0", '\\"quoted\\"', "back\\\\slash",
                         "\\u0000\\u0001\\u001f\x7f\\n\\r\\t\\b\\f", "日本語", "lone ? surrogate"):
                assert text.encode() in body, text
        mp.shutdown()
    finally:
        logging.disable(logging.NOTSET)


scalars = st.one_of(st.text(max_size=8), st.booleans(), st.integers(-(2 ** 64), 2 ** 64),
                    st.floats(allow_nan=True, allow_infinity=True))
attribute_values = st.one_of(
    scalars, *(st.lists(st.one_of(s, st.none()), max_size=3).map(tuple)
               for s in (st.text(max_size=4), st.booleans(), st.integers(-(2 ** 63), 2 ** 63 - 1), st.floats())))
attribute_sets = st.lists(st.dictionaries(st.text(min_size=1, max_size=6), attribute_values, max_size=4),
                          min_size=1, max_size=5)


@given(st.lists(st.one_of(st.integers(-(2 ** 63), 2 ** 63 - 1), st.floats(allow_nan=False, allow_infinity=False)),
                min_size=1, max_size=8), st.booleans())
def test_any_numbers_encode_from_the_snapshot_as_from_the_points(values, delta):
    """Values, sums (an int64 sum overflowing to a double, a double one to infinity),
    minimums and maximums: ints as decimal strings, doubles as repr writes them."""
    mp, reader = _provider(delta)
    meter = mp.get_meter("numbers")
    gauge, updown, hist = meter.create_gauge("g"), meter.create_up_down_counter("u"), meter.create_histogram("h")
    for i, v in enumerate(values):
        attrs = {"i": i % 3}
        gauge.set(v, attrs)
        updown.add(v, attrs)
        if v >= 0:
            hist.record(v, attrs)
    assert _same_from_snapshot_and_points(reader.get_metrics_data())[1] >= {"g", "u"}
    mp.shutdown()


@given(attribute_sets, st.booleans())
def test_any_attributes_encode_from_the_snapshot_as_from_the_points(sets, delta):
    logging.disable(logging.WARNING)
    try:
        mp, reader = _provider(delta)
        _record_odd(mp, sets)
        assert _same_from_snapshot_and_points(reader.get_metrics_data())[1] == {"c", "u", "h", "hf", "g"}
        mp.shutdown()
    finally:
        logging.disable(logging.NOTSET)


def test_the_snapshot_path_is_taken_only_for_unbuilt_snapshots():
    mp, reader = _provider(False)
    _record_everything(mp, 0)
    metrics = {m.name: m for m in reader.get_metrics_data().resource_metrics[0].scope_metrics[0].metrics}
    counter = metrics["ints"].data
    assert type(counter._data_points) is Snapshot
    array = json_data_points(counter)
    assert array.startswith(b'[{"attributes":[') and array.endswith(b"}]")
    assert not counter._data_points.points_built                # written from the records
    assert json_data_points(metrics["expo"].data) is None       # built at collection: the points
    points = counter.data_points
    assert points and json_data_points(counter) is None         # read: the points are the data
    mp.shutdown()


@pytest.mark.parametrize("delta", [False, True])
def test_collect_and_json_encode_allocate_nothing_per_series(delta):
    """As the protobuf encoder (test_otlp_wire): the blocks a collection and its JSON
    encoding leave allocated do not grow with the number of series."""
    small, small_grown = _collect_encode_blocks(200, delta, encode_request_json, json_to_proto)
    large, large_grown = _collect_encode_blocks(2000, delta, encode_request_json, json_to_proto)
    assert_nothing_per_series(small, large)
    assert small_grown < 4096 and large_grown < 4096
