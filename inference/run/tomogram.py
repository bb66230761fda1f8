"""The work on one tomogram, the same on every backend (in-process, worker process, Ray actor).

:func:`load` (read, spacing, resample for each member geometry) and :func:`run_loaded` (members,
decode, fusion) are split so a prefetch thread can load tomogram k+1 while the engines run on k.
:class:`Context` holds what a process builds once: the manifest, one predictor (engine) per member;
:func:`context_for` builds it from a run's settings. :func:`load_task` and :func:`run_task` are a
task's two halves as every backend runs them (a failure in either is the task's result, never the
backend's error).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from inference.common.errors import InputError, one_line
from inference.common.timing import StageTimer
from inference.engines.base import EngineOptions, InputHint
from inference.engines.registry import load_engine
from inference.ensemble.fusion import fuse_members
from inference.ensemble.particle_ensemble import ClassMaps, heatmap_picks, points_picks
from inference.io import intensity, readers
from inference.io.listing_file import as_source
from inference.io.omezarr import LevelMap
from inference.io.read_retry import ReadFailed, read_with_retries
from inference.io.sources import tomo_id_of
from inference.io.spacing import resolve_spacing
from inference.manifest.types import Manifest
from inference.predict.geometry import cell_frame_A
from inference.predict.predictor import MemberPredictor
from inference.run.device_handoff import DeviceHandoff, free_pool
from inference.run.model_check import check_engine
from inference.run.plan import FULL, Plan
from inference.run.results import TomoResult

logger = logging.getLogger(__name__)


@dataclass
class Context:
    """Built once per process: the predictors (engines) and the spacing settings."""

    manifest: Manifest
    predictors: list[MemberPredictor]
    spacing_table: dict[str, float] | None
    default_spacing: float
    decoder: str = "auto"
    read_threads: int | None = None
    zarr_level: int | str = 0  # OME-Zarr level read: an index or "auto" (the level for finest_target)
    read_retries: int = 2  # reads again of a source whose read failed transiently (inference.io.read_retry)

    @property
    def xp(self):
        """The array module the predictors run on (NumPy, or CuPy on a GPU)."""
        return self.predictors[0].xp if self.predictors else np

    def handoff(self) -> DeviceHandoff:
        """A hand-off for one loading thread (its own stream on a GPU): :func:`inference.run.prefetch.prefetched`."""
        return DeviceHandoff(self.xp)

    @property
    def finest_target(self) -> float:
        """The finest spacing (Å) any member resamples to: ``--zarr-level auto`` reads no coarser."""
        return finest_target(self.manifest)


def finest_target(manifest: Manifest) -> float:
    """min(target spacing, every 2d member's slice spacing) in Å."""
    return min([manifest.target_spacing] + [m.slice_spacing for m in manifest.members if m.slice_spacing])


def context_for(settings, *, spacing_table: dict[str, float] | None, device: str | None = None,
                threads: int | None = None, engine_factory: Callable | None = None) -> Context:
    """The :class:`Context` of a run's ``settings`` (an :class:`inference.run.runner.PredictConfig`) in this
    process: every member's engine loaded and checked with one window of zeros before the next loads (one line,
    no tomogram). ``device`` (a worker's): its engines on that device, as device 0 (a worker sees only its
    pinned GPU), with ``threads`` intra-op threads unless the run's engine options name a number;
    None: the run's engine options as they are (in-process)."""
    engine, manifest = settings.engine, settings.manifest
    if device is not None:
        engine = replace(engine, device=device, device_id=0, threads=threads or engine.threads)
    factory = engine_factory or (lambda member: load_engine(member.model, member_engine_options(engine, member)))
    xp = array_module(engine.device)
    predictors = []
    for m in manifest.members:
        predictor = MemberPredictor(m, factory(m), manifest.target_spacing, xp=xp)
        check_engine(m, predictor.engine, input_hint(m).sample, xp=xp)
        predictors.append(predictor)
    default = settings.default_spacing if settings.default_spacing is not None else manifest.default_spacing
    return Context(manifest=manifest, predictors=predictors, spacing_table=spacing_table, default_spacing=default,
                   decoder=settings.decoder, read_threads=settings.read_threads, zarr_level=settings.zarr_level,
                   read_retries=settings.read_retries)


def member_engine_options(engine: EngineOptions, member) -> EngineOptions:
    """The run's engine options for one member: its window as the input hint; its ``fp16`` key, when
    the manifest gives one, over the run's ``--fp16``."""
    fp16 = engine.fp16 if member.fp16 is None else member.fp16
    return replace(engine, input_hint=input_hint(member), fp16=fp16)


def input_hint(member) -> InputHint:
    """What the member feeds its engine: up to ``batch_size`` windows of (channels, *patch)."""
    channels = member.channels if member.kind == "2d" else 1
    return InputHint(batch=int(member.batch_size), sample=(int(channels), *(int(p) for p in member.patch)))


def array_module(device: str):
    """NumPy on the CPU; CuPy on a GPU, so volumes stay on the device from the resample on."""
    if device != "cuda":
        return np
    try:
        import cupy
    except ImportError as exc:
        raise InputError(None, "--device cuda needs CuPy", "pip install cupy-cuda12x (Kaggle's GPU image has it), "
                         "or run with --device cpu") from exc
    return cupy


@dataclass
class Loaded:
    """A tomogram read and resampled, ready for the engines."""

    tomo_id: str
    shape: tuple[int, int, int]
    spacing: float
    spacing_source: str
    resampled: dict[tuple, np.ndarray]  # volume key -> resampled volume (one per geometry and intensity rule)
    timer: StageTimer = field(default_factory=StageTimer)
    level_map: LevelMap | None = None  # an OME-Zarr level > 0 was read: results go to level-0 voxels
    base_spacing: float | None = None  # then: level 0's spacing (``spacing`` is the level's)
    keys: dict[str, tuple] = field(default_factory=dict)  # member name -> its key in ``resampled``
    intensity: str | None = None  # how a volume that is not 8-bit was mapped to 0..255 (None: it was not)
    read_retries: int = 0  # times its source was read again after a transient failure

    def volume_for(self, p: MemberPredictor):
        return self.resampled[self.keys[p.member.name]]


def load(source: Path, ctx: Context, plan: Plan = FULL, tomo_id: str | None = None) -> Loaded:
    """Read one source (read again after a transient failure, at most ``ctx.read_retries`` times:
    :func:`inference.io.read_retry.read_with_retries`), resolve its spacing, resample it once per distinct
    member geometry (and, for a volume that is not 8-bit, per intensity rule: :mod:`inference.io.intensity`,
    logged). ``tomo_id``: the name the run knows it by (a copick run's name); by default the source's own
    (:func:`tomo_id_of`)."""
    timer = StageTimer()
    tomo_id = tomo_id or tomo_id_of(source)
    table = ctx.spacing_table or {}
    with timer.stage("read"):
        vol, retries = read_with_retries(
            lambda: readers.read_volume(source, decoder=ctx.decoder, threads=ctx.read_threads,
                                        zarr_level=ctx.zarr_level, target_A=ctx.finest_target,
                                        spacing_A=table.get(tomo_id)), source, retries=ctx.read_retries)
    spacing, how = resolve_spacing(tomo_id, table=ctx.spacing_table, header_spacing=vol.header_spacing,
                                           default=ctx.default_spacing)
    base_spacing = spacing
    if vol.level_map is not None:  # the spacing is level 0's; the level read is scaled from it (along x)
        spacing = base_spacing * vol.level_map.factor[2]
    resampled: dict[tuple, np.ndarray] = {}
    active = _active(ctx, plan)
    data = vol.data
    stats = vol.stats if vol.stats is not None or data.dtype == np.uint8 else intensity.stats_of(data)
    if active and active[0].xp is not np:
        with timer.stage("read"):
            data = active[0].xp.asarray(np.ascontiguousarray(data))  # upload the volume once
    keys: dict[str, tuple] = {}
    mapped: dict = {}  # intensity rule -> (volume in 0..255, how, members)
    for p in active:
        rule = p.member.intensity_rule
        rule = rule if intensity.needs_mapping(rule, stats) else None
        key = keys[p.member.name] = (p.resample_key, rule)
        if rule is not None and rule not in mapped:
            with timer.stage("resample"):
                lo, hi = intensity.value_range(vol.data, rule, stats)
                mapped[rule] = (intensity.to_0_255(data, lo, hi, p.xp), intensity.describe(rule, lo, hi, stats), [])
        if rule is not None:
            mapped[rule][2].append(p.member.name)
        if key not in resampled:
            resampled[key] = p.resample(data if rule is None else mapped[rule][0], spacing, timer)
    notes = [f"{how_} for {', '.join(names)}" for _, how_, names in mapped.values()]
    for note in notes:
        logger.info("%s: %s", tomo_id, note)
    del data, mapped  # the uploaded volume and the mapped copies: their device blocks go back now
    free_pool(ctx.xp)
    return Loaded(tomo_id=tomo_id, shape=tuple(int(n) for n in vol.data.shape), spacing=spacing,
                  spacing_source=how, resampled=resampled, timer=timer, keys=keys,
                  intensity="; ".join(notes) or None, level_map=vol.level_map,
                  base_spacing=base_spacing if vol.level_map is not None else None, read_retries=retries)


def _active(ctx: Context, plan: Plan) -> list[MemberPredictor]:
    if plan.active is None:
        return ctx.predictors
    return [p for p in ctx.predictors if p.member.name in plan.active]


def run_loaded(loaded: Loaded, ctx: Context, plan: Plan = FULL) -> TomoResult:
    """The plan's members on a loaded tomogram, then fusion (in Å) of their candidates.

    ``TomoResult.members`` holds one list per fusion input (a member, or ``<member>@<tta>`` for
    separate TTAs); ``member_seconds`` the time of each member (all its transforms and decodes).
    Task particles: :func:`run_particles`.
    """
    if ctx.manifest.task == "particles":
        return run_particles(loaded, ctx, plan)
    timer = loaded.timer
    members: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    member_seconds = {}
    for p in _active(ctx, plan):
        t0 = time.perf_counter()
        found = p.predict_resampled(loaded.volume_for(p), loaded.spacing, timer,
                                    tta_limit=plan.tta_limit, tomo_shape=loaded.shape)
        for name, cands in found.items():
            members[name] = (cands.zyx, cands.conf)
        free_pool(p.xp)  # the member's heatmaps and window buffers: the next member's engine may need the room
        member_seconds[p.member.name] = time.perf_counter() - t0
    weights = ctx.manifest.input_weights()
    with timer.stage("fusion"):
        fused_zyx, fused_conf = fuse_members(ctx.manifest.fusion, members, weights, loaded.spacing)
    spacing, shape, lm = loaded.spacing, loaded.shape, loaded.level_map
    if lm is not None:  # an OME-Zarr level > 0: report level-0 voxel indices and spacing
        members = {k: (lm.to_base(zyx), conf) for k, (zyx, conf) in members.items()}
        fused_zyx, spacing, shape = lm.to_base(fused_zyx), loaded.base_spacing, lm.base_shape
    return TomoResult(
        tomo_id=loaded.tomo_id, status="ok", spacing=spacing, spacing_source=loaded.spacing_source,
        shape=list(shape), members={k: TomoResult.points(*v) for k, v in members.items()},
        fused=TomoResult.points(fused_zyx, fused_conf), seconds=dict(timer.totals), member_seconds=member_seconds,
        degrade=plan.level, intensity=loaded.intensity, read_retries=loaded.read_retries,
    )


def run_particles(loaded: Loaded, ctx: Context, plan: Plan = FULL) -> TomoResult:
    """Task particles: each member's TTA-averaged logits on its grid, then the manifest's ensemble
    (:mod:`inference.ensemble.particle_ensemble`) decoded at the classes' thresholds (``picks``) and at the
    candidate floor (``candidates``), in ORIGINAL voxel indices."""
    timer, task = loaded.timer, ctx.manifest.particles
    maps, member_seconds = [], {}
    for p in _active(ctx, plan):
        t0 = time.perf_counter()
        logits = p.logits(p.prepare(loaded.volume_for(p), timer), timer, tta_limit=plan.tta_limit)
        origin_A, cell_A = cell_frame_A(p.geometry, loaded.spacing)
        maps.append(ClassMaps(logits=logits, channels=p.member.outputs, origin_A=origin_A, cell_A=cell_A,
                              weight=p.member.weight, activation=p.member.activation, decode=p.member.class_decode))
        member_seconds[p.member.name] = time.perf_counter() - t0
    with timer.stage("decode"):
        picks, candidates = _particle_picks(maps, ctx)
    del maps
    free_pool(ctx.xp)
    spacing, shape, lm = loaded.spacing, loaded.shape, loaded.level_map

    def voxels(found: dict) -> dict:
        out = {}
        for name in task.names:
            zyx_A, conf = found.get(name, (np.zeros((0, 3)), np.zeros(0)))
            zyx = np.asarray(zyx_A, dtype=np.float64).reshape(-1, 3) / spacing
            out[name] = TomoResult.points(lm.to_base(zyx) if lm is not None else zyx, conf)
        return out

    if lm is not None:  # an OME-Zarr level > 0: level-0 voxel indices and spacing
        spacing_out, shape = loaded.base_spacing, lm.base_shape
    else:
        spacing_out = spacing
    return TomoResult(
        tomo_id=loaded.tomo_id, status="ok", spacing=spacing_out, spacing_source=loaded.spacing_source,
        shape=list(shape), picks=voxels(picks), candidates=voxels(candidates), seconds=dict(timer.totals),
        member_seconds=member_seconds, degrade=plan.level, intensity=loaded.intensity,
        read_retries=loaded.read_retries)


def _particle_picks(maps: list[ClassMaps], ctx: Context) -> list[dict]:
    """The manifest's particle ensemble on the members' maps, decoded at the classes' thresholds (picks) and at
    the candidate floor (candidates): two ``{class: (zyx_A, conf)}``."""
    m = ctx.manifest
    if m.particles.ensemble == "heatmap":
        return heatmap_picks(maps, m.particles, floors=(False, True), xp=ctx.xp)
    return points_picks(maps, m.particles, m.fusion, floors=(False, True), xp=ctx.xp)


def load_task(task, ctx: Context) -> Loaded:
    """:func:`load` for a task (an :class:`inference.run.backends.ledger.Task`: its source, id and plan)."""
    return load(as_source(task.source), ctx, task.plan or FULL, task.name)


def run_task(task, loaded: Loaded | None, error: BaseException | None, ctx: Context) -> TomoResult:
    """The result of ``task`` once its load gave ``loaded`` or raised ``error``: :func:`run_loaded` on it,
    or the failure (logged in one line, :func:`failure`) of the load or of the run; ``attempts`` counted
    from the task's, ``read_retries`` from the load (also when every read failed). One bad tomogram never
    stops the caller."""
    tomo_id = task.name
    if error is not None:
        result = failure(tomo_id, error, task.source, outcome_of(ctx.manifest))
        result.read_retries = error.retries if isinstance(error, ReadFailed) else 0
    else:
        try:
            result = run_loaded(loaded, ctx, task.plan or FULL)
        except Exception as exc:  # one bad tomogram must not stop the caller: its failure, written as -1
            result = failure(tomo_id, exc, task.source, outcome_of(ctx.manifest))
    result.attempts = task.attempt + 1
    return result


def outcome_of(manifest: Manifest) -> str:
    """What the submission gives a tomogram without a result: ``-1`` (motors) or no row (particles)."""
    return "gets no picks" if manifest.task == "particles" else "is written as -1"


def failure(tomo_id: str, exc: BaseException, source: str | Path | None = None,
            outcome: str = "is written as -1") -> TomoResult:
    """A failed tomogram: logged here in one line (the traceback at DEBUG, ``-v``), written as -1 by the runner
    (``outcome``: what the submission gives it; a particle run's experiment gets no picks)."""
    text = one_line(exc)
    if isinstance(exc, InputError):
        logger.error("tomogram %s %s: %s", tomo_id, outcome, text)
    else:
        where = f" ({source})" if source is not None else ""
        logger.error("tomogram %s%s failed and %s: %s", tomo_id, where, outcome, text)
    logger.debug("tomogram %s: the traceback", tomo_id, exc_info=exc)
    return TomoResult.failed(tomo_id, text)
