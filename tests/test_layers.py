"""The house rules of the Python layer, checked on the installed package's sources:
every import of otelmetrics points down the layers (README, Layout), the import
graph has no cycle, and imports sit at the top of their module except the few
deferred on purpose (listed here with their reason)."""
import ast
import os
import subprocess
import sys

import otelmetrics

# Lowest first. A module belongs to the layer of its longest matching prefix.
LAYERS = [
    ("native core", ["otelmetrics._native"]),
    ("foundations", ["otelmetrics._env", "otelmetrics._callbacks"]),
    ("model", ["otelmetrics._model", "otelmetrics._filter", "otelmetrics.resources", "otelmetrics._reference"]),
    ("aggregation and views", ["otelmetrics.view", "otelmetrics._instruments", "otelmetrics._exemplars"]),
    ("pipeline and provider", ["otelmetrics._pipeline", "otelmetrics._meter", "otelmetrics._provider",
                               "otelmetrics._self_metrics", "otelmetrics._reference_reader"]),
    ("readers and exporters", ["otelmetrics.export"]),
    ("configure and agent", ["otelmetrics._configure", "otelmetrics.agent", "otelmetrics"]),
]

# (module, imported name): deferred imports, each for a stated reason.
DEFERRED = {
    # PEP 562 facades: heavy parts load on first use, for import time.
    ("otelmetrics", "otelmetrics._configure"),
    ("otelmetrics.export", "otelmetrics.export.otlp"),
    ("otelmetrics.export", "otelmetrics.export.prometheus"),
    # grpcio is optional (the "grpc" extra): configure() loads the OTLP/gRPC exporter only when
    # the protocol is grpc, and otlp_grpc imports grpcio in a try, to say which extra is missing.
    ("otelmetrics._configure", "otelmetrics.export.grpc"),
    # The console agent never parses URLs: the OTLP settings (urllib.parse) load only for --endpoint.
    ("otelmetrics.agent.cli", "otelmetrics.export.otlp_settings"),
    # Only --help wraps text.
    ("otelmetrics.agent.cli", "textwrap"),
    ("otelmetrics.export.otlp_grpc", "grpc"),
    # prometheus_client is optional: imported only when a reader is created and it is installed.
    ("otelmetrics.export.prometheus", "prometheus_client"),
    ("otelmetrics.export.prometheus", "prometheus_client.core"),
    ("otelmetrics.export.prometheus", "prometheus_client.samples"),
    # Each module below costs `import otelmetrics` 0.3-1.5 M instructions (a module is 0.3 M
    # before its first line runs) and only some programs use it; it loads at first use:
    # - an opentelemetry-sdk reader given to the provider (the adapter and the conversion);
    ("otelmetrics._provider", "otelmetrics._reference_reader"),
    # - MeterProvider(self_metrics=True);
    ("otelmetrics._provider", "otelmetrics._self_metrics"),
    # - wildcards: a {pattern: bool} meter_configurator, a View that selects by name;
    ("otelmetrics._provider", "fnmatch"),
    ("otelmetrics.view", "fnmatch"),
    # - a reader with a MetricFilter (whoever made the filter has loaded _filter already);
    ("otelmetrics._pipeline", "otelmetrics._filter"),
    # - the first collection that runs observable callbacks (the runner and its threads);
    ("otelmetrics._pipeline", "otelmetrics._callbacks"),
    # - an opentelemetry-sdk exporter given to PeriodicExportingMetricReader.
    ("otelmetrics.export._readers", "otelmetrics.export._reference_exporter"),
    # The OTLP/HTTP exporter of a small device: ssl (libssl and libcrypto, about 4 MB resident)
    # only for an https endpoint, or for the OTLP/gRPC exporter's TLS files.
    ("otelmetrics.export.otlp_http", "ssl"),
    # urlsplit's NFKC check of a host that is not ASCII, which urlsplit defers too.
    ("otelmetrics.export.otlp_settings", "unicodedata"),
    # A protobuf exporter reads and writes no JSON: the OTLP/JSON encoder (with json and base64)
    # only for http/json, json only for a JSON answer or to split a JSON request.
    ("otelmetrics.export.otlp_protocol", "otelmetrics.export.otlp_json"),
    ("otelmetrics.export.otlp_protocol", "json"),
    # zlib writes every gzip body; the gzip module only reads one back, to split it after a 413.
    ("otelmetrics.export.otlp_protocol", "gzip"),
    # email.utils (with datetime, calendar, locale) only parses a Retry-After written as a date.
    ("otelmetrics.export.otlp_protocol", "email.utils"),
    # opentelemetry-sdk is optional: its data classes are imported only when one of
    # its exporters or readers was given to us (so it is installed), never otherwise.
    ("otelmetrics._reference", "opentelemetry.sdk.metrics"),
    ("otelmetrics._reference", "opentelemetry.sdk.resources"),
    ("otelmetrics._reference", "opentelemetry.sdk.util.instrumentation"),
}


def _layer(module: str) -> int:
    best, found = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, found = len(p), i
    assert found is not None, "module %s is in no layer: add it to LAYERS and to README's Layout" % module
    return found


def _modules():
    root = os.path.dirname(os.path.dirname(otelmetrics.__file__))
    out = {}
    for dirpath, _, files in os.walk(os.path.dirname(otelmetrics.__file__)):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                name = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                out[name[:-len(".__init__")] if name.endswith(".__init__") else name] = path
    return out


def _imports(modules):
    """{module: [(imported module, is at the top level)]}."""
    graph = {}
    for name, path in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read())
        top = set(id(n) for n in tree.body)
        edges = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module + "." + a.name if node.module + "." + a.name in modules else node.module
                           for a in node.names]
            else:
                continue
            for t in targets:
                edges.append((t, id(node) in top))
        graph[name] = edges
    return graph


def test_every_import_points_down_the_layers():
    modules = _modules()
    graph = _imports(modules)
    upward = []
    for name, edges in graph.items():
        for target, _ in edges:
            if target.startswith("otelmetrics") and target != name and _layer(target) > _layer(name):
                upward.append("%s (%s) imports %s (%s)" % (name, LAYERS[_layer(name)][0], target,
                                                           LAYERS[_layer(target)][0]))
    assert not upward, "\n".join(upward)


def test_import_graph_has_no_cycle():
    modules = _modules()
    graph = {n: sorted({t for t, _ in e if t in modules and t != n}) for n, e in _imports(modules).items()}
    # A package's __init__ is imported before its submodules by Python itself: that is not an arrow.
    state, stack, cycles = {}, [], []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in graph.get(n, ()):
            if n.startswith(m + "."):
                continue
            if state.get(m) == 1:
                cycles.append(" -> ".join(stack[stack.index(m):] + [m]))
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    assert not cycles, "\n".join(cycles)


def test_imports_are_at_the_top_of_their_module():
    modules = _modules()
    hidden = ["%s imports %s inside a function" % (name, target)
              for name, edges in _imports(modules).items() for target, at_top in edges
              if not at_top and (name, target) not in DEFERRED
              and not target.startswith("__future__")]
    assert not hidden, "\n".join(hidden)


def test_every_module_states_its_job():
    missing = [name for name, path in _modules().items()
               if os.path.getsize(path) and not ast.get_docstring(ast.parse(open(path).read()))]
    assert not missing, "modules without an opening docstring: %s" % missing


def test_import_otelmetrics_loads_nothing_deferred(tmp_path):
    """What is deferred (DEFERRED, and json in the compiled core) stays unloaded by
    ``import otelmetrics``: the import-time budget (README, Benchmark). What was loaded
    before is not ours: the interpreter's start (site, a .pth file of the installation)
    and opentelemetry-api (on Python 3.9 its importlib_metadata loads pathlib and fnmatch)."""
    # Run from an empty directory: the installed package, not the source tree.
    deferred = sorted({target for _, target in DEFERRED} | {"json", "opentelemetry.trace"})
    code = ("import sys, opentelemetry.metrics; before = set(sys.modules); import otelmetrics; "
            "print(' '.join(m for m in %r if m in sys.modules and m not in before))" % (deferred,))
    out = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == []
