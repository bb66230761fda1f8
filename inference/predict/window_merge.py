"""How window outputs become one heatmap: the two mergers of the window loop.

A merger takes the outputs of one batch of windows (:meth:`add`, with the windows' starts) and
gives the stitched heatmap at the end (:meth:`result`); the loop that feeds it is
:func:`inference.predict.windows.run_windows`. Overlapping cells are averaged (``mode='mean'``,
accumulated in float64) or maxed (``mode='max'``).

* :class:`CellMerger` (cell-aligned windows): the model maps a window of ``patch`` voxels to
  ``patch / stride`` output cells; output cell ``c`` covers input voxels ``[c*stride, (c+1)*stride)``,
  so a window starting at a multiple of the stride lands on whole cells. Cells wholly in padding
  are dropped: the heatmap has ``ceil(n / stride)`` cells per axis.
* :class:`GridMerger` (the recipe's stitching grid, ``stitch.grid_stride``; the 3rd-place code,
  submit_3d.py:1073-1170, 534-558). Per axis with ``m`` resampled voxels and grid stride ``g``:
  the grid has ``G = round(m / g)`` cells (Python's ``round``: half to even; at least 1 here) and
  ``scale = G / m``; a window of ``p`` voxels gives ``p / stride`` output cells, resized (linear,
  ``align_corners=False``, :func:`resize_linear`) to ``round(p * scale)`` cells -- usually x2 for
  stride 16 and g = 8, not always; the window's valid part ``[start, end)`` (in voxels, padding
  excluded) is pasted over the cells :func:`scale_range` gives, from the same range in the
  window's own coordinates. Cells no window reaches get ``empty``. Decoding keeps the NOMINAL cell
  size: cell ``k`` is read at resampled voxel ``(k + 0.5) * g - 0.5``
  (:mod:`inference.predict.geometry`), whatever the actual ``m / G``.

Everything takes an array module ``xp`` (NumPy or CuPy).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from kernels.accumulate import MODES, accumulate
from kernels.resample import half_pixel_taps


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"stitch mode must be 'mean' or 'max', got {mode!r}")


class CellMerger:
    """Cell-aligned windows onto the output-stride grid of a volume padded to ``padded``.

    ``spatial``: the unpadded volume's shape (the heatmap keeps ``ceil(n / stride)`` cells);
    ``starts`` given to :meth:`add` are multiples of ``strides``.
    """

    def __init__(self, spatial: Sequence[int], padded: Sequence[int], strides: Sequence[int],
                 mode: str = "mean", xp=np):
        check_mode(mode)
        self.strides, self.mode, self.xp = tuple(strides), mode, xp
        self.keep = tuple(slice(0, math.ceil(n / s)) for n, s in zip(spatial, strides))
        cells = tuple(p // s for p, s in zip(padded, strides))
        # float64 accumulation: k equal float32 values average back to exactly that value.
        self.acc = xp.full(cells, -xp.inf if mode == "max" else 0.0,
                           dtype=xp.float64 if mode == "mean" else xp.float32)
        self.count = xp.zeros(cells, dtype=xp.float64) if mode == "mean" else None

    def add(self, starts: Sequence[Sequence[int]], outs) -> None:
        """Stitch ``outs`` (N, *cells of a window), float32, of the windows at ``starts``."""
        xp, acc, count, mode = self.xp, self.acc, self.count, self.mode
        if len(self.strides) == 3:  # kernels.accumulate: NumPy reference on the CPU, one CUDA launch per batch
            cells_at = np.asarray([[a // s for a, s in zip(st, self.strides)] for st in starts], dtype=np.int64)
            accumulate(acc, count, outs, cells_at, mode=mode)
            return
        out_patch = tuple(outs.shape[1:])
        for st, o in zip(starts, outs):
            region = tuple(slice(a // s, a // s + q) for a, s, q in zip(st, self.strides, out_patch))
            if mode == "mean":
                acc[region] += o
                count[region] += 1.0
            else:
                acc[region] = xp.maximum(acc[region], o)

    def result(self):
        """The stitched heatmap, float32, ``ceil(n / stride)`` cells per axis."""
        xp = self.xp
        heat = (self.acc / self.count).astype(xp.float32) if self.mode == "mean" else self.acc
        return xp.ascontiguousarray(heat[self.keep])


class GridMerger:
    """Windows anywhere, their outputs resized onto the recipe's grid (see the module doc).

    ``spatial``: the unpadded volume's shape; ``grid``: the grid stride per axis; ``resize_axes``:
    the spatial axes whose outputs are resized to the grid (all three for 3d, y and x for 2d).
    ``broadcast_z``: a 2d member's one output per window is pasted over every z cell its slices
    map to (``n`` at least 1). ``starts`` given to :meth:`add` are in voxels of the unpadded
    volume (negative: padding at the start).
    """

    def __init__(self, spatial: Sequence[int], patch: Sequence[int], grid: Sequence[int], *,
                 resize_axes: Sequence[int], mode: str = "mean", empty: float = 0.0, broadcast_z: bool = False,
                 xp=np):
        check_mode(mode)
        self.spatial, self.patch, self.mode, self.empty, self.xp = tuple(spatial), tuple(patch), mode, empty, xp
        self.resize_axes, self.broadcast_z = tuple(resize_axes), broadcast_z
        self.cells, self.scale, self.resized = window_plan(spatial, patch, grid)
        self.acc = xp.full(self.cells, -xp.inf if mode == "max" else 0.0, dtype=xp.float64)
        self.count = xp.zeros(self.cells, dtype=xp.float64)

    def add(self, starts: Sequence[Sequence[int]], outs) -> None:
        """Resize ``outs`` (N, *cells of a window), float32, and paste each over its grid cells."""
        xp, acc = self.xp, self.acc
        out = resize_linear(outs, [self.resized[a] for a in self.resize_axes], [1 + a for a in self.resize_axes],
                            xp=xp)
        for i, st in enumerate(starts):
            dst, src = [], []
            for a in range(len(self.patch)):
                d, s = paste_slices(st[a], self.patch[a], self.spatial[a], self.scale[a], self.cells[a],
                                    out.shape[1 + a], at_least_one=self.broadcast_z and a == 0)
                dst.append(d)
                src.append(s)
            dst, part = tuple(dst), out[i][tuple(src)].astype(xp.float64)
            if self.mode == "mean":
                acc[dst] += part
            else:
                acc[dst] = xp.maximum(acc[dst], part)
            self.count[dst] += 1.0

    def result(self):
        """The stitched grid, float32, ``round(m / g)`` cells per axis (``empty`` where no window reached)."""
        xp = self.xp
        covered = self.count > 0
        if self.mode == "mean":
            heat = self.acc / xp.where(covered, self.count, 1.0)
        else:
            heat = self.acc
        return xp.ascontiguousarray(xp.where(covered, heat, self.empty).astype(xp.float32))


class ChannelMergers:
    """One merger per output channel of a multi-channel model: :meth:`add` gives channel ``c`` of
    ``(N, C, *cells)`` to the ``c``-th merger, :meth:`result` stacks theirs into ``(C, *cells)``."""

    def __init__(self, mergers: Sequence, xp=np):
        self.mergers, self.xp = list(mergers), xp

    @classmethod
    def of(cls, make, channels: int, xp=np):
        """``make()`` itself for one channel (the heatmap of a motor member, unchanged), else one per channel."""
        return make() if channels == 1 else cls([make() for _ in range(channels)], xp)

    def add(self, starts: Sequence[Sequence[int]], outs) -> None:
        for c, merger in enumerate(self.mergers):
            merger.add(starts, self.xp.ascontiguousarray(outs[:, c]))

    def result(self):
        return self.xp.stack([merger.result() for merger in self.mergers])


# --------------------------------------------------------------------------- the recipe's grid


def grid_cells(m: int, g: int) -> int:
    """Cells of the stitched grid on an axis of ``m`` voxels: ``round(m / g)``, at least 1.

    (The recipe has no floor at 1; a volume shorter than half a cell would get an empty grid there.)
    """
    return max(1, round(m / g))


def window_plan(shape: Sequence[int], patch: Sequence[int], grid: Sequence[int]
                ) -> tuple[tuple[int, ...], tuple[float, ...], tuple[int, ...]]:
    """``(G, scale, resized)`` per axis: grid cells, ``G / m`` and the output cells after the resize."""
    cells = tuple(grid_cells(m, g) for m, g in zip(shape, grid))
    scale = tuple(c / m for c, m in zip(cells, shape))
    resized = tuple(round(p * s) for p, s in zip(patch, scale))
    return cells, scale, resized


def scale_range(start: float, end: float, scale: float, lo: int, hi: int,
                at_least_one: bool = False) -> tuple[int, int]:
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


def resize_positions(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(i0, i1, l0, l1)`` of a linear resize ``n_in -> n_out`` with ``align_corners=False``.

    As PyTorch computes it given the output size: the half-pixel taps
    (:func:`kernels.resample.half_pixel_taps`) at ``scale = float32(n_in) / float32(n_out)``, and
    ``l0 = 1 - l1`` in float32.
    """
    i0, i1, l1 = half_pixel_taps(n_in, n_out, np.float32(np.float32(n_in) / np.float32(n_out)))
    return i0, i1, np.float32(1.0) - l1, l1


def resize_linear(x, sizes: Sequence[int], axes: Sequence[int], xp=np):
    """Separable linear resize (``align_corners=False``) of ``x`` to ``sizes`` along ``axes``.

    Trilinear / bilinear as ``F.interpolate`` does it: ``l0*a + l1*b`` per axis in float32, the
    last axis first (their nesting). Axes whose size already matches are left alone. The recipe
    resized its window logits on the GPU (``F.interpolate(size=...)`` in the CUDA inference worker,
    submit_3d.py:1119-1135), whose kernel copies only when every size matches and otherwise samples
    every axis; a matching axis is read at ``scale = float32(n) / n = 1``: ``u = j``, ``l1 = 0``,
    ``l0 = 1`` (:func:`resize_positions`), the identity on finite values, which is what leaving it
    alone gives (PyTorch's CPU kernel copies it outright). The one difference: a non-finite logit next
    to a cell gives ``0 * inf = NaN`` there on CUDA and is ignored here. (The resample kernel
    interpolates as ``a + (b - a) * u`` instead: each formula matches its own reference bit for bit,
    so the two stay apart.)
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
