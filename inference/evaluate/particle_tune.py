"""Per-class thresholds that maximise the particle metric (:mod:`inference.evaluate.particle_metric`) on
saved candidates, and a manifest copy that holds them.

A candidate (``experiment, particle_type, x, y, z, conf``) is kept at threshold t when ``conf >= t``, the
rule of the decoders (a map cell is in a class's mask when ``prob >= threshold``) and of the submission.
The classes are independent in the score (each class's F uses only its
own points; the weights are fixed), so each class is swept alone, and without re-matching: per class,
every reference gets the highest conf of the candidates within its match radius (``best``; -inf when
none), and at threshold t

    tp(t) = #{references with best >= t},  n(t) = #{candidates with conf >= t},
    fp(t) = n(t) - tp(t),                 fn(t) = n_references - tp(t)

which are the metric's sums over experiments (any-match; candidates in experiments without labels are
left out, those in a labelled experiment without references of the class are all FP). Thresholds
``start, start + step, ..., 1`` (step at most 0.005; ``start``: the candidates' floor, the manifest's
``candidate_floor``, below which candidates were not kept and a threshold means nothing); the lowest
threshold of the best F is taken, as ``np.argmax`` does. For the ``peaks`` decoder the picks at a
threshold are exactly the candidates at or above it; ``components`` and ``watershed`` grow their blobs
from the mask, so at another threshold they may split or merge differently: there the sweep is an
estimate, and a predict with the tuned manifest gives the exact picks. A class whose F is 0 at every threshold (no labels, or no candidate near one) gets
no threshold (None): its manifest entry keeps its own.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy.spatial import KDTree

from inference.common.atomic import write_text_atomic
from inference.common.errors import InputError
from inference.evaluate.particle_metric import (
    BETA,
    DISTANCE_MULTIPLIER,
    XYZ,
    ClassScore,
    fbeta_of,
    unknown_types,
    weighted_score,
)
from inference.manifest.particle_classes import CZII_CLASSES, ParticleClass
from inference.manifest.types import Particles

DEFAULT_FLOOR = Particles.candidate_floor  # the manifest's default candidate_floor
MAX_STEP = 0.005


@dataclass(frozen=True)
class ClassSweep:
    """One class's candidates' confs (``conf``) and each reference's best matching conf (``best``)."""

    name: str
    conf: np.ndarray
    best: np.ndarray
    labelled: bool


@dataclass(frozen=True)
class TuneResult:
    """Best thresholds by class name (None: no labels), the scores there, and the weighted score."""

    thresholds: dict[str, float | None]
    per_class: tuple[ClassScore, ...]
    score: float


def class_sweeps(labels: pd.DataFrame, candidates: pd.DataFrame, classes: tuple[ParticleClass, ...] = CZII_CLASSES,
                 *, experiments=None, distance_multiplier: float = DISTANCE_MULTIPLIER) -> list[ClassSweep]:
    """Match every candidate once: per class, the kept candidates' confs and the references' best confs."""
    for frame, what in ((labels, "labels"), (candidates, "candidates")):
        unknown = unknown_types(frame, classes)
        if unknown:
            raise ValueError(f"{what}: unknown particle_type(s) {unknown}")
    experiments = set(labels["experiment"]) if experiments is None else set(experiments)
    candidates = candidates.loc[candidates["experiment"].isin(experiments)]
    ref_groups = labels.groupby(["experiment", "particle_type"], sort=False).indices if len(labels) else {}
    cand_groups = candidates.groupby(["experiment", "particle_type"], sort=False).indices if len(candidates) else {}
    ref_xyz = labels[XYZ].to_numpy(dtype=np.float64)
    cand_xyz = candidates[XYZ].to_numpy(dtype=np.float64)
    cand_conf = candidates["conf"].to_numpy(dtype=np.float64)
    labelled = set(labels["particle_type"])
    out = []
    for cls in classes:
        confs, bests = [], []
        for experiment in sorted(experiments):
            r_idx = ref_groups.get((experiment, cls.name), np.zeros(0, int))
            c_idx = cand_groups.get((experiment, cls.name), np.zeros(0, int))
            conf = cand_conf[c_idx]
            best = np.full(len(r_idx), -np.inf)
            if len(r_idx) and len(c_idx):
                hits = KDTree(cand_xyz[c_idx]).query_ball_tree(KDTree(ref_xyz[r_idx]),
                                                              r=cls.radius_A * distance_multiplier)
                pairs = [(i, j) for i, refs in enumerate(hits) for j in refs]
                if pairs:
                    ci, rj = np.asarray(pairs).T
                    np.maximum.at(best, rj, conf[ci])
            confs.append(conf)
            bests.append(best)
        out.append(ClassSweep(cls.name, np.concatenate(confs) if confs else np.zeros(0),
                              np.concatenate(bests) if bests else np.zeros(0), cls.name in labelled))
    return out


def threshold_grid(step: float = MAX_STEP, start: float = DEFAULT_FLOOR) -> np.ndarray:
    """``start, start + step, ..., 1`` (the last <= 1), rounded to 12 decimals; ValueError unless
    0 < step <= 0.005 and 0 < start <= 1."""
    if not (math.isfinite(step) and 0 < step <= MAX_STEP):
        raise ValueError(f"the threshold step must be > 0 and at most {MAX_STEP}, got {step!r}")
    if not (math.isfinite(start) and 0 < start <= 1):
        raise ValueError(f"the first threshold must be in (0, 1], got {start!r}")
    return np.round(start + np.arange(math.floor((1 - start) / step + 1e-9) + 1) * step, 12)


def sweep_counts(sweep: ClassSweep, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tp, fp, fn) at each threshold (``conf >= t`` kept)."""
    conf, best = np.sort(sweep.conf), np.sort(sweep.best)
    n = len(conf) - np.searchsorted(conf, thresholds, side="left")
    tp = len(best) - np.searchsorted(best, thresholds, side="left")
    return tp, n - tp, len(best) - tp


def tune_thresholds(labels: pd.DataFrame, candidates: pd.DataFrame,
                    classes: tuple[ParticleClass, ...] = CZII_CLASSES, *, experiments=None, step: float = MAX_STEP,
                    start: float = DEFAULT_FLOOR, beta: float = BETA) -> TuneResult:
    """Each class's best threshold on the grid from ``start`` (see the module docstring) and the scores there."""
    grid = threshold_grid(step, start)
    thresholds: dict[str, float | None] = {}
    scores = []
    for cls, sweep in zip(classes, class_sweeps(labels, candidates, classes, experiments=experiments)):
        if not sweep.labelled:
            thresholds[cls.name] = None
            scores.append(ClassScore(cls.name, cls.weight, 0, 0, 0, 0.0, 0.0, 0.0))
            continue
        tp, fp, fn = sweep_counts(sweep, grid)
        f = np.array([fbeta_of(int(a), int(b), int(c), beta)[2] for a, b, c in zip(tp, fp, fn)])
        k = int(np.argmax(f))
        thresholds[cls.name] = float(grid[k]) if f[k] > 0 else None
        scores.append(ClassScore(cls.name, cls.weight, int(tp[k]), int(fp[k]), int(fn[k]),
                                 *fbeta_of(int(tp[k]), int(fp[k]), int(fn[k]), beta)))
    return TuneResult(thresholds, tuple(scores), weighted_score([s.fbeta for s in scores], [s.weight for s in scores]))


def apply_thresholds(candidates: pd.DataFrame, thresholds: dict[str, float | None]) -> pd.DataFrame:
    """The candidates kept at ``thresholds`` (``conf >= t``; a class with None or absent keeps none)."""
    limit = candidates["particle_type"].map(lambda name: thresholds.get(name)).astype(float)
    return candidates.loc[(candidates["conf"] >= limit.fillna(np.inf)).to_numpy()]


def _load_manifest(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(path, "manifest not found", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot be read ({exc})", "pass a readable YAML manifest") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise InputError(path, f"not valid YAML{line}", "fix the YAML syntax") from None
    classes = data.get("classes") if isinstance(data, dict) else None
    if not isinstance(classes, list) or not all(isinstance(c, dict) and isinstance(c.get("name"), str)
                                                for c in classes):
        raise InputError(path, "no 'classes:' list of entries with a name (a task: particles manifest)",
                         "give the manifest a classes: list, one entry (name, radius_A, weight, threshold) per class")
    return data


def manifest_floor(path: str | Path) -> float:
    """The manifest's ``candidate_floor`` (the default 0.05 when it names none)."""
    value = _load_manifest(Path(path)).get("candidate_floor", DEFAULT_FLOOR)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise InputError(path, f"key 'candidate_floor': {value!r} is not in (0, 1]", "e.g. candidate_floor: 0.05")
    return float(value)


def manifest_thresholds(path: str | Path) -> dict[str, float]:
    """The thresholds a manifest's ``classes:`` entries hold now, by name (entries without one left out)."""
    return {c["name"]: float(c["threshold"]) for c in _load_manifest(Path(path))["classes"]
            if isinstance(c.get("threshold"), (int, float)) and not isinstance(c.get("threshold"), bool)}


def _follow_models(data: dict, old: Path, new: Path) -> None:
    """Members' relative ``model`` paths rewritten for a manifest that moves from folder ``old`` to ``new``, so
    they name the same files (paths in a manifest are relative to it); absolute ones stay."""
    if old.resolve() == new.resolve():
        return
    for member in data.get("members") or []:
        model = member.get("model") if isinstance(member, dict) else None
        if isinstance(model, str) and not Path(model).is_absolute():
            member["model"] = os.path.relpath((old / model).resolve(), new.resolve())


def write_tuned_manifest(manifest: str | Path, output: str | Path, thresholds: dict[str, float | None]) -> list[str]:
    """Write a copy of ``manifest`` whose ``classes[i].threshold`` is ``thresholds[classes[i].name]`` (None and
    absent names leave the entry alone; names the manifest lacks are not added); returns the names set. The
    YAML is loaded as data and dumped in its key order (comments are not kept); members' relative model paths
    are rewritten to name the same files from ``output``'s folder."""
    manifest, output = Path(manifest), Path(output)
    data = _load_manifest(manifest)
    _follow_models(data, manifest.parent, output.parent)
    done = []
    for entry in data["classes"]:
        value = thresholds.get(entry["name"])
        if value is not None:
            entry["threshold"] = float(value)
            done.append(entry["name"])
    write_text_atomic(output, yaml.safe_dump(data, sort_keys=False))
    return done
