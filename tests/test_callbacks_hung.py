"""A callback that hangs (a sensor read that never returns): it holds one worker
thread however many collections come, it is skipped (counted) until it returns,
the callbacks behind it still report in the same collection, every collection
ends by its deadline, and its late observations never reach a collection."""
import threading
import time

from opentelemetry.metrics import Observation

import otelmetrics
from otelmetrics import _callbacks
from otelmetrics.export import InMemoryMetricReader, MetricExporter, MetricExportResult

from _util import provider

WORKER = "otelmetrics-callbacks"


def workers():
    return sum(1 for t in threading.enumerate() if t.name == WORKER)


def names(data):
    if data is None:
        return {}
    return {m.name: m for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


class Hang:
    """A sensor read that blocks until released; observes its call number."""

    def __init__(self):
        self.release = threading.Event()
        self.calls = 0
        self.returned = threading.Event()

    def __call__(self, options):
        self.calls += 1
        n = self.calls
        self.release.wait(60)
        self.returned.set()
        return [Observation(n)]


def test_threads_stay_bounded_over_many_collections():
    hang = Hang()
    mp, reader = provider()
    m = mp.get_meter("m")
    m.create_observable_gauge("stuck", callbacks=[hang])
    m.create_observable_gauge("fine", callbacks=[lambda o: [Observation(7)]])
    before = workers()
    reported, counts = 0, []
    t0 = time.monotonic()
    for _ in range(100):
        reader.collect(timeout_millis=50)
        data, reader._data = reader._data, None
        reported += "fine" in names(data)
        assert "stuck" not in names(data)
        counts.append(workers())
    elapsed = time.monotonic() - t0
    print("worker threads before %d, peak %d, after 100 collections %d; %.2f s"
          % (before, max(counts), counts[-1], elapsed))
    # One thread holds the hung callback, one runs the others: not one more per collection.
    assert max(counts) - before <= 2, counts
    assert hang.calls == 1                      # skipped while it hangs, never entered twice
    assert reported == 100                      # the other callback reported every time
    drops = mp.stats()["dropped_by_reason"]
    assert drops.get("callback timeout") == 1 and drops.get("callback stuck") == 99, drops
    # Only the first collection waited for it (about 50 ms); the 99 others skipped it.
    assert elapsed < 2.0

    hang.release.set()
    assert hang.returned.wait(5)
    deadline = time.monotonic() + 5
    while hang.calls == 1 and time.monotonic() < deadline:   # runs again once returned
        data = reader.get_metrics_data()
        time.sleep(0.01)
    # Its first, late observation (1) was discarded; the second call is the one reported.
    assert [p.value for p in names(data)["stuck"].data.data_points] == [2]
    mp.shutdown()


def test_callbacks_behind_a_stuck_one_run_in_the_same_collection():
    hang, hang2 = Hang(), Hang()
    mp, reader = provider()
    m = mp.get_meter("m")
    m.create_observable_gauge("stuck", callbacks=[hang])
    m.create_observable_gauge("a", callbacks=[lambda o: [Observation(1)]])
    m.create_observable_gauge("stuck2", callbacks=[hang2])
    m.create_observable_gauge("b", callbacks=[lambda o: [Observation(2)]])
    before = workers()
    t0 = time.monotonic()
    reader.collect(timeout_millis=400)
    elapsed = time.monotonic() - t0
    data = reader._data
    # "a" and "b" each moved on to a fresh worker when the one before them had used half
    # of the time left; the collection still ends by its deadline.
    assert set(names(data)) == {"a", "b"}
    assert 0.3 < elapsed < 1.0, elapsed
    assert workers() - before <= 3    # one per stuck callback, plus one
    for _ in range(20):
        reader.collect(timeout_millis=400)
    assert workers() - before <= 3
    hang.release.set()
    hang2.release.set()
    mp.shutdown()


def test_a_slow_callback_that_returns_before_the_deadline_is_kept():
    def slow(options):
        time.sleep(0.3)          # past half of the 500 ms, within the deadline
        return [Observation(3)]

    mp, reader = provider()
    m = mp.get_meter("m")
    m.create_observable_gauge("slow", callbacks=[slow])
    m.create_observable_gauge("after", callbacks=[lambda o: [Observation(4)]])
    reader.collect(timeout_millis=500)
    assert set(names(reader._data)) == {"slow", "after"}
    assert mp.stats()["dropped_by_reason"] == {}
    # The worker that ran it is reused; nothing is left stuck.
    assert mp._pipeline._runner.stuck == frozenset()
    mp.shutdown()


class Recorder(MetricExporter):
    """Keeps the metric names of every export."""

    def __init__(self):
        super().__init__()
        self.exports = []

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        self.exports.append(set(names(metrics_data)))
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis=10_000):
        return True

    def shutdown(self, timeout_millis=30_000, **kwargs):
        pass


def test_periodic_reader_with_a_hung_callback_keeps_exporting():
    # The field report: 200 ms interval, a hung sensor, 8 -> 47 threads in 20 s.
    hang = Hang()
    exporter = Recorder()
    reader = otelmetrics.export.PeriodicExportingMetricReader(exporter, export_interval_millis=50,
                                                              export_timeout_millis=100)
    mp = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    m = mp.get_meter("m")
    m.create_observable_gauge("stuck", callbacks=[hang])
    m.create_observable_gauge("fine", callbacks=[lambda o: [Observation(1)]])
    before = threading.active_count()
    time.sleep(2.0)
    after = threading.active_count()
    n = len(exporter.exports)
    print("threads before %d, after %d exports in 2 s: %d" % (before, n, after))
    assert n >= 10 and all(e == {"fine"} for e in exporter.exports)
    assert after - before <= 2
    hang.release.set()
    t0 = time.monotonic()
    mp.shutdown(timeout_millis=2000)
    assert time.monotonic() - t0 < 2.5


def test_same_deadline_bounds_all_callbacks():
    release = threading.Event()
    mp, reader = provider()
    m = mp.get_meter("m")
    for i in range(5):
        m.create_observable_gauge("hang%d" % i, callbacks=[lambda o: release.wait(60) and []])
    t0 = time.monotonic()
    reader.collect(timeout_millis=200)
    assert time.monotonic() - t0 < 0.6
    assert mp.stats()["dropped_by_reason"].get("callback timeout") == 5
    release.set()
    mp.shutdown()


def test_an_idle_worker_ends_and_a_later_collection_starts_one(monkeypatch):
    monkeypatch.setattr(_callbacks, "IDLE_SECONDS", 0.1)
    mp, reader = provider()
    mp.get_meter("m").create_observable_gauge("g", callbacks=[lambda o: [Observation(5)]])
    others = {t for t in threading.enumerate() if t.name == WORKER}   # earlier tests' idle ones

    def ours():
        return [t for t in threading.enumerate() if t.name == WORKER and t not in others]

    for _ in range(3):
        reader.collect(timeout_millis=1000)
        assert "g" in names(reader._data)
        assert len(ours()) == 1
        deadline = time.monotonic() + 5
        while ours() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ours() == []      # no thread is left behind between collections
    mp.shutdown()
