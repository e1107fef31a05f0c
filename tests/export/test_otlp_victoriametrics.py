"""OTLPMetricExporter (export/otlp.py) and otelmetrics-agent against a real OTLP receiver:
VictoriaMetrics, which ingests OTLP/HTTP protobuf at /opentelemetry/v1/metrics and answers
PromQL. What we measured must come back from its queries: sums, gauges, histogram buckets,
exponential histograms, resource attributes; and every export once, across a receiver outage
and a shutdown into the spool that another exporter delivers. (It keeps cumulative points
only: delta data is proven against the test receiver in test_otlp.py.)

The binary is Debian trixie's victoria-metrics: `bash platforms/victoria_metrics.sh` fetches
it into platforms/.cache (.ci/run does), or one on PATH, or OTELMETRICS_VICTORIA_METRICS."""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

import otelmetrics
from otelmetrics.export.otlp import OTLPMetricExporter
from otelmetrics.resources import Resource
from otelmetrics.view import ExponentialBucketHistogramAggregation, View
from agent_trees import RPI
from otlp_receiver import free_port
from _util import ServerProcess

_CACHED = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                       "platforms", ".cache", "victoria-metrics")
VICTORIA = (os.environ.get("OTELMETRICS_VICTORIA_METRICS") or shutil.which("victoria-metrics")
            or next(iter(glob.glob(os.path.join(_CACHED, "usr", "bin", "victoria-metrics"))), None))


class Victoria(ServerProcess):
    """A VictoriaMetrics on 127.0.0.1 with its own storage; stop() and start() keep it."""

    def __init__(self, workdir):
        super().__init__("victoria-metrics", workdir)
        self.workdir = workdir
        self.port = free_port()
        self.url = "http://127.0.0.1:%d/opentelemetry/v1/metrics" % self.port
        self.start()

    def start(self):
        env = dict(os.environ)
        libs = glob.glob(os.path.join(os.path.dirname(os.path.dirname(VICTORIA)), "lib", "*-linux-*"))
        if libs:    # trixie's libzstd, unpacked beside the binary (newer than bookworm's)
            env["LD_LIBRARY_PATH"] = os.pathsep.join(libs + [env.get("LD_LIBRARY_PATH", "")])
        self.launch([VICTORIA, "-storageDataPath=" + os.path.join(self.workdir, "data"),
                     "-httpListenAddr=127.0.0.1:%d" % self.port,
                     "-search.latencyOffset=0s",       # answer with what was just ingested
                     "-search.disableCache", "-retentionPeriod=100y"],
                    "http://127.0.0.1:%d/health" % self.port, env=env)

    def query(self, expr, settled=bool):
        """{frozenset of labels: value} of an instant PromQL query. A new series becomes
        searchable a moment after its request was answered: asked again until ``settled``
        holds of the answer (by default: not empty), for up to 20 s."""
        base = "http://127.0.0.1:%d" % self.port
        deadline = time.monotonic() + 20
        while True:
            urllib.request.urlopen(base + "/internal/force_flush", timeout=10).read()
            with urllib.request.urlopen(base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}),
                                        timeout=10) as r:
                doc = json.loads(r.read())
            assert doc["status"] == "success", doc
            res = {frozenset(x["metric"].items()): float(x["value"][1]) for x in doc["data"]["result"]}
            if settled(res) or time.monotonic() > deadline:
                return res
            time.sleep(0.2)

    def by(self, expr, label, expected=None):
        """{value of ``label``: value}, asked until it is ``expected`` (when given)."""
        def of(res):
            return {dict(labels).get(label): value for labels, value in res.items()}
        return of(self.query(expr, (lambda res: of(res) == expected) if expected is not None else bool))

    def value(self, expr, expected=None):
        """The one series' value, asked until it is ``expected`` (when given)."""
        res = self.query(expr, (lambda res: list(res.values()) == [expected]) if expected is not None else bool)
        assert len(res) == 1, (expr, res)
        return next(iter(res.values()))

    def samples(self, name, expected):
        """The values of the one series ``name`` over the last hour, oldest first, asked
        until they are ``expected``: every request that reached the receiver, once each."""
        base = "http://127.0.0.1:%d" % self.port
        deadline = time.monotonic() + 20
        while True:
            urllib.request.urlopen(base + "/internal/force_flush", timeout=10).read()
            with urllib.request.urlopen(base + "/api/v1/query?" + urllib.parse.urlencode({"query": name + "[1h]"}),
                                        timeout=10) as r:
                doc = json.loads(r.read())
            got = [[float(v) for _, v in x["values"]] for x in doc["data"]["result"]]
            if got == [expected] or time.monotonic() > deadline:
                return got[0] if len(got) == 1 else got
            time.sleep(0.2)


@pytest.fixture
def victoria():
    if VICTORIA is None:
        pytest.skip("no victoria-metrics binary (bash platforms/victoria_metrics.sh fetches Debian trixie's "
                    "into platforms/.cache; .ci/run does)")
    workdir = tempfile.mkdtemp(prefix="vm-")
    vm = Victoria(workdir)
    try:
        yield vm
    finally:
        vm.stop()
        vm.log.close()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(OTLPMetricExporter, "_backoff_base", 0.02)
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


def _provider(exporter, **kw):
    reader = otelmetrics.export.PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    return otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False,
                                     resource=Resource({"service.name": "vm-test", "host.name": "edge-7"}), **kw)


def test_every_kind_of_point_reads_back_as_measured(victoria):
    provider = _provider(OTLPMetricExporter(victoria.url, timeout=10, compression="gzip"),
                         views=[View(instrument_name="expo", aggregation=ExponentialBucketHistogramAggregation())])
    meter = provider.get_meter("edge.app", "1.2")
    requests = meter.create_counter("requests", unit="1")
    for i in range(10):
        requests.add(i, {"route": "/a"})
    requests.add(5, {"route": "/b"})
    queue = meter.create_up_down_counter("queue")
    queue.add(10)
    queue.add(-13)
    temp = meter.create_gauge("temp")
    temp.set(21.5, {"room": "hall"})
    temp.set(-4.25, {"room": "porch"})
    latency = meter.create_histogram("latency", unit="ms")
    for v in (1, 7, 30, 300, 3000, 3000):
        latency.record(v, {"route": "/a"})
    expo = meter.create_histogram("expo")
    values = [0.5, 1, 2, 4, 1000, 1e-3, 123.25]
    for v in values:
        expo.record(v)
    assert provider.force_flush()
    provider.shutdown()

    assert victoria.by("requests", "route", {"/a": 45, "/b": 5}) == {"/a": 45, "/b": 5}
    assert victoria.value("queue") == -3
    assert victoria.by("temp", "room") == {"hall": 21.5, "porch": -4.25}
    # Explicit buckets as Prometheus histograms: cumulative counts per upper bound.
    buckets = victoria.by("latency_bucket", "le")
    assert {le: buckets[le] for le in ("0", "5", "10", "25", "250", "1000", "2500", "5000", "+Inf")} == {
        "0": 0, "5": 1, "10": 2, "25": 2, "250": 3, "1000": 4, "2500": 4, "5000": 6, "+Inf": 6}
    assert victoria.value("latency_count") == 6 and victoria.value("latency_sum") == 6338
    # Exponential buckets arrive as VictoriaMetrics ranges: every value in one range that holds it.
    assert victoria.value("expo_count") == len(values) and victoria.value("expo_sum") == sum(values)
    ranges = victoria.by("expo_bucket", "vmrange")
    assert sum(ranges.values()) == len(values)
    for v in values:
        held = [r for r in ranges if float(r.split("...")[0]) < v <= float(r.split("...")[1]) * (1 + 1e-3)]
        assert held, (v, sorted(ranges))
    # The resource's attributes label every series.
    (labels,) = victoria.query('requests{route="/b"}')
    assert dict(labels)["service.name"] == "vm-test" and dict(labels)["host.name"] == "edge-7"


def test_every_export_arrives_once(victoria):
    # VictoriaMetrics stores cumulative points only (it answers 200 to delta sums and drops
    # them): each export's running total is one sample, so the samples show every request.
    provider = _provider(OTLPMetricExporter(victoria.url, timeout=10))
    requests = provider.get_meter("edge.app").create_counter("exports")
    totals, total = [], 0
    for batch in range(1, 6):
        for _ in range(batch * 10):
            requests.add(batch)
            total += batch
        assert provider.force_flush()
        totals.append(total)
        time.sleep(0.01)            # the receiver keeps one sample per series and millisecond
    provider.shutdown()             # its last collection: the same total once more
    totals.append(total)
    assert victoria.samples("exports", totals) == totals


def test_an_outage_loses_nothing(victoria):
    provider = _provider(OTLPMetricExporter(victoria.url, timeout=1))
    requests = provider.get_meter("edge.app").create_counter("through.outage")
    exporter = provider._readers[0]._exporter
    requests.add(1)
    assert provider.force_flush()
    time.sleep(0.01)
    victoria.stop()
    for n in (10, 100, 1000):       # each collection is kept while nothing answers
        requests.add(n)
        assert not provider.force_flush()
        time.sleep(0.01)            # the receiver keeps one sample per series and millisecond
    assert exporter.stats()["queued_requests"] == 3
    victoria.start()
    requests.add(10_000)
    assert provider.force_flush()   # the three kept requests first, then this one
    provider.shutdown()
    assert exporter.stats()["queued_requests"] == 0
    expected = [1, 11, 111, 1111, 11_111, 11_111]       # the last one: shutdown's collection
    assert victoria.samples("through.outage", expected) == expected


def _spooled(spool):
    return [f for f in os.listdir(spool) if not f.startswith(".")]     # not the spool's .lock


def test_a_spool_left_at_shutdown_is_delivered_by_the_next_exporter(victoria, tmp_path):
    spool = str(tmp_path / "spool")
    provider = _provider(OTLPMetricExporter(victoria.url, timeout=1, spool_dir=spool))
    requests = provider.get_meter("edge.app").create_counter("spooled")
    victoria.stop()
    for n in (1, 20, 300):
        requests.add(n)
        assert not provider.force_flush()
        time.sleep(0.01)
    requests.add(4000)              # collected by the shutdown, and spooled with the rest
    provider.shutdown(timeout_millis=5_000)
    assert len(_spooled(spool)) == 4
    victoria.start()
    after = OTLPMetricExporter(victoria.url, timeout=10, spool_dir=spool)
    assert after.force_flush(10_000)
    after.shutdown()
    assert _spooled(spool) == []
    assert victoria.samples("spooled", [1, 21, 321, 4321]) == [1, 21, 321, 4321]


def test_the_agent_reports_the_device(victoria):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run([sys.executable, "-m", "otelmetrics.agent", "--exporter", "otlp",
                             "--endpoint", victoria.url, "--root", RPI, "--count", "2", "--interval", "0.2"],
                            capture_output=True, text=True, timeout=60, env=env, cwd=tempfile.gettempdir())
    assert result.returncode == 0, result.stderr
    assert victoria.value("count_over_time(system.cpu.logical.count[1h])", 2) == 2
    memory = victoria.by("system.memory.usage", "system.memory.state")
    assert memory and all(v > 0 for v in memory.values()), memory
    (labels,) = victoria.query("system.cpu.logical.count")
    assert dict(labels)["service.name"] == "otelmetrics-agent"
    assert dict(labels)["device.model.name"] == "Raspberry Pi 4 Model B Rev 1.4"
