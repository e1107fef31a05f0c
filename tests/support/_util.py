"""Small helpers shared by the core tests."""
import contextlib
import faulthandler
import gc
import json
import os
import select
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

import pytest

import otelmetrics
from otelmetrics.export import AggregationTemporality, InMemoryMetricReader
from otelmetrics import _instruments as inst

ALL_DELTA = {k: AggregationTemporality.DELTA for k in inst.ALL_KINDS}


def provider(delta=False, views=(), limit=None, **kw):
    """A provider with one in-memory reader; returns (provider, reader)."""
    reader = InMemoryMetricReader(preferred_temporality=ALL_DELTA if delta else None,
                                  default_cardinality_limit=limit)
    return otelmetrics.MeterProvider(metric_readers=[reader], views=list(views),
                                     shutdown_on_exit=False, **kw), reader


def points(reader, name=None):
    """{metric name: [points]} of one collection (or the points of ``name``)."""
    out = points_of(reader.get_metrics_data())
    return out.get(name, []) if name is not None else out


def points_of(data):
    """{metric name: [points]} of a MetricsData (None: {})."""
    out = {}
    if data is not None:
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out.setdefault(m.name, []).extend(m.data.data_points)
    return out


def by_attrs(pts):
    """{frozenset(attributes.items()): point}"""
    return {frozenset(p.attributes.items()): p for p in pts}


# Subprocesses run from here, not from the checkout: with the source tree as the
# working directory, `import otelmetrics` would find the uncompiled sources
# instead of the installed package.
NEUTRAL_CWD = tempfile.gettempdir()


@contextlib.contextmanager
def quiet_for_counting():
    """No garbage collection and no other Python thread while blocks are counted
    (``sys.getallocatedblocks()``): threads that earlier tests left winding down (a
    server's handler on a kept-alive connection, a periodic reader) would allocate or
    free meanwhile. The switch interval is made long enough that this thread keeps the
    GIL for the count (a free-threaded build runs them anyway)."""
    gc.collect()
    gc.disable()
    old = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    try:
        yield
    finally:
        sys.setswitchinterval(old)
        gc.enable()


def assert_nothing_per_series(small, large, series=1800, room=100):
    """``small`` and ``large``: the blocks the same work leaves allocated over N and
    N + ``series`` series. They must not grow with the series: one block per series
    would be ``series`` more. A few may differ with the interpreter (3.14 and
    free-threaded builds free some list and dict storage only at a quiescent point)
    and, on a free-threaded build, with the threads earlier tests left winding down
    (``quiet_for_counting`` keeps them out on a GIL build): up to 7 seen on 3.14."""
    assert abs(large - small) <= 16 and small < room, (small, large)


CHILD_DEADLINE_S = 5.0

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")   # run_in_child's tests


def run_in_child(body, deadline=CHILD_DEADLINE_S):
    """Fork; the child runs ``body()`` and sends back its JSON-able result.

    Returns ("ok", result), ("error", traceback) or ("hung", child's stacks).
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 1
        try:
            os.close(r)
            out = open(w, "w", closefd=False)
            faulthandler.dump_traceback_later(deadline, exit=True, file=out)
            try:
                msg = {"ok": body()}
                code = 0
            except BaseException:
                msg = {"error": traceback.format_exc()}
            faulthandler.cancel_dump_traceback_later()
            os.write(w, json.dumps(msg).encode())
        finally:
            os._exit(code)
    os.close(w)
    chunks, end = [], time.monotonic() + deadline + 5
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([r], [], [], 0.05)
            if ready:
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(r)
    for _ in range(100):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    text = b"".join(chunks).decode(errors="replace")
    try:
        msg = json.loads(text)
    except ValueError:
        return "hung", text       # faulthandler's dump of the stuck child
    return ("ok", msg["ok"]) if "ok" in msg else ("error", msg["error"])


class ServerProcess:
    """A server binary a test runs on 127.0.0.1 (a real Prometheus, a real OTLP receiver):
    its output goes to ``<workdir>/<name>.log``, which a failure shows."""

    def __init__(self, name, workdir):
        self.name = name
        self.proc = None
        self.log = open(os.path.join(workdir, name + ".log"), "a+")

    def launch(self, argv, ready_url, env=None, deadline=60.0):
        """Start ``argv`` and return once ``ready_url`` answers 200."""
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        end = time.monotonic() + deadline
        while True:
            try:
                with urllib.request.urlopen(ready_url, timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > end:
                raise AssertionError("%s did not start: %s" % (self.name, self.logs()))
            time.sleep(0.1)

    def logs(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-4000:]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
