"""Runs observable-instrument callbacks with a time bound.

A callback that hangs (a sensor read that never returns) must not stall the
collection: callbacks run on a worker thread and the collector waits at most
the timeout. A worker stuck in a callback is abandoned (it is a daemon thread)
and the next callback gets a fresh one; the stuck callback is skipped until it
returns.
"""
from __future__ import annotations

import os
import queue
import threading
from typing import Any, Callable, Optional

_STOP = object()


class CallbackTimeout(Exception):
    """The callback did not return in time."""


class _Worker:
    def __init__(self) -> None:
        self.jobs: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="otelmetrics-callbacks", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            job = self.jobs.get()
            if job is _STOP:
                return
            fn, args, box, done = job
            try:
                box.append((True, fn(*args)))
            except BaseException as e:  # handed back to the collector
                box.append((False, e))
            done.set()


class CallbackRunner:
    """``run(fn, *args, timeout=s)``: fn's result, its exception, or CallbackTimeout."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._worker: Optional[_Worker] = None
        self._pid = None

    def _get_worker(self) -> _Worker:
        with self._lock:
            if self._worker is None or self._pid != os.getpid():   # after fork: the thread is gone
                self._worker = _Worker()
                self._pid = os.getpid()
            return self._worker

    def run(self, fn: Callable, *args, timeout: float) -> Any:
        worker = self._get_worker()
        box: list = []
        done = threading.Event()
        worker.jobs.put((fn, args, box, done))
        if not done.wait(timeout):
            with self._lock:
                if self._worker is worker:
                    self._worker = None      # stuck: the next callback gets a new thread
            worker.jobs.put(_STOP)           # ends it once the callback returns
            raise CallbackTimeout("callback did not return within %.3g s" % timeout)
        ok, value = box[0]
        if ok:
            return value
        raise value
