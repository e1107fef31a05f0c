"""The Prometheus pull endpoint: scraped by a real Prometheus server, compared with
opentelemetry-exporter-prometheus, and its HTTP behaviour (negotiation, gzip,
shutdown, port in use, concurrent scrapers)."""
import gzip
import json
import math
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from opentelemetry import metrics as api_metrics
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource as RefResource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_latest_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

import otelmetrics
from otelmetrics._provider import Diagnostics
from otelmetrics.export import (
    Gauge,
    InstrumentationScope,
    Metric,
    MetricProducer,
    MetricsData,
    NumberDataPoint,
    PrometheusMetricReader,
    ResourceMetrics,
    ScopeMetrics,
    start_http_server,
)
from otelmetrics.export import prometheus
from otelmetrics.export.prometheus import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    accepts_gzip,
    wants_openmetrics,
)
from otelmetrics.resources import Resource
from otelmetrics.view import ExponentialBucketHistogramAggregation, ExplicitBucketHistogramAggregation, View

from _sdk_helpers import reference_prometheus_labels_scope, reference_prometheus_reader, reference_provider
from _util import NEUTRAL_CWD, ServerProcess, run_in_child, needs_fork

PROMETHEUS = shutil.which("prometheus") or ("/usr/bin/prometheus" if os.path.exists("/usr/bin/prometheus") else None)
HUGE = "x" * 10_000
HOSTILE_VALUE = 'ünï "cödé"\nline2 \\ back' + HUGE
HOSTILE_KEY = 'kéy "q"\n' + "k" * 10_000


def _provider(reader, **kw):
    kw.setdefault("resource", Resource({"service.name": "prom-test", "host.name": "edge-1"}))
    return otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False, **kw)


def _get(url, headers=None, timeout=10.0):
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def _families(text, openmetrics=False):
    """{family name: (type, help, {(sample name, labels without empty values): value})}.
    Empty label values are dropped: to Prometheus a label with an empty value is
    no label (the reference exporter writes otel_scope_schema_url="")."""
    out = {}
    for fam in (parse_openmetrics if openmetrics else parse_text)(text):
        samples = {}
        for s in fam.samples:
            labels = {k: v for k, v in s.labels.items() if v != ""}
            if s.name.endswith("_bucket"):
                labels["le"] = repr(float(labels["le"]))
            key = (s.name, tuple(sorted(labels.items())))
            assert key not in samples, "sample %r twice" % (key,)
            samples[key] = s.value
        out[fam.name] = (fam.type, fam.documentation, samples)
    return out


# -- a real Prometheus server scraping us -------------------------------------------------


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Prometheus(ServerProcess):
    def __init__(self, target_port, workdir):
        super().__init__("prometheus", workdir)
        self.port = _free_port()
        cfg = os.path.join(workdir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write(textwrap.dedent("""\
                global:
                  scrape_interval: 1s
                  scrape_timeout: 1s
                scrape_configs:
                  - job_name: otel
                    static_configs:
                      - targets: ["127.0.0.1:%d"]
                """ % target_port))
        self.launch([PROMETHEUS, "--config.file=" + cfg, "--storage.tsdb.path=" + os.path.join(workdir, "data"),
                     "--web.listen-address=127.0.0.1:%d" % self.port, "--enable-feature=exemplar-storage"],
                    "http://127.0.0.1:%d/-/ready" % self.port)

    def api(self, path, **params):
        status, _, body = _get("http://127.0.0.1:%d/api/v1/%s?%s" % (self.port, path, urllib.parse.urlencode(params)))
        doc = json.loads(body)
        assert status == 200 and doc["status"] == "success", doc
        return doc["data"]

    def query(self, expr):
        """[(labels, float value)] of an instant query."""
        return [(r["metric"], float(r["value"][1])) for r in self.api("query", query=expr)["result"]]

    def value(self, expr):
        res = self.query(expr)
        assert len(res) == 1, (expr, res)
        return res[0][1]

    def stop(self):
        super().stop()
        self.log.close()


class _SpecialValues(MetricProducer):
    """A bridge whose gauge holds NaN and the infinities (the SDK's own instruments
    drop such measurements, a producer's data passes as it is)."""

    def produce(self, timeout_millis=10_000):
        points = [NumberDataPoint({"sensor": name}, 0, time.time_ns(), value)
                  for name, value in (("broken", math.nan), ("hot", math.inf), ("cold", -math.inf))]
        metric = Metric("bridge.values", "from a bridge", "Cel", Gauge(points))
        return MetricsData([ResourceMetrics(Resource({"service.name": "prom-test"}),
                                            [ScopeMetrics(InstrumentationScope("bridge"), [metric])])])


@pytest.fixture(scope="module")
def scraped():
    """Known values recorded, served, and scraped at least twice by a real Prometheus."""
    if PROMETHEUS is None:
        pytest.skip("the prometheus server binary is not installed (Debian: apt-get install prometheus; "
                    ".ci/run installs it)")
    reader = PrometheusMetricReader(registry=None, cardinality_limits={otelmetrics.Counter: 4},
                                    metric_producers=[_SpecialValues()])
    provider = _provider(reader, views=[
        View(instrument_name="legacy.name", name="renamed.metric"),
        View(instrument_name="expo.latency", aggregation=ExponentialBucketHistogramAggregation(max_size=20)),
        View(instrument_name="req.latency", aggregation=ExplicitBucketHistogramAggregation([0.1, 0.5, 1, 5])),
    ])
    meter = provider.get_meter("edge.app", "2.1")
    requests = meter.create_counter("http.requests", unit="{request}", description="Requests served")
    requests.add(5, {"method": "GET"})
    requests.add(2, {"method": "POST"})
    inflight = meter.create_up_down_counter("queue.depth", unit="By")
    inflight.add(10)
    inflight.add(-13)
    temp = meter.create_gauge("board.temperature", unit="Cel")
    temp.set(41.5, {"sensor": "cpu"})
    latency = meter.create_histogram("req.latency", unit="s")
    for v in [0.05] * 50 + [0.3] * 30 + [0.7] * 15 + [3.0] * 5:
        latency.record(v)
    expo = meter.create_histogram("expo.latency", unit="ms")
    for v in range(1, 101):
        expo.record(v)
    meter.create_counter("legacy.name").add(9)
    limited = meter.create_counter("per.user")
    for i in range(10):                     # limit 4: 3 series and one overflow series of 7
        limited.add(1, {"user": "u%d" % i})
    hostile = meter.create_counter("hostile.c-1/x", unit='{ünït}/"s"\n', description='help "with"\nnewline \\ ü')
    hostile.add(1, {HOSTILE_KEY: HOSTILE_VALUE, "ok": 'q"uo\\te'})
    hostile.add(2, {"a.b": "first", "a_b": "second"})

    server = start_http_server(0, "127.0.0.1", reader=reader)
    workdir = tempfile.mkdtemp(prefix="prom-")
    prom = _Prometheus(server.port, workdir)
    try:
        deadline = time.monotonic() + 60
        while True:
            res = prom.query('count_over_time(up{job="otel"}[5m])')
            if res and res[0][1] >= 2:
                break
            if time.monotonic() > deadline:
                raise AssertionError("fewer than two scrapes in 60 s: " + prom.logs())
            time.sleep(0.5)
        yield prom, reader
    finally:
        prom.stop()
        provider.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)


def test_real_prometheus_scrape_is_healthy(scraped):
    prom, reader = scraped
    assert prom.value('up{job="otel"}') == 1
    body = reader.exposition().decode()
    lines = [ln for ln in body.splitlines() if ln and not ln.startswith("#")]
    assert prom.value('scrape_samples_scraped{job="otel"}') == len(lines)
    targets = prom.api("targets")["activeTargets"]
    assert [t["health"] for t in targets] == ["up"], targets
    assert targets[0]["lastError"] == ""


def test_real_prometheus_counters_and_gauges(scraped):
    prom, _ = scraped
    got = {m["method"]: v for m, v in prom.query("http_requests_total")}
    assert got == {"GET": 5, "POST": 2}
    m, _ = prom.query('http_requests_total{method="GET"}')[0]
    assert m["otel_scope_name"] == "edge.app" and m["otel_scope_version"] == "2.1"
    assert prom.value("queue_depth_bytes") == -3            # up-down counter: a gauge with its unit
    assert prom.value("board_temperature_celsius") == 41.5
    special = {m["sensor"]: v for m, v in prom.query("bridge_values_celsius")}
    assert math.isnan(special["broken"]) and special["hot"] == math.inf and special["cold"] == -math.inf
    meta = prom.api("metadata")
    assert meta["http_requests"][0]["type"] == "counter"        # scraped as OpenMetrics: family names
    assert meta["http_requests"][0]["help"] == "Requests served"
    assert meta["queue_depth_bytes"][0]["type"] == "gauge"


def test_real_prometheus_histograms(scraped):
    prom, _ = scraped
    assert prom.value("req_latency_seconds_count") == 100
    assert prom.value("req_latency_seconds_sum") == pytest.approx(50 * 0.05 + 30 * 0.3 + 15 * 0.7 + 15)
    buckets = {m["le"]: v for m, v in prom.query("req_latency_seconds_bucket")}
    assert buckets == {"0.1": 50, "0.5": 80, "1.0": 95, "5.0": 100, "+Inf": 100}
    # histogram_quantile over our buckets: the 0.6 quantile falls in (0.1, 0.5]
    q = prom.value("histogram_quantile(0.6, req_latency_seconds_bucket)")
    assert 0.1 < q <= 0.5
    # the exponential histogram, as classic buckets: quantiles near the truth
    assert prom.value("expo_latency_milliseconds_count") == 100
    p90 = prom.value("histogram_quantile(0.9, expo_latency_milliseconds_bucket)")
    assert 80 <= p90 <= 100


def test_real_prometheus_ingests_the_exponential_histogram_through_openmetrics(scraped):
    prom, reader = scraped
    # What Prometheus scraped is valid OpenMetrics (it does not check _sum against negative buckets)
    parse = {f.name: f for f in parse_openmetrics(reader.exposition(openmetrics=True).decode())}
    assert parse["expo_latency_milliseconds"].type == "histogram"
    assert prom.api("metadata")["expo_latency_milliseconds"][0]["unit"] == "milliseconds"  # a # UNIT line
    buckets = {float(m["le"]): v for m, v in prom.query("expo_latency_milliseconds_bucket")}
    assert min(buckets) >= 0 and buckets[math.inf] == 100      # no negative bucket: nothing negative recorded
    assert prom.value("expo_latency_milliseconds_sum") == 5050


def test_real_prometheus_target_info_view_and_overflow(scraped):
    prom, _ = scraped
    (labels, value), = prom.query("target_info")
    assert value == 1 and labels["service_name"] == "prom-test" and labels["host_name"] == "edge-1"
    assert prom.value("renamed_metric_total") == 9
    assert prom.query("legacy_name_total") == []
    per_user = prom.query("per_user_total")
    assert len(per_user) == 4
    overflow = [v for m, v in per_user if m.get("otel_metric_overflow") == "true"]
    assert overflow == [7] and sum(v for _, v in per_user) == 10


def test_real_prometheus_accepts_hostile_names_and_values(scraped):
    prom, _ = scraped
    res = {tuple(sorted(k for k in m if k.startswith(("k", "o", "a")))): (m, v)
           for m, v in prom.query("hostile_c_1_x_per_second_total")}
    m, v = next(mv for mv in res.values() if "ok" in mv[0])
    assert v == 1 and m["ok"] == 'q"uo\\te'
    key = [k for k in m if k.startswith("k_y")]
    assert key == ["k_y_q_" + "k" * 10_000], key
    assert m[key[0]] == HOSTILE_VALUE
    merged = [mm for mm, _ in res.values() if "a_b" in mm]
    assert merged[0]["a_b"] == "first;second"      # "a.b" sorts before "a_b"
    assert prom.api("metadata")["hostile_c_1_x_per_second"][0]["help"] == 'help "with"\nnewline \\ ü'


# -- the same exposition as opentelemetry-exporter-prometheus ------------------------------


def _record(meter, kinds):
    """The same measurements on our meter or the reference's."""
    c = meter.create_counter("http.requests", unit="{request}", description="Requests served")
    c.add(5, {"method": "GET", "code": 200, "ok": True, "ratio": 0.5})
    c.add(2, {"method": "POST", "tags": ("a", "b")})
    meter.create_counter("cpu.time", unit="s").add(1.25)
    meter.create_counter("sent", unit="By/s", description="bytes").add(10)
    meter.create_counter("jobs_total", unit="ms").add(3)
    u = meter.create_up_down_counter("queue.depth", unit="KiBy")
    u.add(4, {"q": 'a "b"\nc\\d'})
    u.add(-6, {"q": "x"})
    meter.create_gauge("board.temperature", unit="Cel").set(41.5, {"sensor": "cpu"})
    meter.create_gauge("pressure", unit="kPa/m").set(-1.0)
    h = meter.create_histogram("req.latency", unit="ms", description="latency")
    for v in (0, 3, 7, 12, 80, 900, 12000):
        h.record(v, {"route": "/x"})
    h2 = meter.create_histogram("payload", unit="{packet}")
    h2.record(0.5)
    meter.create_observable_counter("obs.count", callbacks=[lambda o: [kinds.Observation(7, {"k": "v"})]])
    meter.create_observable_gauge("obs.gauge", callbacks=[lambda o: [kinds.Observation(-2.5)]])
    meter.create_observable_up_down_counter("obs.udc", unit="1",
                                            callbacks=[lambda o: [kinds.Observation(3)]])
    meter.create_counter("weird.name-with/chars_ok", description='He said "hi"\\').add(1, {"3d key": "v"})


def _without_scope_labels(families):
    """The families with no otel_scope_* label, checked present on every metric sample first."""
    out = {}
    for name, (typ, doc, samples) in families.items():
        if name != "target_info":
            assert all(any(k == "otel_scope_name" for k, _ in labels) for (_, labels) in samples), name
        out[name] = (typ, doc, {(n, tuple(kv for kv in labels if not kv[0].startswith("otel_scope_"))): v
                                for (n, labels), v in samples.items()})
    return out


def test_exposition_equals_reference_exporter():
    attrs = {"service.name": "diff", "deployment.environment": "test"}
    ref_reader, ref_exposition = reference_prometheus_reader("edge")
    ref_provider = reference_provider(metric_readers=[ref_reader], resource=RefResource(attrs),
                                      shutdown_on_exit=False)
    # Two meters, the same series: told apart by the otel_scope_* labels. Where the reference
    # exporter writes none (0.62b1, the newest for Python 3.9) the oracle is one meter's
    # exposition, and ours is compared without those labels.
    scoped = reference_prometheus_labels_scope()
    meters = [("lib.one", "1.0"), ("lib.two", None)] if scoped else [("lib.one", "1.0")]
    for name, version in meters:
        _record(ref_provider.get_meter(name, version), api_metrics)
    ref = _families(ref_exposition())

    reader = PrometheusMetricReader(prefix="edge", registry=None)
    provider = _provider(reader, resource=Resource(attrs))
    for name, version in meters:
        _record(provider.get_meter(name, version), api_metrics)
    ours = _families(reader.exposition().decode())
    if not scoped:
        ours = _without_scope_labels(ours)
    ref_provider.shutdown()
    provider.shutdown()

    # the resource: the same attributes, but each SDK names itself in telemetry.sdk.*
    for fams in (ours, ref):
        typ, doc, samples = fams.pop("target_info")      # an info family is a gauge in text 0.0.4
        (name, labels), = samples
        assert typ == "gauge" and name == "target_info"
        assert {k: v for k, v in labels if not k.startswith("telemetry_sdk")} == \
            {"service_name": "diff", "deployment_environment": "test"}
    # one deliberate difference: the specification's "1" -> "ratio" on gauges
    # (the reference maps "1" to no unit, with a TODO about it)
    assert "edge_obs_udc_ratio" in ours and "edge_obs_udc" in ref
    typ, doc, samples = ours.pop("edge_obs_udc_ratio")
    assert (typ, doc) == ref["edge_obs_udc"][:2]
    assert {(n.replace("_ratio", ""), ls): v for (n, ls), v in samples.items()} == ref.pop("edge_obs_udc")[2]
    assert len(ref) == 12 and set(ours) == set(ref)
    for name in ref:
        assert ours[name] == ref[name], name


def test_openmetrics_parses_with_units_exemplars_and_eof():
    reader = PrometheusMetricReader(registry=None)
    provider = _provider(reader)
    meter = provider.get_meter("m")
    ctx = trace.set_span_in_context(NonRecordingSpan(SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C, span_id=0xB7AD6B7169203331, is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED))))
    meter.create_counter("c", unit="s").add(2, {"a": "b"}, context=ctx)
    h = meter.create_histogram("h", unit="By")
    h.record(3, context=ctx)
    h.record(700, context=ctx)
    body = reader.exposition(openmetrics=True).decode()
    provider.shutdown()
    assert body.endswith("# EOF\n")
    assert "# TYPE c_seconds counter\n# UNIT c_seconds seconds\n" in body
    fams = {f.name: f for f in parse_openmetrics(body)}
    total, = fams["c_seconds"].samples
    assert total.name == "c_seconds_total" and total.value == 2
    assert total.exemplar.labels == {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331"}
    assert total.exemplar.value == 2 and float(total.exemplar.timestamp) > 1e9
    buckets = {s.labels["le"]: s for s in fams["h_bytes"].samples if s.name == "h_bytes_bucket"}
    assert buckets["0.0"].exemplar is None
    assert buckets["5.0"].exemplar.value == 3
    assert buckets["750.0"].exemplar.value == 700
    assert buckets["+Inf"].exemplar.value == 700        # a bucket without one repeats the lower one
    assert buckets["10.0"].exemplar.value == 3


def test_exponential_histogram_as_cumulative_buckets():
    reader = PrometheusMetricReader(registry=None, disable_target_info=True, scope_info_enabled=False)
    provider = _provider(reader, views=[View(instrument_name="e",
                                             aggregation=ExponentialBucketHistogramAggregation(max_size=8))])
    h = provider.get_meter("m").create_histogram("e")
    values = [0, 0, 0.3, 1.5, 2, 100, 1000, 1e-9]
    for v in values:
        h.record(v)
    fams = _families(reader.exposition().decode())
    provider.shutdown()
    typ, _, samples = fams["e"]
    assert typ == "histogram" and samples[("e_count", ())] == len(values)
    assert samples[("e_sum", ())] == pytest.approx(sum(values))
    buckets = sorted((float(dict(ls)["le"]), v) for (n, ls), v in samples.items() if n == "e_bucket")
    assert buckets[-1] == (math.inf, len(values))
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))      # cumulative
    for le, n in buckets:                                                # each le bounds what it counts
        assert n >= sum(1 for v in values if v <= le * (1 - 1e-9) - 1e-12) or le <= 0
        assert n <= sum(1 for v in values if v <= le * (1 + 1e-9) + 1e-12) + 0 or le < 0
    assert dict(buckets)[0.0] == 2                                       # the zeros


def _histogram_samples(fams, name):
    """{sample name: [labels]} of one family of _families()."""
    out = {}
    for sample, labels in fams[name][2]:
        out.setdefault(sample, []).append(dict(labels))
    return out


def test_exponential_histogram_writes_no_buckets_for_a_side_never_recorded_into():
    # The SDK's point holds negative=Buckets(offset=0, bucket_counts=[0]) with nothing negative
    # recorded: no le="-1.0" bucket for it, so OpenMetrics keeps the histogram's _count and _sum.
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry, disable_target_info=True, scope_info_enabled=False)
    provider = _provider(reader, views=[View(instrument_name="e",
                                             aggregation=ExponentialBucketHistogramAggregation(max_size=4))])
    h = provider.get_meter("m").create_histogram("e")
    for v in (1.0, 2.0, 3.0):
        h.record(v)
    for openmetrics in (False, True):
        fams = _families(reader.exposition(openmetrics).decode(), openmetrics)
        samples = _histogram_samples(fams, "e")
        assert min(float(ls["le"]) for ls in samples["e_bucket"]) == 0.0
        assert fams["e"][2][("e_sum", ())] == 6 and fams["e"][2][("e_count", ())] == 3
    via_client = _families(generate_latest_openmetrics(registry).decode(), True)
    assert via_client == _families(reader.exposition(True).decode(), True)
    provider.shutdown()


def test_openmetrics_histogram_has_no_count_and_sum_with_a_negative_bucket_or_sum():
    # OpenMetrics forbids _sum beside a negative bucket threshold, and a negative (counter-like)
    # _sum; _count goes with _sum. The text format 0.0.4 keeps both. prometheus_client's
    # registry cannot tell the formats apart: it gets the OpenMetrics rule for both.
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry, disable_target_info=True, scope_info_enabled=False)
    provider = _provider(reader, views=[
        View(instrument_name="neg.bounds", aggregation=ExplicitBucketHistogramAggregation([-5.0, -1.0, 10.0])),
        View(instrument_name="neg.sum", aggregation=ExplicitBucketHistogramAggregation([0.0, 10.0])),
        View(instrument_name="neg.expo", aggregation=ExponentialBucketHistogramAggregation(max_size=8)),
        View(instrument_name="plain", aggregation=ExplicitBucketHistogramAggregation([0.0, 10.0])),
    ])
    meter = provider.get_meter("m")
    meter.create_histogram("neg.bounds").record(3)
    neg_sum = meter.create_up_down_counter("neg.sum")       # a histogram View: the sum is still kept
    neg_sum.add(-5)
    neg_sum.add(3)
    neg_expo = meter.create_up_down_counter("neg.expo")
    for v in (-3, -1, 0, 2, 5):
        neg_expo.add(v)
    meter.create_histogram("plain").record(4)
    forbidden = ("neg_bounds", "neg_sum", "neg_expo")

    om = _families(reader.exposition(openmetrics=True).decode(), True)
    for name in forbidden:
        assert set(_histogram_samples(om, name)) == {name + "_bucket"}, name
    assert any(float(ls["le"]) < 0 for ls in _histogram_samples(om, "neg_expo")["neg_expo_bucket"])
    assert om["plain"][2][("plain_sum", ())] == 4 and om["plain"][2][("plain_count", ())] == 1
    text = _families(reader.exposition().decode())
    for name, total in (("neg_bounds", 3), ("neg_sum", -2), ("neg_expo", 3), ("plain", 4)):
        assert text[name][2][(name + "_sum", ())] == total and (name + "_count", ()) in text[name][2]
    via_client = _families(generate_latest_openmetrics(registry).decode(), True)
    assert via_client == om
    client_text = _families(generate_latest(registry).decode())
    assert all(set(_histogram_samples(client_text, n)) == {n + "_bucket"} for n in forbidden)
    # The compiled writer's lines (for the snapshots) are those of the points, in both formats
    for openmetrics in (False, True):
        points = prometheus.render(reader._families(text=False), openmetrics)
        assert reader.exposition(openmetrics) == points
    provider.shutdown()


def test_exemplar_label_names_are_unique():
    # A filtered attribute whose key sanitises to trace_id or span_id is left out of the
    # exemplar's labels (the span's ids are kept); prometheus_client's registry gets the same.
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry, disable_target_info=True, scope_info_enabled=False)
    provider = _provider(reader, views=[View(instrument_name="requests", attribute_keys={"route"}),
                                        View(instrument_name="lat", attribute_keys={"route"})])
    meter = provider.get_meter("m")
    ctx = trace.set_span_in_context(NonRecordingSpan(SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C, span_id=0xB7AD6B7169203331, is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED))))
    attrs = {"route": "/a", "trace.id": "abc", "span-id": "def", "user": "u1"}
    expected = {"trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331", "user": "u1"}
    for scrape in (lambda: reader.exposition(openmetrics=True), lambda: generate_latest_openmetrics(registry)):
        meter.create_counter("requests").add(1, attrs, context=ctx)   # exemplars: those since the last scrape
        meter.create_histogram("lat").record(3, attrs, context=ctx)
        fams = {f.name: f for f in parse_openmetrics(scrape().decode())}
        total, = fams["requests"].samples
        assert total.exemplar.labels == expected
        bucket_exemplars = [s.exemplar.labels for s in fams["lat"].samples if s.exemplar]
        assert bucket_exemplars and all(labels == expected for labels in bucket_exemplars)
    provider.shutdown()


def test_translation_rules_and_options():
    reader = PrometheusMetricReader(prefix="1st app", disable_target_info=True, registry=None,
                                    resource_attribute_filter=lambda k: k == "host.name")
    provider = _provider(reader)
    meter = provider.get_meter("m", schema_url="https://example.com/s", attributes={"team": "x"})
    meter.create_counter("done_total", unit="ms").add(1, {"b.x": 1, "b-x": 2, "le": "q"})
    meter.create_gauge("util", unit="1").set(0.25)
    meter.create_histogram("lat", unit="{req}/s").record(1, {"le": "mine"})
    text = reader.exposition().decode()
    fams = _families(text)
    provider.shutdown()
    assert "target" not in fams
    (name, labels), = fams["_st_app_done_milliseconds"][2]
    assert name == "_st_app_done_milliseconds_total"
    labels = dict(labels)
    assert labels["b_x"] == "2;1"             # "b-x" sorts before "b.x"
    assert labels["le"] == "q" and labels["host_name"] == "edge-1"
    assert labels["otel_scope_schema_url"] == "https://example.com/s" and labels["otel_scope_team"] == "x"
    assert "_st_app_util_ratio" in fams
    hist = fams["_st_app_lat_per_second"][2]
    assert all(dict(ls)["_le"] == "mine" for _, ls in hist)
    assert text.count("# TYPE ") == len(fams)


def test_type_conflict_drops_the_later_metric_with_a_warning(caplog):
    reader = PrometheusMetricReader(registry=None, disable_target_info=True)
    provider = _provider(reader)
    provider.get_meter("a").create_counter("x").add(1)
    provider.get_meter("b").create_up_down_counter("x_total").add(1)     # a gauge whose sample is x_total
    provider.get_meter("c").create_counter("x").add(2)                 # same family, second scope
    with caplog.at_level("WARNING", logger="otelmetrics"):
        fams = _families(reader.exposition().decode())
    provider.shutdown()
    typ, _, samples = fams["x"]
    assert typ == "counter" and sorted(samples.values()) == [1, 2]
    assert "x_total" not in fams
    assert any("would clash with the counter family 'x'" in r.getMessage() for r in caplog.records)


# -- the HTTP endpoint --------------------------------------------------------------------


@pytest.fixture()
def served():
    reader = PrometheusMetricReader(registry=None)
    provider = _provider(reader)
    server = start_http_server(0, "127.0.0.1", reader=reader)
    yield "http://127.0.0.1:%d/metrics" % server.port, provider, reader, server
    provider.shutdown()
    server.stop()


def test_content_negotiation_and_gzip(served):
    url, provider, _, _ = served
    provider.get_meter("m").create_counter("c").add(1)
    status, headers, body = _get(url)
    assert status == 200 and headers["Content-Type"] == TEXT_CONTENT_TYPE and "Content-Encoding" not in headers
    assert b"c_total" in body and b"# EOF" not in body
    prom_accept = ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
                   "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1")
    status, headers, body = _get(url, {"Accept": prom_accept, "Accept-Encoding": "gzip"})
    assert status == 200 and headers["Content-Type"] == OPENMETRICS_CONTENT_TYPE
    assert headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(body).endswith(b"# EOF\n")
    assert _get(url.replace("/metrics", "/nope"))[0] == 404
    assert wants_openmetrics("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.3") is False
    assert wants_openmetrics("application/openmetrics-text;version=2.0.0") is False
    assert wants_openmetrics("application/openmetrics-text") is True
    assert not accepts_gzip("gzip;q=0") and accepts_gzip("br, gzip") and not accepts_gzip("")


def test_gzip_refused_with_q0_is_not_taken_for_a_star(served):
    # RFC 9110 12.5.3: "*" matches only the codings the header does not list.
    url, provider, _, _ = served
    provider.get_meter("m").create_counter("c").add(1)
    status, headers, body = _get(url, {"Accept-Encoding": "gzip;q=0, *"})
    assert status == 200 and "Content-Encoding" not in headers and b"c_total" in body
    assert not accepts_gzip("identity, *;q=0.5, gzip;q=0") and not accepts_gzip("*;q=0, br")
    assert accepts_gzip("*") and accepts_gzip("br;q=1, *;q=0.1") and accepts_gzip("gzip;q=0.5, *;q=0")


def test_a_failing_scrape_answers_500_and_warns_once_a_minute_with_a_count(served, caplog, monkeypatch):
    url, _, _, server = served

    def broken(accept):
        raise MemoryError("no room for the text")

    monkeypatch.setattr(server, "_scrape", broken)
    monkeypatch.setattr(prometheus, "_warnings", Diagnostics())     # no earlier test's minute
    with caplog.at_level("WARNING", logger="otelmetrics"):
        answers = [_get(url) for _ in range(3)]
    assert [(status, body) for status, _, body in answers] == [(500, b"scrape failed\n")] * 3
    assert prometheus._warnings.counts == {"scrape": 3}
    assert [r.getMessage() for r in caplog.records if "scrape failed" in r.getMessage()] == [
        "prometheus scrape failed: MemoryError: no room for the text (1 time(s))"]


def test_two_scrapers_at_once_get_consistent_answers(served):
    url, provider, _, _ = served
    h = provider.get_meter("m").create_histogram("h")
    c = provider.get_meter("m").create_counter("c")
    stop = threading.Event()

    def record():
        while not stop.is_set():
            h.record(3)
            c.add(1)

    writer = threading.Thread(target=record)
    writer.start()
    results, errors = [], []

    def scrape():
        try:
            for _ in range(15):
                status, _, body = _get(url)
                assert status == 200
                results.append(_families(body.decode()))
        except Exception as e:          # surfaced below
            errors.append(e)

    scrapers = [threading.Thread(target=scrape) for _ in range(2)]
    for t in scrapers:
        t.start()
    for t in scrapers:
        t.join()
    stop.set()
    writer.join()
    assert not errors and len(results) == 30
    for fams in results:
        if "h" not in fams:
            continue
        samples = fams["h"][2]
        count = next(v for (n, _), v in samples.items() if n == "h_count")
        inf = next(v for (n, ls), v in samples.items() if n == "h_bucket" and dict(ls)["le"] == "inf")
        assert count == inf and samples[next(k for k in samples if k[0] == "h_sum")] == 3 * count


def test_scrape_during_shutdown_is_503(served):
    url, provider, reader, server = served
    started = threading.Event()

    def slow(options):
        started.set()
        time.sleep(1.0)
        return []

    provider.get_meter("m").create_observable_gauge("slow", callbacks=[slow])
    answer = []
    t = threading.Thread(target=lambda: answer.append(_get(url)))
    t.start()
    assert started.wait(5)
    t0 = time.monotonic()
    provider.shutdown()                 # while the scrape's collection is running
    t.join(10)
    assert answer[0][0] == 503 and answer[0][2] == b"shutting down\n"
    assert time.monotonic() - t0 < 5
    with pytest.raises(OSError):        # the server stopped with its reader
        _get(url, timeout=2)


def test_port_in_use_names_the_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        before = threading.active_count()
        with pytest.raises(OSError, match="port %d" % port):
            start_http_server(port, "127.0.0.1")
        assert threading.active_count() == before
    with pytest.raises(ValueError, match="port"):
        start_http_server(70000)


def test_registers_on_prometheus_client_registry():
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    provider = _provider(reader)
    provider.get_meter("m").create_counter("c", unit="s").add(3, {"k": "v"})
    via_client = _families(generate_latest(registry).decode())
    assert via_client == _families(reader.exposition().decode())
    provider.shutdown()
    assert generate_latest(registry) == b""


SEED_EXAMPLE = """
# The architecture document's "Multiple Readers" example; only the import lines
# are changed.
from opentelemetry import metrics
from otelmetrics import MeterProvider
from otelmetrics.export import (
    PeriodicExportingMetricReader,
    ConsoleMetricExporter,
)
from otelmetrics.export.grpc import OTLPMetricExporter
from otelmetrics.export import PrometheusMetricReader
from prometheus_client import start_http_server

provider = MeterProvider()

# Reader 1: Export to collector (periodic)
otlp_exporter = OTLPMetricExporter(endpoint="http://otelcol:4317")
otlp_reader = PeriodicExportingMetricReader(exporter=otlp_exporter)
provider.add_metric_reader(otlp_reader)

# Reader 2: Export to console (periodic, for debugging)
console_exporter = ConsoleMetricExporter()
console_reader = PeriodicExportingMetricReader(exporter=console_exporter)
provider.add_metric_reader(console_reader)

# Reader 3: Prometheus (pull-based)
start_http_server(port=8000)
prometheus_reader = PrometheusMetricReader()
provider.add_metric_reader(prometheus_reader)

metrics.set_meter_provider(provider)

# -- the test's own lines: record, scrape prometheus_client's server, stop.
import urllib.request
metrics.get_meter("seed").create_counter("traffic_volume").add(3, {"route": "/"})
print(urllib.request.urlopen("http://127.0.0.1:8000/metrics", timeout=10).read().decode())
provider.shutdown(timeout_millis=3000)
"""


def test_architecture_multi_reader_example_runs():
    pytest.importorskip("grpc", reason="the example's OTLP/gRPC exporter needs grpcio, which has no "
                                       "wheel for this platform (armv7l, free-threaded CPython)")
    code = SEED_EXAMPLE.replace("8000", str(_free_port()))     # a free port, not a fixed one
    proc = subprocess.run([sys.executable, "-c", code], cwd=NEUTRAL_CWD, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 'traffic_volume_total{otel_scope_name="seed",route="/"} 3.0' in proc.stdout
    assert "target_info{" in proc.stdout


@needs_fork
def test_a_forked_child_leaves_the_endpoint_to_its_parent():
    # The serving thread is the parent's. In the child the server counts as stopped (its
    # shutdown used to wait forever for that thread) and its copy of the listening socket is
    # closed: once the parent stops, the port is free although the child still runs.
    reader = PrometheusMetricReader()
    mp = _provider(reader)
    counter = mp.get_meter("m").create_counter("jobs")
    counter.add(1)
    server = start_http_server(0, "127.0.0.1", reader=reader)
    port = server.port
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()

    def child():
        counter.add(1)
        start = time.monotonic()
        mp.shutdown()
        took = time.monotonic() - start
        os.write(ready_w, b"x")
        os.read(go_r, 1)                   # the parent re-binds the port meanwhile
        return took

    outcome = []
    runner = threading.Thread(target=lambda: outcome.append(run_in_child(child, deadline=10)))
    runner.start()
    try:
        assert select.select([ready_r], [], [], 15)[0], "the child's shutdown did not return"
        status, _, body = _get("http://127.0.0.1:%d/metrics" % port)
        assert status == 200 and 'jobs_total{otel_scope_name="m"} 1\n' in body.decode()  # the parent's
        server.stop()
        again = start_http_server(port, "127.0.0.1", reader=reader)
        again.stop()
    finally:
        os.write(go_w, b"x")
        runner.join(15)
        for fd in (ready_r, ready_w, go_r, go_w):
            os.close(fd)
        mp.shutdown()
    status, took = outcome[0]
    assert status == "ok", took
    assert took < 2.0
