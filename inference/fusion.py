"""Fusion of candidate points across members: a point version of weighted box fusion, in Å.

Per tomogram, over the candidates of all members (coordinates in Å = voxel x spacing):

1. drop candidates with ``conf < skip_conf``; weighted conf ``c' = conf * w_member``;
2. take candidates in descending ``c'`` (ties: member order, then row order); each joins the
   cluster whose CURRENT fused point is nearest if that distance is ``< dist_A`` (strictly), else
   starts a new cluster; after a join the fused point is the ``c'``-weighted mean of its points;
3. fused conf: ``avg``: ``(sum c' / n) * min(n, M) / sum(w)`` (n: cluster size, M: members,
   w: member weights), so a point seen by one member of M scores ``conf / M`` with equal weights;
   ``max``: ``max c' / max(w)``.

Plain arrays in and out: :func:`fuse_points` is the algorithm, :func:`fuse_tables` applies it to
candidate tables.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from inference.errors import InputError
from inference.submission import CANDIDATE_COLUMNS


def fuse_points(points_A, conf, member, weights: Sequence[float], *, dist_A: float = 1000.0,
                conf_type: str = "avg", skip_conf: float = 0.0):
    """Fuse the candidates of one tomogram.

    ``points_A`` (K, 3) Å, ``conf`` (K,), ``member`` (K,) index into ``weights`` (M,).
    Returns ``(fused_A (F, 3), fused_conf (F,))`` sorted by fused conf, descending.
    """
    if conf_type not in ("avg", "max"):
        raise ValueError(f"conf_type must be 'avg' or 'max', got {conf_type!r}")
    pts = np.asarray(points_A, dtype=np.float64).reshape(-1, 3)
    conf = np.asarray(conf, dtype=np.float64).reshape(-1)
    member = np.asarray(member, dtype=np.int64).reshape(-1)
    w = np.asarray(weights, dtype=np.float64)
    keep = conf >= skip_conf
    pts, conf, member = pts[keep], conf[keep], member[keep]
    cw = conf * w[member]
    order = np.lexsort((np.arange(len(cw)), member, -cw))

    centres: list[np.ndarray] = []
    sums: list[np.ndarray] = []  # sum of c' * point
    wsum: list[float] = []
    members_of: list[list[float]] = []  # c' of each point in the cluster
    for i in order:
        p, c = pts[i], cw[i]
        j = -1
        if centres:
            d = np.linalg.norm(np.asarray(centres) - p, axis=1)
            j = int(np.argmin(d))
            if not d[j] < dist_A:
                j = -1
        if j < 0:
            centres.append(p.copy())
            sums.append(p * c)
            wsum.append(float(c))
            members_of.append([float(c)])
        else:
            sums[j] = sums[j] + p * c
            wsum[j] += float(c)
            members_of[j].append(float(c))
            centres[j] = sums[j] / wsum[j] if wsum[j] > 0 else centres[j]

    m_count = len(w)
    fused_conf = []
    for cs in members_of:
        n = len(cs)
        if conf_type == "avg":
            fused_conf.append(sum(cs) / n * min(n, m_count) / float(w.sum()))
        else:
            fused_conf.append(max(cs) / float(w.max()))
    if not centres:
        return np.zeros((0, 3)), np.zeros((0,))
    fc = np.asarray(fused_conf)
    out_order = np.argsort(-fc, kind="stable")
    return np.asarray(centres)[out_order], fc[out_order]


def tomogram_spacings(tables: Sequence[pd.DataFrame], names: Sequence[str]) -> dict[str, float]:
    """The one voxel spacing per tomo_id across tables; disagreement is an InputError."""
    seen: dict[str, tuple[float, str]] = {}
    for df, name in zip(tables, names):
        for row, (t, s) in enumerate(zip(df["tomo_id"], df["voxel_spacing"])):
            prev = seen.get(t)
            if prev is None:
                seen[t] = (float(s), name)
            elif not np.isclose(prev[0], s, rtol=0, atol=1e-6):
                raise InputError(name, f"row {row + 2}: tomogram {t} has voxel_spacing {s}, but {prev[1]} "
                                 f"says {prev[0]}", "fuse candidate files made with the same spacings")
    return {t: s for t, (s, _) in seen.items()}


def fuse_tables(tables: Sequence[pd.DataFrame], weights: Sequence[float], *, names: Sequence[str] | None = None,
                dist_A: float = 1000.0, conf_type: str = "avg", skip_conf: float = 0.0) -> pd.DataFrame:
    """Fuse candidate tables (one per member, same columns) into one fused candidate table."""
    names = list(names) if names is not None else [f"table{i}" for i in range(len(tables))]
    if len(weights) != len(tables):
        raise ValueError(f"{len(tables)} tables but {len(weights)} weights")
    spacing = tomogram_spacings(tables, names)
    parts = [df.assign(_member=i) for i, df in enumerate(tables) if len(df)]
    allc = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CANDIDATE_COLUMNS + ["_member"])
    rows = []
    for tomo_id, g in allc.groupby("tomo_id", sort=True):
        s = spacing[tomo_id]
        pts = g[["z", "y", "x"]].to_numpy(dtype=np.float64) * s
        fused, fconf = fuse_points(pts, g["conf"].to_numpy(), g["_member"].to_numpy(), weights,
                                   dist_A=dist_A, conf_type=conf_type, skip_conf=skip_conf)
        for p, c in zip(fused / s, fconf):
            rows.append((tomo_id, p[0], p[1], p[2], c, s))
    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS).astype({"tomo_id": str})
