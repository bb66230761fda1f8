"""Test-time augmentation: axis transpositions and flips, with exact inverses.

A TTA name is an axis order, optionally followed by ``_`` and the axes to flip after the
transposition: ``zyx`` (identity), ``zxy`` (swap y and x), ``zyx_x`` (flip x), ``zxy_zy``.
For 2d members the axes are ``yx``: ``yx``, ``xy``, ``yx_x``, ``xy_y``.

The axis letters name the ORIGINAL axes; flips name axes by their letter, wherever the
transposition moved them. With ``tta_scope: volume`` a transform applies to the whole (resampled,
padded) volume before windowing, so the window shape never changes, and :func:`invert` maps the
stitched heatmap back; with ``window`` it applies to each window and :func:`invert` to its output.
Both work on the trailing spatial axes of any NumPy or CuPy array.

The 3rd-place code permutes with ``rot90`` (handedness kept) and flips after: their ``zxy`` is
``rot90`` in the (Y, X) plane = flip x then transpose = our ``zxy_x``; their ``zxy_z`` = our
``zxy_xz``, their 2d ``xy`` = our ``xy_x`` (docs/RECIPE.md).
"""

from __future__ import annotations

from inference.manifest.types import Transform


def _spatial(x, n: int, axes: tuple[int, ...]) -> tuple[int, ...]:
    lead = x.ndim - n
    return tuple(lead + a for a in axes)


def apply(x, t: Transform):
    """Transform the trailing ``len(t.perm)`` axes of ``x``."""
    n = len(t.perm)
    lead = tuple(range(x.ndim - n))
    y = x.transpose(lead + _spatial(x, n, t.perm))
    for a in _spatial(y, n, t.flips):
        y = _flip(y, a)
    return y


def invert(y, t: Transform):
    """Exact inverse of :func:`apply` (also for a heatmap of the transformed volume)."""
    n = len(t.perm)
    for a in _spatial(y, n, t.flips):
        y = _flip(y, a)
    inv = [0] * n
    for i, p in enumerate(t.perm):
        inv[p] = i
    lead = tuple(range(y.ndim - n))
    return y.transpose(lead + _spatial(y, n, tuple(inv)))


def _flip(x, axis: int):
    index = [slice(None)] * x.ndim
    index[axis] = slice(None, None, -1)
    return x[tuple(index)]
