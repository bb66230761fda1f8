"""In this process (``workers=0``, the Python API's default): one context, a prefetch thread.

A prefetch thread (:func:`inference.run.prefetch.prefetched`) takes the next task from the ledger and
loads it (decode, resample) while the engines run on the one before: at most one loaded tomogram
waits beside the running one. Taking the task in the prefetch thread means its plan is chosen when
it is loaded. Nothing here can die apart from the run itself, so there is no blame and no restart;
the worker processes and Ray actors read ahead differently on purpose (see
:mod:`inference.run.backends.local_worker`).
"""

from __future__ import annotations

from typing import Callable

from inference.run.backends.ledger import TaskLedger
from inference.run.prefetch import prefetched
from inference.run.tomogram import context_for, load_task, run_task


def run_in_process(run, planner, on_workers: Callable[[int], None] | None = None,
                   engine_factory: Callable | None = None) -> None:
    """Run ``run.pending`` here, recording every result in ``run`` (an :class:`inference.run.runner.Run`).

    ``engine_factory(member) -> callable`` replaces the engines (tests). ``on_workers`` is never
    called: one worker, this process, from start to end.
    """
    ctx = context_for(run.cfg, spacing_table=run.spacing_table, engine_factory=engine_factory)
    ledger = TaskLedger(run, planner, workers=1, on_workers=on_workers)
    try:
        tasks = iter(ledger.next, None)  # lazy: each plan is chosen when its tomogram is loaded
        for task, loaded, err in prefetched(tasks, lambda t: load_task(t, ctx), handoff=ctx.handoff()):
            ledger.done(task.index, run_task(task, loaded, err, ctx))
    finally:
        ledger.close()
