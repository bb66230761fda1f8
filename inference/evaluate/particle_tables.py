"""The particle metric's input tables (:mod:`inference.evaluate.particle_metric`): reading and validating them.

Formats (x, y, z in Å; extra columns are ignored):

* submission (Kaggle's): ``id, experiment, particle_type, x, y, z``; ``id`` is not needed. A file with
  only its header is a valid, empty submission.
* candidates (``tune``): ``experiment, particle_type, x, y, z, conf``.
* labels, one of
  - a CSV ``experiment, particle_type, x, y, z`` (one row per particle); its experiments are those with a row;
  - a copick project (:mod:`inference.io.copick_project`: a static or overlay root, its ``ExperimentRuns/``
    or a config JSON): every ``ExperimentRuns/<run>/Picks/*.json``, the class from ``pickable_object_name``,
    ``points[].location`` in Å, the experiment the run folder's name (``user_id``: only that user's files).
    Its experiments are the runs with a picks file, so a run whose picks files are empty counts (its
    candidates are false positives).

A particle type that is not one of the classes, in any file, is one InputError naming the file and the
unknown value(s); so are a missing column, an empty cell, a coordinate that is not a finite number, and the
same label point twice (the competition's metric asserts it never happens).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from inference.common.errors import InputError
from inference.common.names import name_list
from inference.evaluate.particle_metric import COLUMNS, XYZ, unknown_types
from inference.evaluate.scoring_tables import Rows, _read_csv, _require_columns
from inference.io.copick_project import is_copick_input, open_project, project_picks
from inference.manifest.particle_classes import CZII_CLASSES, ParticleClass

CONF = "conf"
CANDIDATE_COLUMNS = (*COLUMNS, CONF)


@dataclass(frozen=True)
class ParticleLabels:
    """Label points (:data:`COLUMNS`), the experiments they cover (sorted) and where they came from."""

    points: pd.DataFrame
    experiments: tuple[str, ...]
    source: str


def _fix_types(classes) -> str:
    return f"use the particle types {', '.join(c.name for c in classes)}"


def _text(frame: pd.DataFrame, column: str, name: str, rows: Rows) -> np.ndarray:
    values = frame[column].astype(str).str.strip().to_numpy(dtype=object)
    empty = np.flatnonzero(values == "")
    if len(empty):
        raise InputError(name, f"column {column!r}, {rows.describe(int(empty[0]))}: empty", f"give every row its {column}")
    return values


def _finite(frame: pd.DataFrame, column: str, name: str, rows: Rows) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        cell = str(frame[column].iloc[int(bad[0])]).strip()
        problem = "missing value" if cell.lower() in ("", "nan", "na", "none", "null") else f"{cell!r} is not a finite number"
        raise InputError(name, f"column {column!r}, {rows.describe(int(bad[0]))}: {problem}", "write a number in every cell")
    return values


def check_types(frame: pd.DataFrame, name: str, rows: Rows, classes) -> None:
    """InputError naming ``name`` and every unknown particle type (with the first one's row)."""
    unknown = unknown_types(frame, classes)
    if unknown:
        first = int(np.flatnonzero(frame["particle_type"].isin(unknown).to_numpy())[0])
        raise InputError(name, f"unknown particle_type(s) {name_list([repr(u) for u in unknown])} "
                         f"(first at {rows.describe(first)})", _fix_types(classes))


def clean_points(frame: pd.DataFrame, name: str, rows: Rows, classes=CZII_CLASSES, *,
                 conf: bool = False) -> pd.DataFrame:
    """A points frame validated: ``experiment``, ``particle_type`` (str), x, y, z (and ``conf``) as float64."""
    required = CANDIDATE_COLUMNS if conf else COLUMNS
    _require_columns(frame, required, name)
    out = pd.DataFrame({c: _text(frame, c, name, rows) for c in ("experiment", "particle_type")})
    check_types(out, name, rows, classes)
    for c in XYZ + ([CONF] if conf else []):
        out[c] = _finite(frame, c, name, rows)
    return out


def _check_duplicates(points: pd.DataFrame, name: str, rows: Rows) -> None:
    dup = np.flatnonzero(points.duplicated(subset=["experiment", *XYZ]).to_numpy())
    if len(dup):
        row = points.iloc[int(dup[0])]
        raise InputError(name, f"the label point ({row['experiment']}, x={row['x']}, y={row['y']}, z={row['z']}) "
                         f"appears twice ({rows.describe(int(dup[0]))}; {len(dup)} repeat(s) in all)",
                         "keep one row per particle (the metric counts each label once)")


def load_particle_submission(path: str | Path, classes: tuple[ParticleClass, ...] = CZII_CLASSES) -> pd.DataFrame:
    """Read and validate a submission CSV (``id`` optional)."""
    frame, rows = _read_csv(path)
    return clean_points(frame, str(path), rows, classes)


def load_candidates(path: str | Path, classes: tuple[ParticleClass, ...] = CZII_CLASSES) -> pd.DataFrame:
    """Read and validate a candidates CSV (:data:`CANDIDATE_COLUMNS`)."""
    frame, rows = _read_csv(path)
    return clean_points(frame, str(path), rows, classes, conf=True)


def _copick_labels(source: Path, classes, user_id: str | None) -> ParticleLabels:
    project = open_project(source)
    found = project_picks(project, user_id=user_id)
    if not found:
        every = project_picks(project) if user_id is not None else []
        users = sorted({str(p.user_id) for _, p in every})
        problem = (f"no picks file of user {user_id!r} (users found: {', '.join(users)})" if every else
                   f"no picks files (ExperimentRuns/<run>/Picks/*.json) under {' or '.join(map(str, project.roots))}")
        raise InputError(source, problem, "pass the project's overlay root (Kaggle: train/overlay) or its config JSON"
                         + (", and one of the users found" if every else ""))
    known = {c.name for c in classes}
    unknown = [(e, p) for e, p in found if p.object_name not in known]
    if unknown:
        values = sorted({p.object_name for _, p in unknown})
        raise InputError(unknown[0][1].path, f"unknown particle type {unknown[0][1].object_name!r} in "
                         f"'pickable_object_name' (unknown in {len(unknown)} picks file(s): "
                         f"{name_list([repr(v) for v in values])})", _fix_types(classes))
    parts = [pd.DataFrame({"experiment": e, "particle_type": p.object_name, "x": p.xyz_A[:, 0], "y": p.xyz_A[:, 1],
                           "z": p.xyz_A[:, 2]}) for e, p in found]
    points = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({c: [] for c in COLUMNS})
    points = points.astype({"experiment": object, "particle_type": object, "x": float, "y": float, "z": float})
    experiments = tuple(sorted({e for e, _ in found}))
    twice = points.duplicated(subset=["experiment", *XYZ])
    if twice.any():
        row = points.loc[twice].iloc[0]
        raise InputError(source, f"the label point ({row['experiment']}, x={row['x']}, y={row['y']}, z={row['z']}) "
                         "is in two picks files (or twice in one)",
                         "pass --labels-user to read one user's picks (Kaggle's ground truth: curation)")
    return ParticleLabels(points=points, experiments=experiments, source=str(source))


def load_particle_labels(source: str | Path, classes: tuple[ParticleClass, ...] = CZII_CLASSES, *,
                         user_id: str | None = None) -> ParticleLabels:
    """Read and validate labels: a CSV, or a copick project (root, ``ExperimentRuns/`` or config JSON).

    ``user_id`` selects one user's copick picks files (not used for a CSV).
    """
    source = Path(source)
    if not source.exists():
        raise InputError(source, "labels not found", "pass a labels CSV, a copick project folder or its config JSON")
    if source.is_dir() or (source.is_file() and is_copick_input(source)):
        return _copick_labels(source, classes, user_id)
    frame, rows = _read_csv(source)
    points = clean_points(frame, str(source), rows, classes)
    _check_duplicates(points, str(source), rows)
    return ParticleLabels(points=points, experiments=tuple(sorted(set(points["experiment"]))), source=str(source))


def has_particle_type_column(path: str | Path) -> bool:
    """Whether the CSV's header names a ``particle_type`` column (False for an unreadable file)."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError):
        return False
    return "particle_type" in (h.strip() for h in header)
