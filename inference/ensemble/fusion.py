"""Fusion of candidate points across members: a point version of weighted box fusion, in Å.

Per tomogram, over the candidates of all members (coordinates in Å = voxel x spacing):

1. drop candidates with ``conf < skip_conf``; weighted conf ``c' = conf * w_member``;
2. take candidates in descending ``c'`` (ties: member order, then row order); each joins the
   cluster whose CURRENT fused point is nearest if that distance is ``< dist_A`` (strictly), else
   starts a new cluster; after a join the fused point is the ``c'``-weighted mean of its points;
3. fused conf: ``avg``: ``(sum c' / n) * min(n, M) / sum(w)`` (n: cluster size, M: inputs,
   w: input weights; ``rescale='members'``), so a point seen by one input of M scores ``conf / M``
   with equal weights; ``rescale='weights'`` (the recipe's WBF): ``(sum c' / n) * min(n, sum(w)) /
   sum(w)`` -- the same for unit weights; ``max``: ``max c' / max(w)``.

The inputs are members, or ``<member>@<tta>`` lists of members with ``tta_merge: separate``.

Plain arrays in and out: :func:`fuse_points` is the algorithm, :func:`fuse_tables` applies it to
candidate tables.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from inference.ensemble.candidates import CANDIDATE_COLUMNS, tomogram_spacings
from inference.manifest.types import Fusion


def fuse_points(points_A, conf, member, weights: Sequence[float], *, dist_A: float = 1000.0,
                conf_type: str = "avg", skip_conf: float = 0.0, rescale: str = "members"):
    """Fuse the candidates of one tomogram.

    ``points_A`` (K, 3) Å, ``conf`` (K,), ``member`` (K,) index into ``weights`` (M,).
    Returns ``(fused_A (F, 3), fused_conf (F,))`` sorted by fused conf, descending.
    """
    if conf_type not in ("avg", "max"):
        raise ValueError(f"conf_type must be 'avg' or 'max', got {conf_type!r}")
    if rescale not in ("members", "weights"):
        raise ValueError(f"rescale must be 'members' or 'weights', got {rescale!r}")
    pts = np.asarray(points_A, dtype=np.float64).reshape(-1, 3)
    conf = np.asarray(conf, dtype=np.float64).reshape(-1)
    member = np.asarray(member, dtype=np.int64).reshape(-1)
    w = np.asarray(weights, dtype=np.float64)
    keep = conf >= skip_conf
    pts, conf, member = pts[keep], conf[keep], member[keep]
    cw = conf * w[member]
    order = np.lexsort((np.arange(len(cw)), member, -cw))

    k = len(order)
    centres = np.empty((k, 3))        # current fused point of each cluster
    sums = np.empty((k, 3))           # sum of c' * point
    wsum = np.zeros(k)                # sum of c'
    size = np.zeros(k, dtype=np.int64)
    cmax = np.zeros(k)                # max c'
    n = 0
    for i in order:
        p, c = pts[i], cw[i]
        j = -1
        if n:
            d2 = ((centres[:n] - p) ** 2).sum(axis=1)
            j = int(np.argmin(d2))
            if not d2[j] < dist_A * dist_A:
                j = -1
        if j < 0:
            j, n = n, n + 1
            sums[j] = p * c
            centres[j] = p
        else:
            sums[j] += p * c
        wsum[j] += c
        size[j] += 1
        cmax[j] = max(cmax[j], c)
        if wsum[j] > 0:
            centres[j] = sums[j] / wsum[j]
    if n == 0:
        return np.zeros((0, 3)), np.zeros((0,))
    if conf_type == "avg":
        cap = len(w) if rescale == "members" else float(w.sum())
        fc = wsum[:n] / size[:n] * np.minimum(size[:n], cap) / float(w.sum())
    else:
        fc = cmax[:n] / float(w.max())
    out_order = np.argsort(-fc, kind="stable")
    return centres[:n][out_order], fc[out_order]


def fuse_tables(tables: Sequence[pd.DataFrame], weights: Sequence[float], *, names: Sequence[str] | None = None,
                dist_A: float = 1000.0, conf_type: str = "avg", skip_conf: float = 0.0,
                rescale: str = "members") -> pd.DataFrame:
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
                                   dist_A=dist_A, conf_type=conf_type, skip_conf=skip_conf, rescale=rescale)
        for p, c in zip(fused / s, fconf):
            rows.append((tomo_id, p[0], p[1], p[2], c, s))
    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS).astype({"tomo_id": str})


def fuse_with(fusion: Fusion, tables: list[pd.DataFrame], weights: list[float], names: list[str]) -> pd.DataFrame:
    """Fuse candidate tables with the method and settings of a manifest's ``fusion`` block."""
    if fusion.method == "wbf_iou":
        from inference.ensemble.fusion_iou import fuse_tables_iou

        return fuse_tables_iou(tables, weights, names=names, box_A=fusion.box_A, iou_thr=fusion.iou_thr,
                               conf_type=fusion.conf_type, skip_conf=fusion.skip_conf)
    return fuse_tables(tables, weights, names=names, dist_A=fusion.dist_A, conf_type=fusion.conf_type,
                       skip_conf=fusion.skip_conf, rescale=fusion.rescale)


def fuse_members(fusion: Fusion, members: dict, weights: dict, spacing_A: float):
    """One tomogram: ``{input: (zyx voxels (K, 3), conf (K,))}`` -> fused ``(zyx voxels, conf)``.

    A single input passes through unchanged; the input order is the dict's (the manifest's), so
    this equals :func:`fuse_with` on the inputs' tables restricted to this tomogram. Inputs the
    deadline guard dropped are absent, and the weights are those of the inputs present.
    """
    names = list(members)
    if len(names) == 1:
        zyx, conf = members[names[0]]
        return np.asarray(zyx, dtype=np.float64).reshape(-1, 3), np.asarray(conf, dtype=np.float64)
    w = [weights[n] for n in names]
    if fusion.method == "wbf_iou":
        from inference.ensemble.fusion_iou import fuse_points_iou

        pts, conf = fuse_points_iou([np.asarray(members[n][0]) * spacing_A for n in names],
                                    [members[n][1] for n in names], w, box_A=fusion.box_A, iou_thr=fusion.iou_thr,
                                    conf_type=fusion.conf_type, skip_conf=fusion.skip_conf)
    else:
        zyx = np.concatenate([np.asarray(members[n][0], dtype=np.float64).reshape(-1, 3) for n in names])
        conf = np.concatenate([np.asarray(members[n][1], dtype=np.float64).reshape(-1) for n in names])
        member = np.concatenate([np.full(len(np.asarray(members[n][1]).reshape(-1)), i) for i, n in enumerate(names)])
        pts, conf = fuse_points(zyx * spacing_A, conf, member, w, dist_A=fusion.dist_A, conf_type=fusion.conf_type,
                                skip_conf=fusion.skip_conf, rescale=fusion.rescale)
    return pts / spacing_A, conf
