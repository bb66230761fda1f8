"""Greedy non-maximum suppression of points by Euclidean distance (``decode.nms_radius_A``).

Points come in order of preference (conf descending, as :func:`inference.decode.peaks.find_peaks`
returns them); each is kept if it lies at least ``radius`` from EVERY point kept before it
(a distance exactly ``radius`` keeps it, as the recipe's ``keypoints_nms``), until ``max_keep``
are kept. Host-side NumPy on both paths: only the candidates leave the device.
"""

from __future__ import annotations

import numpy as np


def greedy_nms(points: np.ndarray, radius: float, max_keep: int | None = None) -> np.ndarray:
    """Indices (into ``points``, ascending = preference order) of the points kept.

    ``points``: (K, D) coordinates in one unit (Å here), best first; ``radius`` in that unit.
    """
    pts = np.asarray(points, dtype=np.float64)
    if len(pts) == 0:  # a member without one peak above min_conf on this tomogram
        return np.zeros(0, dtype=np.int64)
    pts = pts.reshape(len(pts), -1)
    limit = len(pts) if max_keep is None else int(max_keep)
    alive = np.ones(len(pts), dtype=bool)
    kept: list[int] = []
    r2 = float(radius) ** 2
    for i in range(len(pts)):
        if len(kept) >= limit:
            break
        if not alive[i]:
            continue
        kept.append(i)
        d2 = ((pts[i + 1:] - pts[i]) ** 2).sum(axis=1)
        alive[i + 1:] &= ~(d2 < r2)
    return np.asarray(kept, dtype=np.int64)
