"""The metric's input tables: reading and validating labels and submissions (:mod:`inference.evaluate.scoring`).

File formats (extra columns are ignored):

* labels (Kaggle's ``train_labels.csv``): ``tomo_id, Motor axis 0, Motor axis 1, Motor axis 2,
  Voxel spacing``; one row per motor, a tomogram without motor has one row with ``-1`` coordinates.
  A ``-1`` row of a tomogram that also has real motor rows is ignored.
* submission: ``tomo_id, Motor axis 0, Motor axis 1, Motor axis 2``; exactly one row per tomogram of
  the labels.

Every problem is raised as :class:`~inference.common.errors.InputError` naming the file (or the frame), the
column and the row (with its file line when read from a file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from inference.common.errors import InputError

TOMO_ID = "tomo_id"
COORDS = ("Motor axis 0", "Motor axis 1", "Motor axis 2")
SPACING = "Voxel spacing"
LABEL_COLUMNS = (TOMO_ID, *COORDS, SPACING)
SUBMISSION_COLUMNS = (TOMO_ID, *COORDS)

NO_MOTOR = -1.0
_MAX_EXAMPLES = 5


class Rows:
    """Names a row of a frame for error messages: its 1-based position, and its file line if known."""

    def __init__(self, lines: np.ndarray | None = None):
        self.lines = lines

    def describe(self, position: int) -> str:
        if self.lines is None:
            return f"row {position + 1}"
        return f"row {position + 1} (line {int(self.lines[position])})"


def _read_csv(path: str | Path) -> tuple[pd.DataFrame, Rows]:
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
    return frame, Rows(lines[~blank])


def _require_columns(frame: pd.DataFrame, required: tuple[str, ...], name: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        found = ", ".join(repr(str(c)) for c in frame.columns) or "none"
        raise InputError(
            name,
            f"missing column(s) {', '.join(repr(c) for c in missing)} (found: {found})",
            f"the header must contain {', '.join(required)}",
        )


def _tomo_ids(frame: pd.DataFrame, name: str, rows: Rows) -> np.ndarray:
    raw = frame[TOMO_ID]
    ids = np.array([str(v).strip() for v in raw], dtype=object)
    empty = raw.isna().to_numpy() | (ids == "")
    if empty.any():
        first = int(np.flatnonzero(empty)[0])
        raise InputError(
            name, f"column {TOMO_ID!r}, {rows.describe(first)}: empty tomo_id", "give every row its tomo_id"
        )
    return ids


def _numbers(frame: pd.DataFrame, column: str, name: str, rows: Rows) -> np.ndarray:
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


def clean_labels(frame: pd.DataFrame, name: str, rows: Rows) -> pd.DataFrame:
    """A labels frame validated (``name`` and ``rows`` name it in errors): tomo_id, the coordinates, spacing."""
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


def clean_submission(frame: pd.DataFrame, name: str, rows: Rows) -> pd.DataFrame:
    """A submission frame validated (``name`` and ``rows`` name it in errors): one row per tomo_id."""
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


def check_same_tomograms(labels: pd.DataFrame, submission: pd.DataFrame, submission_name: str) -> None:
    """InputError unless the submission has exactly the labels' tomo_ids."""
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
    return clean_labels(frame, str(path), rows)


def load_submission(path: str | Path) -> pd.DataFrame:
    """Read and validate a submission CSV: ``tomo_id`` (str) and the three coordinates (float64)."""
    frame, rows = _read_csv(path)
    return clean_submission(frame, str(path), rows)
