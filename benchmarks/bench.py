"""Side-by-side benchmark: otelmetrics vs opentelemetry-sdk (and prometheus_client).

    python benchmarks/bench.py                  # timing run (~1 min)
    python benchmarks/bench.py --quick          # fewer iterations
    python benchmarks/bench.py --instructions   # instructions per call under callgrind (~3 min)
    python benchmarks/bench.py --memory         # peak RSS per series after a collection, fresh processes
    python benchmarks/bench.py --threads        # threads recording at once: scaling (~20 s)
    python benchmarks/bench.py --imports        # instructions of each package's import (~1 min)

Timing: absolute times depend on the machine and its load; the ratios, measured
in the same process a few milliseconds apart, are what to compare between runs.
Every figure is the best of several repeats (the least disturbed one).

Instructions (``--instructions``, needs valgrind): each case runs in its own
process under ``valgrind --tool=callgrind``, once looping N times and once N +
10000 times; the difference of the two totals / 10000 is the cost of one call,
the loop included, free of noise (setup, imports and warm-up cancel out). Every
case is set against its floor: a C method call of the same shape in the same
loop (``d.get(1, attrs)`` on an empty dict), plus hashing a 6-tuple (the three
pairs) for the attribute cases. A collection with its OTLP encoding of 2000
series is one "call" there, counted over 10 more collections instead of 10000.

Memory (``--memory``): each SDK in fresh processes, one with a counter and a
histogram of 2000 series each and one without (the same imports and attribute
dicts), both after one collection and its OTLP encoding; the difference of their
peak RSS / 2000 is one (sum + histogram) series.

Imports (``--imports``, needs valgrind): instructions of ``python -c "import X"`` in a
fresh interpreter (an empty directory, ``PYTHONHASHSEED=0``, the installed bytecode),
counted two ways: the import alone (``import X; os._exit(0)`` less ``import os;
os._exit(0)``: what the import statement costs the program, as ``-X importtime`` times
it) and the whole process (``import X`` less ``pass``: the import, and the
interpreter's exit freeing and collecting what it left). Set against a bare
``import opentelemetry.metrics``, the API every SDK imports.

Threads (``--threads``): 1, 2 and 4 threads each make the same number of
``counter.add(1, 3 attrs)`` calls at once, into one series of one counter, into a
series of their own of one counter, and into a counter of their own; printed is
the wall time per call of all threads together (lower than the one-thread time
only when they run in parallel, as on free-threaded CPython with the GIL off), and
the CPU time per call summed over the threads (what contention costs: waiting for
a lock, or cache lines moving between cores; it does not depend on how many cores
are free, the wall time does).
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

ATTRS = {"http.request.method": "GET", "http.response.status_code": 200, "http.route": "/api/v1/items"}
SERIES = 2000
EXPO_VALUES = [1.5 ** (i % 60) * 0.001 for i in range(1024)]

# The recording cases, in the order they are printed.
ADD_ATTRS = "counter.add(1, 3 attrs)"
ADD_PLAIN = "counter.add(1)"
BOUND_ADD = "bound handle add(1)"
HIST = "histogram.record(v, 3 attrs)"
EXPO = "exponential histogram record (3 attrs)"
COLLECT_ENCODE = "collect + OTLP encode, 2000 series"
COLLECT_POINTS = "  the same, points built first"     # ours only: the path before bytes came from snapshots
CASES = (ADD_ATTRS, ADD_PLAIN, BOUND_ADD, HIST, EXPO, COLLECT_ENCODE, COLLECT_POINTS)
EXPORT_CASES = (COLLECT_ENCODE, COLLECT_POINTS)


def best_ns(fn, n: int, repeat: int) -> float:
    """Best per-call time of ``fn(n)`` (which loops n times itself), in ns."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        fn(n)
        best = min(best, (time.perf_counter_ns() - t0) / n)
    return best


def loop_overhead(n: int, repeat: int) -> float:
    def f(n):
        for _ in range(n):
            pass
    return best_ns(f, n, repeat)


# -- the SDKs under test -----------------------------------------------------------

def ours():
    import otelmetrics
    from otelmetrics.export import InMemoryMetricReader
    from otelmetrics.view import ExponentialBucketHistogramAggregation, View

    r = InMemoryMetricReader()
    views = [View(instrument_name="expo", aggregation=ExponentialBucketHistogramAggregation())]
    return otelmetrics.MeterProvider(metric_readers=[r], views=views, shutdown_on_exit=False), r


def reference():
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View

    r = InMemoryMetricReader()
    views = [View(instrument_name="expo", aggregation=ExponentialBucketHistogramAggregation())]
    return MeterProvider(metric_readers=[r], views=views, shutdown_on_exit=False), r


def sdk_loops(make):
    """The provider and, per case, ``loop(n)`` recording n times (instruments bound to locals)."""
    provider, _ = make()
    meter = provider.get_meter("bench")
    counter = meter.create_counter("c")
    hist = meter.create_histogram("h")
    expo = meter.create_histogram("expo")
    attrs = dict(ATTRS)

    def add_attrs(n, add=counter.add, a=attrs):
        for _ in range(n):
            add(1, a)

    def add_plain(n, add=counter.add):
        for _ in range(n):
            add(1)

    def record(n, rec=hist.record, a=attrs):
        for _ in range(n):
            rec(123.4, a)

    def expo_record(n, rec=expo.record, a=attrs, v=EXPO_VALUES):
        for i in range(n):
            rec(v[i & 1023], a)

    loops = {ADD_ATTRS: add_attrs, ADD_PLAIN: add_plain, HIST: record, EXPO: expo_record}
    if hasattr(counter, "bind"):
        handle = counter.bind(attrs)

        def bound_add(n, add=handle.add):
            for _ in range(n):
                add(1)
        loops[BOUND_ADD] = bound_add
    return provider, loops


def prometheus_loops():
    """prometheus_client's nearest equivalents (no exponential histogram); {} if not installed."""
    try:
        import prometheus_client as pc
    except ImportError:
        return {}
    reg = pc.CollectorRegistry()
    names = [k.replace(".", "_") for k in ATTRS]
    c = pc.Counter("c", "c", names, registry=reg)
    h = pc.Histogram("h", "h", names, registry=reg)
    values = tuple(ATTRS.values())
    plain = pc.Counter("p", "p", registry=reg)
    child = c.labels(*values)

    def add_attrs(n, labels_of=c.labels, v=values):
        for _ in range(n):
            labels_of(*v).inc(1)

    def add_plain(n, inc=plain.inc):
        for _ in range(n):
            inc(1)

    def record(n, labels_of=h.labels, v=values):
        for _ in range(n):
            labels_of(*v).observe(123.4)

    def bound_add(n, inc=child.inc):
        for _ in range(n):
            inc(1)
    return {ADD_ATTRS: add_attrs, ADD_PLAIN: add_plain, HIST: record, BOUND_ADD: bound_add}


def otlp_encoder(column):
    """The SDK's own OTLP protobuf encoding: MetricsData -> bytes."""
    if column == "ours":
        from otelmetrics._native import encode_request
        return encode_request
    from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
    return lambda data: encode_metrics(data).SerializeToString()


def build_points(data):
    """Read every metric's points (ours build them from the collection's snapshot then)."""
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                m.data.data_points
    return data


def export_loops(column):
    """The provider and, per export case, ``loop(n)``: n collections of a counter with
    2000 series (cumulative: every series in every collection) and their OTLP encoding."""
    provider, reader = ours() if column == "ours" else reference()
    counter = provider.get_meter("export").create_counter("c")
    for a in series_attrs():
        counter.add(1, a)
    encode = otlp_encoder(column)

    def collect_encode(n, collect=reader.get_metrics_data):
        for _ in range(n):
            encode(collect())

    def collect_points_encode(n, collect=reader.get_metrics_data):
        for _ in range(n):
            encode(build_points(collect()))
    loops = {COLLECT_ENCODE: collect_encode}
    if column == "ours":
        loops[COLLECT_POINTS] = collect_points_encode
    return provider, loops


def floor_loops():
    """What any compiled SDK pays before doing work: a C method call of the same
    shape in the same loop (``d.get`` on an empty dict), plus hashing a 6-tuple
    (the three pairs) for the attribute cases."""
    d = {}
    attrs = dict(ATTRS)
    pairs = tuple(x for kv in ATTRS.items() for x in kv)

    def add_attrs(n, get=d.get, a=attrs, h=hash, t=pairs):
        for _ in range(n):
            get(1, a)
            h(t)

    def add_plain(n, get=d.get):
        for _ in range(n):
            get(1)

    def expo_record(n, get=d.get, a=attrs, v=EXPO_VALUES, h=hash, t=pairs):
        for i in range(n):
            get(v[i & 1023], a)
            h(t)
    return {ADD_ATTRS: add_attrs, ADD_PLAIN: add_plain, BOUND_ADD: add_plain, HIST: add_attrs,
            EXPO: expo_record}


# -- instruction counts -------------------------------------------------------------

# Columns of the instruction table: what is measured, and how it is labelled.
COLUMNS = (("floor", "floor"), ("ours", "otelmetrics"), ("reference", "otel-sdk"),
           ("prometheus", "prometheus"))
WARMUP = 1000          # calls before the measured loop (series created, bytecode specialised)
BASE_N = 1000
EXTRA_N = 10_000
EXPORT_N = (2, 2, 10)  # warm-up, base and extra collections for the export cases


def _loops_of(column, case=None):
    if case in EXPORT_CASES:
        return export_loops(column)
    if column == "floor":
        return None, floor_loops()
    if column == "prometheus":
        return None, prometheus_loops()
    return sdk_loops(ours if column == "ours" else reference)


def _same_floor():
    """Cases whose floor loop is another case's: case -> the case measured for both."""
    first, out = {}, {}
    for case, loop in floor_loops().items():
        if loop in first:
            out[case] = first[loop]
        else:
            first[loop] = case
    return out


def run_case(column: str, case: str, n: int) -> int:
    """Child process: set up, warm up, then loop ``n`` times (the part callgrind's totals differ by)."""
    provider, loops = _loops_of(column, case)
    loop = loops[case]
    loop(EXPORT_N[0] if case in EXPORT_CASES else WARMUP)
    gc.collect()
    loop(n)
    if provider is not None:
        provider.shutdown()
    return 0


def _callgrind(args, what: str, cwd=None, env=None) -> int:
    """Total instructions of ``python args...`` run under callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        env = dict(os.environ if env is None else env, PYTHONHASHSEED="0")
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out, sys.executable] + args
        proc = subprocess.run(cmd, env=env, cwd=cwd or tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
        if proc.returncode != 0:
            raise RuntimeError("%s failed:\n%s" % (what, proc.stderr[-2000:]))
        with open(out) as f:
            for line in f:
                if line.startswith("summary:") or line.startswith("totals:"):
                    return int(line.split()[1])
    raise RuntimeError("no totals in callgrind output for %s" % what)


def _callgrind_total(column: str, case: str, n: int) -> int:
    return _callgrind([os.path.abspath(__file__), "--run-case", column, case, str(n)],
                      "%s / %s" % (column, case), cwd=os.getcwd())


def instructions_per_call(column: str, case: str) -> float:
    """(total at N + 10000 - total at N) / 10000 (collections: N + 10 and N)."""
    base, extra = EXPORT_N[1:] if case in EXPORT_CASES else (BASE_N, EXTRA_N)
    return (_callgrind_total(column, case, base + extra) - _callgrind_total(column, case, base)) / extra


def instruction_table(columns, jobs: int) -> int:
    """Measure every available (column, case) under callgrind and print the table."""
    if shutil.which("valgrind") is None:
        print("--instructions needs valgrind (e.g. apt-get install -y valgrind)", file=sys.stderr)
        return 2
    available = {c: set(_loops_of(c)[1]) if c in ("floor", "prometheus") else None for c in columns}
    notes = []
    if "reference" in columns:
        try:
            import opentelemetry.sdk.metrics  # noqa: F401
        except ImportError:
            available["reference"] = set()
            notes.append("opentelemetry-sdk is not installed: its column is empty")
    if "prometheus" in columns and not available["prometheus"]:
        notes.append("prometheus_client is not installed: its column is empty")
    if "ours" in columns:
        available["ours"] = set(sdk_loops(ours)[1]) | set(EXPORT_CASES)
    if "reference" in columns and available["reference"] is None:
        # No bound handles in opentelemetry-sdk; its collection always builds points.
        available["reference"] = set(CASES) - {BOUND_ADD, COLLECT_POINTS}
    work = [(c, case) for case in CASES for c in columns if case in available[c]]
    same = {("floor", case): ("floor", first) for case, first in _same_floor().items()}
    measured = [w for w in work if w not in same]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        counts = dict(zip(measured, pool.map(lambda w: instructions_per_call(*w), measured)))
    for w in work:
        if w in same:
            counts[w] = counts[same[w]]

    try:
        import opentelemetry.sdk.version as refv
        refname = "opentelemetry-sdk %s" % refv.__version__
    except ImportError:
        refname = "opentelemetry-sdk (not installed)"
    print("instructions per call, loop included (callgrind, N + %d vs N calls), %s, Python %s, %s"
          % (EXTRA_N, platform.machine(), sys.version.split()[0], refname))
    labels = [label for c, label in COLUMNS if c in columns]
    head = "%-40s" % "operation" + "".join("%12s" % l for l in labels)
    if "floor" in columns and "ours" in columns:
        head += "%12s" % "ours/floor"
    if "reference" in columns and "ours" in columns:
        head += "%14s" % "otel-sdk/ours"
    print(head)
    print("-" * len(head))
    for case in CASES:
        if not any((c, case) in counts for c in columns):
            continue
        row = "%-40s" % case
        for c in columns:
            v = counts.get((c, case))
            row += "%12s" % ("%.0f" % v if v is not None else "n/a")
        f, o, r = (counts.get((c, case)) for c in ("floor", "ours", "reference"))
        if "floor" in columns and "ours" in columns:
            row += "%11.2fx" % (o / f) if f and o else "%12s" % ""
        if "reference" in columns and "ours" in columns:
            row += "%13.0fx" % (r / o) if r and o else "%14s" % ""
        print(row)
    if "prometheus" in columns:
        notes.append("prometheus_client: labels(3 values).inc(1) / .observe(v); child.inc(1) for the "
                     "bound handle; it has no exponential histogram")
    notes.append("floor: d.get(1[, attrs]) on an empty dict in the same loop, plus hash() of a "
                 "6-tuple for the attribute cases")
    for note in notes:
        print("  note: " + note)
    return 0


# -- imports ------------------------------------------------------------------------

# (label, module): the bare API first, the baseline of the ratios.
IMPORTS = (("opentelemetry.metrics (the API)", "opentelemetry.metrics"),
           ("otelmetrics", "otelmetrics"),
           ("opentelemetry.sdk.metrics", "opentelemetry.sdk.metrics"),
           ("otelmetrics.export", "otelmetrics.export"),               # what a program imports
           ("opentelemetry.sdk.metrics.export", "opentelemetry.sdk.metrics.export"),
           ("prometheus_client", "prometheus_client"))


def _process_instructions(statement: str) -> int:
    """Instructions of a fresh ``python -c statement`` in an empty directory."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return _callgrind(["-c", statement], "python -c %r" % statement, env=env)


def import_table(jobs: int) -> int:
    """Instructions of each package's import, alone and with the process's exit."""
    if shutil.which("valgrind") is None:
        print("--imports needs valgrind (e.g. apt-get install -y valgrind)", file=sys.stderr)
        return 2
    rows, notes = [], []
    for label, module in IMPORTS:
        try:
            __import__(module)
        except ImportError:
            notes.append("%s is not installed: no row" % module)
        else:
            rows.append((label, module))
    statements = ["pass", "import os; os._exit(0)"]
    for _, module in rows:
        statements += ["import %s" % module, "import %s, os; os._exit(0)" % module]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        counts = dict(zip(statements, pool.map(_process_instructions, statements)))
    print("instructions of an import in a fresh interpreter (callgrind, PYTHONHASHSEED=0), %s, Python %s"
          % (platform.machine(), sys.version.split()[0]))
    head = "%-34s%16s%10s%18s%10s" % ("import", "import alone", "ratio", "with the exit", "ratio")
    print(head)
    print("-" * len(head))
    base_alone = base_whole = None
    for label, module in rows:
        alone = counts["import %s, os; os._exit(0)" % module] - counts["import os; os._exit(0)"]
        whole = counts["import %s" % module] - counts["pass"]
        if base_alone is None:
            base_alone, base_whole = alone, whole
        print("%-34s%14.1f M%9.3fx%16.1f M%9.3fx" % (label, alone / 1e6, alone / base_alone,
                                                    whole / 1e6, whole / base_whole))
    notes.append("import alone: python -c 'import X, os; os._exit(0)' less 'import os; os._exit(0)'; "
                 "with the exit: 'import X' less 'pass' (the interpreter's exit frees and collects "
                 "what the import left)")
    for note in notes:
        print("  note: " + note)
    return 0


# -- timing ---------------------------------------------------------------------------

def record_cases(make, n, repeat, bound=True):
    provider, loops = sdk_loops(make)
    out = {}
    for case, loop in loops.items():
        if case == BOUND_ADD and not bound:
            continue
        out[case] = best_ns(loop, max(n // 4, 1000) if case == EXPO else n, repeat)
    provider.shutdown()
    return {case: out[case] for case in CASES if case in out}


def prometheus_cases(n, repeat):
    return {case: best_ns(loop, n, repeat) for case, loop in prometheus_loops().items()}


def series_attrs():
    return [{"device": "sensor-%d" % i, "site": "plant-%d" % (i % 7), "kind": "temp"} for i in range(SERIES)]


def memory_per_series(make) -> float:
    """Bytes per series for one counter + one histogram, 2000 series each,
    counting only what the SDK allocates (the attribute dicts pre-exist)."""
    attrs = series_attrs()
    gc.collect()
    tracemalloc.start()
    provider, reader = make()
    meter = provider.get_meter("mem")
    counter = meter.create_counter("c")
    hist = meter.create_histogram("h")
    counter.add(1, attrs[0])
    hist.record(1.0, attrs[0])
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    for a in attrs[1:]:
        counter.add(1, a)
        hist.record(3.0, a)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    provider.shutdown()
    return (after - before) / (SERIES - 1)


def collect_time(make, repeat) -> float:
    """ms to collect one counter with 2000 series into MetricsData (ours build the
    points only when they are read; export_times times a collection with its encoding)."""
    provider, reader = make()
    counter = provider.get_meter("col").create_counter("c")
    for a in series_attrs():
        counter.add(1, a)
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter_ns()
        data = reader.get_metrics_data()
        best = min(best, (time.perf_counter_ns() - t0) / 1e6)
    assert len(data.resource_metrics[0].scope_metrics[0].metrics[0].data.data_points) >= SERIES - 1
    provider.shutdown()
    return best


def export_times(column, repeat) -> dict:
    """ms per collection + OTLP encoding of 2000 series, per export case."""
    provider, loops = export_loops(column)
    out = {case: best_ns(loop, 1, repeat) / 1e6 for case, loop in loops.items()}
    provider.shutdown()
    return out


def run_memory(column: str, series: int, mode: str) -> int:
    """Child process: a counter and a histogram with ``series`` series each, one
    collection, its points read (``mode`` with "p") and its OTLP encoding ("e");
    prints the peak RSS in KiB."""
    attrs = series_attrs()
    provider, reader = ours() if column == "ours" else reference()
    encode = otlp_encoder(column)
    meter = provider.get_meter("mem")
    counter = meter.create_counter("c")
    hist = meter.create_histogram("h")
    for a in attrs[:series]:
        counter.add(1, a)
        hist.record(3.0, a)
    data = reader.get_metrics_data()
    if data is not None and "p" in mode:
        build_points(data)
    if data is not None and "e" in mode:
        encode(data)
    del data
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return 0


def rss_per_series(column: str, mode: str, runs: int = 5) -> float:
    """Bytes of peak RSS per (sum + histogram) series after a collection (and its OTLP
    encoding), from fresh processes with 2000 series and with none (the median of ``runs``
    each: a fresh process's peak varies by a few hundred KiB with its memory layout)."""
    def peak(series):
        return statistics.median(int(subprocess.run([sys.executable, os.path.abspath(__file__), "--run-memory", column,
                                       str(series), mode], check=True, stdout=subprocess.PIPE,
                                      text=True).stdout)
                   for _ in range(runs))
    return (peak(SERIES) - peak(0)) * 1024 / SERIES


def memory() -> int:
    # The reference builds its points in every collection: "p" changes nothing for it.
    for mode, label in (("c", "peak RSS per series, collected"), ("e", "  collected and OTLP-encoded"),
                        ("p", "  collected, points read"), ("pe", "  points read, then OTLP-encoded")):
        mine, ref = rss_per_series("ours", mode), rss_per_series("reference", mode.replace("p", "") or "c")
        print("%-40s %9.0f B  %9.0f B  %9s smaller" % (label, mine, ref,
                                                        "%.1fx" % (ref / mine) if mine > 0 else "?"))
    return 0


def timing(quick: bool) -> int:
    n, repeat = (20_000, 3) if quick else (200_000, 5)
    import opentelemetry.sdk.version as refv

    loop = loop_overhead(n, repeat)
    mine = record_cases(ours, n, repeat)
    ref = record_cases(reference, max(n // 20, 2000), repeat, bound=False)
    prom = prometheus_cases(max(n // 4, 2000), repeat)

    print("otelmetrics vs opentelemetry-sdk %s (and prometheus_client), Python %s"
          % (refv.__version__, sys.version.split()[0]))
    print("per-call times include the benchmark loop (~%.0f ns)\n" % loop)
    head = "%-40s %12s %12s %10s %12s %10s" % ("operation", "otelmetrics", "otel-sdk", "speedup",
                                                 "prometheus", "vs prom")
    print(head)
    print("-" * len(head))
    for op, t in mine.items():
        r = ref.get(op)
        p = prom.get(op)
        print("%-40s %9.0f ns %9s %10s %12s %10s" % (
            op, t,
            "%.0f ns" % r if r else "n/a",
            "%.1fx" % (r / t) if r else "",
            "%.0f ns" % p if p else "n/a",
            "%.1fx" % (p / t) if p else ""))

    mem_mine, mem_ref = memory_per_series(ours), memory_per_series(reference)
    col_mine, col_ref = collect_time(ours, repeat), collect_time(reference, repeat)
    print()
    print("%-40s %9.0f B  %9.0f B  %9.1fx smaller" % ("memory per series (sum + histogram)",
                                                      mem_mine, mem_ref, mem_ref / mem_mine))
    print("%-40s %9.3f ms %9.3f ms %9.1fx" % ("collect 2000 series", col_mine, col_ref,
                                              col_ref / col_mine))
    exp_mine, exp_ref = export_times("ours", repeat * 4), export_times("reference", repeat)
    for case in EXPORT_CASES:
        ref_ms = exp_ref.get(case, exp_ref[COLLECT_ENCODE])
        print("%-40s %9.3f ms %9.3f ms %9.1fx" % (case, exp_mine[case], ref_ms, ref_ms / exp_mine[case]))
    return memory()


def threads_table(adds: int = 200_000, repeat: int = 3) -> int:
    """Wall time per call, all threads together, for 1/2/4 threads (see the docstring)."""
    import threading
    import otelmetrics
    from otelmetrics.export import InMemoryMetricReader

    provider = otelmetrics.MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    meter = provider.get_meter("bench")
    shared = meter.create_counter("shared")

    def plan(kind, t):
        if kind == "one series":
            return shared.add, dict(ATTRS)
        if kind == "own series":
            return shared.add, dict(ATTRS, thread=t)
        return meter.create_counter("own%d" % t).add, dict(ATTRS)

    def run(n_threads, kind):
        work = [plan(kind, t) for t in range(n_threads)]
        for add, a in work:
            add(1, a)                   # series created before the clock starts
        start = threading.Barrier(n_threads + 1)

        cpu = []

        def body(add, a):
            start.wait()
            c0 = time.thread_time_ns()
            for _ in range(adds):
                add(1, a)
            cpu.append(time.thread_time_ns() - c0)
        best = best_cpu = float("inf")
        for _ in range(repeat):
            del cpu[:]
            threads = [threading.Thread(target=body, args=w) for w in work]
            for t in threads:
                t.start()
            start.wait()
            t0 = time.perf_counter_ns()
            for t in threads:
                t.join()
            best = min(best, (time.perf_counter_ns() - t0) / (adds * n_threads))
            best_cpu = min(best_cpu, sum(cpu) / (adds * n_threads))
        return "%4.0f / %-4.0f" % (best, best_cpu)

    gil = getattr(sys, "_is_gil_enabled", lambda: True)()
    print("counter.add(1, 3 attrs) from N threads at once: ns per call, all threads together "
          "(Python %s, GIL %s, %d cores)" % (platform.python_version(), "on" if gil else "off", os.cpu_count()))
    print("%-22s %12s %12s %12s   (wall / CPU ns per call)" % ("threads record into", "1 thread",
                                                                  "2 threads", "4 threads"))
    for kind in ("one series", "own series", "own counter"):
        print("%-22s %12s %12s %12s" % ((kind,) + tuple(run(n, kind) for n in (1, 2, 4))))
    provider.shutdown()
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations (timing)")
    ap.add_argument("--instructions", action="store_true",
                    help="instructions per call under valgrind's callgrind instead of times")
    ap.add_argument("--columns", default=",".join(c for c, _ in COLUMNS),
                    help="with --instructions: which of floor,ours,reference,prometheus to measure")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="with --instructions: callgrind runs at once")
    ap.add_argument("--memory", action="store_true",
                    help="only the peak RSS per series after a collection (fresh processes)")
    ap.add_argument("--threads", action="store_true",
                    help="threads recording at once (scaling) instead of one-thread times")
    ap.add_argument("--imports", action="store_true",
                    help="instructions of each package's import under valgrind's callgrind")
    ap.add_argument("--run-case", nargs=3, metavar=("COLUMN", "CASE", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--run-memory", nargs=3, metavar=("COLUMN", "SERIES", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.run_memory:
        return run_memory(args.run_memory[0], int(args.run_memory[1]), args.run_memory[2])
    if args.memory:
        return memory()
    if args.run_case:
        column, case, n = args.run_case
        return run_case(column, case, int(n))
    if args.threads:
        return threads_table()
    if args.imports:
        return import_table(max(args.jobs, 1))
    if args.instructions:
        columns = [c for c, _ in COLUMNS if c in args.columns.split(",")]
        return instruction_table(columns, max(args.jobs, 1))
    return timing(args.quick)


if __name__ == "__main__":
    sys.exit(main())
