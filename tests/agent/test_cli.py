"""otelmetrics-agent end to end: a subprocess exporting to the console and over
OTLP/HTTP to a test server on 127.0.0.1, signals, options and OTEL_* variables."""
import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from otelmetrics.agent.cli import OPTIONS, UsageError, _endpoint_url, help_text, main, parse_args
from agent_trees import RPI

AGENT = [sys.executable, "-m", "otelmetrics.agent"]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(extra)
    return env


def run_agent(*args, env=None, timeout=30):
    # Away from the source tree, so that the installed package is the one that runs.
    return subprocess.run(AGENT + list(args), capture_output=True, text=True, timeout=timeout,
                          env=env or _env(), cwd=tempfile.gettempdir())


def json_documents(text):
    decoder, docs, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        doc, i = decoder.raw_decode(text, i)
        docs.append(doc)
    return docs


def metric_names(doc):
    return {m["name"] for rm in doc["resource_metrics"] for sm in rm["scope_metrics"] for m in sm["metrics"]}


def test_console_prints_one_json_document():
    result = run_agent("--count", "1", "--interval", "0.2")
    assert result.returncode == 0, result.stderr
    (doc,) = json_documents(result.stdout)
    assert {"system.cpu.time", "system.cpu.utilization", "system.memory.usage", "system.network.io",
            "system.process.count", "system.uptime", "system.cpu.load_average.1m"} <= metric_names(doc)
    resource = doc["resource_metrics"][0]["resource"]["attributes"]
    assert resource["service.name"] == "otelmetrics-agent"
    assert resource["os.type"] == "linux" and resource["host.name"]


def test_raspberry_pi_tree_through_the_command_line():
    result = run_agent("--count", "1", "--interval", "0.2", "--root", RPI)
    assert result.returncode == 0, result.stderr
    (doc,) = json_documents(result.stdout)
    expected = {"rpi.throttled", "hw.temperature", "system.cpu.frequency", "system.paging.usage"}
    assert expected <= metric_names(doc)
    resource = doc["resource_metrics"][0]["resource"]["attributes"]
    assert resource["device.model.name"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert resource["host.arch"] == "arm64"


def test_sigterm_flushes_and_exits_0(tmp_path):
    out = tmp_path / "out.json"
    with open(out, "w") as f:
        proc = subprocess.Popen(AGENT + ["--interval", "0.2"], stdout=f, stderr=subprocess.PIPE,
                                text=True, env=_env(), cwd=tempfile.gettempdir())
    try:
        deadline = time.monotonic() + 20
        while "resource_metrics" not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    docs = json_documents(out.read_text())
    assert len(docs) >= 2  # at least one periodic export, then the flush at shutdown
    assert "system.cpu.time" in metric_names(docs[-1])


class _Collector(HTTPServer):
    """A stand-in OTLP/HTTP receiver that keeps each request it gets."""

    def __init__(self):
        self.requests = []
        self.status = 200

        class Handler(BaseHTTPRequestHandler):
            def do_POST(handler):
                body = handler.rfile.read(int(handler.headers["Content-Length"]))
                if handler.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                self.requests.append((handler.path, handler.headers.get("Content-Type"), body))
                handler.send_response(self.status)
                handler.send_header("Content-Type", "application/x-protobuf")
                handler.send_header("Content-Length", "0")
                handler.end_headers()

            def log_message(handler, *args):
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_port


@pytest.fixture
def collector():
    server = _Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _otlp_exporter_available():
    try:
        from otelmetrics.export import OTLPMetricExporter  # noqa: F401
        return True
    except (ImportError, AttributeError):
        return False


needs_otlp = pytest.mark.skipif(not _otlp_exporter_available(),
                                reason="otelmetrics.export.OTLPMetricExporter is not available yet")


def _decode(body):
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

    request = ExportMetricsServiceRequest()
    request.ParseFromString(body)
    return request


@needs_otlp
def test_otlp_to_a_local_collector(collector):
    result = run_agent("--exporter", "otlp", "--endpoint", collector.url, "--count", "1", "--interval", "0.2")
    assert result.returncode == 0, result.stderr
    assert len(collector.requests) == 1
    path, content_type, body = collector.requests[0]
    assert path == "/v1/metrics" and content_type == "application/x-protobuf"
    (rm,) = _decode(body).resource_metrics
    resource = {kv.key: kv.value.string_value for kv in rm.resource.attributes}
    assert resource["service.name"] == "otelmetrics-agent" and resource["os.type"] == "linux"
    metrics = {m.name: m for sm in rm.scope_metrics for m in sm.metrics}
    assert rm.scope_metrics[0].scope.name == "otelmetrics.agent"
    cpu = metrics["system.cpu.time"]
    assert cpu.unit == "s" and cpu.sum.is_monotonic and cpu.sum.aggregation_temporality == 2
    assert {kv.key for kv in cpu.sum.data_points[0].attributes} == {"cpu.mode", "cpu.logical_number"}
    assert metrics["system.memory.usage"].sum.is_monotonic is False
    assert metrics["system.uptime"].gauge.data_points[0].as_double > 0


@needs_otlp
def test_count_exits_1_when_the_collector_refuses(collector):
    collector.status = 400  # not retryable: the export fails at once
    result = run_agent("--endpoint", collector.url, "--count", "1", "--interval", "0.2")
    assert result.returncode == 1
    assert len(collector.requests) == 1


@needs_otlp
def test_otel_variables_apply_and_options_win(collector):
    env = _env(OTEL_METRICS_EXPORTER="otlp", OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
               OTEL_SERVICE_NAME="greenhouse-pi", OTEL_RESOURCE_ATTRIBUTES="site=lab")
    result = run_agent("--count", "1", "--interval", "0.2", env=env)
    assert result.returncode == 0, result.stderr
    (rm,) = _decode(collector.requests[0][2]).resource_metrics
    resource = {kv.key: kv.value.string_value for kv in rm.resource.attributes}
    assert resource["service.name"] == "greenhouse-pi" and resource["site"] == "lab"

    result = run_agent("--count", "1", "--interval", "0.2", "--exporter", "console", env=env)
    assert result.returncode == 0, result.stderr
    assert len(collector.requests) == 1  # the option beat OTEL_METRICS_EXPORTER
    (doc,) = json_documents(result.stdout)
    assert doc["resource_metrics"][0]["resource"]["attributes"]["service.name"] == "greenhouse-pi"


def test_count_exports_exactly_n_documents(capsys):
    assert main(["--count", "2", "--interval", "0.1", "--exporter", "console"]) == 0
    docs = json_documents(capsys.readouterr().out)
    assert len(docs) == 2  # the shutdown flush is not a third


@pytest.mark.parametrize("argv", [["--interval", "0"], ["--count", "-1"], ["--exporter", "prometheus"],
                                  ["--count"], ["--count", "--interval", "1"], ["--e", "otlp"], ["-x"],
                                  ["extra"], ["--interval", "1e300"], ["--count", "1.5"]])
def test_bad_options_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: otelmetrics-agent [-h] [--exporter {console,otlp}]")
    assert "otelmetrics-agent: error: " in err


def test_options_as_argparse_reads_them():
    defaults = parse_args([])
    assert vars(defaults) == {"exporter": None, "endpoint": None, "interval": None, "count": None,
                              "shutdown_timeout": 5.0, "spool_dir": None, "root": "/"}
    args = parse_args(["--exporter=otlp", "--endpoint", "http://c:4318", "--inter", "0.5", "--count=2",
                       "--shutdown", "1", "--spool-dir", "/tmp/s", "--root=/host", "--count", "3"])
    assert vars(args) == {"exporter": "otlp", "endpoint": "http://c:4318", "interval": 0.5, "count": 3,
                          "shutdown_timeout": 1.0, "spool_dir": "/tmp/s", "root": "/host"}
    assert parse_args(["--endpoint=http://c:4318/a=b"]).endpoint == "http://c:4318/a=b"
    for argv in (["-h"], ["--help"], ["--he"], ["--count", "2", "--help"]):
        assert parse_args(argv) is None
    with pytest.raises(UsageError, match="ambiguous option: --e could match --exporter, --endpoint"):
        parse_args(["--e", "otlp"])
    with pytest.raises(UsageError, match=r"argument --interval: inf is out of range: give 0.01 to 86400 seconds"):
        parse_args(["--interval", "inf"])
    with pytest.raises(UsageError, match="argument --exporter: invalid choice: 'x'"):
        parse_args(["--exporter=x"])
    with pytest.raises(UsageError, match="argument --count: expected one argument"):
        parse_args(["--count"])
    with pytest.raises(UsageError, match="unrecognized argument: --nope"):
        parse_args(["--nope", "1"])


def test_help_lists_every_option_within_the_width(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out == help_text() and out.startswith("usage: otelmetrics-agent [-h]")
    assert all(len(line) <= 58 for line in out.splitlines())
    for option in OPTIONS:
        assert "  %s %s" % (option.flag, option.metavar) in out
    words = " ".join(out.split())
    assert "0.01 to 86400" in words and "OTEL_* environment variables apply" in words


def test_the_agent_loads_no_argument_parser():
    """argparse (with gettext and locale, which it imports to parse) was 0.6 MB of the
    console agent's 15.7 MB."""
    code = ("import io, sys, contextlib\n"
            "from otelmetrics.agent.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['--count', '1', '--interval', '0.05']) == 0\n"
            "print(sorted(m for m in ('argparse', 'gettext', 'locale', 'json') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=_env(), cwd=tempfile.gettempdir())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_bad_endpoint_and_root_exit_2(capsys):
    assert main(["--exporter", "otlp", "--endpoint", "ftp://collector"]) == 2
    assert "ftp://collector" in capsys.readouterr().err
    assert main(["--root", "/no/such/dir"]) == 2
    assert "--root" in capsys.readouterr().err


def test_endpoint_gets_the_metrics_path_only_when_it_has_none():
    assert _endpoint_url("http://collector:4318") == "http://collector:4318/v1/metrics"
    assert _endpoint_url("collector:4318/") == "http://collector:4318/v1/metrics"
    assert _endpoint_url("https://otlp.example/custom/metrics") == "https://otlp.example/custom/metrics"


def test_a_console_agent_whose_reader_went_away_stops():
    """``otelmetrics-agent | head``: once head has gone, every export failed with
    BrokenPipeError and a warning, forever (ten a second at this interval). Now the
    export that finds the pipe closed stops the agent: exit status 1, one warning and
    one line saying why, and no traceback from the interpreter's exit."""
    proc = subprocess.Popen(AGENT + ["--interval", "0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=_env(), cwd=tempfile.gettempdir())
    try:
        assert proc.stdout.read(20).startswith(b"{")
        proc.stdout.close()
        rc = proc.wait(timeout=15)
        err = proc.stderr.read().decode()
    finally:
        proc.kill()
        proc.wait()
    assert rc == 1, err
    assert err.count("BrokenPipeError") == 1 and "stdout was closed by its reader; stopped" in err
    assert "Traceback" not in err and "Exception ignored" not in err


def test_sdk_disabled_refuses_at_start():
    """OTEL_SDK_DISABLED=true made configure() return the API's no-op provider: no reader
    ran, --count never ended, and SIGTERM ended in an AttributeError traceback."""
    result = run_agent("--count", "1", "--interval", "0.1", env=_env(OTEL_SDK_DISABLED="true"), timeout=20)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "OTEL_SDK_DISABLED=true" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("value", ["prometheus", "console,zipkin"])
def test_an_exporter_variable_the_agent_cannot_use_is_refused(value):
    """OTEL_METRICS_EXPORTER=prometheus fell back to otlp (to localhost:4318) with a warning."""
    result = run_agent("--count", "1", "--interval", "0.1", env=_env(OTEL_METRICS_EXPORTER=value), timeout=20)
    assert result.returncode == 2, result.stderr
    assert "OTEL_METRICS_EXPORTER" in result.stderr and "console" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("stdout", ["closed", "/dev/full"])
def test_a_console_agent_that_cannot_write_to_stdout_stops(stdout):
    """Started with stdout closed (sys.stdout is None) or on a full device (ENOSPC), the
    console agent ran on, every export failing, and exited 0 on SIGTERM."""
    if stdout == "closed":
        kwargs = {"stdout": subprocess.DEVNULL, "preexec_fn": lambda: os.close(1)}
    elif os.path.exists(stdout):
        kwargs = {"stdout": open(stdout, "w")}
    else:
        pytest.skip("no %s here" % stdout)
    proc = subprocess.Popen(AGENT + ["--interval", "0.1"], stderr=subprocess.PIPE, env=_env(),
                            cwd=tempfile.gettempdir(), **kwargs)
    try:
        rc = proc.wait(timeout=15)
        err = proc.stderr.read().decode()
    finally:
        proc.kill()
        proc.wait()
        if "stdout" in kwargs and kwargs["stdout"] is not subprocess.DEVNULL:
            kwargs["stdout"].close()
    assert rc == 1, err
    assert err.endswith("; stopped\n") and "stdout" in err.splitlines()[-1]
    assert "Traceback" not in err and "Exception ignored" not in err
