"""Where the windows go: window starts per axis and the padding that makes every window fit.

Two placements (the window loop, :func:`inference.predict.windows.run_windows`, runs either):

* ``stride`` (cell-aligned): each spatial axis is first padded at its END up to a multiple of
  ``stride`` and, where the volume is smaller, up to ``patch`` (:func:`padded_size`,
  :func:`pad_end`). Windows start at multiples of ``stride``, so the output cells of all windows
  land on one grid; the step is ``floor(patch * (1 - overlap) / stride) * stride`` (at least
  ``stride``); the last window on each axis is shifted inward to end at the padded border
  (:func:`window_starts`). Stride and overlap may differ per axis.
* ``end`` (the recipe's): windows every ``floor(patch * (1 - overlap))`` voxels, the last one
  ending at the volume's end (:func:`end_starts`, :func:`end_step`); a volume shorter than the
  window gets one window with padding at its start (:func:`pad_around`).

Starts are in voxels of the unpadded volume (negative: padding at the start). Everything takes an
array module ``xp`` (NumPy or CuPy).
"""

from __future__ import annotations

import math
from typing import Sequence

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


def stride_starts(m: int, p: int, stride: int, overlap: float) -> list[int]:
    """Window starts of ``placement: stride`` on an axis of ``m`` voxels (multiples of ``stride``; the end padded)."""
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


def per_axis(value, ndim: int, what: str) -> tuple:
    """``ndim`` values from one value or a list/tuple of ``ndim`` (ValueError naming ``what`` otherwise)."""
    if isinstance(value, (list, tuple)):
        if len(value) != ndim:
            raise ValueError(f"{what}: expected {ndim} values, got {value!r}")
        return tuple(value)
    return (value,) * ndim


def count_windows(shape: Sequence[int], patch: Sequence[int], stride: int | Sequence[int],
                  overlap: float | Sequence[float]) -> int:
    """How many cell-aligned windows (:func:`inference.predict.windows.sliding_window`) cover a
    volume of spatial ``shape``."""
    strides = per_axis(stride, len(patch), "stride")
    overlaps = per_axis(overlap, len(patch), "overlap")
    total = 1
    for n, p, s, o in zip(shape, patch, strides, overlaps):
        total *= len(window_starts(padded_size(n, p, s), p, s, float(o)))
    return total


def pad_end(volume, target: Sequence[int], value: float, xp=np):
    """Pad the trailing spatial axes of ``volume`` at their end up to ``target`` with ``value``."""
    n = len(target)
    spatial = volume.shape[-n:]
    if tuple(spatial) == tuple(target):
        return volume
    out = xp.full(volume.shape[:-n] + tuple(target), value, dtype=volume.dtype)
    out[(...,) + tuple(slice(0, s) for s in spatial)] = volume
    return out


def pad_around(volume, before: Sequence[int], after: Sequence[int], value: float, xp=np):
    """``volume`` (C, *spatial) with ``before``/``after`` voxels of ``value`` on each spatial axis."""
    if not any(before) and not any(after):
        return volume
    spatial = volume.shape[1:]
    shape = (volume.shape[0],) + tuple(b + n + a for b, n, a in zip(before, spatial, after))
    out = xp.full(shape, value, dtype=volume.dtype)
    out[(slice(None),) + tuple(slice(b, b + n) for b, n in zip(before, spatial))] = volume
    return out


def padding_for(starts: Sequence[Sequence[int]], patch: Sequence[int], spatial: Sequence[int]
                ) -> tuple[list[int], list[int]]:
    """``(before, after)`` voxels per axis that windows at ``starts`` (per axis) need beyond ``spatial``."""
    before = [max(0, -min(st)) for st in starts]
    after = [max(0, max(st) + p - m) for st, p, m in zip(starts, patch, spatial)]
    return before, after
