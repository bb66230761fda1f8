"""Candidate tables on disk: ``tomo_id,z,y,x,conf,voxel_spacing`` (z, y, x in original voxels).

:func:`load_candidates` validates a file and names the file and row of every problem, so ``fuse``
and ``submit`` never fail inside pandas or NumPy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from inference.common.errors import InputError

CANDIDATE_COLUMNS = ["tomo_id", "z", "y", "x", "conf", "voxel_spacing"]
_FIX = "candidate files are written by `predict --candidates-dir` or `fuse`: tomo_id,z,y,x,conf,voxel_spacing"


def load_candidates(path: str | Path) -> pd.DataFrame:
    """Read and validate one candidate table; an empty table (header only) is valid."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={"tomo_id": str}, skip_blank_lines=True)
    except FileNotFoundError:
        raise InputError(path, "file not found", _FIX) from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(path, f"not a readable CSV ({exc})", _FIX) from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in CANDIDATE_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)} (has {', '.join(df.columns)})", _FIX)
    df = df[CANDIDATE_COLUMNS].copy()
    ids = df["tomo_id"]
    bad = ids.isna() | (ids.astype(str).str.strip() == "")
    if bad.any():
        raise InputError(path, f"{_row(bad)}: empty tomo_id", _FIX)
    df["tomo_id"] = ids.astype(str).str.strip()
    for col in ("z", "y", "x", "conf", "voxel_spacing"):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            raise InputError(path, f"{_row(bad)}: column '{col}' is {df[col][bad].iloc[0]!r}, not a finite number",
                             _FIX)
        df[col] = values.astype(float)
    for col, ok in (("conf", df["conf"] >= 0), ("voxel_spacing", df["voxel_spacing"] > 0)):
        if not ok.all():
            raise InputError(path, f"{_row(~ok)}: {col} {df[col][~ok].iloc[0]} must be "
                             f"{'>= 0' if col == 'conf' else '> 0'}", _FIX)
    spacing = df.groupby("tomo_id")["voxel_spacing"].agg(["min", "max"])
    odd = spacing[~np.isclose(spacing["min"], spacing["max"], rtol=0, atol=1e-6)]
    if len(odd):
        t = odd.index[0]
        raise InputError(path, f"{_row(df['tomo_id'] == t)} and later: tomogram {t} has several voxel spacings "
                         f"({odd.loc[t, 'min']} and {odd.loc[t, 'max']})", _FIX)
    return df


def _row(mask: pd.Series) -> str:
    """'row N (line M)' of the first True: N counts data rows from 1, M is the file's line."""
    n = int(np.argmax(mask.to_numpy())) + 1
    return f"row {n} (line {n + 1})"


def candidates_frame(rows: Iterable[tuple]) -> pd.DataFrame:
    """Rows ``(tomo_id, z, y, x, conf, voxel_spacing)`` -> a typed candidate table."""
    df = pd.DataFrame(list(rows), columns=CANDIDATE_COLUMNS)
    return df.astype({"tomo_id": str, "z": float, "y": float, "x": float, "conf": float, "voxel_spacing": float})


def tomogram_spacings(tables: Sequence[pd.DataFrame], names: Sequence[str]) -> dict[str, float]:
    """The one voxel spacing per tomo_id across tables; disagreement is an InputError naming the
    file and row (1-based data row) where it first appears."""
    parts = [pd.DataFrame({"tomo_id": df["tomo_id"].to_numpy(), "s": df["voxel_spacing"].to_numpy(float),
                           "file": i, "row": np.arange(len(df))}) for i, df in enumerate(tables)]
    allr = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["tomo_id", "s", "file", "row"])
    first = allr.groupby("tomo_id", sort=False)["s"].transform("first")
    bad = ~np.isclose(allr["s"].to_numpy(float), first.to_numpy(float), rtol=0, atol=1e-6)
    if bad.any():
        r = allr[bad].iloc[0]
        ref = allr[(allr["tomo_id"] == r["tomo_id"])].iloc[0]
        raise InputError(names[int(r["file"])], f"row {int(r['row']) + 1} (line {int(r['row']) + 2}): tomogram {r['tomo_id']} has voxel_spacing "
                         f"{r['s']}, but {names[int(ref['file'])]} says {ref['s']}",
                         "fuse candidate files made with the same spacings")
    return dict(zip(allr["tomo_id"], allr["s"].astype(float)))
