"""``predict``: every tomogram of an input folder through the ensemble, to candidates and a submission.

Three backends (:mod:`inference.run.backends`, chosen by name through
:mod:`inference.run.backends.registry`; this module imports none of them), one result:

* in-process (``workers=0``, the Python API's default; :mod:`inference.run.backends.inprocess`): a
  prefetch thread loads tomogram k+1 (decode, resample) while the engines run on k;
* worker processes (``workers>=1`` on CPU, or one per GPU with ``devices``;
  :mod:`inference.run.backends.local`): spawned workers pull tomograms one at a time from a
  dispatcher (a slow tomogram never idles a device), each with its engines built once and its own
  prefetch thread. ``devices='all'`` uses every GPU this process sees, counted at run time
  (:mod:`inference.engines.gpus`). A worker that cannot start (its engines do not load, its GPU is
  broken) is reported in one warning and the run goes on with the others; only when none can start
  is it an error;
* Ray actors (``backend='ray'``; :mod:`inference.run.backends.ray_actors`): the same, one actor per
  GPU or CPU share on a Ray cluster.

Every backend hands out tasks and reads results through one task ledger
(:mod:`inference.run.backends.ledger`) and runs a tomogram with the same two calls
(:func:`inference.run.tomogram.load_task`, :func:`inference.run.tomogram.run_task`).

:class:`Run` is what every backend records into: the input
listing (every entry not used named in a WARNING; a tomo_id with two sources fails alone), the
checks before any work (:mod:`inference.run.preflight`), the work folder (:mod:`inference.run.results`,
:mod:`inference.run.workdir`: locked, keyed by the inputs, resumed, failed tomograms retried) and the
submission. Every finished tomogram is written at once, atomically; a rerun with the same work
folder resumes. A tomogram that raises is recorded as failed (one ERROR line); one whose worker
dies (kill -9, CUDA error, out of memory) is retried once elsewhere, then recorded as failed.
Failed and unreached tomograms are written as -1: the submission is rewritten as results arrive
and always at the end, also on an interrupt or a fatal error. A write that fails (read-only
folder, full disk) stops the run with one line naming the file; what was written before is valid.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import pandas as pd

from inference.common.atomic import write_csv_atomic
from inference.common.errors import WriteError, one_line
from inference.common.names import name_list
from inference.common.timing import StageTimer
from inference.engines import gpus
from inference.engines.base import EngineOptions
from inference.ensemble.candidates import candidates_frame
from inference.ensemble.particle_submission import ParticleDecision, particle_submission, picks_table
from inference.ensemble.submission import Decision, best_per_tomogram, decide, submission_order
from inference.io.input_listing import list_input
from inference.io.spacing import check_spacing, load_spacing_table
from inference.manifest.types import Manifest
from inference.run import preflight, workdir
from inference.run.backends import registry
from inference.run.plan import FULL, Plan
from inference.run.results import ResultStore, TomoResult
from inference.run.tomogram import finest_target

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PredictConfig:
    """The settings of one ``predict`` run (the command line's options, or the Python API's arguments).

    What is read: ``manifest`` (the ensemble), the sources in ``input_dir`` (a folder, one source or a
    listing), each tomogram's spacing from ``spacing_csv``, else its header, else ``default_spacing``
    (None: the manifest's), the OME-Zarr level ``zarr_level``. What is written: the submission at
    ``output`` (ids in ``sample_submission``'s order when given), each fusion input's candidates in
    ``candidates_dir``, copick picks in ``copick_out``, the per-tomogram results in ``work_dir``
    (resumed unless ``restart``). Where it runs: ``backend`` with ``workers`` / ``devices`` (see the
    module docstring), ``engine`` (device, fp16, threads). Settings that change results (the inputs,
    the default spacing, ``decoder``, ``engine.fp16``, ``zarr_level``) key the stored results; where
    and how fast it runs (``backend``, ``workers``, ``devices``, threads) never changes a byte of the
    output. ``deadline_h`` may lower the ensemble for tomograms the budget cannot fit otherwise (each
    result records its level; :mod:`inference.run.deadline`); ``retries`` is how often a tomogram whose
    worker died is run again; ``read_retries`` how often a source whose read failed with an error that can
    pass by itself (EIO, a timeout, a dropped connection: :mod:`inference.io.read_retry`) is read again
    before its tomogram fails. Frozen: the runner makes a copy when it resolves ``devices='all'``.
    """

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
    read_retries: int = 2                  # reads again of a source after a transient read error
    write_every_s: float = 5.0             # rewrite the submission at most this often while running
    deadline_h: float | None = None        # time budget of this run (deadline guard); None: no guard
    zarr_level: int | str = 0              # OME-Zarr level read: an index or "auto" (inference.io.omezarr)
    backend: str = "local"                 # "local" (this machine's processes) or "ray" (inference.run.backends.ray_actors)
    ray_address: str | None = None         # Ray cluster to join; None: $RAY_ADDRESS, else a local Ray
    copick_out: Path | None = None         # also write fused points as copick picks here (inference.run.copick_out)
    copick_object: str = "flagellar-motor"
    copick_user: str = "motorfinder"
    tomo_type: str = "denoised"            # a copick input's tomogram type (<run>/VoxelSpacing<s>/<tomo_type>.zarr)


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
    picks: pd.DataFrame | None = None  # task particles: every candidate pick (experiment,particle_type,x,y,z,conf)

    @property
    def all_failed(self) -> bool:
        """Tomograms were attempted and none succeeded (the deadline stopping the run before any is no failure)."""
        return bool(self.failures) and not any(r.status == "ok" for r in self.results.values())


def work_dir_of(cfg: PredictConfig) -> Path:
    return cfg.work_dir if cfg.work_dir is not None else cfg.output.with_name(cfg.output.name + ".work")


class Run:
    """The state of one ``predict`` run, for any backend: sources, stored results, incremental writes.

    ``Run(cfg)`` lists the input (warnings), runs the checks before any work, opens and locks the work
    folder and writes a first submission (every tomogram -1 until done); :meth:`record` stores each
    result; :meth:`close` releases the work folder (``run_predict`` does it).
    """

    def __init__(self, cfg: PredictConfig):
        self.cfg = cfg
        found = list_input(cfg.input_dir, tomo_type=cfg.tomo_type, target_A=finest_target(cfg.manifest))
        failing = found.failing()
        self.ids = found.ids
        by_id = {found.id_of(s): s for s in found.sources}
        self.sources = [by_id[t] if t in by_id else failing[t][0] for t in self.ids]
        self._source_of = dict(zip(self.ids, self.sources))
        default = cfg.default_spacing if cfg.default_spacing is not None else cfg.manifest.default_spacing
        check_spacing(default, "--default-spacing" if cfg.default_spacing is not None else "default_spacing",
                      None if cfg.default_spacing is not None else cfg.manifest.path,
                      fix="give the voxel spacing in Å, e.g. 13.1")
        table = self.spacing_table = load_spacing_table(cfg.spacing_csv) if cfg.spacing_csv else None
        preflight.check_output(cfg.output, found.sources, cfg.manifest,
                               [p for p in (cfg.spacing_csv, cfg.sample_submission) if p is not None])
        preflight.check_inputs(found.sources, cfg.manifest, table, default,
                               on_gpu=bool(cfg.devices) or cfg.engine.device == "cuda",
                               ids=[found.id_of(s) for s in found.sources])
        particles = cfg.manifest.task == "particles"
        self.order = submission_order(self.ids, cfg.sample_submission, *(("experiment", "get no row") if particles
                                                                          else ()))
        options = {"decoder": cfg.decoder, "fp16": cfg.engine.fp16}
        if cfg.zarr_level != 0:  # another OME-Zarr level gives other results (the backend does not)
            options["zarr_level"] = cfg.zarr_level
        self.options_key = workdir.options_key(cfg.manifest.path, [m.model for m in cfg.manifest.members],
                                               cfg.spacing_csv, default, options)
        self.store = ResultStore(work_dir_of(cfg), self.options_key, restart=cfg.restart)
        try:
            self._keys: dict[str, str] = {}
            self.results: dict[str, TomoResult] = self.store.load(self.ids, self.key_of)
            for t, (_, problem) in failing.items():  # not stored: a rerun after the fix runs it
                self.results[t] = TomoResult.failed(t, problem)
            self.observers: list[Callable[[TomoResult], None]] = []
            self._last_write = 0.0
            self._report_resume(len(failing))
            self.write_submission()  # a valid submission exists from the first second (unreached: -1)
        except BaseException:
            self.close()
            raise

    def _report_resume(self, n_duplicates: int) -> None:
        store, done = self.store, len(self.results) - n_duplicates
        if store.stale:
            logger.warning("%d stored result(s) were computed from other inputs (a changed source file, manifest, "
                           "model or option) and are computed again: %s", len(store.stale), name_list(store.stale))
        if done or store.retrying:
            retry = f"; {len(store.retrying)} that failed before are tried again" if store.retrying else ""
            logger.info("resuming: %d of %d tomograms already done in %s%s", done, len(self.ids), store.dir, retry)

    def key_of(self, tomo_id: str) -> str:
        """The key of this tomogram's inputs now (the options and its source's size and mtime)."""
        if tomo_id not in self._keys:
            stamp = workdir.source_stamp(self._source_of[tomo_id])
            self._keys[tomo_id] = workdir.result_key(self.options_key, stamp)
        return self._keys[tomo_id]

    @property
    def pending(self) -> list[int]:
        return [i for i, t in enumerate(self.ids) if t not in self.results]

    def record(self, result: TomoResult) -> None:
        """Store one result (stamped with its inputs' key) and, at most every ``write_every_s``, the submission."""
        result.key = self.key_of(result.tomo_id)
        self.store.write(result)
        self.results[result.tomo_id] = result
        for observe in self.observers:
            observe(result)
        if time.monotonic() - self._last_write >= self.cfg.write_every_s:
            self.write_submission()

    def write_submission(self) -> Decision | ParticleDecision:
        """The submission from what is done so far (unreached tomograms: -1; particles: no row); atomic."""
        ok = {t: r for t, r in self.results.items() if r.status == "ok"}
        task = self.cfg.manifest.particles
        if task is not None:
            decision = particle_submission({t: r.picks for t, r in ok.items()}, {t: r.spacing for t, r in ok.items()},
                                           task.classes, self.order)
        else:
            decision = decide(best_per_tomogram(_table({t: r.fused for t, r in ok.items()}, self.results), self.order),
                              self.cfg.manifest.threshold)
        write_csv_atomic(decision.submission, self.cfg.output)
        self._last_write = time.monotonic()
        return decision

    def close(self) -> None:
        """Release the work folder (its lock)."""
        self.store.close()


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
    ``worker_entry`` replaces :func:`inference.run.backends.local_worker.worker_main` as the worker processes' target
    (a top-level function with its signature; tests use it to inject crashes). ``actor_hook(tomo_id,
    attempt)`` runs on a Ray actor before each tomogram's engines (tests: crashes).
    """
    name = registry.backend_name(cfg.backend, cfg.workers, cfg.devices)
    registry.check(name)  # before anything is written: a missing Ray is an option error
    run = Run(cfg)
    logger.info("%d tomograms (%d to do), %d member(s): %s", len(run.ids), len(run.pending),
                len(cfg.manifest.members), ", ".join(m.name for m in cfg.manifest.members))
    try:
        if cfg.devices and run.pending and name == "local":
            run.cfg = cfg = replace(cfg, devices=gpus.resolve_devices(cfg.devices))
            logger.info("GPU worker(s) on visible device(s) %s", ", ".join(map(str, cfg.devices)))
        guard = None
        if planner is None and cfg.deadline_h is not None:
            from inference.run.deadline import DeadlineGuard

            devices = len(cfg.devices) if isinstance(cfg.devices, tuple) else 1  # Ray: 'all' is counted later
            guard = DeadlineGuard(cfg.manifest, cfg.deadline_h * 3600.0, total=len(run.pending),
                                  workers=devices if cfg.devices else max(1, cfg.workers))
            run.observers.append(guard.observe)
            planner = guard
        planner = planner or (lambda: FULL)
        if run.pending:
            if engine_factory is not None and name != "inprocess":
                raise ValueError("engine_factory works in-process only (workers=0)")
            hooks = {"engine_factory": engine_factory, "worker_entry": worker_entry, "actor_hook": actor_hook}
            hook = registry.HOOKS[name]  # the one this backend takes; the others do not apply to it
            registry.backend(name)(run, planner, on_workers=guard and _set_workers(guard), **{hook: hooks[hook]})
    except BaseException as exc:
        # on an interrupt and on an escaping error the submission is still written (unreached: -1)
        finish_after_error(run, exc)
        if isinstance(exc, WriteError):
            raise WriteError(exc.path, exc.problem, f"{exc.fix}; the results saved so far are kept: rerun the same "
                             "command to resume") from None
        raise
    else:
        return finish_run(run)
    finally:
        run.close()


def finish_after_error(run: Run, exc: BaseException) -> None:
    """Write what can be written after ``exc`` stopped the run; a write that fails again is logged, not raised
    (the error that stopped the run is the one the user sees)."""
    try:
        finish_run(run)
    except WriteError as again:  # the same disk, most likely: only a different cause is worth a line
        (logger.debug if isinstance(exc, WriteError) else logger.error)("%s", one_line(again))
    except Exception as again:  # noqa: BLE001 - never hide the error that stopped the run
        logger.error("the submission could not be written after the run stopped: %s", one_line(again))
        logger.debug("the traceback", exc_info=again)


def _set_workers(guard):
    def set_workers(n: int) -> None:  # the deadline guard's projection divides by the live workers
        guard.workers = max(1, n)
    return set_workers


# ------------------------------------------------------------------------------------- finish


def finish_run(run: Run) -> PredictResult:
    cfg, results = run.cfg, run.results
    ok = {t: r for t, r in results.items() if r.status == "ok"}
    # members, or <member>@<tta> for separate TTAs (particles: picks per class instead, below)
    names = [n for n, _ in cfg.manifest.inputs] if cfg.manifest.task == "motors" else []
    tables = {n: _table({t: r.members[n] for t, r in ok.items() if n in r.members}, results) for n in names}
    fused = _table({t: r.fused for t, r in ok.items()}, results)
    decision = run.write_submission()
    task = cfg.manifest.particles
    picks = None
    if task is not None:
        picks = picks_table({t: r.candidates for t, r in ok.items()}, {t: r.spacing for t, r in ok.items()},
                            task.classes, run.order)
    if cfg.candidates_dir is not None:
        if task is not None:
            write_csv_atomic(picks, Path(cfg.candidates_dir) / "candidates.csv")
        for name, df in tables.items():
            write_csv_atomic(df, Path(cfg.candidates_dir) / f"{name}.csv")
        if len(names) > 1:
            write_csv_atomic(fused, Path(cfg.candidates_dir) / "fused.csv")
    if cfg.copick_out is not None:
        from inference.run.copick_out import write_copick

        n = write_copick(cfg.copick_out, results, object_name=cfg.copick_object, user_id=cfg.copick_user,
                         classes=task.classes if task is not None else None)
        logger.info("copick picks of %d tomogram(s) in %s", n, cfg.copick_out)
    failures = {t: r.error or "failed" for t, r in results.items() if r.status != "ok"}
    absent = "have no picks" if task is not None else "were written as -1"
    unreached = [t for t in run.ids if t not in results]
    timer = StageTimer()
    for r in results.values():
        for k, v in r.seconds.items():
            timer.totals[k] += v
    if ok:
        logger.info("spacing: %s", spacing_summary(ok.values()))
    mapped = sorted(t for t, r in ok.items() if r.intensity)
    if mapped:
        logger.info("intensity: %d tomogram(s) were not 8-bit and were mapped to 0..255 (manifest key intensity): %s",
                    len(mapped), name_list(mapped))
    if task is None:
        logger.info("%s (%s)", decision.describe(), cfg.manifest.threshold.describe())
    else:
        logger.info("%s (thresholds per class: %s)", decision.describe(),
                    ", ".join(f"{c.name} {c.threshold:g}" for c in task.classes))
    retried = {t: r.read_retries for t, r in results.items() if r.read_retries}
    if retried:
        logger.info("reads retried after a transient error: %d time(s) on %d tomogram(s): %s", sum(retried.values()),
                    len(retried), name_list(sorted(retried)))
    if failures:
        logger.warning("%d tomogram(s) failed and %s: %s", len(failures), absent,
                       "; ".join(f"{t}: {e}" for t, e in sorted(failures.items())[:5]))
    if unreached:
        logger.warning("%d tomogram(s) were not reached and %s", len(unreached), absent)
    if ok:
        logger.info("stage times (summed over tomograms; loading overlaps the engines): %s", timer.summary())
    return PredictResult(submission=decision.submission, decision=decision, member_candidates=tables, fused=fused,
                         failures=failures, timer=timer, n_tomograms=len(run.ids), results=dict(results),
                         picks=picks)


def spacing_summary(results) -> str:
    """Where the spacings came from, with their values: ``csv 12 (6.5-19.7 Å), header 1 (13.1 Å)``."""
    by_source: dict[str, list[float]] = {}
    for r in results:
        by_source.setdefault(r.spacing_source or "?", []).append(float(r.spacing))
    parts = []
    for source, values in sorted(by_source.items()):
        lo, hi = min(values), max(values)
        span = f"{lo:.4g} Å" if abs(hi - lo) < 1e-9 else f"{lo:.4g}-{hi:.4g} Å"
        parts.append(f"{source} {len(values)} ({span})")
    return ", ".join(parts)
