"""The real tomograms that synthetic ones copy: shapes, voxel spacings, motor counts, and how they are sampled.

The reference is the ground-truth table of the 648 real BYU tomograms (packaged as
``inference/data/byu_tomograms_gt_v3.csv``) or a Kaggle ``train_labels.csv``. A synthetic
tomogram takes a real one's voxel spacing and motor count and its shape scaled by ``scale``
(a crop of a real field of view at real resolution). :func:`inference.synth.generate` draws the
rows; the first tomograms of a run cover each spacing group once (:func:`weighted_group_order`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from inference.common.errors import InputError

DEFAULT_SCALE = 0.25
MIN_DIM = 32  # no axis of a scaled tomogram is shorter than this (voxels)


def default_reference_csv() -> Path:
    """The packaged ground-truth table of the 648 real tomograms."""
    return Path(__file__).resolve().parents[1] / "data" / "byu_tomograms_gt_v3.csv"


def scaled_shape(shape: Sequence[int], scale: float) -> tuple[int, int, int]:
    """Each axis ``round(dim * scale)`` (half up), at least :data:`MIN_DIM`."""
    return tuple(max(MIN_DIM, int(math.floor(float(d) * scale + 0.5))) for d in shape)  # type: ignore[return-value]


_GT_COLUMNS = ["Z", "Y", "X", "voxel_spacing", "num_motors"]
_KAGGLE_MAP = {
    "Array shape (axis 0)": "Z",
    "Array shape (axis 1)": "Y",
    "Array shape (axis 2)": "X",
    "Voxel spacing": "voxel_spacing",
    "Number of motors": "num_motors",
}


def load_reference(path: str | Path | None = None) -> pd.DataFrame:
    """Read the reference table: one row per real tomogram with Z, Y, X, voxel_spacing, num_motors.

    Accepts the packaged ground-truth CSV or a Kaggle ``train_labels.csv`` (one row per motor,
    collapsed to one row per tomogram).
    """
    path = Path(path) if path is not None else default_reference_csv()
    fix = "pass a CSV like inference/data/byu_tomograms_gt_v3.csv or Kaggle's train_labels.csv"
    if not path.is_file():
        raise InputError(path, "reference CSV not found", fix)
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(path, f"cannot read the reference CSV ({exc})", fix) from exc
    if all(c in table.columns for c in _KAGGLE_MAP) and "tomo_id" in table.columns:
        table = table.rename(columns=_KAGGLE_MAP).drop_duplicates("tomo_id")
    missing = [c for c in _GT_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(path, f"reference CSV lacks the columns {missing}", fix)
    ref = table[_GT_COLUMNS].apply(pd.to_numeric, errors="coerce")
    bad = ~np.isfinite(ref.to_numpy(dtype=float)).all(axis=1)
    bad |= (ref[["Z", "Y", "X", "voxel_spacing"]] <= 0).any(axis=1).to_numpy()
    bad |= (ref["num_motors"] < 0).to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(
            path,
            f"{int(bad.sum())} reference rows have missing, non-numeric or non-positive values "
            f"(first: data row {first + 1})",
            "fix or drop those rows",
        )
    if ref.empty:
        raise InputError(path, "reference CSV has no rows", fix)
    ref = ref.astype({"Z": int, "Y": int, "X": int, "num_motors": int, "voxel_spacing": float})
    return ref.reset_index(drop=True)


def weighted_group_order(rng: np.random.Generator, groups: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """A random order of ``groups`` drawn without replacement, proportionally to ``weights``."""
    keys = np.log(rng.random(len(groups))) / weights  # Efraimidis-Spirakis: larger key first
    return groups[np.argsort(-keys, kind="stable")]
