"""The recipe's stitching grid (``stitch.grid_stride``): window outputs resized onto a fixed grid.

Stateless helpers; the window loop that uses them is :mod:`inference.predict.grid_loop`. Per axis with
``m`` resampled voxels and grid stride ``g`` (the 3rd-place code, submit_3d.py:1073-1170, 534-558):

* the grid has ``G = round(m / g)`` cells (Python's ``round``: half to even; at least 1 here) and
  ``scale = G / m``;
* a window of ``p`` voxels gives ``p / stride`` output cells, resized (linear, ``align_corners=False``,
  :func:`resize_linear`) to ``round(p * scale)`` cells -- usually x2 for stride 16 and g = 8, not always;
* the window's valid part ``[start, end)`` (in voxels, padding excluded) is pasted over the cells
  :func:`scale_range` gives, from the same range in the window's own coordinates.

Decoding keeps the NOMINAL cell size: cell ``k`` is read at resampled voxel ``(k + 0.5) * g - 0.5``
(:mod:`inference.predict.geometry`), whatever the actual ``m / G``.
Everything takes an array module ``xp`` (NumPy or CuPy).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from inference.predict.windows import padded_size, window_starts


def grid_cells(m: int, g: int) -> int:
    """Cells of the stitched grid on an axis of ``m`` voxels: ``round(m / g)``, at least 1.

    (The recipe has no floor at 1; a volume shorter than half a cell would get an empty grid there.)
    """
    return max(1, round(m / g))


def scale_range(start: float, end: float, scale: float, lo: int, hi: int, at_least_one: bool = False) -> tuple[int, int]:
    """The recipe's ``scale_range``: cells ``[a, a + n)`` of a voxel range ``[start, end)`` at ``scale``.

    ``n = round((end - start) * scale)`` (at least 1 if ``at_least_one``, as their 2d code does).
    If ``round(end*scale) - round(start*scale) == n`` the cells are ``[round(start*scale),
    round(end*scale))``. Otherwise the start is ``int(start*scale)`` or ``round(start*scale)``,
    whichever lies with its ``n`` cells in ``[lo, hi]``; if both do, the one with the smaller
    ``|a - start*scale| + |a + n - end*scale|`` (ties: the rounded one). Where neither fits (their code
    raises), the rounded start is clamped into ``[lo, hi - n]``.
    """
    n = round((end - start) * scale)
    if at_least_one:
        n = max(1, n)
    a, b = round(start * scale), round(end * scale)
    if b - a == n:
        return a, b
    fits = [c for c in (int(start * scale), a) if lo <= c < c + n <= hi]
    if len(fits) == 2 and fits[0] != fits[1]:
        err = [abs(c - start * scale) + abs(c + n - end * scale) for c in fits]
        c = fits[0] if err[0] < err[1] else fits[1]
    elif fits:
        c = fits[0]
    else:
        c = min(max(a, lo), hi - n)
    return c, c + n


def resize_positions(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(i0, i1, l0, l1)`` of a linear resize ``n_in -> n_out`` with ``align_corners=False``.

    As PyTorch computes it in float32: ``scale = n_in / n_out``, source ``u = max(scale*(o + 0.5) - 0.5, 0)``,
    ``i0 = floor(u)``, ``i1 = min(i0 + 1, n_in - 1)``, ``l1 = u - i0``, ``l0 = 1 - l1``.
    """
    scale = np.float32(np.float32(n_in) / np.float32(n_out))
    o = np.arange(n_out, dtype=np.float32)
    u = np.maximum(scale * (o + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
    i0 = np.minimum(np.floor(u).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    l1 = (u - i0.astype(np.float32)).astype(np.float32)
    return i0, i1, np.float32(1.0) - l1, l1


def resize_linear(x, sizes: Sequence[int], axes: Sequence[int], xp=np):
    """Separable linear resize (``align_corners=False``) of ``x`` to ``sizes`` along ``axes``.

    Trilinear / bilinear as ``F.interpolate`` does it: ``l0*a + l1*b`` per axis in float32, the
    last axis first (their nesting). Axes whose size already matches are left alone.
    """
    out = xp.asarray(x, dtype=xp.float32)
    for axis, size in sorted(zip(axes, sizes), reverse=True):
        n_in = out.shape[axis]
        if n_in == size:
            continue
        i0, i1, l0, l1 = resize_positions(n_in, int(size))
        shape = [1] * out.ndim
        shape[axis] = -1
        a = xp.take(out, xp.asarray(i0), axis=axis)
        b = xp.take(out, xp.asarray(i1), axis=axis)
        out = a * xp.asarray(l0).reshape(shape) + b * xp.asarray(l1).reshape(shape)
    return out


def paste_slices(start: int, p: int, m: int, scale: float, cells: int, out_cells: int,
                 at_least_one: bool = False) -> tuple[slice, slice]:
    """``(dst, src)`` of one window on one axis: grid cells and (resized) output cells of its valid part.

    The window covers voxels ``[start, start + p)`` (``start`` may be negative: padding at the
    start); its valid part is ``[max(start, 0), min(start + p, m))``. ``cells``: the grid's ``G``;
    ``out_cells``: the window's output cells after the resize. An output of ONE cell (a 2d
    member's window along z) is not sliced: it broadcasts over the grid cells it maps to.
    """
    v0, v1 = max(start, 0), min(start + p, m)
    d0, d1 = scale_range(v0, v1, scale, 0, cells, at_least_one)
    if out_cells == 1 and at_least_one:
        return slice(d0, d1), slice(0, 1)
    s0, s1 = scale_range(v0 - start, v1 - start, scale, 0, out_cells, at_least_one)
    return slice(d0, d1), slice(s0, s1)


def window_plan(shape: Sequence[int], patch: Sequence[int], grid: Sequence[int]) -> tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]]:
    """``(G, scale, resized)`` per axis: grid cells, ``G / m`` and the output cells after the resize."""
    cells = tuple(grid_cells(m, g) for m, g in zip(shape, grid))
    scale = tuple(c / m for c, m in zip(cells, shape))
    resized = tuple(round(p * s) for p, s in zip(patch, scale))
    return cells, scale, resized


def stride_starts(m: int, p: int, stride: int, overlap: float) -> list[int]:
    """Window starts of ``placement: stride`` in voxels (multiples of ``stride``; the end padded)."""
    return window_starts(padded_size(m, p, stride), p, stride, overlap)


def end_starts(m: int, p: int, step: int) -> list[int]:
    """Window starts of ``placement: end``: ``0, step, 2*step, ...`` while ``< m - p``, then ``m - p``.

    The last window ends at the volume's end; a volume shorter than ``p`` gets the one start
    ``m - p < 0`` (its first ``p - m`` voxels are padding).
    """
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    return list(range(0, max(m - p, 0), step)) + [m - p]


def end_step(p: int, overlap: float) -> int:
    """The step of end-placed windows: ``p * (1 - overlap)`` rounded down, at least 1."""
    return max(1, math.floor(p * (1.0 - overlap)))
