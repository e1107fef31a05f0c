"""Runs the jobs of one collection (observable-instrument callbacks) on worker
threads, bounded by the collection's deadline.

A callback that hangs (a sensor read that never returns) must neither stall the
collection nor pile up threads:

- ``run(jobs, deadline)`` hands the jobs, in order, to a worker thread and waits
  until they are done or the deadline passes, whichever comes first.
- A job that has used half the time that was left when it started is presumed
  stuck: if jobs wait behind it, a fresh worker takes them over, so they still
  run in this collection. A new worker is started only when every worker of the
  collection is past that point, so a collection starts at most one thread, plus
  one per stuck job.
- A job still running at the deadline is *stuck*: its key stays in ``stuck``, and
  later calls skip it, until it returns. A hung callback holds exactly one thread
  however many collections come.
- A worker whose job returns takes the next waiting job of its collection, if the
  collection is still open, then waits for the next collection; one idle worker
  is kept, any other ends, and the idle one ends after ``IDLE_SECONDS`` without
  work (so a provider that is gone leaves no thread behind).

The runner runs the jobs and reports; it does not know what they record. Its
caller keeps late results out of the next collection (see ``_pipeline``).
After a fork the owner makes a new runner: the parent's threads do not exist there.
"""
from __future__ import annotations

import threading
import time
from collections import deque
# What the queue module's SimpleQueue and Empty are, without queue.py (and heapq).
from _queue import Empty, SimpleQueue
from typing import Callable, Deque, Dict, Hashable, List, Optional, Tuple

_MAX_WAIT = 60.0   # seconds per wait; a far deadline (1e300) just loops, it never overflows
IDLE_SECONDS = 30.0

Job = Tuple[Hashable, Callable[[], None]]   # (key: what ``stuck`` lists, fn: the work)


class Outcome:
    """What became of a collection's jobs. (A plain class: a NamedTuple costs more
    to create at import than this whole module.)"""

    __slots__ = ("skipped", "stuck", "not_started", "failed")

    def __init__(self, skipped: List[Job], stuck: List[Job], not_started: List[Job],
                 failed: List[Tuple[Job, BaseException]]) -> None:
        self.skipped = skipped              # not run: still stuck since an earlier collection
        self.stuck = stuck                  # still running at the deadline
        self.not_started = not_started      # the deadline came before their turn
        self.failed = failed                # raised out of fn


class _Batch:
    """One collection's jobs, shared by its workers; guarded by the runner's lock."""

    def __init__(self, jobs: List[Job], deadline: float) -> None:
        self.deadline = deadline
        self.waiting: Deque[Job] = deque(jobs)
        self.running: Dict["_Worker", Tuple[Job, float]] = {}   # worker -> (job, presumed stuck at)
        self.failed: List[Tuple[Job, BaseException]] = []
        self.closed = False


class _Worker:
    def __init__(self, runner: "CallbackRunner") -> None:
        self._runner = runner
        self.batches: "SimpleQueue[_Batch]" = SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="otelmetrics-callbacks", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        runner = self._runner
        while True:
            try:
                batch = self.batches.get(timeout=IDLE_SECONDS)
            except Empty:
                if runner._swap_idle(self, None):
                    return
                continue        # the collector took this worker just now: its batch is coming
            job = runner._next(batch, self, None)
            while job is not None:
                try:
                    job[1]()
                except BaseException as e:  # reported to the collector; the worker goes on
                    with runner._cond:
                        batch.failed.append((job, e))
                job = runner._next(batch, self, job)
            if not runner._swap_idle(None, self):
                return


class CallbackRunner:
    """``run(jobs, deadline)`` -> Outcome; ``stuck``: keys of jobs running past their deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._idle: Optional[_Worker] = None
        self._stuck: Dict[Hashable, _Worker] = {}

    @property
    def stuck(self) -> frozenset:
        with self._cond:
            return frozenset(self._stuck)

    # -- called by workers, each under the lock --------------------------------

    def _next(self, batch: _Batch, worker: _Worker, finished: Optional[Job]) -> Optional[Job]:
        with self._cond:
            if finished is not None:
                batch.running.pop(worker, None)
                if self._stuck.get(finished[0]) is worker:
                    del self._stuck[finished[0]]     # it returned: the next collection runs it again
            job = None
            if not batch.closed and batch.waiting:
                job = batch.waiting.popleft()
                now = time.monotonic()
                batch.running[worker] = (job, now + max(0.0, batch.deadline - now) / 2)
            self._cond.notify_all()
            return job

    def _swap_idle(self, expected: Optional[_Worker], new: Optional[_Worker]) -> bool:
        """Compare and set the idle worker. A worker done with its batch parks itself
        (None -> itself; if another is idle already, its thread ends); an idle one
        that timed out retires (itself -> None; False when the collector took it just now)."""
        with self._cond:
            if self._idle is expected:
                self._idle = new
                return True
            return False

    # -- called by the collector -----------------------------------------------

    def _start(self, batch: _Batch) -> None:
        worker, self._idle = self._idle, None
        if worker is None:
            worker = _Worker(self)
        worker.batches.put(batch)

    def run(self, jobs: List[Job], deadline: float) -> Outcome:
        """Run ``jobs`` (in order, each fn without arguments) until they are done or
        ``deadline`` (time.monotonic()) passes; skip those whose key is stuck."""
        with self._cond:
            skipped = [j for j in jobs if j[0] in self._stuck]
            batch = _Batch([j for j in jobs if j[0] not in self._stuck], deadline)
            if batch.waiting:
                self._start(batch)
            started = 1
            while batch.waiting or batch.running:
                now = time.monotonic()
                if now >= deadline:
                    break
                wake = deadline
                if batch.waiting and len(batch.running) == started:
                    # Jobs wait and no worker is free: a new one only when all are presumed stuck.
                    latest = max(at for _, at in batch.running.values())
                    if now >= latest:
                        self._start(batch)
                        started += 1
                        continue
                    wake = min(wake, latest)
                self._cond.wait(min(wake - now, _MAX_WAIT))
            batch.closed = True
            stuck = []
            for worker, (job, _) in batch.running.items():
                self._stuck[job[0]] = worker
                stuck.append(job)
            not_started = list(batch.waiting)
            batch.waiting.clear()
            return Outcome(skipped, stuck, not_started, list(batch.failed))
