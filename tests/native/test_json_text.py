"""``to_json`` (cext/json_text.pxi): byte for byte the text of
``json.dumps(to_plain(obj), indent=indent)``, which is what opentelemetry-sdk's
``to_json`` writes, for any value a record can hold and a few it cannot, every
indent, and json's errors; in one pass, without importing json. ``to_json(..., write=)``:
the same text, handed out in pieces of about ``JSON_PIECE`` characters."""
import collections
import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import otelmetrics
from otelmetrics._native import JSON_PIECE, to_json, to_plain
from otelmetrics.export import AggregationTemporality, InMemoryMetricReader

from _util import NEUTRAL_CWD

INDENTS = [4, None, 0, 2, -1, True, "\t", "ab", "\u2003"]


class Text(str):
    pass


class Number(float):
    pass


class Record:
    """Anything with to_dict() is written as its dict, as to_plain does."""

    def __init__(self, d):
        self.d = d

    def to_dict(self):
        return self.d


# Every character json escapes or passes: controls, DEL, quotes, backslashes, Latin-1,
# the BMP, lone surrogates and the astral planes (pairs).
text = st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=()), max_size=12)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), text, st.binary(max_size=6),
    st.sampled_from([AggregationTemporality.DELTA, Text("t\u00e9"), Number(1.5), 2**63, -2**63 - 1]))
keys = st.one_of(text, st.integers(), st.floats(allow_nan=False), st.booleans(), st.none())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(keys, inner, max_size=4),
        st.dictionaries(text, inner, max_size=3).map(collections.OrderedDict),
        st.dictionaries(text, inner, max_size=3).map(Record)),
    max_leaves=25)


@settings(max_examples=400, deadline=None)
@given(values, st.sampled_from(INDENTS))
def test_text_is_json_dumps_of_the_plain_form(value, indent):
    assert to_json(value, indent) == json.dumps(to_plain(value), indent=indent)


def test_a_collection_in_every_indent():
    reader = InMemoryMetricReader()
    meter = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False).get_meter("m", "1")
    for i in range(300):
        meter.create_counter("c").add(i, {"k": "v%d" % i, "q": 'say "\\x"\n\u00e9\U0001f600', "n": i, "f": i / 7})
        meter.create_histogram("h").record(i / 3, {"k": "v%d" % i})
    meter.create_gauge("g").set(float("nan"))
    for indent in INDENTS:
        data = reader.get_metrics_data()
        text = data.to_json(indent=indent)          # the points written from the records
        assert text == json.dumps(to_plain(data), indent=indent)   # to_plain builds them
        assert data.to_json(indent=indent) == text  # and from the built points
    assert len(text) > 100_000


def test_written_in_pieces_that_make_the_text():
    reader = InMemoryMetricReader()
    meter = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False).get_meter("m", "1")
    for i in range(2000):
        meter.create_counter("c").add(i, {"k": "v%d" % i, "e": "\u00e9\U0001f600"})
    data = reader.get_metrics_data()
    for indent in INDENTS:
        pieces = []
        to_json(data, indent, pieces.append)
        assert "".join(pieces) == to_json(data, indent)
        # Cut after an item once JSON_PIECE bytes are written: a piece is a little over it
        # (one point's text at most); the last one is what is left.
        sizes = [len(p.encode("utf-8", "surrogatepass")) for p in pieces]
        assert len(sizes) > 10 and all(JSON_PIECE <= n < JSON_PIECE + 2000 for n in sizes[:-1])
    small = []
    assert to_json({"a": [1, 2]}, None, small.append) is None
    assert small == ['{"a": [1, 2]}']


def test_writing_stops_where_write_raises():
    pieces = []

    def write(text):
        if len(pieces) == 2:
            raise OSError("disk full")
        pieces.append(text)

    with pytest.raises(OSError):
        to_json([{"k": "v" * 100}] * 1000, 4, write)
    assert len(pieces) == 2 and to_json([{"k": "v" * 100}] * 1000).startswith("".join(pieces))
    with pytest.raises(TypeError):
        to_json({"a": 1}, 4, "not callable")
    with pytest.raises(TypeError):      # json's own error, with nothing written
        to_json({"a": object()}, 4, pieces.append)


@pytest.mark.parametrize("value", [
    object(), {"a": {1, 2}}, [1, 2j], {(1, 2): 1}, {"a": [{b"k": 1}]},
])
def test_what_json_cannot_write_raises_its_type_error(value):
    with pytest.raises(TypeError) as ours:
        to_json(value)
    with pytest.raises(TypeError) as theirs:
        json.dumps(to_plain(value))
    assert str(ours.value) == str(theirs.value)


def test_bad_indent_raises_as_json_does():
    with pytest.raises(TypeError):
        to_json({"a": 1}, 1.5)
    with pytest.raises(TypeError):
        json.dumps({"a": 1}, indent=1.5)


def test_nesting_too_deep_raises_recursion_error_not_a_crash():
    """Beyond the recursion limit (3.11-3.13) or the C stack's room (3.14 counts that)."""
    deep = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(RecursionError):
        to_json(deep)
    cycle = {}
    cycle["self"] = cycle
    with pytest.raises(RecursionError):
        to_json(cycle)


def test_the_console_export_does_not_import_json():
    code = ("import sys, io, otelmetrics\n"
            "from otelmetrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader\n"
            "out = io.StringIO()\n"
            "reader = PeriodicExportingMetricReader(ConsoleMetricExporter(out=out), export_interval_millis=1e9)\n"
            "provider = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)\n"
            "provider.get_meter('m').create_counter('c').add(1, {'k': 'v'})\n"
            "provider.force_flush()\n"
            "print('json' in sys.modules, '\"value\": 1' in out.getvalue())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=NEUTRAL_CWD)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True"]
