"""Sliding-window inference onto the recipe's stitching grid (``stitch.grid_stride``).

The window loop of :mod:`inference.predict.grid_windows`'s rule: windows may start anywhere (``placement:
end``) and their outputs are resized onto a grid of ``round(m / g)`` cells per axis. The
cell-aligned loop for everything else is :func:`inference.predict.windows.sliding_window`. Like it,
the predictor is any callable ``(N, C, *patch) -> (N, 1, *out)`` and every array goes through ``xp``.
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import numpy as np

from inference.predict.grid_windows import paste_slices, resize_linear, window_plan


def pad_around(volume, before: Sequence[int], after: Sequence[int], value: float, xp=np):
    """``volume`` (C, *spatial) with ``before``/``after`` voxels of ``value`` on each spatial axis."""
    if not any(before) and not any(after):
        return volume
    spatial = volume.shape[1:]
    shape = (volume.shape[0],) + tuple(b + n + a for b, n, a in zip(before, spatial, after))
    out = xp.full(shape, value, dtype=volume.dtype)
    out[(slice(None),) + tuple(slice(b, b + n) for b, n in zip(before, spatial))] = volume
    return out


def sliding_window_grid(
    volume,
    predictor: Callable,
    patch: Sequence[int],
    starts: Sequence[Sequence[int]],
    grid: Sequence[int],
    out_shape: Sequence[int],
    *,
    resize_axes: Sequence[int],
    batch_size: int = 1,
    mode: str = "mean",
    pad_value: float = 0.0,
    empty: float = 0.0,
    broadcast_z: bool = False,
    xp=np,
):
    """Run ``predictor`` over windows of ``volume`` and stitch its outputs onto the grid.

    ``volume``: ``(C, *spatial)``; ``starts``: window starts per spatial axis (voxels, negative =
    padding at the start; windows run in ``itertools.product`` order, z slowest); ``grid``: the
    grid stride per axis; ``out_shape``: the predictor's output cells per window (checked);
    ``resize_axes``: the spatial axes whose outputs are resized to the grid (all three for 3d,
    y and x for 2d). ``broadcast_z``: a 2d member's one output per window is pasted over every
    z cell its slices map to (``n`` at least 1). Overlapping cells are averaged (``mean``, in
    float64) or maxed; cells no window reaches get ``empty``. Returns float32 ``round(m/g)`` cells.
    """
    if mode not in ("mean", "max"):
        raise ValueError(f"stitch mode must be 'mean' or 'max', got {mode!r}")
    ndim = len(patch)
    spatial = tuple(int(n) for n in volume.shape[1:])
    if len(spatial) != ndim or len(starts) != ndim or len(grid) != ndim:
        raise ValueError(f"volume {tuple(volume.shape)}, patch {patch}, starts and grid need {ndim} spatial axes")
    cells, scale, resized = window_plan(spatial, patch, grid)
    before = [max(0, -min(st)) for st in starts]
    after = [max(0, max(st) + p - m) for st, p, m in zip(starts, patch, spatial)]
    padded = xp.ascontiguousarray(pad_around(volume, before, after, pad_value, xp=xp))

    acc = xp.full(cells, -xp.inf if mode == "max" else 0.0, dtype=xp.float64)
    count = xp.zeros(cells, dtype=xp.float64)
    windows = list(itertools.product(*(list(s) for s in starts)))
    buffer = xp.empty((min(batch_size, len(windows)), padded.shape[0]) + tuple(patch), dtype=padded.dtype)
    out_shape = tuple(int(o) for o in out_shape)
    for b in range(0, len(windows), batch_size):
        chunk = windows[b:b + batch_size]
        batch = buffer[:len(chunk)]
        for i, st in enumerate(chunk):
            batch[i] = padded[(slice(None),) + tuple(slice(a + o, a + o + p) for a, o, p in zip(st, before, patch))]
        out = xp.asarray(predictor(batch), dtype=xp.float32)
        if tuple(out.shape) == (len(chunk), 1) + out_shape:
            out = out[:, 0]
        elif tuple(out.shape) != (len(chunk),) + out_shape:
            raise ValueError(f"predictor returned shape {tuple(out.shape)} for a batch {tuple(batch.shape)}; "
                             f"expected {(len(chunk), 1) + out_shape}")
        out = resize_linear(out, [resized[a] for a in resize_axes], [1 + a for a in resize_axes], xp=xp)
        for i, st in enumerate(chunk):
            dst, src = [], []
            for a in range(ndim):
                d, s = paste_slices(st[a], patch[a], spatial[a], scale[a], cells[a], out.shape[1 + a],
                                    at_least_one=broadcast_z and a == 0)
                dst.append(d)
                src.append(s)
            dst, part = tuple(dst), out[i][tuple(src)].astype(xp.float64)
            if mode == "mean":
                acc[dst] += part
            else:
                acc[dst] = xp.maximum(acc[dst], part)
            count[dst] += 1.0
    covered = count > 0
    if mode == "mean":
        heat = acc / xp.where(covered, count, 1.0)
    else:
        heat = acc
    return xp.ascontiguousarray(xp.where(covered, heat, empty).astype(xp.float32))
