"""Peak decoding: local-maximum NMS on a stitched heatmap, then cells -> original voxels.

Geometry of a heatmap axis: resampled voxel ``j`` sits at ``j * t`` Å (``t``: the spacing the
member's volume was resampled to on that axis, see :mod:`inference.predict.resample`); output cell ``c``
covers resampled voxels ``[c*S, (c+1)*S)`` (``S``: the stride on that axis), so its centre is at
``(c*S + (S - 1) / 2) * t`` Å, which is ``that / s`` in original voxel indices (``s``: the
tomogram's spacing). From here on, coordinates are in Å or original voxel indices. The recipe's
half-pixel convention and grid cells: :mod:`inference.predict.geometry`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from kernels.nms import local_max_mask


def nms_kernel_for(cell_A, kernel: int) -> tuple[int, ...]:
    """Per-axis NMS widths covering the same physical extent: ``kernel`` cells of the coarsest axis.

    Isotropic cells (3d members) keep ``kernel`` everywhere; a 2d member's thin z cells get a
    wider kernel along z, so one motor spanning many slices yields one peak.
    """
    coarse = max(cell_A)
    out = []
    for c in cell_A:
        k = int(math.ceil(kernel * coarse / c - 1e-9))
        out.append(k if k % 2 else k + 1)
    return tuple(out)


def find_peaks(heat, *, nms_kernel=3, min_conf: float = 0.0, top_k: int | None = 50, xp=np):
    """Cells that equal the max of their ``nms_kernel`` neighbourhood and are ``>= min_conf``.

    ``nms_kernel``: one odd width or one per axis. Returns ``(idx, conf)`` as NumPy arrays:
    ``idx`` (K, ndim) int64 cell indices and ``conf`` (K,) float32, sorted by conf descending then
    by index (C order), at most ``top_k`` (None: all). A plateau of equal values yields every cell of it
    (ties are not broken spatially). The mask (box maximum, ``min_conf`` in float32) is
    :func:`kernels.nms.local_max_mask`'s, for any rank.
    """
    heat = xp.asarray(heat, dtype=xp.float32)
    # kernels.nms: NumPy reference on the CPU, one CUDA launch on the GPU (3D)
    mask = local_max_mask(xp.ascontiguousarray(heat), nms_kernel, min_conf)
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
