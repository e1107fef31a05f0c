"""``otelmetrics-agent``: export this host's metrics to the console or over OTLP.

    otelmetrics-agent                                   # JSON on stdout every 10 s
    otelmetrics-agent --exporter otlp --endpoint http://collector:4318

The standard OTEL_* variables apply (OTEL_METRICS_EXPORTER, OTEL_METRIC_EXPORT_INTERVAL,
OTEL_EXPORTER_OTLP_*, OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME); options given on
the command line win over them.

Invariants: a bad option or variable (an interval of inf or 1e300, an
OTEL_METRIC_EXPORT_INTERVAL or _TIMEOUT that is no duration in range, an
OTEL_METRICS_EXPORTER that names no exporter, OTEL_SDK_DISABLED=true, which leaves
nothing to export) stops the agent at start with exit status 2 and a message naming it;
``--count N`` ends after N collections, even empty ones; on SIGINT or SIGTERM the agent
exits within ``--shutdown-timeout`` seconds, whatever the collector does, and a repeated
signal does not cut that shutdown short; a console agent that can no longer write to its
stdout (its reader has gone, it has none, its disk is full: ``Stdout``) stops, with exit
status 1, at the export that found it.
"""
from __future__ import annotations

# The signal module's functions without its enums (Signals, Handlers, Sigmasks: 0.12 MB
# resident): the C module it wraps, loaded with every interpreter.
import _signal
import errno
import logging
import os
import sys
import threading
import time
from types import SimpleNamespace
from typing import List, Optional, Sequence

import otelmetrics
from otelmetrics import _env, export
from otelmetrics.agent.host import HostMetrics
from otelmetrics.agent.resource import agent_resource
from otelmetrics.export import ConsoleMetricExporter, MetricExporter, MetricExportResult

_logger = logging.getLogger("otelmetrics.agent")

DEFAULT_INTERVAL_SECONDS = 10.0
INTERVAL_RANGE = (0.01, 86_400.0)          # seconds: 100 collections a second to one a day
DEFAULT_SHUTDOWN_SECONDS = 5.0
SHUTDOWN_RANGE = (0.1, 600.0)
EXPORT_TIMEOUT_RANGE = (0.01, 86_400.0)    # seconds, for OTEL_METRIC_EXPORT_TIMEOUT


class AgentExporter(MetricExporter):
    """The agent's hold on its exporter.

    - With ``count``, it counts collections: an export, or the exporter's
      ``force_flush`` the reader calls for a collection that had nothing to export
      (all sources unreadable), so ``--count N`` ends after N collections whatever
      was read. The first ``count`` go to ``exporter``; the ones after (the flush
      at shutdown) are dropped, so exactly ``count`` go out. ``failures`` counts
      those not delivered. ``done`` is set after the last one.
    - ``wait_idle(seconds)``: waits for the export in flight to return.
    - ``abort()``: shuts ``exporter`` down at once; an export blocked on a collector
      that does not answer then returns, and the OTLP exporter keeps its request
      (in the spool when one is configured).
    """

    def __init__(self, exporter: MetricExporter, count: Optional[int], done: threading.Event) -> None:
        super().__init__(getattr(exporter, "_preferred_temporality", None),
                         getattr(exporter, "_preferred_aggregation", None))
        self._exporter = exporter
        self._left = count
        self._done = done
        self.failures = 0
        self._busy = 0
        self._idle = threading.Condition()
        self._shut = threading.Lock()

    def _call(self, call) -> bool:
        """``call()``'s success, counted as one collection; True without calling
        it once ``count`` collections went out."""
        if self._left is not None:
            if self._left <= 0:
                return True
            self._left -= 1
        with self._idle:
            self._busy += 1
        ok = False
        try:
            ok = call()
            return ok
        finally:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()
            if not ok:
                self.failures += 1
            if self._left == 0:
                self._done.set()

    def export(self, metrics_data, timeout_millis: float = 10_000, **kwargs) -> MetricExportResult:
        delivered = self._call(lambda: self._exporter.export(
            metrics_data, timeout_millis=timeout_millis) is MetricExportResult.SUCCESS)
        return MetricExportResult.SUCCESS if delivered else MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._call(lambda: bool(self._exporter.force_flush(timeout_millis)))

    def wait_idle(self, seconds: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, max(0.0, seconds))

    def abort(self) -> None:
        self.shutdown(timeout_millis=0)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs) -> None:
        if self._shut.acquire(blocking=False):   # once: by abort() or by the reader
            self._exporter.shutdown(timeout_millis)


class UsageError(ValueError):
    """A command line the agent cannot run: the message names the option."""


class _Option:
    """One ``--name VALUE`` option: ``convert`` turns the text into the value or
    raises ValueError with what is wrong."""

    __slots__ = ("flag", "metavar", "convert", "default", "help")

    def __init__(self, flag: str, metavar: str, convert, help: str, default=None) -> None:
        self.flag, self.metavar, self.convert, self.help, self.default = flag, metavar, convert, help, default

    @property
    def dest(self) -> str:
        return self.flag[2:].replace("-", "_")


def _choice(*choices: str):
    def convert(text: str) -> str:
        if text not in choices:
            raise ValueError("invalid choice: %r (choose from %s)" % (text, ", ".join(choices)))
        return text

    return convert


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError("%r is not a whole number" % text) from None
    if not value > 0:
        raise ValueError("must be greater than 0")
    return value


def _duration(text: str, low: float, high: float, unit: str = "s") -> float:
    """``text``, a number of seconds (``unit`` "s") or milliseconds ("ms"), as seconds
    within [low, high]: inf, nan and 1e300 are refused here, with the range, rather than
    killing or hanging a thread later. ValueError saying what is wrong."""
    scale, name = (1e3, "milliseconds") if unit == "ms" else (1.0, "seconds")
    try:
        value = float(text)
    except ValueError:
        raise ValueError("%s is not a number of %s" % (text, name)) from None
    if not low * scale <= value <= high * scale:
        raise ValueError("%s is out of range: give %.15g to %.15g %s" % (text, low * scale, high * scale, name))
    return value / scale


def _seconds(low: float, high: float):
    """An option's duration in seconds within [low, high] (``_duration``)."""
    return lambda text: _duration(text, low, high)


OPTIONS = (
    _Option("--exporter", "{console,otlp}", _choice("console", "otlp"),
            "where metrics go: JSON on stdout, or OTLP/HTTP (default: OTEL_METRICS_EXPORTER, "
            "else console; otlp if --endpoint is given)"),
    _Option("--endpoint", "URL", str,
            "OTLP/HTTP collector, e.g. http://collector:4318 (/v1/metrics is added when the URL "
            "has no path); default: OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT, else http://localhost:4318"),
    _Option("--interval", "SECONDS", _seconds(*INTERVAL_RANGE),
            "seconds between exports, %g to %g (default: OTEL_METRIC_EXPORT_INTERVAL, else %g)"
            % (INTERVAL_RANGE + (DEFAULT_INTERVAL_SECONDS,))),
    _Option("--count", "N", _positive_int,
            "stop after N collections (each exported, or empty when nothing was readable), with "
            "exit status 1 if any export failed (default: run until SIGINT or SIGTERM, then flush "
            "and exit 0)"),
    _Option("--shutdown-timeout", "SECONDS", _seconds(*SHUTDOWN_RANGE),
            "on SIGINT or SIGTERM, seconds to flush and stop, %g to %g (default %g); an export "
            "still waiting on the collector then is given up, and its data kept in the spool if "
            "there is one" % (SHUTDOWN_RANGE + (DEFAULT_SHUTDOWN_SECONDS,)),
            default=DEFAULT_SHUTDOWN_SECONDS),
    _Option("--spool-dir", "DIR", str,
            "OTLP: keep undelivered requests in files in DIR, sent after a restart (default: "
            "OTELMETRICS_EXPORTER_SPOOL_DIR, else kept in memory only)"),
    _Option("--root", "PATH", str,
            "where the host's /proc and /sys are, e.g. /host in a container that mounts the "
            "host's root there (default: /)", default="/"),
)

PROG = "otelmetrics-agent"
DESCRIPTION = ("Export this host's CPU, memory, disk, filesystem, network, process, temperature "
               "and Raspberry Pi throttling metrics with OpenTelemetry.")
EPILOG = "OTEL_* environment variables apply; options given here win over them."


def _usage() -> str:
    return "usage: %s [-h] %s" % (PROG, " ".join("[%s %s]" % (o.flag, o.metavar) for o in OPTIONS))


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``: COLUMNS, else the terminal's width, else 80."""
    try:
        columns = int(_env.env("COLUMNS") or 0)
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80
    except (AttributeError, ValueError, OSError):
        return 80


def help_text() -> str:
    """What ``--help`` prints, wrapped to the terminal (at least 40 columns)."""
    # Deferred on purpose: only --help wraps text.
    import textwrap

    width = max(40, _terminal_columns() - 2)
    lines = textwrap.wrap(_usage(), width, subsequent_indent=" " * 7, break_on_hyphens=False)
    lines += ["", *textwrap.wrap(DESCRIPTION, width), "", "options:",
              "  -h, --help            show this help message and exit"]
    for o in OPTIONS:
        head, text = "  %s %s" % (o.flag, o.metavar), textwrap.wrap(o.help, width - 24)
        if len(head) <= 22:   # the help starts on the option's line when it fits, as argparse's
            head, text = head.ljust(24) + text[0], text[1:]
        lines += [head, *(" " * 24 + line for line in text)]
    lines += ["", *textwrap.wrap(EPILOG, width)]
    return "\n".join(lines) + "\n"


def _option(name: str) -> Optional[_Option]:
    """The option ``name`` designates (None for ``--help``): its flag, or a prefix of
    one flag only (``--shutdown`` for ``--shutdown-timeout``), as argparse allows."""
    flags = [o.flag for o in OPTIONS] + ["--help"]
    hits = [f for f in flags if f == name] or [f for f in flags if f.startswith(name) and len(name) > 2]
    if len(hits) > 1:
        raise UsageError("ambiguous option: %s could match %s" % (name, ", ".join(hits)))
    if not hits:
        raise UsageError("unrecognized argument: %s" % name)
    return next((o for o in OPTIONS if o.flag == hits[0]), None)


def parse_args(argv: Sequence[str]) -> Optional[SimpleNamespace]:
    """The options in ``argv`` (``--name VALUE`` or ``--name=VALUE``), each defaulted;
    a later one wins over an earlier one. None when ``-h`` or ``--help`` asks for the
    help. Raises UsageError naming what is wrong."""
    values = {o.dest: o.default for o in OPTIONS}
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg == "-h":
            return None
        if not arg.startswith("--"):
            raise UsageError("unrecognized argument: %s" % arg)
        name, eq, text = arg.partition("=")
        option = _option(name)
        if option is None:
            return None
        if not eq:
            if not args or args[0].startswith("--"):
                raise UsageError("argument %s: expected one argument" % option.flag)
            text = args.pop(0)
        try:
            values[option.dest] = option.convert(text)
        except ValueError as e:
            raise UsageError("argument %s: %s" % (option.flag, e)) from None
    return SimpleNamespace(**values)


def _command_line(argv: Optional[Sequence[str]]) -> SimpleNamespace:
    """``parse_args`` for ``main``, with argparse's conventions: the help exits 0, a
    bad command line prints the usage and the error and exits 2."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as e:
        sys.stderr.write("%s\n%s: error: %s\n" % (_usage(), PROG, e))
        raise SystemExit(2) from None
    if args is None:
        sys.stdout.write(help_text())
        raise SystemExit(0)
    return args


def _endpoint_url(endpoint: str) -> str:
    # Deferred on purpose: only an OTLP agent reads endpoints; the console agent never
    # loads the OTLP settings.
    from otelmetrics.export.otlp_settings import metrics_endpoint

    return metrics_endpoint(endpoint)


def _exporter_name(args) -> Optional[str]:
    """--exporter, else otlp for --endpoint, else OTEL_METRICS_EXPORTER's first (None for
    "none"), else console; a variable naming an unknown exporter raises ValueError naming it."""
    if args.exporter:
        return args.exporter
    if args.endpoint:
        return "otlp"
    if _env.env(_env.OTEL_METRICS_EXPORTER) is None:
        return "console"
    names = _env.metrics_exporters(strict=True)
    return names[0] if names else None


# Errors writing to stdout that will not go away: no reader (EPIPE), no stdout (EBADF), a
# device that failed or a terminal that hung up (EIO), a full disk or quota, a file at its
# size limit (ENOSPC, EDQUOT, EFBIG: a document cut short would corrupt the stream for its
# reader; a supervisor restarts the agent once there is room).
_STDOUT_GONE = frozenset((errno.EPIPE, errno.EBADF, errno.EIO, errno.ENOSPC, errno.EDQUOT, errno.EFBIG))


class Stdout:
    """The console's stream: ``sys.stdout`` until writing to it fails for good
    (``_STDOUT_GONE``: ``agent | head``, a log pipe that died, an agent started with stdout
    closed, a full disk). Then that write fails once, stdout is pointed at /dev/null (so
    the final flush and the interpreter's exit write nowhere, quietly), ``gone`` says why
    and ``done`` is set: the agent stops instead of failing every export. Any other error
    (EAGAIN: a non-blocking pipe full for now) fails the export it happens in only."""

    def __init__(self, done: threading.Event) -> None:
        self._done = done
        self.gone: Optional[str] = None

    def _call(self, method: str, *args):
        stream = sys.stdout
        try:
            if stream is None:      # started with descriptor 1 closed
                raise OSError(errno.EBADF, "descriptor 1 was closed at start")
            return getattr(stream, method)(*args)
        except OSError as e:
            if e.errno in _STDOUT_GONE and self.gone is None:
                self.gone = ("stdout was closed by its reader" if e.errno == errno.EPIPE
                             else "cannot write to stdout (%s)" % (e.strerror or e))
                _discard(stream)
                self._done.set()
            raise

    def write(self, text: str) -> int:
        return self._call("write", text)

    def flush(self) -> None:
        self._call("flush")


def _discard(stream) -> None:
    """Point ``stream``'s descriptor at /dev/null; without one, make ``sys.stdout`` /dev/null."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        sys.stdout = open(os.devnull, "w")
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _exporter(name: str, args, stdout: Stdout) -> MetricExporter:
    if name == "otlp":
        return export.OTLPMetricExporter(endpoint=_endpoint_url(args.endpoint) if args.endpoint else None,
                                         spool_dir=args.spool_dir)
    return ConsoleMetricExporter(out=stdout)


def _variable_millis(name: str, low: float, high: float) -> Optional[float]:
    """The variable ``name``, milliseconds within [low, high] seconds; None when unset.
    Anything else (inf, nan, 0, -1, "ten", 1e300) raises ValueError naming it: the SDK
    would warn and use its own default, not what the agent documents."""
    raw = _env.env(name)
    if raw is None:
        return None
    try:
        return _duration(raw, low, high, "ms") * 1e3
    except ValueError as e:
        raise ValueError("%s=%s" % (name, e)) from None


def _interval_millis(args) -> float:
    """--interval, else OTEL_METRIC_EXPORT_INTERVAL (in --interval's range), else the default."""
    if args.interval is not None:
        return args.interval * 1e3
    millis = _variable_millis(_env.OTEL_METRIC_EXPORT_INTERVAL, *INTERVAL_RANGE)
    return DEFAULT_INTERVAL_SECONDS * 1e3 if millis is None else millis


def _shut_down(provider, exporter: AgentExporter, seconds: float) -> bool:
    """Flush and stop within ``seconds``; True if everything finished in time.
    ``provider.shutdown`` runs on a daemon thread. If it still runs when a quarter
    of the time (at most 1 s) is left, the exporter is shut down directly: an export
    stuck on a collector that accepts and never answers returns and keeps its
    request (spooled, when a spool is configured). Then the agent exits, whatever
    still runs."""
    deadline = time.monotonic() + seconds
    reserve = min(1.0, seconds / 4)
    stopper = threading.Thread(target=provider.shutdown, kwargs={"timeout_millis": (seconds - reserve) * 1e3},
                               name="otelmetrics-agent-shutdown", daemon=True)
    stopper.start()
    stopper.join(seconds - reserve)
    if stopper.is_alive():
        exporter.abort()
    stopper.join(max(0.0, deadline - time.monotonic()))
    idle = exporter.wait_idle(deadline - time.monotonic())
    return idle and not stopper.is_alive()


def main(argv: Optional[List[str]] = None) -> int:
    args = _command_line(argv)
    logging.basicConfig(format="otelmetrics-agent: %(levelname)s: %(message)s")

    if not os.path.isdir(os.path.join(args.root, "proc")):
        print("otelmetrics-agent: no proc directory under --root %s" % args.root, file=sys.stderr)
        return 2
    if _env.sdk_disabled():   # configure() would return the API's no-op provider: no reader runs
        print("otelmetrics-agent: %s=true leaves nothing to export; unset it to run the agent"
              % _env.OTEL_SDK_DISABLED, file=sys.stderr)
        return 2
    done = threading.Event()
    stdout = Stdout(done)
    try:
        name = _exporter_name(args)
        if name is None:
            print("otelmetrics-agent: OTEL_METRICS_EXPORTER=none leaves nothing to export to; "
                  "choose --exporter console or otlp", file=sys.stderr)
            return 2
        interval = _interval_millis(args)
        timeout = _variable_millis(_env.OTEL_METRIC_EXPORT_TIMEOUT, *EXPORT_TIMEOUT_RANGE)
        exporter = _exporter(name, args, stdout)
    except ValueError as e:  # a bad endpoint, certificate path, spool directory, interval ...
        print("otelmetrics-agent: %s" % e, file=sys.stderr)
        return 2

    exporter = AgentExporter(exporter, args.count, done)
    provider = otelmetrics.configure(resource=agent_resource(args.root), exporter=[exporter],
                                     export_interval_millis=interval, export_timeout_millis=timeout,
                                     set_global=False, shutdown_on_exit=False)
    meter = provider.get_meter("otelmetrics.agent", otelmetrics.__version__)
    # Half an interval: each file is read once per collection, and afresh for the next.
    HostMetrics(meter, root=args.root, max_age=interval / 2e3)

    previous = {signum: _signal.signal(signum, lambda *_: done.set())
                for signum in (_signal.SIGINT, _signal.SIGTERM)}
    try:
        done.wait()
    finally:
        try:
            # With --count this flush is dropped; otherwise it is the last export.
            if not _shut_down(provider, exporter, args.shutdown_timeout):
                _logger.warning("shutdown did not finish within %g s (--shutdown-timeout); exiting anyway",
                                args.shutdown_timeout)
        finally:
            # Only now: a signal repeated during the shutdown (Ctrl-C twice) just sets
            # ``done`` again, rather than killing the agent before it spools.
            for signum, handler in previous.items():
                _signal.signal(signum, handler)
    if stdout.gone:
        print("otelmetrics-agent: %s; stopped" % stdout.gone, file=sys.stderr)
        return 1
    # With --count the exit status says whether every export was delivered (a connectivity check).
    return 1 if args.count and exporter.failures else 0
