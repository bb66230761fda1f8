"""The metric of the Kaggle competition "CZII - CryoET Object Identification": multi-class particle picking.

Exactly the competition's code (``score``/``compute_metrics``, republished in the 1st place's
``metrics/metric_1.py`` and czimaginginstitute/czii_cryoet_mlchallenge_winning_models
``postprocess/metric.py``), on tables with columns ``experiment, particle_type, x, y, z`` (Å):

* Only the experiments of the labels count (``experiments``, by default those with a label row): the
  submission's rows in other experiments are ignored.
* Per experiment and per class that has labels *somewhere*: ``KDTree(candidates).query_ball_tree(
  KDTree(references), r)`` with ``r = distance_multiplier x radius`` (0.5 x radius; a distance of
  exactly r matches); ``tp`` = the number of distinct references within r of some candidate, ``fp =
  n_candidates - tp``, ``fn = n_references - tp``. Any-match, not one-to-one: several candidates on one
  particle are 1 TP and the rest FP; one candidate near two particles is 2 TP, so ``fp`` can be
  negative. An experiment without references of the class: all its candidates are FP.
* A class without labels in any experiment is never matched: tp = fp = fn = 0 and F = 0, its weight still
  counts.
* TP, FP, FN are summed over experiments per class; ``P = tp / (tp + fp)``, ``R = tp / (tp + fn)`` (0 when
  the denominator is 0), ``F = (1 + b²) P R / (b² P + R)`` with b = 4 (0 when P + R is 0), i.e.
  ``F4 = 17 P R / (16 P + R)``.
* score = sum(weight x F) / sum of ALL classes' weights (``np.average``): 7 for the competition's six.

Unknown particle types and duplicate label points are ValueErrors here (the competition raises and
asserts); reading files, :mod:`inference.evaluate.particle_tables` reports them as one-line InputErrors.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import KDTree

from inference.manifest.particle_classes import CZII_CLASSES, ParticleClass

COLUMNS = ("experiment", "particle_type", "x", "y", "z")
XYZ = ["x", "y", "z"]
BETA = 4
DISTANCE_MULTIPLIER = 0.5


@dataclass(frozen=True)
class ClassScore:
    """One class's counts (summed over experiments) and its precision, recall and F-beta."""

    name: str
    weight: float
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    fbeta: float


@dataclass(frozen=True)
class ParticleScore:
    """The weighted score and every class's :class:`ClassScore`, in the classes' order."""

    score: float
    per_class: tuple[ClassScore, ...]

    def as_dict(self) -> dict:
        """``{"score": s, "per_class": {name: {tp, fp, fn, precision, recall, fbeta}}}``, ready for JSON."""
        return {"score": self.score, "per_class": {
            c.name: {"tp": c.tp, "fp": c.fp, "fn": c.fn, "precision": c.precision, "recall": c.recall,
                     "fbeta": c.fbeta} for c in self.per_class}}


def match_counts(reference: np.ndarray, candidates: np.ndarray, radius: float) -> tuple[int, int, int]:
    """(tp, fp, fn) of ``candidates`` against ``reference`` ((N, 3) arrays) within ``radius``: the
    competition's ``compute_metrics``."""
    n_ref, n_cand = len(reference), len(candidates)
    if n_ref == 0:
        return 0, n_cand, 0
    if n_cand == 0:
        return 0, 0, n_ref
    matches = KDTree(candidates).query_ball_tree(KDTree(reference), r=radius)
    tp = len({j for hits in matches for j in hits})
    return tp, n_cand - tp, n_ref - tp


def fbeta_of(tp: int, fp: int, fn: int, beta: float = BETA) -> tuple[float, float, float]:
    """(precision, recall, F-beta) of summed counts, each 0 where its denominator is 0."""
    precision = tp / (tp + fp) if tp + fp > 0 else 0.0
    recall = tp / (tp + fn) if tp + fn > 0 else 0.0
    b2 = beta * beta
    f = (1 + b2) * precision * recall / (b2 * precision + recall) if precision + recall > 0 else 0.0
    return float(precision), float(recall), float(f)


def unknown_types(frame: pd.DataFrame, classes: Iterable[ParticleClass]) -> list[str]:
    """The frame's particle types that are none of ``classes``' names, sorted."""
    known = {c.name for c in classes}
    return sorted(set(frame["particle_type"].astype(str)) - known)


def weighted_score(fbetas, weights) -> float:
    """sum(w F) / sum(w) over all classes (ValueError when the weights sum to 0)."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.sum() <= 0:
        raise ValueError("the classes' weights sum to 0: the score is undefined")
    return float(np.average(np.asarray(fbetas, dtype=np.float64), weights=weights))


def _groups(frame: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    if len(frame) == 0:
        return {}
    points = frame[XYZ].to_numpy(dtype=np.float64)
    keys = frame.groupby(["experiment", "particle_type"], sort=False).indices
    return {key: points[idx] for key, idx in keys.items()}


def score_particles(labels: pd.DataFrame, submission: pd.DataFrame,
                    classes: tuple[ParticleClass, ...] = CZII_CLASSES, *, experiments: Iterable[str] | None = None,
                    distance_multiplier: float = DISTANCE_MULTIPLIER, beta: float = BETA) -> ParticleScore:
    """The competition's score of ``submission`` against ``labels`` (both with :data:`COLUMNS`, x y z in Å).

    ``experiments``: the experiments the labels cover (default: those with a label row); a copick
    project's run with empty picks files is one (all its candidates are FP).
    """
    for frame, what in ((labels, "labels"), (submission, "submission")):
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{what} lack column(s) {missing}")
        unknown = unknown_types(frame, classes)
        if unknown:
            raise ValueError(f"{what}: unknown particle_type(s) {unknown}")
    if labels.duplicated(subset=["experiment", *XYZ]).any():
        raise ValueError("labels hold the same point (experiment, x, y, z) twice")
    experiments = set(labels["experiment"]) if experiments is None else set(experiments)
    submission = submission.loc[submission["experiment"].isin(experiments)]
    refs, cands = _groups(labels), _groups(submission)
    labelled = set(labels["particle_type"])
    empty = np.zeros((0, 3))
    out = []
    for cls in classes:
        tp = fp = fn = 0
        if cls.name in labelled:
            for experiment in sorted(experiments):
                t, f, n = match_counts(refs.get((experiment, cls.name), empty), cands.get((experiment, cls.name), empty),
                                       cls.radius_A * distance_multiplier)
                tp, fp, fn = tp + t, fp + f, fn + n
        out.append(ClassScore(cls.name, cls.weight, tp, fp, fn, *fbeta_of(tp, fp, fn, beta)))
    return ParticleScore(weighted_score([c.fbeta for c in out], [c.weight for c in out]), tuple(out))


def format_particle_table(score: ParticleScore) -> str:
    """A human table: one line per class, then the weighted score."""
    lines = [f"{'class':<22}{'weight':>7}{'tp':>7}{'fp':>7}{'fn':>7}{'precision':>11}{'recall':>8}{'F4':>8}"]
    for c in score.per_class:
        lines.append(f"{c.name:<22}{c.weight:>7g}{c.tp:>7}{c.fp:>7}{c.fn:>7}{c.precision:>11.4f}{c.recall:>8.4f}"
                     f"{c.fbeta:>8.4f}")
    total = sum(c.weight for c in score.per_class)
    lines.append(f"score (sum of weight x F4 / {total:g}): {score.score:.6f}")
    return "\n".join(lines)
