"""A worker process: one per device (or per CPU share), started with ``spawn``.

It pins its device BEFORE anything imports CUDA (``CUDA_VISIBLE_DEVICES`` set to the dispatcher's
entry for that GPU, :func:`inference.engines.gpus.pin_value`), builds every member's engine once
(:func:`inference.run.tomogram.context_for`), then pulls tomograms from the dispatcher one at a time.

Read-ahead: a prefetch thread reads and resamples tomogram k+1 while the engines run on k, and it
asks the dispatcher for a task only when a slot is free (a semaphore: at most one loaded tomogram
waits beside the running one, so memory stays flat). This differs on purpose from the in-process
prefetch (:func:`inference.run.prefetch.prefetched`, which takes its next task as soon as its queue
has room): a worker holds at most the task it runs and the one it reads, and runs them in the order
given, so the dispatcher knows that the oldest task a dead worker held is the one it was running
(the blame rule, :mod:`inference.run.backends.ledger`). The Ray actor keeps the same order its own way.

The worker talks to the dispatcher over one duplex pipe; a send is written to the pipe before it
returns, so nothing a worker said is lost when it is killed right after. Messages to the dispatcher:

* ``("ready", wid)``: give me a task (the reply is an :class:`inference.run.backends.ledger.Task` or
  ``None`` = stop);
* ``("done", wid, index, result_json)``: its :class:`~inference.run.results.TomoResult`;
* ``("fatal", wid, message)``: the worker cannot work at all (e.g. an engine does not load); it
  exits, the dispatcher reports it and goes on with the other workers;
* ``("log", wid, ...)``: a log record, which the dispatcher writes (:mod:`inference.run.backends.worker_log`),
  one line each, through its progress bar.

Volumes never cross a process boundary: each worker reads its own tomograms; only candidates
(small JSON) come back.

A worker never outlives its dispatcher: a watchdog thread waits on the parent process and ends the
worker quietly the moment it is gone (killed, crashed), and a closed pipe ends it quietly too (no
BrokenPipe traceback). Ctrl-C is the dispatcher's to handle: workers ignore SIGINT.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
from dataclasses import dataclass

from inference.run.backends.worker_log import PipeLogHandler


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker needs besides the run's settings: its id, device and thread budget."""

    wid: int
    device: str           # "cpu" or "cuda"
    device_id: int | None  # the GPU's index as the dispatcher sees it (for messages)
    threads: int | None    # ONNX Runtime intra-op threads on CPU
    log_level: int = logging.INFO
    pin: str | None = None  # this worker's CUDA_VISIBLE_DEVICES (the dispatcher's mask entry for the GPU)
    spacing_table: dict[str, float] | None = None  # the run's spacing CSV, parsed once by the dispatcher's run


def worker_main(spec: WorkerSpec, settings, conn) -> None:
    """Process entry point (top level, so ``spawn`` can import it).

    ``settings``: the run's :class:`inference.run.runner.PredictConfig`; ``conn``: this worker's end of
    a duplex ``multiprocessing.Pipe``. Each task carries the :class:`~inference.run.plan.Plan` the
    dispatcher chose for it (the deadline guard).
    """
    send_lock = threading.Lock()  # two threads send on one connection
    _watch_parent()

    def send(msg) -> None:
        with send_lock:
            try:
                conn.send(msg)
            except (OSError, ValueError):  # the dispatcher is gone: nobody to tell, nothing to save
                _quit()

    if spec.device == "cuda" and (spec.pin is not None or spec.device_id is not None):
        # before any CUDA import below; the pinned GPU is device 0 in this process
        os.environ["CUDA_VISIBLE_DEVICES"] = spec.pin if spec.pin is not None else str(spec.device_id)
    logging.basicConfig(level=spec.log_level, handlers=[PipeLogHandler(spec.wid, send)])  # written by the dispatcher
    log = logging.getLogger(__name__)

    from inference.common.errors import one_line
    from inference.run.tomogram import context_for, load_task, run_task

    try:
        ctx = context_for(settings, spacing_table=spec.spacing_table, device=spec.device, threads=spec.threads)
    except Exception as exc:  # nothing can run here: tell the dispatcher instead of dying silently
        log.debug("worker %d cannot start", spec.wid, exc_info=exc)
        send(("fatal", spec.wid, one_line(exc)))
        return

    local: queue.Queue = queue.Queue()
    slots = threading.Semaphore(1)  # at most one loaded tomogram waits beside the running one
    handoff = ctx.handoff()  # on a GPU: loads on their own stream, handed over by an event

    def prefetch():
        while True:
            slots.acquire()  # ask for a task only when a slot is free (the module docstring)
            send(("ready", spec.wid))
            try:
                task = conn.recv()
            except (EOFError, OSError):  # the dispatcher is gone
                _quit()
            if task is None:
                local.put(None)
                return
            try:
                loaded, event = handoff.produce(lambda t: load_task(t, ctx), task)
                local.put((task, loaded, event, None))
            except Exception as exc:  # recorded as a failed tomogram by the consumer
                local.put((task, None, None, exc))

    threading.Thread(target=prefetch, name="prefetch", daemon=True).start()
    while True:
        item = local.get()
        if item is None:
            break
        slots.release()
        task, loaded, event, err = item
        handoff.consume(event)
        result = run_task(task, loaded, err, ctx)
        del loaded, item
        send(("done", spec.wid, task.index, result.to_json()))
    log.debug("worker %d done", spec.wid)


def _quit() -> None:
    """End this worker at once and quietly (its dispatcher is gone; there is nothing to save): the process
    when it is a worker process, only the calling thread otherwise (a test driving worker_main in a thread)."""
    if mp.parent_process() is None:
        raise SystemExit(0)
    logging.shutdown()
    os._exit(0)


def _watch_parent() -> None:
    """In a worker process: ignore Ctrl-C (the dispatcher's) and end quietly when the parent process ends.
    In the main process (a test driving worker_main in a thread) it does nothing."""
    parent = mp.parent_process()
    if parent is None:
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch():
        parent.join()  # returns when the parent process is gone
        _quit()

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
