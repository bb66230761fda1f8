"""Sliding-window inference: one batched window loop, run with a placement and a merger.

As MONAI splits its inferer into a splitter and a merger: where the windows go and how the
volume is padded is :mod:`inference.predict.window_placement`; how their outputs become one
heatmap is :mod:`inference.predict.window_merge`. :func:`run_windows` is the loop between them
(batch fill, the predictor call, the output-shape check); the two ways the predictor runs it:

* :func:`sliding_window`: cell-aligned windows (``placement: stride``), outputs stitched on the
  output-stride grid (:class:`~inference.predict.window_merge.CellMerger`);
* :func:`sliding_window_grid`: windows anywhere (``placement: end``, ``slices``, or on the stride),
  outputs resized onto the recipe's grid (:class:`~inference.predict.window_merge.GridMerger`).

The predictor is any callable mapping a batch ``(N, C, *patch)`` to ``(N, 1, *out)`` or
``(N, *out)`` (one heatmap), or to ``(N, K, *out)`` for a model with ``K`` output channels (``channels=K``:
each channel stitched by its own merger, :class:`~inference.predict.window_merge.ChannelMergers`). Everything takes an array module ``xp`` (NumPy or CuPy) so the GPU path reuses it.
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

import numpy as np

from inference.predict.window_merge import CellMerger, ChannelMergers, GridMerger
from inference.predict.window_placement import pad_around, pad_end, padded_size, padding_for, per_axis, window_starts


def run_windows(volume, predictor: Callable, patch: Sequence[int], starts: Sequence[Sequence[int]],
                out_shape: Sequence[int], merger, *, offset: Sequence[int] | None = None, batch_size: int = 1,
                channels: int = 1, xp=np):
    """Run ``predictor`` over the windows at ``starts`` of ``volume`` in batches; ``merger`` stitches them.

    ``volume``: ``(C, *spatial)``, already padded so that every window fits; ``starts``: one start
    per spatial axis for each window, in the order they run; ``offset``: voxels added to every
    start to index ``volume`` (the padding before it; none by default). ``out_shape``: the
    predictor's output cells per window (checked; a singleton channel axis is dropped). The merger
    gets each batch as ``merger.add(starts, outputs)`` (outputs float32 ``(N, *out_shape)``, or
    ``(N, channels, *out_shape)`` with ``channels`` > 1); returns ``merger.result()``.
    """
    windows = list(starts)
    patch, out_shape = tuple(patch), tuple(int(o) for o in out_shape)
    offset = tuple(offset) if offset is not None else (0,) * len(patch)
    buffer = xp.empty((min(batch_size, len(windows)), volume.shape[0]) + patch, dtype=volume.dtype)
    for b in range(0, len(windows), batch_size):
        chunk = windows[b:b + batch_size]
        batch = buffer[:len(chunk)]
        for i, st in enumerate(chunk):
            batch[i] = volume[(slice(None),) + tuple(slice(a + o, a + o + p) for a, o, p in zip(st, offset, patch))]
        out = xp.asarray(predictor(batch), dtype=xp.float32)
        if channels > 1:
            if tuple(out.shape) != (len(chunk), channels) + out_shape:
                raise ValueError(
                    f"predictor returned shape {tuple(out.shape)} for a batch {tuple(batch.shape)}; expected "
                    f"{(len(chunk), channels) + out_shape} ({channels} channels, the window / stride "
                    f"{tuple(p // q for p, q in zip(patch, out_shape))})")
        elif tuple(out.shape) == (len(chunk), 1) + out_shape:
            out = out[:, 0]
        elif tuple(out.shape) != (len(chunk),) + out_shape:
            strides = tuple(p // q for p, q in zip(patch, out_shape))
            raise ValueError(
                f"predictor returned shape {tuple(out.shape)} for a batch {tuple(batch.shape)}; expected "
                f"{(len(chunk), 1) + out_shape} (the window / stride {strides})")
        merger.add(chunk, out)
    return merger.result()


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
    channels: int = 1,
    xp=np,
):
    """Run ``predictor`` over cell-aligned windows of ``volume`` and stitch its output into one heatmap.

    ``volume``: ``(C, *spatial)`` float32 array (C channels, 1 for 3d members). ``stride`` and
    ``overlap``: one value or one per axis (a 2d member runs as patch ``(1, H, W)`` with stride
    ``(1, s, s)``). The end of each axis is padded with ``pad_value`` (by default the volume's
    mean). Returns the stitched heatmap, ``ceil(n/stride)`` cells per axis, float32, in the same
    array module; with ``channels`` > 1 output channels, ``(channels, *cells)``.
    """
    ndim = len(patch)
    if volume.ndim != ndim + 1:
        raise ValueError(f"volume must be (C, *spatial) with {ndim} spatial axes, got shape {volume.shape}")
    strides = tuple(int(s) for s in per_axis(stride, ndim, "stride"))
    overlaps = tuple(float(o) for o in per_axis(overlap, ndim, "overlap"))
    spatial = tuple(int(s) for s in volume.shape[1:])
    padded = tuple(padded_size(n, p, s) for n, p, s in zip(spatial, patch, strides))
    merger = ChannelMergers.of(lambda: CellMerger(spatial, padded, strides, mode, xp), channels, xp)
    if pad_value is None:
        pad_value = float(volume.mean()) if volume.size else 0.0
    volume = pad_end(volume, padded, pad_value, xp=xp)
    starts = itertools.product(*(window_starts(P, p, s, o) for P, p, s, o in zip(padded, patch, strides, overlaps)))
    volume = xp.ascontiguousarray(volume)  # windows copy fastest out of C-ordered memory
    return run_windows(volume, predictor, patch, starts, tuple(p // s for p, s in zip(patch, strides)), merger,
                       batch_size=batch_size, channels=channels, xp=xp)


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
    channels: int = 1,
    xp=np,
):
    """Run ``predictor`` over windows of ``volume`` and stitch its outputs onto the recipe's grid.

    ``volume``: ``(C, *spatial)``; ``starts``: window starts per spatial axis (voxels, negative =
    padding at the start; windows run in ``itertools.product`` order, z slowest), padded with
    ``pad_value`` where they reach past the volume; ``grid``: the grid stride per axis;
    ``out_shape``: the predictor's output cells per window (checked); ``resize_axes``,
    ``broadcast_z``, ``empty``: see :class:`~inference.predict.window_merge.GridMerger`. Returns
    float32 ``round(m/g)`` cells (``(channels, *cells)`` with ``channels`` > 1).
    """
    ndim = len(patch)
    spatial = tuple(int(n) for n in volume.shape[1:])
    if len(spatial) != ndim or len(starts) != ndim or len(grid) != ndim:
        raise ValueError(f"volume {tuple(volume.shape)}, patch {patch}, starts and grid need {ndim} spatial axes")
    merger = ChannelMergers.of(lambda: GridMerger(spatial, patch, grid, resize_axes=resize_axes, mode=mode,
                                                  empty=empty, broadcast_z=broadcast_z, xp=xp), channels, xp)
    before, after = padding_for(starts, patch, spatial)
    padded = xp.ascontiguousarray(pad_around(volume, before, after, pad_value, xp=xp))
    windows = itertools.product(*(list(s) for s in starts))
    return run_windows(padded, predictor, patch, windows, out_shape, merger, offset=before, batch_size=batch_size,
                       channels=channels, xp=xp)
