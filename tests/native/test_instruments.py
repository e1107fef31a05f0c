"""The instrument cores of the compiled core (cext/instruments.pxi): bound
handles, instrument.bind(attributes) skips the lookup, same numbers."""
import gc

import pytest

from otelmetrics.view import View

from _util import by_attrs, points, provider


def test_bound_counter_equals_unbound():
    mp, reader = provider()
    c = mp.get_meter("m").create_counter("c")
    h = c.bind({"a": "x"})
    for _ in range(10):
        h.add(2)
    c.add(5, {"a": "x"})
    (p,) = points(reader, "c")
    assert p.attributes == {"a": "x"} and p.value == 25


def test_bound_histogram_and_gauge():
    mp, reader = provider()
    m = mp.get_meter("m")
    hist = m.create_histogram("h").bind({"r": 1})
    gauge = m.create_gauge("g").bind({"r": 1})
    for v in (1, 7, 30.5):
        hist.record(v)
        gauge.set(v)
    pts = points(reader)
    (hp,) = pts["h"]
    assert (hp.count, hp.sum, hp.min, hp.max) == (3, 38.5, 1, 30.5)
    (gp,) = pts["g"]
    assert gp.value == 30.5


def test_bound_handle_feeds_every_stream_and_reader():
    from otelmetrics import MeterProvider
    from otelmetrics.export import InMemoryMetricReader

    r1, r2 = InMemoryMetricReader(), InMemoryMetricReader()
    views = [View(instrument_name="c"), View(instrument_name="c", name="c.copy")]
    mp = MeterProvider(metric_readers=[r1, r2], views=views, shutdown_on_exit=False)
    c = mp.get_meter("m").create_counter("c")
    c.bind({"a": 1}).add(3)
    for r in (r1, r2):
        pts = points(r)
        assert pts["c"][0].value == 3 and pts["c.copy"][0].value == 3


def test_bound_handle_validates_values():
    mp, reader = provider()
    c = mp.get_meter("m").create_counter("c")
    h = c.bind({"a": 1})
    h.add(-1)             # negative on a counter: dropped
    h.add(float("nan"))   # dropped
    h.add("3")            # dropped
    h.add(4)
    assert points(reader, "c")[0].value == 4
    assert mp.stats()["dropped_by_reason"]


def test_delta_keeps_bound_series_across_quiet_intervals():
    mp, reader = provider(delta=True, limit=3)
    c = mp.get_meter("m").create_counter("c")
    h = c.bind({"bound": True})
    h.add(1)
    assert points(reader, "c")[0].value == 1
    points(reader, "c")                        # a quiet interval: unpinned series would be freed
    for i in range(10):                         # pressure on the table
        c.add(1, {"k": i})
    points(reader, "c")
    h.add(5)
    got = by_attrs(points(reader, "c"))
    assert got[frozenset({("bound", True)})].value == 5


def test_released_handle_unpins():
    mp, reader = provider(delta=True, limit=3)
    c = mp.get_meter("m").create_counter("c")
    h = c.bind({"x": 1})
    h.add(1)
    points(reader)
    del h
    gc.collect()
    points(reader)       # quiet interval, no pin: the cell is freed
    c.add(1, {"y": 1})
    c.add(1, {"z": 1})
    got = by_attrs(points(reader, "c"))
    assert frozenset({("otel.metric.overflow", True)}) not in got


def test_bind_after_shutdown_is_inert():
    mp, reader = provider()
    c = mp.get_meter("m").create_counter("c")
    h = c.bind({"a": 1})
    mp.shutdown()
    h.add(1)
    c.add(1)
    assert reader.get_metrics_data() is None


@pytest.mark.parametrize("attrs", [None, {}, {"a": [1, 2]}, {"a": None, "b": 1}, {1: 2}])
def test_bind_sanitises_attributes(attrs):
    mp, reader = provider()
    c = mp.get_meter("m").create_counter("c")
    c.bind(attrs).add(1)
    c.bind(attrs).add(1)
    (p,) = points(reader, "c")
    assert p.value == 2


def test_positional_and_keyword_calls_record_alike_and_report_the_same_errors():
    # Positional calls take the compiled entry; keyword calls and wrong counts
    # go through the argument parsing of the method it stands in for.
    mp, reader = provider()
    m = mp.get_meter("m")
    c, hist, gauge = m.create_counter("c"), m.create_histogram("h"), m.create_gauge("g")
    c.add(1, {"a": 1})
    c.add(2, {"a": 1}, None)
    c.add(4, attributes={"a": 1})
    c.add(amount=8, attributes={"a": 1}, context=None)
    hist.record(3, {"a": 1})
    hist.record(amount=5, attributes={"a": 1})
    gauge.set(6, {"a": 1})
    gauge.set(7, attributes={"a": 1})
    handle = c.bind({"a": 1})
    handle.add(16)
    handle.add(32, None)
    handle.add(amount=64, context=None)
    c.bind(attributes={"a": 1}).add(amount=128)
    for call, args, kwargs in ((c.add, (), {}), (c.add, (1, None, None, None), {}), (c.add, (1,), {"x": 1}),
                               (hist.record, (), {}), (gauge.set, (1, None, None, None), {}),
                               (handle.add, (), {}), (handle.record, (1, None, None), {}),
                               (handle.set, (1,), {"attributes": {}})):
        with pytest.raises(TypeError, match=call.__name__):
            call(*args, **kwargs)
    pts = points(reader)
    assert [p.value for p in pts["c"]] == [255]
    assert [(p.count, p.sum) for p in pts["h"]] == [(2, 8)]
    assert [p.value for p in pts["g"]] == [7]


def test_a_view_key_filter_takes_the_full_path_with_the_same_result():
    mp, reader = provider(views=[View(instrument_name="c", attribute_keys={"keep"})])
    c = mp.get_meter("m").create_counter("c")
    for _ in range(3):
        c.add(1, {"keep": "x", "drop": 1})
        c.add(1, {"drop": 2, "keep": "x"})
    (p,) = points(reader, "c")
    assert p.attributes == {"keep": "x"} and p.value == 6
