"""Memory stays bounded: past the cardinality limit, new attribute sets cost
nothing, and a long run of measurements with periodic collection keeps the
process RSS flat.

Sizes scale with OTELMETRICS_SOAK_SCALE (default 1: CI-sized, a few seconds
each; e.g. 10 locally for the full million-set / tens-of-millions runs).
Figures are printed (``pytest -s`` shows them).

RSS criterion: the process's VmRSS after a warm-up (the table is full and
every code path has run once) against the end of the run, after
``gc.collect()``. The allocator keeps freed pages, so RSS never shrinks
reliably, but it only grows if something is retained: a leak of even 8 bytes
per measurement would show as tens of MB here.
"""
import gc
import os
import time

import pytest

import otelmetrics
from otelmetrics.export import InMemoryMetricReader

from _util import ALL_DELTA, points

SCALE = float(os.environ.get("OTELMETRICS_SOAK_SCALE", "1"))
LIMIT = 2000
GROWTH_LIMIT_KB = 5 * 1024

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")


def rss_kb():
    gc.collect()
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def two_readers():
    delta = InMemoryMetricReader(preferred_temporality=ALL_DELTA)
    cumulative = InMemoryMetricReader()
    mp = otelmetrics.MeterProvider(metric_readers=[delta, cumulative], shutdown_on_exit=False)
    return mp, delta, cumulative


@pytest.mark.slow
def test_a_million_attribute_sets_into_one_counter():
    total = int(1_000_000 * SCALE)
    checkpoint = total // 10
    mp, delta, cumulative = two_readers()
    c = mp.get_meter("mem").create_counter("c")
    delta_sum = 0
    t0 = time.monotonic()
    rss = {}
    for i in range(total):
        c.add(1, {"id": i, "kind": "distinct"})
        if i % 50_000 == 49_999:             # a delta collection now and then: evict, refill
            pts = points(delta)["c"]
            assert len(pts) <= LIMIT
            delta_sum += sum(p.value for p in pts)
        if i + 1 == checkpoint:
            rss["first"] = rss_kb()
    rss["end"] = rss_kb()
    elapsed = time.monotonic() - t0
    pts = points(cumulative)["c"]
    dpts = points(delta).get("c", [])
    delta_sum += sum(p.value for p in dpts)
    growth = rss["end"] - rss["first"]
    print("\n%d distinct sets: %.1f s; RSS after %d: %d kB, after %d: %d kB, growth %+d kB; "
          "cumulative points %d, delta points %d"
          % (total, elapsed, checkpoint, rss["first"], total, rss["end"], growth, len(pts), len(dpts)))
    assert len(pts) == LIMIT and len(dpts) <= LIMIT
    assert sum(p.value for p in pts) == total and delta_sum == total
    overflow = [p for p in pts if p.attributes == {"otel.metric.overflow": True}]
    assert overflow and overflow[0].value == total - (LIMIT - 1)
    assert growth < GROWTH_LIMIT_KB


@pytest.mark.slow
@pytest.mark.parametrize("temporality", ["delta", "cumulative"])
def test_soak_flat_rss(temporality):
    n = int(20_000_000 * SCALE)
    collect_every = 100_000
    mp, delta, cumulative = two_readers()
    reader = delta if temporality == "delta" else cumulative
    m = mp.get_meter("soak")
    c, h, u = m.create_counter("c"), m.create_histogram("h"), m.create_up_down_counter("u")
    bound = c.bind({"bound": True})
    attrs = [{"route": "/r%d" % (k % 40), "code": 200 + k % 5} for k in range(500)]
    seen = {"c": 0, "h": 0, "bound": 0}
    warm = None
    t0 = time.monotonic()
    i = 0
    # Each step records 4 measurements: n measurements in n // 4 steps.
    while i < n // 4:
        a = attrs[i % 500]
        c.add(1, a)
        h.record(i % 1000, a)
        u.add(1 if i % 2 else -1, a)
        bound.add(2)
        i += 1
        if i % collect_every == 0:
            pts = points(reader)
            other = cumulative if reader is delta else delta
            points(other)                   # both readers collect: both stay bounded
            if temporality == "delta":
                seen["c"] += sum(p.value for p in pts["c"] if "bound" not in p.attributes)
                seen["bound"] += sum(p.value for p in pts["c"] if "bound" in p.attributes)
                seen["h"] += sum(p.count for p in pts["h"])
            else:
                seen["c"] = sum(p.value for p in pts["c"] if "bound" not in p.attributes)
                seen["bound"] = sum(p.value for p in pts["c"] if "bound" in p.attributes)
                seen["h"] = sum(p.count for p in pts["h"])
            if warm is None and i >= 2 * collect_every:
                warm = rss_kb()
    expected = {"c": i - i % collect_every, "h": i - i % collect_every, "bound": 2 * (i - i % collect_every)}
    end = rss_kb()
    elapsed = time.monotonic() - t0
    print("\nsoak %s: %d measurements, %.1f s (%.0f ns/measurement incl. loop), RSS warm %d kB, "
          "end %d kB, growth %+d kB"
          % (temporality, 4 * i, elapsed, elapsed / (4 * i) * 1e9, warm, end, end - warm))
    assert seen == expected
    assert end - warm < GROWTH_LIMIT_KB
