"""Code that knows only the opentelemetry-api records into otelmetrics once
``metrics.set_meter_provider`` has been called. The global provider can be set
once per process, so each check runs in a fresh interpreter."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import textwrap

import pytest

SUPPORT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "support")   # api_only_lib.py

SCRIPT = textwrap.dedent("""
    import json, sys
    import api_only_lib                          # before the provider exists: proxies
    assert "otelmetrics" not in sys.modules, "the API-only library pulled in the SDK"
    from opentelemetry import metrics
    import otelmetrics
    from otelmetrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    provider = otelmetrics.MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    metrics.set_meter_provider(provider)
    instruments = api_only_lib.make_instruments()
    api_only_lib.do_work(instruments, 4)

    api_classes = {
        "counter": metrics.Counter, "up_down_counter": metrics.UpDownCounter,
        "histogram": metrics.Histogram, "gauge": metrics._Gauge,
        "observable_counter": metrics.ObservableCounter,
        "observable_up_down_counter": metrics.ObservableUpDownCounter,
        "observable_gauge": metrics.ObservableGauge,
    }
    out = {"api_instances": {k: isinstance(i, api_classes[k]) for k, i in instruments.items()},
           "sdk_instances": {k: type(i).__module__.startswith("otelmetrics") for k, i in instruments.items()},
           "early_is_api_counter": isinstance(api_only_lib.early_counter, metrics.Counter),
           "provider_is_ours": metrics.get_meter_provider() is provider,
           "scopes": {}, "metrics": {}}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            out["scopes"][sm.scope.name] = [sm.scope.version, sm.scope.schema_url]
            for m in sm.metrics:
                points = []
                for p in m.data.data_points:
                    v = p.value if hasattr(p, "value") else [p.count, p.sum, list(p.bucket_counts)]
                    points.append([dict(p.attributes), v])
                out["metrics"][m.name] = {"type": type(m.data).__name__, "unit": m.unit, "points": points}
    print(json.dumps(out))
""")


def run_in_subprocess(script: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SUPPORT] + sys.path))
    proc = subprocess.run([sys.executable, "-c", script], cwd=SUPPORT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def result():
    return run_in_subprocess(SCRIPT)


def test_library_imports_only_the_api():
    tree = ast.parse(open(os.path.join(SUPPORT, "api_only_lib.py")).read())
    imported = [n.name for node in ast.walk(tree) if isinstance(node, ast.Import) for n in node.names]
    imported += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert imported and all(m == "opentelemetry.metrics" or m == "opentelemetry" for m in imported), imported


def test_global_provider_is_ours(result):
    assert result["provider_is_ours"]


def test_instruments_are_api_instances_made_by_otelmetrics(result):
    assert all(result["api_instances"].values()), result["api_instances"]
    assert all(result["sdk_instances"].values()), result["sdk_instances"]
    assert result["early_is_api_counter"]


def test_data_arrives(result):
    m = result["metrics"]
    by_route = lambda name: {p[0]["route"]: p[1] for p in m[name]["points"]}
    assert by_route("lib.requests") == {"/a": 2, "/b": 2}
    assert m["lib.requests"]["type"] == "Sum" and m["lib.requests"]["unit"] == "1"
    assert m["lib.active"]["points"] == [[{}, 3]]
    # 0, 5, 10, 15 into (-inf, 10], (10, 100], (100, inf): the advisory boundaries.
    hist = by_route("lib.duration")
    assert hist == {"/b": [2, 10, [2, 0, 0]], "/a": [2, 20, [1, 1, 0]]}
    assert m["lib.temperature"] == {"type": "Gauge", "unit": "", "points": [[{}, 23]]}
    for name in ("lib.bytes", "lib.queue", "lib.load"):
        assert m[name]["points"] == [[{"pool": "main"}, 28]], name


def test_instruments_created_before_the_provider_forward_to_it(result):
    """The API's proxy meter, obtained before set_meter_provider, records into ours."""
    assert result["scopes"]["api_only_lib.early"][0] == "0.1"
    points = {p[0]["route"]: p[1] for p in result["metrics"]["lib.early.requests"]["points"]}
    assert points == {"/a": 2, "/b": 2}


def test_scope_identity(result):
    assert result["scopes"]["api_only_lib"] == ["0.2", "https://example.com/s/1"]
