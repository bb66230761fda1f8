"""The metric of the Kaggle competition "BYU - Locating Bacterial Flagellar Motors 2025".

Each tomogram gets one prediction: a point ``(Motor axis 0, Motor axis 1, Motor axis 2)`` in voxels, or
``-1`` in any coordinate for "no motor". Per tomogram:

* it has at least one motor: a prediction within ``distance_A`` (1000 Å) of *any* of its motors is a
  true positive (TP); a farther prediction, or no prediction, is a false negative (FN);
* it has no motor: a prediction is a false positive (FP); no prediction is a true negative (TN).

Distances are Euclidean distances in voxels times that tomogram's voxel spacing (Å per voxel), and a
distance of exactly ``distance_A`` still counts as a hit. The score is F-beta (beta = 2) over tomograms::

    f = (1 + b²)·tp / ((1 + b²)·tp + b²·fn + fp)

which is defined as 0 when the denominator is 0 (all tomograms are true negatives), like precision
``tp / (tp + fp)`` and recall ``tp / (tp + fn)`` when theirs is 0.

The label and submission tables (formats, validation) are read by :mod:`inference.evaluate.scoring_tables`;
its names are re-exported here. Every problem with the input is raised as :class:`~inference.common.errors.InputError`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from inference.evaluate.scoring_tables import (
    COORDS,
    LABEL_COLUMNS,
    NO_MOTOR,
    SPACING,
    SUBMISSION_COLUMNS,
    TOMO_ID,
    Rows,
    check_same_tomograms,
    clean_labels,
    clean_submission,
    load_labels,
    load_submission,
)

__all__ = [
    "COORDS", "LABEL_COLUMNS", "NO_MOTOR", "OUTCOMES", "SPACING", "SUBMISSION_COLUMNS", "TOMO_ID", "Score",
    "add_cli", "format_table", "load_labels", "load_submission", "per_tomogram", "run_cli", "score_files",
    "score_frames",
]

OUTCOMES = ("TP", "FP", "FN", "TN")


@dataclass(frozen=True)
class Score:
    """The metric and the confusion counts it was computed from (counts are tomograms)."""

    f2: float
    precision: float
    recall: float
    tp: int
    fp: int
    fn: int
    tn: int

    def as_dict(self) -> dict:
        """Plain ``{f2, precision, recall, tp, fp, fn, tn}``, ready for ``json.dumps``."""
        return asdict(self)


# --------------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------------


def _is_no_motor(coords: np.ndarray) -> np.ndarray:
    """True for rows with -1 in any coordinate."""
    return (coords == NO_MOTOR).any(axis=1)


def _outcomes(labels: pd.DataFrame, submission: pd.DataFrame, distance_A: float) -> pd.DataFrame:
    """Per-tomogram outcome of already validated frames with the same tomo_id set."""
    sub = submission.sort_values(TOMO_ID, kind="stable")
    ids = sub[TOMO_ID].to_numpy(dtype=object)  # sorted and unique
    guess = sub[list(COORDS)].to_numpy(dtype=np.float64)
    predicted = ~_is_no_motor(guess)

    label_xyz = labels[list(COORDS)].to_numpy(dtype=np.float64)
    is_motor = ~_is_no_motor(label_xyz)
    motor_xyz = label_xyz[is_motor]
    # Position of each motor's tomogram in ``ids`` (every label id is there: checked before).
    tomo = np.searchsorted(ids, labels[TOMO_ID].to_numpy(dtype=object)[is_motor])
    spacing = labels[SPACING].to_numpy(dtype=np.float64)[is_motor]

    has_motor = np.zeros(len(ids), dtype=bool)
    has_motor[tomo] = True
    # Distance (Å) from each tomogram's prediction to its nearest motor; NaN without both.
    motor_distance = np.sqrt(((motor_xyz - guess[tomo]) ** 2).sum(axis=1)) * spacing
    nearest = np.full(len(ids), np.inf)
    np.minimum.at(nearest, tomo, motor_distance)
    distance = np.where(has_motor & predicted, nearest, np.nan)

    hit = has_motor & predicted & (distance <= distance_A)
    outcome = np.select(
        [hit, has_motor, predicted],  # has_motor & ~hit -> FN; no motor & predicted -> FP
        ["TP", "FN", "FP"],
        default="TN",
    )
    return pd.DataFrame({TOMO_ID: ids, "outcome": outcome, "distance_A": distance})


def _validated(labels: pd.DataFrame, submission: pd.DataFrame, submission_name: str):
    labels = clean_labels(labels, "labels", Rows())
    submission = clean_submission(submission, submission_name, Rows())
    check_same_tomograms(labels, submission, submission_name)
    return labels, submission


def _check_distance(distance_A: float) -> None:
    if not (np.isfinite(distance_A) and distance_A > 0):
        raise ValueError(f"distance_A must be a positive finite number of Ångström, got {distance_A!r}")


def per_tomogram(labels: pd.DataFrame, submission: pd.DataFrame, distance_A: float = 1000.0) -> pd.DataFrame:
    """One row per tomogram, sorted by tomo_id: ``tomo_id``, ``outcome`` (TP/FP/FN/TN) and
    ``distance_A``, the distance in Å from the prediction to the nearest motor (NaN when the tomogram
    has no motor or no prediction). Meant for debugging a score.
    """
    _check_distance(distance_A)
    labels, submission = _validated(labels, submission, "submission")
    return _outcomes(labels, submission, distance_A)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 else 0.0


def score_frames(
    labels: pd.DataFrame,
    submission: pd.DataFrame,
    *,
    beta: float = 2.0,
    distance_A: float = 1000.0,
    submission_name: str = "submission",
) -> Score:
    """Score a submission frame against a labels frame (see the module docstring for the rules).

    ``submission_name`` names the submission in errors (the file path, when there is one).
    """
    if not (np.isfinite(beta) and beta > 0):
        raise ValueError(f"beta must be a positive finite number, got {beta!r}")
    _check_distance(distance_A)
    labels, submission = _validated(labels, submission, submission_name)
    outcome = _outcomes(labels, submission, distance_A)["outcome"].to_numpy()
    counts = {name: int(np.count_nonzero(outcome == name)) for name in OUTCOMES}
    tp, fp, fn, tn = (counts[name] for name in OUTCOMES)
    b2 = beta * beta
    return Score(
        f2=_ratio((1 + b2) * tp, (1 + b2) * tp + b2 * fn + fp),
        precision=_ratio(tp, tp + fp),
        recall=_ratio(tp, tp + fn),
        tp=tp,
        fp=fp,
        fn=fn,
        tn=tn,
    )


def score_files(labels_path: str | Path, submission_path: str | Path, **kw) -> Score:
    """Load both CSVs (errors name the file) and :func:`score_frames` them; ``kw`` goes to it."""
    labels = load_labels(labels_path)
    submission = load_submission(submission_path)
    kw.setdefault("submission_name", str(submission_path))
    return score_frames(labels, submission, **kw)


def format_table(score: Score) -> str:
    """A small readable table of the score, for the CLI."""
    total = score.tp + score.fp + score.fn + score.tn
    rows = [
        ("F2", f"{score.f2:.4f}"),
        ("precision", f"{score.precision:.4f}"),
        ("recall", f"{score.recall:.4f}"),
        ("TP", str(score.tp)),
        ("FP", str(score.fp)),
        ("FN", str(score.fn)),
        ("TN", str(score.tn)),
        ("tomograms", str(total)),
    ]
    width = max(len(name) for name, _ in rows)
    value_width = max(len(value) for _, value in rows)
    return "\n".join(f"{name:<{width}}  {value:>{value_width}}" for name, value in rows)
