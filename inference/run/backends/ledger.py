"""The task ledger: the bookkeeping every backend shares, written once.

A backend moves tasks (tomograms) to whatever runs them (this process, worker processes, Ray
actors) and results back; the ledger says WHICH task goes next and what a result, a death or a
worker that cannot start means for the run. The backends keep only their transport.

* Order: tasks are given out in the run's order (``run.pending``); :meth:`TaskLedger.next` asks the
  planner (the deadline guard) for each task's plan as it is given out. ``STOP``: nothing more is
  given out; the tasks not given out are dropped (written as -1 by the runner).
* Record once: :meth:`TaskLedger.done` records a result through the run (and moves the bar) only
  for a task still open; a late duplicate (a task re-run after its worker's reply was lost) is dropped.
* The blame rule (:meth:`TaskLedger.died`): a worker runs its tasks in the order given, so the first
  open task it held is the one it was running when it died. That one is charged: re-queued, or,
  after ``retries`` deaths, recorded as failed (``<kind> died (<why>) N time(s)``). The others it
  held go back to the front of the queue uncharged.
* Restarts: a dead worker is replaced while the restart budget lasts; the budget is
  :func:`restart_budget` (the only place of its formula) deaths without a result between them: each
  result a worker returns fills it again, so deaths now and then over a long run (a flaky node, an
  out-of-memory kill on a few large tomograms, ``bench/chaos.py``) never stop the run, while workers that
  die without finishing anything (a crash loop) do. With the budget spent and no worker left, the run
  stops with an error ending in a ``Fix:``.
* Start failures (:meth:`TaskLedger.start_failed`): a worker that cannot start is reported in one
  warning while others remain; when none is left, the run stops with one error.

Four behaviours the local and Ray backends once did differently, decided here for both:

1. No worker could start: ONE line, the reason itself, when every worker gave the same reason and it
   carries a ``Fix:`` (the models or the manifest: the same for all); otherwise each worker's reason
   listed (``no <kind> could start: <where>: <why>; ...``) followed by the backend's ``Fix:``.
2. The restart budget spent: the error ends with a ``Fix:`` on both backends.
3. The deadline guard's worker count (``on_workers``, the live workers: started and not dead) is
   refreshed on every change of the live workers: a start, a start failure, a death.
4. A task's source is :func:`task_source`: a path made absolute (NOT resolved: a linked source keeps
   its own name, which is its tomo_id), a URL as it is; the same on every backend.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from inference.common.errors import EngineError
from inference.common.progress import progress_bar
from inference.io.sources import tomo_id_of
from inference.run.plan import STOP
from inference.run.results import TomoResult

if TYPE_CHECKING:
    from inference.run.plan import Plan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    """One tomogram handed to a worker: its index in the run, its source (:func:`task_source`), how
    many times it was charged with a worker's death before, the plan chosen for it, and its tomo_id."""

    index: int
    source: str
    attempt: int = 0
    plan: "Plan | None" = None  # None: the full ensemble
    tomo_id: str | None = None  # the run's name for it (a copick run's); None: the source's own

    @property
    def name(self) -> str:
        """Its tomo_id: the run's name for it, else its source's own (:func:`inference.io.sources.tomo_id_of`)."""
        return self.tomo_id or tomo_id_of(self.source)


def task_source(source: str | Path) -> str:
    """A source as a task carries it: a URL as it is; a path absolute (valid from any working folder)
    but not resolved, so a link keeps its name (the tomo_id)."""
    return source if isinstance(source, str) else str(Path(source).absolute())


def restart_budget(workers: int, retries: int) -> int:
    """How many dead workers a run replaces in a row (no result between the deaths): enough for every worker to
    die on each try of a task, and two more."""
    return max(workers, 1) * (retries + 1) + 2


class TaskLedger:
    """The tasks of one run (the module docstring): given out, done, charged, re-queued; workers started,
    failed to start, dead; the progress bar. ``run`` is an :class:`inference.run.runner.Run`.

    ``kind`` names a worker in messages ("worker", "Ray actor"); ``start_fix`` is the ``Fix:`` of the
    error when no worker could start for different reasons. ``on_workers(n)`` hears the number of
    live workers whenever it changes. Thread-safe: the in-process backend gives out tasks from its
    prefetch thread while it records results in the main thread.
    """

    def __init__(self, run, planner: Callable, *, workers: int, kind: str = "worker", start_fix: str = "",
                 on_workers: Callable[[int], None] | None = None):
        self.run, self.planner, self.kind, self.start_fix, self.on_workers = run, planner, kind, start_fix, on_workers
        self.pending: list[int] = list(run.pending)  # not given out yet, in order
        self.remaining: set[int] = set(self.pending)  # not recorded yet
        self.attempts: dict[int, int] = {}
        self.budget = self.restarts_left = restart_budget(workers, run.cfg.retries)
        self.start_failures: dict[int, tuple[str, str]] = {}  # worker id -> (where, why)
        self.live = 0
        self._lock = threading.RLock()
        self.bar = progress_bar(len(run.ids), len(run.ids) - len(self.remaining), run.cfg.progress)

    # -- tasks ---------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        """Every task recorded (or dropped by ``STOP``)."""
        return not self.remaining

    def is_open(self, i: int) -> bool:
        return i in self.remaining

    def open_of(self, held) -> list[int]:
        """The tasks of ``held`` not recorded yet, in its order."""
        return [i for i in held if i in self.remaining]

    def next(self) -> Task | None:
        """The next task, its plan chosen now; None when none is left to give out (or the planner said STOP)."""
        with self._lock:
            if not self.pending:
                return None
            plan = self.planner()
            if plan is STOP:  # the deadline: nothing more is started; the rest is written as -1
                self.remaining.difference_update(self.pending)
                self.pending.clear()
                return None
            i = self.pending.pop(0)
            return Task(index=i, source=task_source(self.run.sources[i]), attempt=self.attempts.get(i, 0), plan=plan,
                        tomo_id=self.run.ids[i])

    def done(self, i: int, result: TomoResult) -> None:
        """Record ``result``, which a worker returned, for task ``i`` once (a second result for it is dropped);
        the restart budget is full again (the module docstring)."""
        if self._record(i, result):
            self.restarts_left = self.budget

    def _record(self, i: int, result: TomoResult) -> bool:
        with self._lock:
            if i not in self.remaining:
                return False
            self.remaining.discard(i)
        self.run.record(result)
        self.bar.update(1)
        return True

    def requeue(self, held) -> None:
        """Put the open tasks of ``held`` back at the front of the queue, in their order, uncharged."""
        with self._lock:
            self.pending[:0] = self.open_of(held)

    # -- workers -------------------------------------------------------------------------------
    def started(self) -> None:
        """A worker is ready (its engines loaded)."""
        self.live += 1
        self._tell_workers()

    def died(self, where: str, why: str, held, running: bool = True) -> None:
        """A started worker died holding ``held`` (in the order given): the blame rule (module docstring).
        ``running=False``: it was known to run none of them (its last reply came back): all go back uncharged."""
        self.live -= 1
        lost = self.open_of(held)
        if lost and running:
            logger.warning("%s died (%s) holding %s", where, why, ", ".join(self.run.ids[i] for i in lost))
            culprit = lost[0]
            n = self.attempts[culprit] = self.attempts.get(culprit, 0) + 1
            if n > self.run.cfg.retries:
                self._record(culprit, TomoResult.failed(self.run.ids[culprit], f"{self.kind} died ({why}) {n} time(s)",
                                                        attempts=n))
        self.requeue(lost)
        self._tell_workers()

    def restart(self, why: str, workers_left: int) -> bool:
        """After a death: True when a new worker is to be started (tasks remain, the budget lasts); an
        error when none can be and no worker is left."""
        if not self.remaining:
            return False
        if self.restarts_left > 0:
            self.restarts_left -= 1
            return True
        if not workers_left:
            raise EngineError(f"every {self.kind} died (the last: {why}) and the restart budget is spent; the "
                              "tomograms not done are written as -1. Fix: see the warnings above; a "
                              f"{self.kind} killed by the system is often out of memory: use fewer --workers")
        return False

    def start_failed(self, wid: int, where: str, why: str, held=(), workers_left: int = 0) -> None:
        """A worker could not start: one warning while ``workers_left`` others remain, else the error (decision 1)."""
        self.start_failures[wid] = (where, why)
        self.requeue(held)
        if workers_left:
            logger.warning("%s could not start (%s); continuing on %d other %s(s)", where, why, workers_left, self.kind)
            self._tell_workers()
        elif self.remaining:
            whys = {w for _, w in self.start_failures.values()}
            if len(whys) == 1 and " Fix: " in why:  # the same for all (the models, the manifest): that line
                raise EngineError(why)
            reasons = "; ".join(f"{where}: {why}" for _, (where, why) in sorted(self.start_failures.items()))
            raise EngineError(f"no {self.kind} could start: {reasons}. Fix: {self.start_fix}")

    def _tell_workers(self) -> None:
        if self.on_workers:
            self.on_workers(self.live)

    def close(self) -> None:
        self.bar.close()
