"""``predict``: every tomogram of an input folder through the ensemble, to candidates and a submission.

Two ways to run, one result:

* in-process (``workers=0``, the Python API's default): a prefetch thread loads tomogram k+1
  (decode, resample) while the engines run on k;
* worker processes (``workers>=1`` on CPU, or one per GPU with ``devices``): spawned workers pull
  tomograms one at a time from a dispatcher (a slow tomogram never idles a device), each with
  its engines built once and its own prefetch thread (:mod:`inference.worker`). ``devices='all'``
  uses every GPU this process sees, counted at run time (:mod:`inference.gpus`). A worker that
  cannot start (its engines do not load, its GPU is broken) is reported in one warning and the
  run goes on with the others; only when none can start is it an error;
* Ray actors (``backend='ray'``): the same, one actor per GPU or CPU share on a Ray cluster
  (:mod:`inference.ray_backend`), recorded by the same :class:`Run`.

Every finished tomogram is written at once, atomically, to the work folder
(:mod:`inference.results`); a rerun with the same work folder resumes. A tomogram that raises is
recorded as failed; one whose worker dies (kill -9, CUDA error, out of memory) is retried once
elsewhere, then recorded as failed. Failed and unreached tomograms are written as -1: the
submission is rewritten as results arrive and always at the end, also on an interrupt.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import pandas as pd

from inference import gpus, readers
from inference.engines import EngineOptions
from inference.errors import EngineError, InputError
from inference.manifest import Manifest
from inference.pipeline import FULL, STOP, Plan, failure, load, make_context, prefetched, run_loaded
from inference.results import ResultStore, TomoResult, run_key
from inference.submission import (
    Decision,
    best_per_tomogram,
    candidates_frame,
    decide,
    submission_order,
    write_csv_atomic,
)
from inference.timing import StageTimer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictConfig:
    manifest: Manifest
    input_dir: Path
    output: Path
    spacing_csv: Path | None = None
    default_spacing: float | None = None  # None: the manifest's default_spacing
    engine: EngineOptions = field(default_factory=EngineOptions)
    candidates_dir: Path | None = None
    sample_submission: Path | None = None
    decoder: str = "auto"
    read_threads: int | None = None
    progress: bool = True
    workers: int = 0                       # CPU worker processes; 0: in this process
    devices: tuple[int, ...] | str = ()    # visible GPU indices, one worker each (device 'cuda'); 'all'
    work_dir: Path | None = None           # per-tomogram results; default <output>.work
    restart: bool = False                  # discard the work folder's results first
    retries: int = 1                       # re-runs of a tomogram whose worker died
    write_every_s: float = 5.0             # rewrite the submission at most this often while running
    deadline_h: float | None = None        # time budget of this run (deadline guard); None: no guard
    zarr_level: int | str = 0              # OME-Zarr level read: an index or "auto" (inference.omezarr)
    backend: str = "local"                 # "local" (this machine's processes) or "ray" (inference.ray_backend)
    ray_address: str | None = None         # Ray cluster to join; None: $RAY_ADDRESS, else a local Ray
    copick_out: Path | None = None         # also write fused points as copick picks here (inference.copick_out)
    copick_object: str = "flagellar-motor"
    copick_user: str = "motorfinder"


@dataclass
class PredictResult:
    submission: pd.DataFrame
    decision: Decision
    member_candidates: dict[str, pd.DataFrame]  # per fusion input: member or <member>@<tta>
    fused: pd.DataFrame
    failures: dict[str, str]
    timer: StageTimer
    n_tomograms: int
    results: dict[str, TomoResult] = field(default_factory=dict)


def work_dir_of(cfg: PredictConfig) -> Path:
    return cfg.work_dir if cfg.work_dir is not None else cfg.output.with_name(cfg.output.name + ".work")


class Run:
    """The state of one ``predict`` run: sources, stored results, incremental submission writes."""

    def __init__(self, cfg: PredictConfig):
        self.cfg = cfg
        self.sources = readers.list_sources(cfg.input_dir)
        self.ids = [readers.tomo_id_of(s) for s in self.sources]
        self.order = submission_order(self.ids, cfg.sample_submission)
        default = cfg.default_spacing if cfg.default_spacing is not None else cfg.manifest.default_spacing
        key = run_key(cfg.manifest.path, [m.model for m in cfg.manifest.members], cfg.spacing_csv, default)
        if cfg.zarr_level != 0:  # another level gives other results (the backend does not)
            key += f":zarr_level={cfg.zarr_level}"
        self.store = ResultStore(work_dir_of(cfg), key, restart=cfg.restart)
        self.results: dict[str, TomoResult] = self.store.load(self.ids)
        self.observers: list[Callable[[TomoResult], None]] = []
        self._last_write = 0.0
        if self.results:
            logger.info("resuming: %d of %d tomograms already done in %s", len(self.results), len(self.ids),
                        self.store.dir)
        self.write_submission()  # a valid submission exists from the first second (unreached: -1)

    @property
    def pending(self) -> list[int]:
        return [i for i, t in enumerate(self.ids) if t not in self.results]

    def record(self, result: TomoResult) -> None:
        self.store.write(result)
        self.results[result.tomo_id] = result
        for observe in self.observers:
            observe(result)
        if time.monotonic() - self._last_write >= self.cfg.write_every_s:
            self.write_submission()

    def write_submission(self) -> Decision:
        """The submission from what is done so far (unreached tomograms: -1); atomic."""
        fused = _table({t: r.fused for t, r in self.results.items() if r.status == "ok"}, self.results)
        decision = decide(best_per_tomogram(fused, self.order), self.cfg.manifest.threshold)
        write_csv_atomic(decision.submission, self.cfg.output)
        self._last_write = time.monotonic()
        return decision


def _table(points: dict[str, list[list[float]]], results: dict[str, TomoResult]) -> pd.DataFrame:
    rows = []
    for tomo_id in sorted(points):
        s = results[tomo_id].spacing
        rows.extend((tomo_id, z, y, x, c, s) for z, y, x, c in points[tomo_id])
    return candidates_frame(rows)


def run_predict(cfg: PredictConfig, engine_factory: Callable | None = None,
                planner: Callable[[], Plan] | None = None, worker_entry: Callable | None = None,
                actor_hook: Callable | None = None) -> PredictResult:
    """Run the whole prediction (see the module docstring) and return what it wrote.

    ``engine_factory(member) -> callable`` replaces the engines (tests; in-process only).
    ``planner() -> Plan`` picks how much of the ensemble the next tomogram gets (deadline guard).
    ``worker_entry`` replaces :func:`inference.worker.worker_main` as the worker processes' target
    (a top-level function with its signature; tests use it to inject crashes). ``actor_hook(tomo_id,
    attempt)`` runs on a Ray actor before each tomogram's engines (tests: crashes).
    """
    if cfg.backend not in ("local", "ray"):
        raise InputError(None, f"unknown backend {cfg.backend!r}", "use 'local' or 'ray'")
    if cfg.backend == "ray":  # before anything is written: a missing Ray is an option error
        from inference.ray_backend import import_ray

        import_ray()
    run = Run(cfg)
    logger.info("%d tomograms (%d to do), %d member(s): %s", len(run.ids), len(run.pending),
                len(cfg.manifest.members), ", ".join(m.name for m in cfg.manifest.members))
    try:
        if cfg.devices and run.pending and cfg.backend == "local":
            run.cfg = cfg = replace(cfg, devices=gpus.resolve_devices(cfg.devices))
            logger.info("GPU worker(s) on visible device(s) %s", ", ".join(map(str, cfg.devices)))
        guard = None
        if planner is None and cfg.deadline_h is not None:
            from inference.deadline import DeadlineGuard

            devices = len(cfg.devices) if isinstance(cfg.devices, tuple) else 1  # Ray: 'all' is counted later
            guard = DeadlineGuard(cfg.manifest, cfg.deadline_h * 3600.0, total=len(run.pending),
                                  workers=devices if cfg.devices else max(1, cfg.workers))
            run.observers.append(guard.observe)
            planner = guard
        planner = planner or (lambda: FULL)
        if run.pending and cfg.backend == "ray":
            if engine_factory is not None:
                raise ValueError("engine_factory works in-process only (workers=0)")
            from inference.ray_backend import run_ray

            run_ray(run, planner, on_workers=guard and _set_workers(guard), actor_hook=actor_hook)
        elif run.pending:
            if cfg.workers == 0 and not cfg.devices:
                _run_in_process(run, engine_factory, planner)
            else:
                if engine_factory is not None:
                    raise ValueError("engine_factory works in-process only (workers=0)")
                _run_workers(run, planner, worker_entry, on_workers=guard and _set_workers(guard))
    finally:
        # on success, on an interrupt and on an escaping error: the submission is always written
        result = _finish(run)
    return result


def _set_workers(guard):
    def set_workers(n: int) -> None:  # the deadline guard's projection divides by the live workers
        guard.workers = max(1, n)
    return set_workers


# ---------------------------------------------------------------------------------- in-process


def _run_in_process(run: Run, engine_factory, planner) -> None:
    cfg = run.cfg
    ctx = make_context(cfg.manifest, engine=cfg.engine, spacing_csv=cfg.spacing_csv,
                       default_spacing=cfg.default_spacing, decoder=cfg.decoder, read_threads=cfg.read_threads,
                       engine_factory=engine_factory, zarr_level=cfg.zarr_level)
    pending = run.pending

    def todo():  # lazy: the plan is chosen when the tomogram is loaded
        for i in pending:
            plan = planner()
            if plan is STOP:
                return
            yield i, plan

    bar = _progress(len(run.ids), len(run.ids) - len(pending), cfg.progress)
    try:
        for (i, plan), loaded, err in prefetched(todo(), lambda item: load(run.sources[item[0]], ctx, item[1])):
            tomo_id = run.ids[i]
            if err is not None:
                result = failure(tomo_id, err)
            else:
                try:
                    result = run_loaded(loaded, ctx, plan)
                except Exception as exc:  # one bad tomogram must not lose the run: record it, write -1
                    result = failure(tomo_id, exc)
            run.record(result)
            bar.update(1)
    finally:
        bar.close()


# ----------------------------------------------------------------------------- worker processes


@dataclass
class _WorkerState:
    process: mp.Process
    conn: object   # the dispatcher's end of the worker's duplex pipe
    spec: object
    held: list[int] = field(default_factory=list)  # given, not done, in the order given (= run order)
    waiting: bool = False  # asked for a task that the dispatcher could not give yet
    started: bool = False  # said "ready" once: its engines loaded
    fatal: str | None = None  # why it could not start, as it said before exiting


def _run_workers(run: Run, planner, worker_entry=None, on_workers: Callable[[int], None] | None = None) -> None:
    from multiprocessing.connection import wait

    from inference.worker import Task, WorkerSpec, worker_main

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
    start_failures: dict[int, str] = {}  # worker id -> why it could not start

    def start(device, device_id, threads) -> None:
        wid = next_wid[0]
        next_wid[0] += 1
        pin = gpus.pin_value(device_id) if device == "cuda" and device_id is not None else None
        spec = WorkerSpec(wid=wid, device=device, device_id=device_id, threads=threads, log_level=level, pin=pin)
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
    bar = _progress(len(run.ids), len(run.ids) - len(remaining), cfg.progress)

    def give(w: _WorkerState) -> None:
        plan = planner() if pending else None
        if plan is STOP:  # the deadline: nothing more is started; the rest is written as -1
            remaining.difference_update(pending)
            pending.clear()
        if pending:
            i = pending.pop(0)
            w.held.append(i)
            w.waiting = False
            w.conn.send(Task(index=i, source=str(run.sources[i]), attempt=attempts.get(i, 0), plan=plan))
        elif not remaining:
            w.waiting = False
            w.conn.send(None)
        else:
            w.waiting = True  # others still work; a retry may come

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
            start_failures[w.spec.wid] = f"{where}: {why}"
            pending[:0] = [i for i in w.held if i in remaining]
            if workers:
                logger.warning("%s could not start (%s); continuing on %d other worker(s)", where, why, len(workers))
                if on_workers:
                    on_workers(len(workers))
            elif remaining:
                reasons = "; ".join(v for _, v in sorted(start_failures.items()))
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
            raise EngineError("every worker died and the restart budget is spent")

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
    finally:
        bar.close()
        for w in workers.values():
            try:
                w.conn.send(None)
            except (OSError, ValueError):
                pass
        deadline = time.monotonic() + 10
        for w in workers.values():
            w.process.join(timeout=max(0.1, deadline - time.monotonic()))
            if w.process.is_alive():
                w.process.terminate()


# ------------------------------------------------------------------------------------- finish


def _finish(run: Run) -> PredictResult:
    cfg, results = run.cfg, run.results
    ok = {t: r for t, r in results.items() if r.status == "ok"}
    names = [n for n, _ in cfg.manifest.inputs]  # members, or <member>@<tta> for separate TTAs
    tables = {n: _table({t: r.members[n] for t, r in ok.items() if n in r.members}, results) for n in names}
    fused = _table({t: r.fused for t, r in ok.items()}, results)
    decision = run.write_submission()
    if cfg.candidates_dir is not None:
        for name, df in tables.items():
            write_csv_atomic(df, Path(cfg.candidates_dir) / f"{name}.csv")
        if len(names) > 1:
            write_csv_atomic(fused, Path(cfg.candidates_dir) / "fused.csv")
    if cfg.copick_out is not None:
        from inference.copick_out import write_copick

        n = write_copick(cfg.copick_out, results, object_name=cfg.copick_object, user_id=cfg.copick_user)
        logger.info("copick picks of %d tomogram(s) in %s", n, cfg.copick_out)
    failures = {t: r.error or "failed" for t, r in results.items() if r.status != "ok"}
    unreached = [t for t in run.ids if t not in results]
    timer = StageTimer()
    for r in results.values():
        for k, v in r.seconds.items():
            timer.totals[k] += v
    sources = pd.Series([r.spacing_source for r in ok.values()]).value_counts().to_dict()
    logger.info("spacing from: %s", ", ".join(f"{k} {v}" for k, v in sorted(sources.items())) or "-")
    logger.info("%s (%s)", decision.describe(), cfg.manifest.threshold.describe())
    if failures:
        logger.warning("%d tomogram(s) failed and were written as -1: %s", len(failures),
                       "; ".join(f"{t}: {e}" for t, e in sorted(failures.items())[:5]))
    if unreached:
        logger.warning("%d tomogram(s) were not reached and were written as -1", len(unreached))
    logger.info("stage times (summed over tomograms; loading overlaps the engines): %s", timer.summary())
    return PredictResult(submission=decision.submission, decision=decision, member_candidates=tables, fused=fused,
                         failures=failures, timer=timer, n_tomograms=len(run.ids), results=dict(results))


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, done: int, enabled: bool):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, initial=done, desc="tomograms", unit="tomo")
