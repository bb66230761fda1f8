"""The last step of every particle decoder, on the host: order, border, NMS, cap.

Picks arrive as cell coordinates (K, 3) float64 (z, y, x in the map's cell index space), their conf
(K,) and a tie key (K,) int64 (the raster index of the pick's cell, or of its blob's first cell). They
leave best first: conf descending, then the tie key ascending -- so two runs (CPU, GPU) that find the
same picks list them in the same order.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from inference.decode.nms_points import greedy_nms


def best_first(conf: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """Indices ordering picks by conf descending, then ``tie`` ascending."""
    return np.lexsort((np.asarray(tie, np.int64), -np.asarray(conf, np.float64)))


def inside_border(coords: np.ndarray, shape: Sequence[int], cell_A: Sequence[float], border_A: float) -> np.ndarray:
    """True for picks at least ``border_A`` Å from the first and the last cell centre on every axis
    (all True for ``border_A`` 0)."""
    coords = np.asarray(coords, np.float64).reshape(-1, 3)
    if border_A <= 0:
        return np.ones(len(coords), bool)
    cell = np.asarray(cell_A, np.float64)
    last = np.asarray(shape, np.float64) - 1.0
    return np.all((coords * cell >= border_A) & ((last - coords) * cell >= border_A), axis=1)


def finish(coords, conf, tie, shape: Sequence[int], cell_A: Sequence[float], *, border_A: float, max_picks: int,
           nms_A: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best first, those inside the border, then (with ``nms_A``) the greedy distance NMS in Å
    (:func:`inference.decode.nms_points.greedy_nms`: a pick closer than ``nms_A`` to a kept one is
    dropped), at most ``max_picks``. Returns ``(coords (K, 3) float64, conf (K,) float64)``."""
    coords = np.asarray(coords, np.float64).reshape(-1, 3)
    conf = np.asarray(conf, np.float64).reshape(-1)
    order = best_first(conf, tie)
    coords, conf = coords[order], conf[order]
    keep = inside_border(coords, shape, cell_A, border_A)
    coords, conf = coords[keep], conf[keep]
    if nms_A is not None and nms_A > 0:
        idx = greedy_nms(coords * np.asarray(cell_A, np.float64), nms_A, max_picks)
    else:
        idx = np.arange(min(len(coords), int(max_picks)))
    return coords[idx].reshape(-1, 3), conf[idx]
