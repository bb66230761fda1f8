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

File formats (extra columns are ignored):

* labels (Kaggle's ``train_labels.csv``): ``tomo_id, Motor axis 0, Motor axis 1, Motor axis 2,
  Voxel spacing``; one row per motor, a tomogram without motor has one row with ``-1`` coordinates.
  A ``-1`` row of a tomogram that also has real motor rows is ignored.
* submission: ``tomo_id, Motor axis 0, Motor axis 1, Motor axis 2``; exactly one row per tomogram of
  the labels.

Every problem with the input is raised as :class:`~inference.errors.InputError`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from inference.errors import InputError

TOMO_ID = "tomo_id"
COORDS = ("Motor axis 0", "Motor axis 1", "Motor axis 2")
SPACING = "Voxel spacing"
LABEL_COLUMNS = (TOMO_ID, *COORDS, SPACING)
SUBMISSION_COLUMNS = (TOMO_ID, *COORDS)

NO_MOTOR = -1.0
OUTCOMES = ("TP", "FP", "FN", "TN")
_MAX_EXAMPLES = 5


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
# Reading and validating
# --------------------------------------------------------------------------------------------------


class _Rows:
    """Names a row of a frame for error messages: its 1-based position, and its file line if known."""

    def __init__(self, lines: np.ndarray | None = None):
        self.lines = lines

    def describe(self, position: int) -> str:
        if self.lines is None:
            return f"row {position + 1}"
        return f"row {position + 1} (line {int(self.lines[position])})"


def _read_csv(path: str | Path) -> tuple[pd.DataFrame, _Rows]:
    """Every cell as a stripped string; fully blank lines dropped but file line numbers kept."""
    path = Path(path)
    fix = "pass the path of an existing CSV file with a header row"
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except FileNotFoundError:
        raise InputError(path, "file not found", fix) from None
    except IsADirectoryError:
        raise InputError(path, "is a directory, not a CSV file", fix) from None
    except PermissionError:
        raise InputError(path, "file cannot be read (permission denied)", "make the file readable") from None
    except pd.errors.EmptyDataError:
        raise InputError(path, "file is empty", fix) from None
    except pd.errors.ParserError as exc:
        raise InputError(path, f"not a readable CSV file ({exc})", "check the file's commas and quotes") from None
    except UnicodeDecodeError:
        raise InputError(path, "not a text (UTF-8) CSV file", fix) from None

    frame.columns = [str(c).strip() for c in frame.columns]
    frame = frame.apply(lambda column: column.str.strip())
    lines = np.arange(len(frame)) + 2  # line 1 is the header
    blank = (frame == "").all(axis=1).to_numpy() if len(frame.columns) else np.zeros(len(frame), bool)
    frame = frame.loc[~blank].reset_index(drop=True)
    return frame, _Rows(lines[~blank])


def _require_columns(frame: pd.DataFrame, required: tuple[str, ...], name: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        found = ", ".join(repr(str(c)) for c in frame.columns) or "none"
        raise InputError(
            name,
            f"missing column(s) {', '.join(repr(c) for c in missing)} (found: {found})",
            f"the header must contain {', '.join(required)}",
        )


def _tomo_ids(frame: pd.DataFrame, name: str, rows: _Rows) -> np.ndarray:
    raw = frame[TOMO_ID]
    ids = np.array([str(v).strip() for v in raw], dtype=object)
    empty = raw.isna().to_numpy() | (ids == "")
    if empty.any():
        first = int(np.flatnonzero(empty)[0])
        raise InputError(
            name, f"column {TOMO_ID!r}, {rows.describe(first)}: empty tomo_id", "give every row its tomo_id"
        )
    return ids


def _numbers(frame: pd.DataFrame, column: str, name: str, rows: _Rows) -> np.ndarray:
    """The column as float64; InputError at the first missing, non-numeric or infinite value."""
    raw = frame[column]
    if pd.api.types.is_bool_dtype(raw):
        raise InputError(name, f"column {column!r} holds true/false values, not numbers", "write numbers")
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        cell = raw.iloc[first]
        if pd.isna(cell) or str(cell).strip().lower() in ("", "nan", "na", "none", "null"):
            problem = "missing value (empty or NaN)"
        else:
            problem = f"{str(cell)!r} is not a finite number"
        raise InputError(
            name,
            f"column {column!r}, {rows.describe(first)}: {problem}",
            "write a number in every cell; use -1 in the three coordinates for 'no motor'"
            if column in COORDS
            else "write a positive number (Ångström per voxel) in every cell",
        )
    return values


def _examples(ids) -> str:
    ids = sorted(ids)
    shown = ", ".join(ids[:_MAX_EXAMPLES])
    return shown + (", ..." if len(ids) > _MAX_EXAMPLES else "")


def _clean_labels(frame: pd.DataFrame, name: str, rows: _Rows) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"labels must be a pandas DataFrame, got {type(frame).__name__}")
    _require_columns(frame, LABEL_COLUMNS, name)
    if len(frame) == 0:
        raise InputError(name, "no label rows", "the labels need one row per motor (-1 row for no motor)")
    ids = _tomo_ids(frame, name, rows)
    columns = {column: _numbers(frame, column, name, rows) for column in (*COORDS, SPACING)}
    spacing = columns[SPACING]
    not_positive = spacing <= 0
    if not_positive.any():
        first = int(np.flatnonzero(not_positive)[0])
        raise InputError(
            name,
            f"column {SPACING!r}, {rows.describe(first)}: voxel spacing {spacing[first]} is not positive",
            "write the voxel spacing in Ångström per voxel (> 0)",
        )
    tomograms, tomo = np.unique(ids, return_inverse=True)
    low = np.full(len(tomograms), np.inf)
    high = np.full(len(tomograms), -np.inf)
    np.minimum.at(low, tomo, spacing)
    np.maximum.at(high, tomo, spacing)
    inconsistent = np.flatnonzero(low != high)
    if len(inconsistent):
        details = "; ".join(
            f"{tomograms[i]}: {low[i]} vs {high[i]}" for i in inconsistent[:_MAX_EXAMPLES]
        )
        raise InputError(
            name,
            f"{len(inconsistent)} tomogram(s) have different voxel spacings on different rows ({details})",
            "give all rows of a tomogram the same voxel spacing",
        )
    return pd.DataFrame({TOMO_ID: ids, **columns})


def _clean_submission(frame: pd.DataFrame, name: str, rows: _Rows) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"submission must be a pandas DataFrame, got {type(frame).__name__}")
    _require_columns(frame, SUBMISSION_COLUMNS, name)
    clean = pd.DataFrame(
        {TOMO_ID: _tomo_ids(frame, name, rows), **{c: _numbers(frame, c, name, rows) for c in COORDS}}
    )
    duplicated = clean[TOMO_ID].duplicated(keep=False).to_numpy()
    if duplicated.any():
        dup_ids = clean.loc[duplicated, TOMO_ID].unique()
        first = [int(np.flatnonzero(clean[TOMO_ID].to_numpy() == t)[0]) for t in sorted(dup_ids)[:_MAX_EXAMPLES]]
        where = ", ".join(f"{clean[TOMO_ID].iloc[i]} (first at {rows.describe(i)})" for i in first)
        raise InputError(
            name,
            f"{len(dup_ids)} tomo_id(s) appear on more than one row: {where}"
            + (", ..." if len(dup_ids) > _MAX_EXAMPLES else ""),
            "write exactly one row (one prediction) per tomogram",
        )
    return clean


def _check_same_tomograms(labels: pd.DataFrame, submission: pd.DataFrame, submission_name: str) -> None:
    expected = set(labels[TOMO_ID])
    given = set(submission[TOMO_ID])
    if expected == given:
        return
    missing, extra = expected - given, given - expected
    parts = []
    if missing:
        parts.append(f"{len(missing)} tomogram(s) of the labels are missing ({_examples(missing)})")
    if extra:
        parts.append(f"{len(extra)} tomo_id(s) are not in the labels ({_examples(extra)})")
    raise InputError(
        submission_name,
        f"the tomo_ids do not match the labels' {len(expected)} tomograms: " + "; ".join(parts),
        "write exactly one row per tomogram of the labels, with -1 coordinates for 'no motor'",
    )


def load_labels(path: str | Path) -> pd.DataFrame:
    """Read and validate a labels CSV.

    Returns columns ``tomo_id`` (str), the three ``Motor axis`` coordinates and ``Voxel spacing``
    (float64); other columns are dropped.
    """
    frame, rows = _read_csv(path)
    return _clean_labels(frame, str(path), rows)


def load_submission(path: str | Path) -> pd.DataFrame:
    """Read and validate a submission CSV: ``tomo_id`` (str) and the three coordinates (float64)."""
    frame, rows = _read_csv(path)
    return _clean_submission(frame, str(path), rows)


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
    labels = _clean_labels(labels, "labels", _Rows())
    submission = _clean_submission(submission, submission_name, _Rows())
    _check_same_tomograms(labels, submission, submission_name)
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


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Add the ``score`` subcommand to an argparse subparsers object; returns its parser."""
    parser = subparsers.add_parser(
        "score",
        help="score a submission CSV with the BYU flagellar motor metric (F2)",
        description=(
            "Score a submission against labels with the Kaggle 'BYU - Locating Bacterial Flagellar "
            "Motors 2025' metric: a prediction within 1000 Å of a motor is a true positive; F-beta "
            "with beta = 2 over tomograms."
        ),
    )
    parser.add_argument(
        "--labels",
        required=True,
        type=Path,
        metavar="CSV",
        help="labels CSV in train_labels format (tomo_id, Motor axis 0/1/2, Voxel spacing; one row per motor)",
    )
    parser.add_argument(
        "--submission",
        required=True,
        type=Path,
        metavar="CSV",
        help="submission CSV (tomo_id, Motor axis 0/1/2; one row per tomogram, -1 for no motor)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object with keys f2, precision, recall, tp, fp, fn, tn instead of a table",
    )
    parser.set_defaults(func=run_cli)
    return parser


def run_cli(args: argparse.Namespace) -> int:
    """Run ``score``; InputError propagates to the main CLI."""
    score = score_files(args.labels, args.submission)
    print(json.dumps(score.as_dict()) if args.json else format_table(score))
    return 0
