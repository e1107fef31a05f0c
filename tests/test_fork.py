"""os.fork() with a live MeterProvider: what the child keeps, and that it works.

What the child keeps (checked below):

- Everything the provider held at the fork: instruments, bound handles, views,
  readers, and every series with its value. Recording in the child continues
  from the inherited values; the parent never sees the child's measurements,
  nor the child the parent's.
- A cumulative reader in the child exports the inherited series again, with
  the same start time as the parent's, and from then on the child's values:
  parent and child export two diverging series with the same identity
  (resource, scope, name, attributes, start time).
- A delta reader in the child exports, at its first collection, what was
  recorded since the parent's last collection before the fork; the parent
  exports the same measurements at its next collection, so they are counted
  twice downstream. What the parent collected before the fork is not exported
  again.
- A PeriodicExportingMetricReader restarts its thread in the child (the
  provider's fork hook, after the provider's own locks are new) and exports
  from it, on the same interval and exporter object (a copy of the parent's).
  The exporters' own fork behaviour is tested with them (tests/export).

A child that must report on its own should create its MeterProvider after the
fork (or shut the inherited one down and build a new one).

Each test forks, runs a body in the child and reports back through a pipe; a
child that hangs is killed after a deadline and its stack is shown.
"""
import os
import threading
import time

import pytest

import otelmetrics
from otelmetrics.export import (InMemoryMetricReader, MetricExporter, MetricExportResult,
                                PeriodicExportingMetricReader)

from _util import ALL_DELTA, by_attrs, points, run_in_child, needs_fork

pytestmark = needs_fork

def flat(data):
    """{"name k=v,...": value or count} of a MetricsData (None: {})."""
    out = {}
    if data is not None:
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    for p in m.data.data_points:
                        key = m.name + " " + ",".join("%s=%s" % kv for kv in sorted(p.attributes.items()))
                        out[key] = p.count if hasattr(p, "count") else p.value
                        out[key + " start"] = p.start_time_unix_nano
    return out


class RecordingExporter(MetricExporter):
    """Remembers each export: process, thread and the flattened data."""

    def __init__(self, delay_s=0.0):
        super().__init__()
        self.exports = []
        self.delay_s = delay_s
        self.shut = False

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        if self.delay_s:
            time.sleep(self.delay_s)     # the parent's thread is mid-export at the fork
        self.exports.append({"pid": os.getpid(), "thread": threading.current_thread().name,
                             "main": threading.current_thread() is threading.main_thread(),
                             "data": flat(metrics_data)})
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis=10_000):
        return True

    def shutdown(self, timeout_millis=30_000, **kwargs):
        self.shut = True


def wait_for(pred, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("busy_parent", [False, True], ids=["idle", "parent-exporting"])
def test_periodic_reader_restarts_and_exports_in_child(busy_parent):
    exporter = RecordingExporter(delay_s=0.02 if busy_parent else 0.0)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=1 if busy_parent else 20)
    mp = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    c = mp.get_meter("fork").create_counter("c")
    c.add(5, {"k": "pre"})
    assert wait_for(lambda: any(e["data"].get("c k=pre") == 5 for e in exporter.exports))
    parent_start = next(e["data"]["c k=pre start"] for e in exporter.exports if "c k=pre" in e["data"])

    def child():
        me = os.getpid()
        mine = lambda: [e for e in exporter.exports if e["pid"] == me]      # noqa: E731
        if not wait_for(lambda: mine()):
            return {"first": None}
        first = mine()[0]
        c.add(7, {"k": "pre"})
        c.add(1, {"k": "child"})
        wait_for(lambda: mine()[-1]["data"].get("c k=child") == 1)
        ok = mp.shutdown(timeout_millis=3000)
        n_after = len(mine())
        time.sleep(0.1)
        return {"first": first, "last": mine()[-1], "shutdown": ok, "exporter_shut": exporter.shut,
                "after_shutdown": len(mine()) - n_after,
                "threads": [t.name for t in threading.enumerate()]}

    status, got = run_in_child(child)
    try:
        assert status == "ok", got
        first, last = got["first"], got["last"]
        assert first is not None, "no export from the child's reader thread"
        assert not first["main"] and first["thread"] == "otelmetrics-periodic-reader"
        # The inherited series is exported again, same value and start time as the parent's.
        assert first["data"]["c k=pre"] == 5 and first["data"]["c k=pre start"] == parent_start
        assert last["data"]["c k=pre"] == 12 and last["data"]["c k=child"] == 1
        assert got["shutdown"] is True and got["exporter_shut"] is True
        assert got["after_shutdown"] == 0
        assert "otelmetrics-periodic-reader" not in got["threads"]
        # The parent is untouched by the child's measurements.
        c.add(1, {"k": "pre"})
        assert wait_for(lambda: exporter.exports[-1]["data"].get("c k=pre") == 6)
        assert "c k=child" not in exporter.exports[-1]["data"]
    finally:
        mp.shutdown()


def test_delta_and_cumulative_state_after_fork():
    delta = InMemoryMetricReader(preferred_temporality=ALL_DELTA)
    cumulative = InMemoryMetricReader()
    mp = otelmetrics.MeterProvider(metric_readers=[delta, cumulative], shutdown_on_exit=False)
    m = mp.get_meter("fork")
    c = m.create_counter("c")
    h = m.create_histogram("h")
    bound = c.bind({"k": "bound"})
    c.add(3, {"k": "a"})
    delta.get_metrics_data()               # the parent exported these 3 before the fork
    c.add(5, {"k": "a"})
    bound.add(2)
    h.record(1.5, {"k": "a"})
    before = flat(cumulative.get_metrics_data())

    def child():
        d1 = flat(delta.get_metrics_data())
        cum1 = flat(cumulative.get_metrics_data())
        c.add(1, {"k": "a"})
        bound.add(1)
        h.record(2.5, {"k": "a"})
        return {"delta1": d1, "delta2": flat(delta.get_metrics_data()), "cum1": cum1,
                "cum2": flat(cumulative.get_metrics_data())}

    status, got = run_in_child(child)
    assert status == "ok", got
    # Delta: the un-collected interval is exported by the child ...
    assert (got["delta1"]["c k=a"], got["delta1"]["c k=bound"], got["delta1"]["h k=a"]) == (5, 2, 1)
    assert (got["delta2"]["c k=a"], got["delta2"]["c k=bound"], got["delta2"]["h k=a"]) == (1, 1, 1)
    # ... and by the parent too (counted twice downstream).
    parent_delta = flat(delta.get_metrics_data())
    assert (parent_delta["c k=a"], parent_delta["c k=bound"], parent_delta["h k=a"]) == (5, 2, 1)
    # Cumulative: the child re-exports the inherited values with the parent's start times.
    assert got["cum1"] == before and before["c k=a"] == 8
    assert (got["cum2"]["c k=a"], got["cum2"]["c k=bound"], got["cum2"]["h k=a"]) == (9, 3, 2)
    assert flat(cumulative.get_metrics_data())["c k=a"] == 8      # parent: unaffected


FORKS = 30       # a child that inherits a held lock hangs; one in 30 forks is enough to fail


def fork_while(hammer, child_body, forks=FORKS, deadline=2.0):
    """Fork repeatedly while ``hammer`` runs in a parent thread; every child
    must run ``child_body`` to completion. Returns the first failure or None."""
    stop = threading.Event()
    errors = []

    def loop():
        try:
            while not stop.is_set():
                hammer()
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        for i in range(forks):
            time.sleep(0.003)            # let the hammer get into the SDK
            status, got = run_in_child(child_body, deadline=deadline)
            if status != "ok":
                return "fork %d: %s\n%s" % (i, status, got)
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    return None


def test_fork_while_thread_records():
    delta = InMemoryMetricReader(preferred_temporality=ALL_DELTA)
    cumulative = InMemoryMetricReader()
    mp = otelmetrics.MeterProvider(metric_readers=[delta, cumulative], shutdown_on_exit=False)
    m = mp.get_meter("fork")
    c, h, u = m.create_counter("c"), m.create_histogram("h"), m.create_up_down_counter("u")
    bound = c.bind({"k": "bound"})
    n = [0]

    def hammer():
        for _ in range(100):
            n[0] += 1
            c.add(1, {"k": n[0] % 300})        # new series keep arriving
            bound.add(1)
            h.record(n[0] % 50, {"k": "h"})
            u.add(-1, {"k": "u"})

    def child():
        # Continue from whatever the parent had: exactly +3 per series.
        start = flat(cumulative.get_metrics_data())
        for _ in range(3):
            c.add(1, {"k": "child"})
            bound.add(1)
            h.record(7, {"k": "h"})
            u.add(-1, {"k": "u"})
        end = flat(cumulative.get_metrics_data())
        d = flat(delta.get_metrics_data())
        assert end["c k=child"] == 3 and end["c k=bound"] == start["c k=bound"] + 3
        assert end["h k=h"] == start["h k=h"] + 3 and end["u k=u"] == start["u k=u"] - 3
        assert d["c k=child"] == 3 and d["h k=h"] >= 3
        return mp.shutdown(timeout_millis=1000)

    assert fork_while(hammer, child) is None
    mp.shutdown()


def test_fork_while_thread_collects():
    reader = InMemoryMetricReader(preferred_temporality=ALL_DELTA)
    mp = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    c = mp.get_meter("fork").create_counter("c")
    for i in range(500):
        c.add(1, {"k": i})

    def hammer():
        for i in range(500):
            c.add(1, {"k": i})
        reader.get_metrics_data()

    def child():
        c.add(1, {"k": "child"})
        return by_attrs(points(reader, "c"))[frozenset({("k", "child")})].value

    assert fork_while(hammer, child) is None
    mp.shutdown()


def test_fork_while_thread_records_bad_values():
    mp = otelmetrics.MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    c = mp.get_meter("fork").create_counter("c")

    def hammer():
        c.add(-1)
        c.add(float("nan"))

    def child():
        c.add(-1)
        return mp.stats()["dropped_by_reason"]

    assert fork_while(hammer, child) is None
    mp.shutdown()


def test_fork_while_thread_runs_callbacks():
    from opentelemetry.metrics import Observation

    def slow(options):
        time.sleep(0.005)                 # a sensor read
        return [Observation(1)]

    background = InMemoryMetricReader()
    mine = InMemoryMetricReader()
    mp = otelmetrics.MeterProvider(metric_readers=[background, mine], shutdown_on_exit=False)
    mp.get_meter("fork").create_observable_gauge("g", callbacks=[slow])

    def child():
        return len(points(mine, "g"))

    assert fork_while(background.get_metrics_data, child) is None
    mp.shutdown()


def test_callbacks_run_in_child():
    from opentelemetry.metrics import Observation

    reader = InMemoryMetricReader()
    mp = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    mp.get_meter("fork").create_observable_gauge(
        "pid", callbacks=[lambda options: [Observation(os.getpid())]])
    assert [p.value for p in points(reader, "pid")] == [os.getpid()]    # callbacks ran once here

    def child():
        t0 = time.monotonic()
        got = [p.value for p in points(reader, "pid")]
        return {"values": got, "pid": os.getpid(), "seconds": time.monotonic() - t0,
                "dropped": mp.stats()["dropped_by_reason"]}

    status, got = run_in_child(child)
    assert status == "ok", got
    assert got["values"] == [got["pid"]] and got["seconds"] < 1.0, got
    mp.shutdown()
