"""Worker processes on this machine: the dispatcher of ``predict --workers N`` and ``--devices``.

Spawned workers (:mod:`inference.run.backends.local_worker`) pull tomograms one at a time (a slow tomogram never idles
a device), each with its engines built once and its own prefetch thread. A worker that cannot start
(its engines do not load, its GPU is broken) is reported in one warning and the run goes on with the
others; when none can start, the run stops with the reason (one line when they all give the same
one: a model that does not fit the manifest). A worker that dies holding a tomogram: that tomogram
is retried once elsewhere, then recorded as failed. Results go through :meth:`inference.run.runner.Run.record`.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from typing import Callable

from inference.common.errors import EngineError
from inference.common.progress import progress_bar
from inference.engines import gpus
from inference.run.plan import STOP
from inference.run.results import TomoResult

logger = logging.getLogger(__name__)


@dataclass
class _WorkerState:
    process: mp.Process
    conn: object   # the dispatcher's end of the worker's duplex pipe
    spec: object
    held: list[int] = field(default_factory=list)  # given, not done, in the order given (= run order)
    waiting: bool = False  # asked for a task that the dispatcher could not give yet
    started: bool = False  # said "ready" once: its engines loaded
    fatal: str | None = None  # why it could not start, as it said before exiting


def run_workers(run, planner, worker_entry=None, on_workers: Callable[[int], None] | None = None) -> None:
    """Run ``run.pending`` on worker processes (the module docstring); ``run``: an :class:`inference.run.runner.Run`."""
    from multiprocessing.connection import wait

    from inference.run.backends.local_worker import Task, WorkerSpec, worker_main

    target = worker_entry or worker_main
    cfg = run.cfg
    ctx = mp.get_context("spawn")
    if cfg.devices:
        specs = [("cuda", d, None) for d in cfg.devices]
    else:
        threads = cfg.engine.threads or max(1, (os.cpu_count() or 1) // cfg.workers)
        specs = [("cpu", None, threads) for _ in range(cfg.workers)]
    level = logging.getLogger().getEffectiveLevel()
    workers: dict[int, _WorkerState] = {}
    next_wid = [0]
    start_failures: dict[int, tuple[str, str]] = {}  # worker id -> (which, why it could not start)

    def start(device, device_id, threads) -> None:
        wid = next_wid[0]
        next_wid[0] += 1
        pin = gpus.pin_value(device_id) if device == "cuda" and device_id is not None else None
        spec = WorkerSpec(wid=wid, device=device, device_id=device_id, threads=threads, log_level=level, pin=pin,
                          spacing_table=run.spacing_table)
        mine, theirs = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=target, args=(spec, cfg, theirs), name=f"motorfinder-worker{wid}", daemon=True)
        proc.start()
        theirs.close()
        workers[wid] = _WorkerState(process=proc, conn=mine, spec=spec)

    for s in specs:
        start(*s)
    pending = list(run.pending)          # task indices not yet given out, in order
    attempts: dict[int, int] = {}
    restarts_left = max(len(specs), 1) * (cfg.retries + 1) + 2
    remaining = set(pending)
    bar = progress_bar(len(run.ids), len(run.ids) - len(remaining), cfg.progress)

    def give(w: _WorkerState) -> None:
        plan = planner() if pending else None
        if plan is STOP:  # the deadline: nothing more is started; the rest is written as -1
            remaining.difference_update(pending)
            pending.clear()
        if pending:
            i = pending.pop(0)
            w.held.append(i)
            w.waiting = False
            send(w, Task(index=i, source=str(run.sources[i]), attempt=attempts.get(i, 0), plan=plan))
        elif not remaining:
            w.waiting = False
            send(w, None)
        else:
            w.waiting = True  # others still work; a retry may come

    def send(w: _WorkerState, msg) -> None:
        """A worker that died a moment ago cannot be told anything: its sentinel fires next and bury()
        re-queues what it held."""
        try:
            w.conn.send(msg)
        except (OSError, ValueError):
            pass

    def handle(w: _WorkerState, msg) -> None:
        kind = msg[0]
        if kind == "ready":
            w.started = True
            give(w)
        elif kind == "done":
            i, result = msg[2], TomoResult.from_json(msg[3])
            if i in w.held:
                w.held.remove(i)
            if i in remaining:
                remaining.discard(i)
                run.record(result)
                bar.update(1)
        elif kind == "fatal":
            w.fatal = msg[2]  # it exits next; bury() reports it

    def drain(w: _WorkerState) -> bool:
        """Handle everything the worker has sent; False once its pipe is closed (it is gone)."""
        try:
            while w.conn.poll():
                handle(w, w.conn.recv())
        except (EOFError, OSError):
            return False
        return True

    def bury(w: _WorkerState) -> None:
        """A dead worker: the first tomogram it held is the one it was running (tomograms run in the
        order given), the culprit: retried once, then failed. The rest are re-queued. One that never
        started is reported and not restarted; the run goes on with the others."""
        nonlocal restarts_left
        del workers[w.spec.wid]
        w.conn.close()
        if not w.started:
            where = f"GPU {w.spec.device_id}" if w.spec.device == "cuda" else f"CPU worker {w.spec.wid}"
            why = w.fatal or f"it exited with code {w.process.exitcode} before it was ready"
            start_failures[w.spec.wid] = (where, why)
            pending[:0] = [i for i in w.held if i in remaining]
            if workers:
                logger.warning("%s could not start (%s); continuing on %d other worker(s)", where, why, len(workers))
                if on_workers:
                    on_workers(len(workers))
            elif remaining:
                whys = {why for _, why in start_failures.values()}
                if len(whys) == 1 and " Fix: " in why:  # the same for all: the models or the manifest, one line
                    raise EngineError(why)
                reasons = "; ".join(f"{where}: {why}" for where, why in (v for _, v in sorted(start_failures.items())))
                raise EngineError(f"no worker could start: {reasons}. Fix: see the reason above (python -m inference "
                                  "doctor --device cuda checks the GPU set-up), or run with --device cpu")
            return
        lost = [i for i in w.held if i in remaining]
        if lost:
            logger.warning("worker %d died (exit code %s) holding %s", w.spec.wid, w.process.exitcode,
                           ", ".join(run.ids[i] for i in lost))
            culprit = lost[0]
            attempts[culprit] = attempts.get(culprit, 0) + 1
            if attempts[culprit] > cfg.retries:
                remaining.discard(culprit)
                run.record(TomoResult.failed(run.ids[culprit], f"worker died (exit code {w.process.exitcode}) "
                                             f"{attempts[culprit]} time(s)", attempts=attempts[culprit]))
                bar.update(1)
                lost = lost[1:]
            pending[:0] = lost
        if remaining and restarts_left > 0:
            restarts_left -= 1
            start(w.spec.device, w.spec.device_id, w.spec.threads)
        elif remaining and not workers:
            raise EngineError(f"every worker died (the last with exit code {w.process.exitcode}) and the restart "
                              "budget is spent; the tomograms not done are written as -1. Fix: see the warnings "
                              "above; a worker killed by the system is often out of memory: use fewer --workers")

    try:
        while remaining:
            owner = {}
            for w in workers.values():
                owner[w.conn] = w
                owner[w.process.sentinel] = w
            touched = {owner[r].spec.wid: owner[r] for r in wait(list(owner), timeout=1.0)}
            for w in touched.values():
                alive = drain(w)
                if not alive or w.process.exitcode is not None:
                    w.process.join(timeout=5)
                    drain(w)
                    bury(w)
            for w in list(workers.values()):
                if w.waiting and (pending or not remaining):
                    give(w)
        for w in list(workers.values()):  # the others finished the run first: still say who could not start
            drain(w)
            if not w.started and w.fatal:
                where = f"GPU {w.spec.device_id}" if w.spec.device == "cuda" else f"CPU worker {w.spec.wid}"
                logger.warning("%s could not start (%s); the others did the work", where, w.fatal)
    finally:
        bar.close()
        for w in workers.values():
            send(w, None)
        deadline = time.monotonic() + 10
        for w in workers.values():
            w.process.join(timeout=max(0.1, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.terminate()


