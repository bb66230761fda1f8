"""Sliding-window inference: stateless helpers (window starts, padding, stitching).

Conventions (see docs/ARCHITECTURE.md):

* The model maps a window of ``patch`` voxels to ``patch / stride`` output cells. Output cell
  ``c`` covers input voxels ``[c*stride, (c+1)*stride)``. Stride and overlap may differ per axis.
* Each spatial axis is first padded at its END up to a multiple of ``stride`` and, where the
  volume is smaller, up to ``patch``. Padding uses one constant (by default the volume's mean).
* Windows start at multiples of ``stride``, so the output cells of all windows land on one grid;
  the step is ``floor(patch * (1 - overlap) / stride) * stride`` (at least ``stride``); the last
  window on each axis is shifted inward to end at the padded border.
* Overlapping cells are averaged (``mode='mean'``) or maxed (``mode='max'``). Cells wholly in
  padding are dropped: the heatmap has ``ceil(n / stride)`` cells per axis.

Everything takes an array module ``xp`` (NumPy or CuPy) so the GPU path reuses it.
"""

from __future__ import annotations

import itertools
import math
from typing import Callable, Sequence

import numpy as np


def padded_size(n: int, patch: int, stride: int) -> int:
    """Axis length after padding its end to a multiple of ``stride`` and at least ``patch``."""
    return max(math.ceil(n / stride) * stride, patch)


def window_starts(padded: int, patch: int, stride: int, overlap: float) -> list[int]:
    """Start offsets of windows along one (already padded) axis; all multiples of ``stride``."""
    if padded < patch or padded % stride or patch % stride:
        raise ValueError(f"axis {padded} must be >= patch {patch}, both multiples of stride {stride}")
    step = max(1, math.floor(patch * (1.0 - overlap) / stride)) * stride
    starts = list(range(0, padded - patch + 1, step))
    if starts[-1] != padded - patch:
        starts.append(padded - patch)
    return starts


def pad_end(volume, target: Sequence[int], value: float, xp=np):
    """Pad the trailing spatial axes of ``volume`` at their end up to ``target`` with ``value``."""
    n = len(target)
    spatial = volume.shape[-n:]
    if tuple(spatial) == tuple(target):
        return volume
    out = xp.full(volume.shape[:-n] + tuple(target), value, dtype=volume.dtype)
    out[(...,) + tuple(slice(0, s) for s in spatial)] = volume
    return out


def _per_axis(value, ndim: int, what: str) -> tuple:
    if isinstance(value, (list, tuple)):
        if len(value) != ndim:
            raise ValueError(f"{what}: expected {ndim} values, got {value!r}")
        return tuple(value)
    return (value,) * ndim


def sliding_window(
    volume,
    predictor: Callable,
    patch: Sequence[int],
    stride: int | Sequence[int],
    overlap: float | Sequence[float],
    *,
    batch_size: int = 1,
    mode: str = "mean",
    pad_value: float | None = None,
    xp=np,
):
    """Run ``predictor`` over windows of ``volume`` and stitch its output into one heatmap.

    ``volume``: ``(C, *spatial)`` float32 array (C channels, 1 for 3d members).
    ``predictor``: any callable mapping a batch ``(N, C, *patch)`` to ``(N, 1, *patch/stride)``
    (or ``(N, *patch/stride)``). ``stride`` and ``overlap``: one value or one per axis (a 2d
    member runs as patch ``(1, H, W)`` with stride ``(1, s, s)``). Returns the stitched heatmap,
    ``ceil(n/stride)`` cells per axis, float32, in the same array module.
    """
    if mode not in ("mean", "max"):
        raise ValueError(f"stitch mode must be 'mean' or 'max', got {mode!r}")
    ndim = len(patch)
    if volume.ndim != ndim + 1:
        raise ValueError(f"volume must be (C, *spatial) with {ndim} spatial axes, got shape {volume.shape}")
    strides = tuple(int(s) for s in _per_axis(stride, ndim, "stride"))
    overlaps = tuple(float(o) for o in _per_axis(overlap, ndim, "overlap"))
    spatial = tuple(int(s) for s in volume.shape[1:])
    padded = tuple(padded_size(n, p, s) for n, p, s in zip(spatial, patch, strides))
    if pad_value is None:
        pad_value = float(volume.mean()) if volume.size else 0.0
    volume = pad_end(volume, padded, pad_value, xp=xp)

    cells = tuple(p // s for p, s in zip(padded, strides))
    out_patch = tuple(p // s for p, s in zip(patch, strides))
    # float64 accumulation: k equal float32 values average back to exactly that value.
    acc = xp.full(cells, -xp.inf if mode == "max" else 0.0, dtype=xp.float64 if mode == "mean" else xp.float32)
    count = xp.zeros(cells, dtype=xp.float64) if mode == "mean" else None

    starts = list(itertools.product(*(window_starts(P, p, s, o)
                                      for P, p, s, o in zip(padded, patch, strides, overlaps))))
    volume = xp.ascontiguousarray(volume)  # windows copy fastest out of C-ordered memory
    buffer = xp.empty((min(batch_size, len(starts)), volume.shape[0]) + tuple(patch), dtype=volume.dtype)
    for b in range(0, len(starts), batch_size):
        chunk = starts[b:b + batch_size]
        batch = buffer[:len(chunk)]
        for i, st in enumerate(chunk):
            batch[i] = volume[(slice(None),) + tuple(slice(a, a + p) for a, p in zip(st, patch))]
        out = xp.asarray(predictor(batch), dtype=xp.float32)
        if tuple(out.shape) == (len(chunk), 1) + out_patch:
            out = out[:, 0]
        elif tuple(out.shape) != (len(chunk),) + out_patch:
            raise ValueError(
                f"predictor returned shape {tuple(out.shape)} for a batch {tuple(batch.shape)}; expected "
                f"{(len(chunk), 1) + out_patch} (the window / stride {strides})")
        if ndim == 3:  # kernels.accumulate: NumPy reference on the CPU, one CUDA launch per batch on the GPU
            from kernels.accumulate import accumulate

            cells_at = np.asarray([[a // s for a, s in zip(st, strides)] for st in chunk], dtype=np.int64)
            accumulate(acc, count, out, cells_at, mode=mode)
            continue
        for st, o in zip(chunk, out):
            region = tuple(slice(a // s, a // s + q) for a, s, q in zip(st, strides, out_patch))
            if mode == "mean":
                acc[region] += o
                count[region] += 1.0
            else:
                acc[region] = xp.maximum(acc[region], o)
    heat = (acc / count).astype(xp.float32) if mode == "mean" else acc
    keep = tuple(slice(0, math.ceil(n / s)) for n, s in zip(spatial, strides))
    return xp.ascontiguousarray(heat[keep])


def count_windows(shape: Sequence[int], patch: Sequence[int], stride: int | Sequence[int],
                  overlap: float | Sequence[float]) -> int:
    """How many windows :func:`sliding_window` runs over a volume of spatial ``shape``."""
    strides = _per_axis(stride, len(patch), "stride")
    overlaps = _per_axis(overlap, len(patch), "overlap")
    total = 1
    for n, p, s, o in zip(shape, patch, strides, overlaps):
        total *= len(window_starts(padded_size(n, p, s), p, s, float(o)))
    return total
