"""What the SDK dropped and why: counted always, warned about rarely.

The reference SDK logs every bad call; on a device that floods the log. Here
each (instrument, reason) pair warns at most once per ``WARN_INTERVAL_S``
seconds, and the warning says how many were dropped since the last one.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter as _Tally
from typing import Callable, Dict, Tuple

logger = logging.getLogger("otelmetrics")

WARN_INTERVAL_S = 60.0


class Diagnostics:
    """Per-provider tallies of dropped measurements and other self-observed events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.dropped: _Tally = _Tally()          # (instrument name, reason) -> count
        self._last_warn: Dict[Tuple[str, str], float] = {}
        self._since_warn: _Tally = _Tally()

    def reporter(self, instrument_name: str) -> Callable[[str], None]:
        """The callable an instrument core calls with a drop reason."""
        def report(reason: str, _name: str = instrument_name) -> None:
            self.record_drop(_name, reason)
        return report

    def record_drop(self, name: str, reason: str) -> None:
        key = (name, reason)
        now = time.monotonic()
        with self._lock:
            self.dropped[key] += 1
            self._since_warn[key] += 1
            last = self._last_warn.get(key)
            if last is not None and now - last < WARN_INTERVAL_S:
                return
            self._last_warn[key] = now
            n = self._since_warn.pop(key)
        logger.warning("instrument %r: measurement %s (%d time(s)%s)", name, reason, n,
                       "" if last is None else " in the last %.0f s" % (now - last))

    def totals_by_reason(self) -> Dict[str, int]:
        with self._lock:
            out: _Tally = _Tally()
            for (_, reason), n in self.dropped.items():
                out[reason] += n
            return dict(out)
