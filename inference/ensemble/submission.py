"""Candidate tables, best point per tomogram, thresholding, and submission.csv.

A candidate table has columns ``tomo_id,z,y,x,conf,voxel_spacing`` (z, y, x in ORIGINAL voxel
indices, floats). A submission has ``tomo_id,Motor axis 0,Motor axis 1,Motor axis 2`` with -1 for
"no motor".

Threshold semantics: a tomogram is "no motor" when its best conf is AT OR BELOW the threshold
(a tomogram with no candidate has best conf 0). ``quantile q``: the threshold is the q-quantile
of the per-tomogram best confs (NumPy's default linear rule); ``fixed t``: the threshold is t.
``keep_equal`` (the recipe's rule): a best conf EQUAL to the threshold keeps its motor, so only
confs strictly below it become "no motor"; a tomogram with no candidate (or conf 0) stays "no motor".
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from inference.common.errors import InputError
from inference.manifest.types import Threshold

logger = logging.getLogger(__name__)

SUBMISSION_COLUMNS = ["tomo_id", "Motor axis 0", "Motor axis 1", "Motor axis 2"]


def best_per_tomogram(candidates: pd.DataFrame, tomo_ids: Sequence[str]) -> pd.DataFrame:
    """One row per tomo_id (in the given order): its highest-conf candidate, or conf 0 and -1."""
    best = {}
    if len(candidates):
        top = candidates.sort_values(["tomo_id", "conf"], ascending=[True, False], kind="mergesort")
        top = top.drop_duplicates("tomo_id", keep="first").set_index("tomo_id")
        best = top.to_dict("index")
    rows = []
    for t in tomo_ids:
        b = best.get(t)
        rows.append((t, b["z"], b["y"], b["x"], b["conf"]) if b else (t, -1.0, -1.0, -1.0, 0.0))
    return pd.DataFrame(rows, columns=["tomo_id", "z", "y", "x", "conf"])


def threshold_value(best_confs: Sequence[float], threshold: Threshold) -> float:
    if threshold.fixed is not None:
        return float(threshold.fixed)
    confs = np.asarray(best_confs, dtype=np.float64)
    if confs.size == 0:
        return 0.0
    return float(np.quantile(confs, threshold.quantile))


@dataclass(frozen=True)
class Decision:
    submission: pd.DataFrame
    threshold: float
    n_motor: int
    n_total: int

    def describe(self) -> str:
        return f"threshold {self.threshold:.4f}: {self.n_motor} of {self.n_total} tomograms get a motor"


def decide(best: pd.DataFrame, threshold: Threshold) -> Decision:
    """Apply the threshold to :func:`best_per_tomogram`'s table and build the submission."""
    conf = best["conf"].to_numpy()
    thr = threshold_value(conf, threshold)
    motor = (conf >= thr) & (conf > 0) if threshold.keep_equal else conf > thr
    sub = pd.DataFrame({
        "tomo_id": best["tomo_id"].astype(str),
        "Motor axis 0": np.where(motor, best["z"], -1.0),
        "Motor axis 1": np.where(motor, best["y"], -1.0),
        "Motor axis 2": np.where(motor, best["x"], -1.0),
    })
    return Decision(submission=sub, threshold=thr, n_motor=int(motor.sum()), n_total=len(sub))


def submission_order(found_ids: Sequence[str], sample_submission: str | Path | None, column: str = "tomo_id",
                     absent: str = "get -1") -> list[str]:
    """The tomo_ids to write, in order: the sample submission's when given (each once, with a WARNING
    naming those it lists twice or leaves blank), else sorted. ``column``: the sample's id column
    (``experiment`` for particles); ``absent``: what the submission gives an id the input lacks."""
    if sample_submission is None:
        return sorted(found_ids)
    path = Path(sample_submission)
    fix = "pass the competition's sample_submission.csv"
    if not path.is_file():
        raise InputError(path, "the sample submission does not exist" if not path.exists() else
                         "the sample submission is not a file", fix)
    try:
        sample = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, f"cannot read the sample submission ({' '.join(str(exc).split())})", fix) from None
    if column not in sample.columns:
        raise InputError(path, f"no {column!r} column (columns: {', '.join(map(str, sample.columns))})", fix)
    listed = [str(t) for t in sample[column]]
    blank = [i + 2 for i, t in enumerate(listed) if not t.strip()]
    if blank:
        logger.warning("%s: %d row(s) without a %s are left out (line(s) %s)", path, len(blank), column,
                       ", ".join(map(str, blank[:10])))
    listed = [t for t in listed if t.strip()]
    ids = list(dict.fromkeys(listed))
    if not ids:
        raise InputError(path, f"the sample submission lists no {column}", fix)
    dupes = sorted(t for t, n in Counter(listed).items() if n > 1)
    if dupes:
        if column == "tomo_id":  # a particle submission lists an experiment once per pick
            logger.warning("%s lists %d tomo_id(s) more than once; each is written once, in the order of its first "
                           "row: %s", path, len(dupes), ", ".join(dupes[:10]) + (" ..." if len(dupes) > 10 else ""))
    missing = sorted(set(ids) - set(found_ids))
    extra = sorted(set(found_ids) - set(ids))
    if missing:
        logger.warning("%d tomograms of %s were not in the input and %s: %s", len(missing), path.name, absent,
                       ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""))
    if extra:
        logger.warning("%d input tomograms are not in %s and are left out: %s", len(extra), path.name,
                       ", ".join(extra[:5]) + (" ..." if len(extra) > 5 else ""))
    return ids


