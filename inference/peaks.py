"""Peak decoding: local-maximum NMS on a stitched heatmap, then cells -> original voxels.

Geometry of a heatmap axis: resampled voxel ``j`` sits at ``j * t`` Å (``t``: the spacing the
member's volume was resampled to on that axis, see :mod:`inference.resample`); output cell ``c``
covers resampled voxels ``[c*S, (c+1)*S)`` (``S``: the stride on that axis), so its centre is at
``(c*S + (S - 1) / 2) * t`` Å, which is ``that / s`` in original voxel indices (``s``: the
tomogram's spacing). From here on, coordinates are in Å or original voxel indices.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def max_filter(heat, kernel: int, xp=np):
    """Max over a ``kernel``-wide cube around each cell; outside the array counts as -inf."""
    if kernel % 2 == 0 or kernel < 1:
        raise ValueError(f"nms kernel must be odd and >= 1, got {kernel}")
    r = kernel // 2
    out = heat
    for axis in range(heat.ndim):
        if r == 0 or heat.shape[axis] == 1:
            continue
        pad = [(0, 0)] * heat.ndim
        pad[axis] = (r, r)
        p = xp.pad(out, pad, mode="constant", constant_values=-xp.inf)
        n = out.shape[axis]
        acc = None
        for d in range(kernel):
            index = [slice(None)] * heat.ndim
            index[axis] = slice(d, d + n)
            part = p[tuple(index)]
            acc = part if acc is None else xp.maximum(acc, part)
        out = acc
    return out


def find_peaks(heat, *, nms_kernel: int = 3, min_conf: float = 0.0, top_k: int = 50, xp=np):
    """Cells that equal the max of their ``nms_kernel`` neighbourhood and are ``>= min_conf``.

    Returns ``(idx, conf)`` as NumPy arrays: ``idx`` (K, ndim) int64 cell indices and ``conf`` (K,)
    float32, sorted by conf descending then by index (C order), at most ``top_k``. A plateau of
    equal values yields every cell of it (ties are not broken spatially).
    """
    heat = xp.asarray(heat, dtype=xp.float32)
    pooled = max_filter(heat, nms_kernel, xp=xp)
    mask = (heat == pooled) & (heat >= min_conf)
    flat = xp.nonzero(mask.ravel())[0]
    conf = heat.ravel()[flat]
    if hasattr(flat, "get"):  # CuPy -> NumPy; only the candidates leave the device
        flat, conf = flat.get(), conf.get()
    flat = np.asarray(flat, dtype=np.int64)
    conf = np.asarray(conf, dtype=np.float32)
    order = np.lexsort((flat, -conf))[:top_k]
    idx = np.stack(np.unravel_index(flat[order], heat.shape), axis=1).astype(np.int64)
    return idx.reshape(-1, heat.ndim), conf[order]


def cell_centres_A(idx: np.ndarray, strides: Sequence[int], spacings_A: Sequence[float]) -> np.ndarray:
    """Physical centres (Å, from the centre of voxel 0) of heatmap cells ``idx`` (K, ndim)."""
    strides = np.asarray(strides, dtype=np.float64)
    t = np.asarray(spacings_A, dtype=np.float64)
    return (np.asarray(idx, dtype=np.float64) * strides + (strides - 1.0) / 2.0) * t


def cells_to_voxels(idx: np.ndarray, strides: Sequence[int], spacings_A: Sequence[float],
                    tomo_spacing_A: float) -> np.ndarray:
    """Heatmap cells -> float indices in the ORIGINAL tomogram's voxels."""
    return cell_centres_A(idx, strides, spacings_A) / float(tomo_spacing_A)
