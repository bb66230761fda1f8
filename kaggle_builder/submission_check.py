"""The notebook's last word: is ``submission.csv`` what the competition accepts, and if not, repair it.

Standard library only (the notebook's runtime imports it before anything is installed). One pair of
functions per task, each a check that lists the problems and a repair that rewrites the file valid:

* motors (BYU): every ``tomo_id`` of the sample submission once, in its order, with the sample's columns;
  coordinates finite and all -1 (no motor) or all >= 0. The repair keeps each valid row and writes -1 for
  the rest.
* particles (CZII): the header exactly ``id,experiment,particle_type,x,y,z``; ids 0..n-1 in order;
  ``experiment`` non-empty; ``particle_type`` non-empty and, when the dataset names its classes, one of them
  (the competition's metric rejects a submission with any other); x y z finite numbers (Å). The repair keeps
  the valid rows (read by column name when the header has the six columns in another order), renumbered
  0..n-1; a missing or unreadable file becomes the header alone, a valid empty submission.
"""

from __future__ import annotations

import csv
import math
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

from kaggle_builder.target import CZII

PARTICLE_HEADER = list(CZII.submission_header)
_SHOWN = 5  # examples named in a problem


def _read(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def _write(path: Path, rows: list[list[str]]) -> None:
    """All rows at once, through a temporary file (a reader never sees half a submission)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------- motors


def motor_coords(values: list[str]) -> list[float] | None:
    """Three finite coordinates, all -1 or all >= 0; else None."""
    try:
        xyz = [float(v) for v in values]
    except ValueError:
        return None
    if len(xyz) != 3 or not all(math.isfinite(v) for v in xyz):
        return None
    return xyz if all(v == -1 for v in xyz) or all(v >= 0 for v in xyz) else None


def submission_problems(submission: Path, sample: Path) -> list[str]:
    """What makes ``submission`` invalid against the sample: columns, every sample id once in order, numbers
    that are finite and either all -1 or all >= 0 per row."""
    try:
        ref = _read(sample)
        sub = _read(submission)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return [f"unreadable: {exc}"]
    if not sub or sub[0] != ref[0]:
        return [f"columns {sub[0] if sub else []} != {ref[0]}"]
    problems = []
    ids, want = [r[0] for r in sub[1:] if r], [r[0] for r in ref[1:] if r]
    if ids != want:
        missing, dupes = sorted(set(want) - set(ids))[:_SHOWN], sorted({i for i in ids if ids.count(i) > 1})[:_SHOWN]
        problems.append(f"tomo_ids differ from the sample's (missing {missing}, duplicated {dupes}, or another order)")
    bad = [r[0] for r in sub[1:] if r and motor_coords(r[1:]) is None]
    if bad:
        problems.append(f"{len(bad)} row(s) without finite coordinates that are all -1 or all >= 0: {bad[:_SHOWN]}")
    return problems


def repair_submission(submission: Path, sample: Path) -> int:
    """Rewrite ``submission`` valid: the sample's ids in its order, each valid row kept, -1 for the rest.
    Returns the number of rows that became -1."""
    rows = {}
    try:
        found = _read(submission)[1:] if submission.is_file() else []
    except (OSError, UnicodeDecodeError, csv.Error):
        found = []
    for r in found:
        if r and r[0] not in rows and motor_coords(r[1:]) is not None:
            rows[r[0]] = r[1:]
    ref = _read(sample)
    out, fixed = [ref[0]], 0
    for r in ref[1:]:
        if r:
            fixed += r[0] not in rows
            out.append([r[0], *rows.get(r[0], ["-1"] * (len(ref[0]) - 1))])
    _write(submission, out)
    return fixed


# -------------------------------------------------------------------------------------- particles


def _finite(values: Sequence[str]) -> bool:
    try:
        return all(math.isfinite(float(v)) for v in values)
    except ValueError:
        return False


def _particle_table(submission: Path) -> tuple[list[list[str]] | None, int, str | None]:
    """``(rows as [id, experiment, particle_type, x, y, z], data lines, problem)``; rows None when nothing can
    be read (no file, unreadable, no header with the six columns); data lines: the non-empty lines below
    the header."""
    if not submission.is_file():
        return None, 0, "no submission"
    try:
        table = [r for r in _read(submission) if r]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return None, 0, f"unreadable: {exc}"
    header, n = ([h.strip() for h in table[0]] if table else []), max(0, len(table) - 1)
    if not set(PARTICLE_HEADER) <= set(header) or len(set(header)) != len(header):
        return None, n, f"columns {header} are not {','.join(PARTICLE_HEADER)}"
    at = [header.index(c) for c in PARTICLE_HEADER]
    rows = [[r[i] for i in at] if len(r) == len(header) else [] for r in table[1:]]
    return rows, n, None if table[0] == PARTICLE_HEADER else f"header {table[0]} != {PARTICLE_HEADER}"


def _row_problem(row: list[str], types: Sequence[str]) -> str | None:
    if len(row) != len(PARTICLE_HEADER):
        return "not 6 fields"
    _, experiment, particle_type, *xyz = row
    if not experiment.strip():
        return "no experiment"
    if not particle_type.strip() or (types and particle_type not in types):
        return f"particle_type {particle_type!r}" + (" is not one of the manifest's" if types else " is empty")
    return None if _finite(xyz) else f"x y z {xyz} are not finite numbers"


def particle_problems(submission: Path, types: Sequence[str] = ()) -> list[str]:
    """What makes a particles ``submission`` invalid (``types``: the allowed particle types; empty: any
    non-empty name); [] when it is valid."""
    rows, _, problem = _particle_table(submission)
    if rows is None:
        return [problem]
    problems = [problem] if problem else []
    wrong_ids = [i for i, r in enumerate(rows) if r and r[0] != str(i)]
    if wrong_ids:
        problems.append(f"{len(wrong_ids)} id(s) are not 0..n-1 in order (first at row {wrong_ids[0] + 1})")
    bad = [(i + 1, p) for i, r in enumerate(rows) if (p := _row_problem(r, types))]
    if bad:
        problems.append(f"{len(bad)} invalid row(s): " + "; ".join(f"row {n}: {p}" for n, p in bad[:_SHOWN]))
    return problems


def repair_particles(submission: Path, types: Sequence[str] = ()) -> int:
    """Rewrite ``submission`` valid: the header, then its valid rows renumbered 0..n-1 (the header alone when
    nothing can be read). Returns the number of rows dropped."""
    rows, n, _ = _particle_table(submission)
    keep = [r for r in rows or [] if _row_problem(r, types) is None]
    _write(submission, [PARTICLE_HEADER, *([str(i), *r[1:]] for i, r in enumerate(keep))])
    return n - len(keep)


def particle_summary(submission: Path, runs: Sequence[str] = ()) -> str:
    """One line about a valid particles submission: picks per class, experiments with picks (of ``runs``)."""
    rows = _read(submission)[1:]
    per_class = Counter(r[2] for r in rows if r)
    experiments = {r[1] for r in rows if r}
    of = f" (of {len(runs)} test runs)" if runs else ""
    classes = ", ".join(f"{k} {v}" for k, v in per_class.items()) or "none"
    return f"{sum(per_class.values())} picks in {len(experiments)} experiment(s){of}: {classes}"
