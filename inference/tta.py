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

from dataclasses import dataclass


@dataclass(frozen=True)
class Transform:
    name: str
    perm: tuple[int, ...]   # new axis i is old axis perm[i]
    flips: tuple[int, ...]  # positions (in the transformed frame) to flip

    @property
    def is_identity(self) -> bool:
        return self.perm == tuple(range(len(self.perm))) and not self.flips


def parse_tta(name: str, axes: str = "zyx") -> Transform:
    """Parse a TTA name over ``axes`` (``'zyx'`` or ``'yx'``); ValueError says what is wrong."""
    order, _, flip = name.partition("_")
    if sorted(order) != sorted(axes) or len(order) != len(axes):
        raise ValueError(f"TTA '{name}': '{order}' is not an order of the axes '{axes}' (e.g. '{axes}', '{axes[::-1]}')")
    if "_" in name and not flip:
        raise ValueError(f"TTA '{name}': nothing after '_' (name the axes to flip, e.g. '{axes}_{axes[-1]}')")
    if len(set(flip)) != len(flip) or any(a not in axes for a in flip):
        raise ValueError(f"TTA '{name}': flip axes '{flip}' must be distinct letters of '{axes}'")
    perm = tuple(axes.index(a) for a in order)
    flips = tuple(sorted(order.index(a) for a in flip))
    return Transform(name=name, perm=perm, flips=flips)


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
