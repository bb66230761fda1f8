"""Worker processes on this machine: the dispatcher of ``predict --workers N`` and ``--devices``.

Spawned workers (:mod:`inference.run.backends.local_worker`) pull tomograms one at a time (a slow
tomogram never idles a device), each with its engines built once and its own prefetch thread. What a
result, a death or a worker that cannot start means is the task ledger's
(:mod:`inference.run.backends.ledger`: record once, the blame rule, the restart budget, start
failures); this module is the transport: one duplex pipe per worker, ``multiprocessing.connection.wait``
on the pipes and the process sentinels. Results go through :meth:`inference.run.runner.Run.record`.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from typing import Callable

from inference.engines import gpus
from inference.run.backends.ledger import TaskLedger
from inference.run.backends.local_worker import WorkerSpec, worker_main
from inference.run.backends.worker_log import relay
from inference.run.results import TomoResult

logger = logging.getLogger(__name__)

START_FIX = "see the reason above (python -m inference doctor --device cuda checks the GPU set-up), or run with --device cpu"


@dataclass
class _WorkerState:
    process: mp.Process
    conn: object   # the dispatcher's end of the worker's duplex pipe
    spec: WorkerSpec
    held: list[int] = field(default_factory=list)  # given, not done, in the order given (= run order)
    waiting: bool = False  # asked for a task that the dispatcher could not give yet
    started: bool = False  # said "ready" once: its engines loaded
    fatal: str | None = None  # why it could not start, as it said before exiting

    @property
    def where(self) -> str:
        """How messages name it before it started: by its GPU, or as a CPU worker."""
        return f"GPU {self.spec.device_id}" if self.spec.device == "cuda" else f"CPU worker {self.spec.wid}"


def run_workers(run, planner, on_workers: Callable[[int], None] | None = None,
                worker_entry: Callable | None = None) -> None:
    """Run ``run.pending`` on worker processes (the module docstring); ``run``: an :class:`inference.run.runner.Run`.

    ``worker_entry`` replaces :func:`inference.run.backends.local_worker.worker_main` as the processes'
    target (a top-level function with its signature; tests use it to inject crashes).
    """
    LocalWorkers(run, planner, worker_entry or worker_main, on_workers).loop()


class LocalWorkers:
    """The dispatcher: starts the workers, answers their messages, buries the dead ones (module docstring)."""

    def __init__(self, run, planner, target: Callable, on_workers: Callable[[int], None] | None):
        cfg = run.cfg
        self.run, self.target = run, target
        if cfg.devices:
            self.specs = [("cuda", d, None) for d in cfg.devices]
        else:
            threads = cfg.engine.threads or max(1, (os.cpu_count() or 1) // cfg.workers)
            self.specs = [("cpu", None, threads) for _ in range(cfg.workers)]
        self.spawn = mp.get_context("spawn")
        self.level = logging.getLogger().getEffectiveLevel()
        self.workers: dict[int, _WorkerState] = {}
        self.next_wid = 0
        self.ledger = TaskLedger(run, planner, workers=len(self.specs), kind="worker", start_fix=START_FIX,
                                 on_workers=on_workers)

    def start(self, device: str, device_id: int | None, threads: int | None) -> None:
        wid, self.next_wid = self.next_wid, self.next_wid + 1
        pin = gpus.pin_value(device_id) if device == "cuda" and device_id is not None else None
        spec = WorkerSpec(wid=wid, device=device, device_id=device_id, threads=threads, log_level=self.level, pin=pin,
                          spacing_table=self.run.spacing_table)
        mine, theirs = self.spawn.Pipe(duplex=True)
        proc = self.spawn.Process(target=self.target, args=(spec, self.run.cfg, theirs), name=f"motorfinder-worker{wid}",
                                daemon=True)
        proc.start()
        theirs.close()
        self.workers[wid] = _WorkerState(process=proc, conn=mine, spec=spec)

    # -- messages ------------------------------------------------------------------------------
    def give(self, w: _WorkerState) -> None:
        """Answer a worker's "ready": the next task, None (stop) when the run is done, or nothing yet
        (others still work; a retry may come)."""
        task = self.ledger.next()
        if task is not None:
            w.held.append(task.index)
            w.waiting = False
            self.send(w, task)
        elif self.ledger.finished:
            w.waiting = False
            self.send(w, None)
        else:
            w.waiting = True

    @staticmethod
    def send(w: _WorkerState, msg) -> None:
        """A worker that died a moment ago cannot be told anything: its sentinel fires next and
        :meth:`bury` re-queues what it held."""
        try:
            w.conn.send(msg)
        except (OSError, ValueError):
            pass

    def handle(self, w: _WorkerState, msg) -> None:
        kind = msg[0]
        if kind == "ready":
            if not w.started:
                w.started = True
                self.ledger.started()
            self.give(w)
        elif kind == "done":
            i = msg[2]
            if i in w.held:
                w.held.remove(i)
            self.ledger.done(i, TomoResult.from_json(msg[3]))
        elif kind == "fatal":
            w.fatal = msg[2]  # it exits next; bury() reports it
        elif kind == "log":
            relay(msg)

    def drain(self, w: _WorkerState) -> bool:
        """Handle everything the worker has sent; False once its pipe is closed (it is gone)."""
        try:
            while w.conn.poll():
                self.handle(w, w.conn.recv())
        except (EOFError, OSError):
            return False
        return True

    def bury(self, w: _WorkerState) -> None:
        """A dead worker: the ledger's blame rule for what it held, then a fresh worker while the budget
        lasts. One that never started is reported and not restarted; the run goes on with the others."""
        del self.workers[w.spec.wid]
        w.conn.close()
        code = w.process.exitcode
        if not w.started:
            why = w.fatal or f"it exited with code {code} before it was ready"
            self.ledger.start_failed(w.spec.wid, w.where, why, held=w.held, workers_left=len(self.workers))
            return
        self.ledger.died(f"worker {w.spec.wid}", f"exit code {code}", w.held)
        if self.ledger.restart(f"exit code {code}", workers_left=len(self.workers)):
            self.start(w.spec.device, w.spec.device_id, w.spec.threads)

    # -- the loop ------------------------------------------------------------------------------
    def loop(self) -> None:
        try:
            for s in self.specs:
                self.start(*s)
            while not self.ledger.finished:
                self.step()
            for w in list(self.workers.values()):  # the others finished the run first: still say who could not start
                self.drain(w)
                if not w.started and w.fatal:
                    logger.warning("%s could not start (%s); the others did the work", w.where, w.fatal)
        finally:
            self.ledger.close()
            self.shutdown()

    def step(self) -> None:
        """Wait up to 1 s for a message or a death; handle what came; answer the workers still waiting."""
        owner = {}
        for w in self.workers.values():
            owner[w.conn] = w
            owner[w.process.sentinel] = w
        touched = {owner[r].spec.wid: owner[r] for r in wait(list(owner), timeout=1.0)}
        for w in touched.values():
            alive = self.drain(w)
            if not alive or w.process.exitcode is not None:
                w.process.join(timeout=5)
                self.drain(w)
                self.bury(w)
        for w in list(self.workers.values()):
            if w.waiting and (self.ledger.pending or self.ledger.finished):
                self.give(w)

    def shutdown(self) -> None:
        """Tell every worker to stop; give them 10 s together, then terminate the rest."""
        for w in self.workers.values():
            self.send(w, None)
        deadline = time.monotonic() + 10
        for w in self.workers.values():
            w.process.join(timeout=max(0.1, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.terminate()
