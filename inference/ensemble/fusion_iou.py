"""``fusion.method: wbf_iou``: ensemble_boxes' ``weighted_boxes_fusion_3d`` on cubes around points.

For comparison with the point WBF of :mod:`inference.ensemble.fusion`. Each candidate becomes a cube of side
``box_A`` centred on it; per tomogram, coordinates are normalized to [0, 1] with ONE scale for all
axes (IoU is invariant to that), as the library wants; fused cube centres map back to voxels.
Inputs are validated before the library sees them (it prints and calls ``exit()`` on some bad
input); a ``SystemExit`` from it becomes a ``ValueError``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from inference.common.errors import InputError
from inference.ensemble.candidates import CANDIDATE_COLUMNS, tomogram_spacings


def _wbf3d():
    try:
        from ensemble_boxes import weighted_boxes_fusion_3d
    except ImportError:
        raise InputError(None, "fusion method wbf_iou needs the ensemble-boxes package, which is not installed",
                         "pip install ensemble-boxes (or use method wbf, the default)") from None
    return weighted_boxes_fusion_3d


def fuse_points_iou(points_A: Sequence[np.ndarray], confs: Sequence[np.ndarray], weights: Sequence[float], *,
                    box_A: float = 1000.0, iou_thr: float = 0.55, conf_type: str = "avg", skip_conf: float = 0.0):
    """Per-member point lists (Å) of one tomogram -> fused ``(points_A (F, 3), conf (F,))``."""
    if conf_type not in ("avg", "max"):
        raise ValueError(f"conf_type must be 'avg' or 'max', got {conf_type!r}")
    if len(points_A) != len(confs) or len(points_A) != len(weights):
        raise ValueError("one point list, conf list and weight per member")
    pts = [np.asarray(p, dtype=np.float64).reshape(-1, 3) for p in points_A]
    cs = [np.asarray(c, dtype=np.float64).reshape(-1) for c in confs]
    if any(len(p) != len(c) for p, c in zip(pts, cs)):
        raise ValueError("each member needs as many confs as points")
    allp = np.concatenate(pts) if pts else np.zeros((0, 3))
    if len(allp) == 0:
        return np.zeros((0, 3)), np.zeros((0,))
    half = box_A / 2.0
    origin = allp.min(axis=0) - half
    scale = float((allp.max(axis=0) - origin + half).max())
    boxes = [np.concatenate([(p - half - origin) / scale, (p + half - origin) / scale], axis=1)[:, [2, 1, 0, 5, 4, 3]]
             for p in pts]  # library order: x1, y1, z1, x2, y2, z2
    labels = [np.zeros(len(p)) for p in pts]
    try:
        fused, scores, _ = _wbf3d()([b.tolist() for b in boxes], [c.tolist() for c in cs],
                                    [lab.tolist() for lab in labels], weights=list(weights), iou_thr=iou_thr,
                                    skip_box_thr=skip_conf, conf_type=conf_type)
    except SystemExit as exc:  # the library exit()s on input it dislikes
        raise ValueError(f"ensemble_boxes rejected the input (exit {exc.code})") from None
    fused = np.asarray(fused, dtype=np.float64).reshape(-1, 6)
    centres_xyz = (fused[:, :3] + fused[:, 3:]) / 2.0 * scale
    centres = centres_xyz[:, [2, 1, 0]] + origin
    return centres, np.asarray(scores, dtype=np.float64)


def fuse_tables_iou(tables: Sequence[pd.DataFrame], weights: Sequence[float], *, names: Sequence[str] | None = None,
                    box_A: float = 1000.0, iou_thr: float = 0.55, conf_type: str = "avg",
                    skip_conf: float = 0.0) -> pd.DataFrame:
    """Like :func:`inference.ensemble.fusion.fuse_tables`, with the library's 3D WBF on cubes."""
    names = list(names) if names is not None else [f"table{i}" for i in range(len(tables))]
    spacing = tomogram_spacings(tables, names)
    rows = []
    for tomo_id in sorted(spacing):
        s = spacing[tomo_id]
        parts = [df[df["tomo_id"] == tomo_id] for df in tables]
        fused, conf = fuse_points_iou([p[["z", "y", "x"]].to_numpy(float) * s for p in parts],
                                      [p["conf"].to_numpy(float) for p in parts], weights, box_A=box_A,
                                      iou_thr=iou_thr, conf_type=conf_type, skip_conf=skip_conf)
        rows.extend((tomo_id, *(p / s), float(c), s) for p, c in zip(fused, conf))
    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS).astype({"tomo_id": str})
