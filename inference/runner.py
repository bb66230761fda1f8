"""``predict``: every tomogram of an input folder through every member, to candidates and a submission.

The loop is sequential here (one process); per tomogram: read -> resample (shared by members of
one target spacing) -> per member: normalize, TTA x sliding window, decode -> fusion -> best
point. A tomogram that cannot be read or run is logged, recorded as failed and written as -1;
the submission is written even when the run is interrupted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from inference import readers
from inference.engines import EngineOptions, load_engine
from inference.errors import InputError
from inference.fusion import fuse_with
from inference.manifest import Manifest
from inference.predictor import MemberPredictor
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


@dataclass
class PredictResult:
    submission: pd.DataFrame
    decision: Decision
    member_candidates: dict[str, pd.DataFrame]
    fused: pd.DataFrame
    failures: dict[str, str]
    timer: StageTimer
    n_tomograms: int


def build_predictors(manifest: Manifest, options: EngineOptions,
                     engine_factory: Callable | None = None) -> list[MemberPredictor]:
    """One predictor per member, each with its engine built once."""
    factory = engine_factory or (lambda member: load_engine(member.model, options))
    return [MemberPredictor(m, factory(m), manifest.target_spacing) for m in manifest.members]


def predict_volume(volume: np.ndarray, spacing: float, predictors: list[MemberPredictor],
                   timer: StageTimer) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """All members on one volume: ``{member name: (zyx original voxels (K,3), conf (K,))}``."""
    resampled: dict[tuple, np.ndarray] = {}  # members with the same spacings share one resample
    out = {}
    for p in predictors:
        key = p.geometry.spacings
        if key not in resampled:
            resampled[key] = p.resample(volume, spacing, timer)
        prepared = p.normalize(resampled[key], timer)
        cands = p.decode(p.heatmap(prepared, timer), spacing, timer, tuple(volume.shape))
        out[p.member.name] = (cands.zyx, cands.conf)
    return out


def combine(manifest: Manifest, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Member candidate tables -> one table: the member's own with one member, else fused."""
    if len(manifest.members) == 1:
        return tables[manifest.members[0].name]
    return fuse_with(manifest.fusion, list(tables.values()), [m.weight for m in manifest.members], list(tables))


def run_predict(cfg: PredictConfig, engine_factory: Callable | None = None) -> PredictResult:
    """Run the whole prediction; see the module docstring."""
    manifest = cfg.manifest
    sources = readers.list_sources(cfg.input_dir)
    table = readers.load_spacing_table(cfg.spacing_csv) if cfg.spacing_csv else None
    default = cfg.default_spacing if cfg.default_spacing is not None else manifest.default_spacing
    predictors = build_predictors(manifest, cfg.engine, engine_factory)
    logger.info("%d tomograms, %d member(s): %s", len(sources), len(predictors),
                ", ".join(p.member.name for p in predictors))

    timer = StageTimer()
    rows: dict[str, list[tuple]] = {p.member.name: [] for p in predictors}
    failures: dict[str, str] = {}
    ids = [readers.tomo_id_of(s) for s in sources]
    spacing_sources: dict[str, int] = {}
    try:
        for source in _progress(sources, cfg.progress):
            tomo_id = readers.tomo_id_of(source)
            try:
                with timer.stage("read"):
                    vol = readers.read_volume(source, decoder=cfg.decoder, threads=cfg.read_threads)
                spacing, how = readers.resolve_spacing(tomo_id, table=table, header_spacing=vol.header_spacing,
                                                       default=default)
                spacing_sources[how] = spacing_sources.get(how, 0) + 1
                found = predict_volume(vol.data, spacing, predictors, timer)
            except InputError as exc:
                logger.error("skipping %s: %s", tomo_id, exc)
                failures[tomo_id] = str(exc)
                continue
            except Exception as exc:  # one bad tomogram must not lose the run: record it, write -1
                logger.exception("tomogram %s failed; it will be written as -1", tomo_id)
                failures[tomo_id] = f"{type(exc).__name__}: {exc}"
                continue
            for name, (zyx, conf) in found.items():
                rows[name].extend((tomo_id, *map(float, p), float(c), spacing) for p, c in zip(zyx, conf))
    finally:
        # Runs on success, on an interrupt and on an escaping error: the submission is always written.
        logger.info("spacing from: %s", ", ".join(f"{k} {v}" for k, v in sorted(spacing_sources.items())) or "-")
        result = _finish(cfg, manifest, ids, rows, failures, timer)
    return result


def _finish(cfg, manifest, ids, rows, failures, timer) -> PredictResult:
    tables = {name: candidates_frame(r) for name, r in rows.items()}
    with timer.stage("fusion"):
        fused = combine(manifest, tables)
    order = submission_order(ids, cfg.sample_submission)
    decision = decide(best_per_tomogram(fused, order), manifest.threshold)
    with timer.stage("write"):
        if cfg.candidates_dir is not None:
            for name, df in tables.items():
                write_csv_atomic(df, Path(cfg.candidates_dir) / f"{name}.csv")
            if len(tables) > 1:
                write_csv_atomic(fused, Path(cfg.candidates_dir) / "fused.csv")
        write_csv_atomic(decision.submission, cfg.output)
    logger.info("%s (%s)", decision.describe(), manifest.threshold.describe())
    if failures:
        logger.warning("%d tomogram(s) failed and were written as -1: %s", len(failures),
                       ", ".join(sorted(failures)[:10]))
    logger.info("stage times: %s", timer.summary())
    return PredictResult(submission=decision.submission, decision=decision, member_candidates=tables, fused=fused,
                         failures=failures, timer=timer, n_tomograms=len(ids))


def _progress(items, enabled: bool):
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, desc="tomograms", unit="tomo")
