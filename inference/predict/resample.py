"""Resampling to the target spacing, and normalization.

Voxel-centre convention (exact both ways): voxel ``i`` of a volume with spacing ``s`` Å has its
centre at ``i * s`` Å, measured from the centre of voxel 0. Resampling to spacing ``t`` samples
the volume at ``j * t`` Å for ``j = 0 .. floor((n - 1) * s / t)`` (every sample lies inside the
original volume, no extrapolation), with separable linear interpolation. So a point at original
index ``i`` sits at resampled index ``i * s / t`` and comes back as ``j * t / s``.

Linear interpolation without an anti-alias prefilter, as the recipe's models were trained with
(trilinear resize); on 6.5 Å data the 2.5x downsampling therefore aliases fine detail.

The recipe's own convention (``resample: {grid: half_pixel}``, PyTorch ``align_corners=False``
with ``scale_factor = s/t``, on the CPU as the recipe ran it): ``floor(n * s/t)`` samples, sample ``j``
at input position ``max(0, (j + 0.5) * t/s - 0.5)``; an axis whose length does not change
(``floor(n * s/t) == n``) is copied, as PyTorch's CPU kernel does (not its CUDA kernel: see
:mod:`kernels.resample`). A point at original index ``i`` sits at ``(i + 0.5) * s/t - 0.5``.
``quantize: uint8`` truncates the resampled values to integers in [0, 255] (their ``.to(uint8)``).
Both run through :func:`kernels.resample.resample_normalize` (its NumPy reference on the CPU).
All functions take an array module ``xp`` (NumPy or CuPy).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from inference.manifest.types import Normalize
from kernels.resample import (
    axis_order,
    axis_table,
    is_identity_axis,
    output_shape,
    per_axis_spacing,
    resample_normalize,
)


def resampled_shape(shape: Sequence[int], src_spacing: float | Sequence[float],
                    dst_spacing: float | Sequence[float], grid: str = "corner") -> tuple[int, ...]:
    """The shape :func:`resample` returns for a volume of ``shape`` (the kernel's
    :func:`kernels.resample.output_shape`: one definition of the sample counts)."""
    return output_shape(shape, src_spacing, dst_spacing, grid)


def resample(volume, src_spacing: float | Sequence[float], dst_spacing: float | Sequence[float], xp=np,
             *, grid: str = "corner", quantize: str = "none"):
    """Linear resampling of a (Z, Y, X) (or any-D) volume; returns float32.

    The axis that shrinks the most goes first, so the intermediate arrays stay small. ``grid`` and
    ``quantize`` other than ``corner``/``none`` (3D volumes) go through the kernel module. The
    sample positions and the axis order are the kernel's (:func:`kernels.resample.axis_table`,
    :func:`~kernels.resample.axis_order`); this is its interpolation composed axis by axis in ``xp``.
    """
    if grid != "corner" or quantize != "none":
        return resample_normalize(volume, src_spacing, dst_spacing, 0.0, 1.0, grid=grid, quantize=quantize)
    src = per_axis_spacing(src_spacing, volume.ndim)
    dst = per_axis_spacing(dst_spacing, volume.ndim)
    out = volume
    for axis in axis_order(src, dst):
        if is_identity_axis(src[axis], dst[axis]):
            continue
        out = _resample_axis(out, axis, src[axis], dst[axis], xp)
    return out.astype(xp.float32, copy=False)


def _resample_axis(vol, axis: int, src: float, dst: float, xp, chunk: int = 8):
    """Linear resampling along one axis, in slabs of ``chunk`` planes so temporaries stay small.

    Along axis 0 the slabs are output planes; along the other axes they are input z-slabs, so
    every gather reads contiguous memory.
    """
    i0, i1, w = (xp.asarray(t) for t in axis_table(vol.shape[axis], src, dst))
    shape = list(vol.shape)
    shape[axis] = len(i0)
    out = xp.empty(shape, dtype=xp.float32)
    wshape = [1] * vol.ndim
    wshape[axis] = -1
    w = w.reshape(wshape)
    if axis == 0:
        for lo in range(0, len(i0), chunk):
            sl = slice(lo, lo + chunk)
            a = xp.take(vol, i0[sl], axis=0).astype(xp.float32, copy=False)
            b = xp.take(vol, i1[sl], axis=0).astype(xp.float32, copy=False)
            out[sl] = a + (b - a) * w[sl]
        return out
    for lo in range(0, vol.shape[0], chunk):
        slab = vol[lo:lo + chunk]
        a = xp.take(slab, i0, axis=axis).astype(xp.float32, copy=False)
        b = xp.take(slab, i1, axis=axis).astype(xp.float32, copy=False)
        out[lo:lo + chunk] = a + (b - a) * w
    return out


def affine_of(volume, norm: Normalize) -> tuple[float, float]:
    """``(mean, std)`` of the normalisation: the manifest's, or the float32 volume's own (``zscore``;
    std 0 -> 1)."""
    if norm.mode == "zscore":
        return float(volume.mean()), float(volume.std()) or 1.0
    return norm.mean, norm.std


def normalize(volume, norm: Normalize, xp=np):
    """``(v - mean) / std``; ``zscore`` uses the volume's own mean and std (std 0 -> 1)."""
    v = volume.astype(xp.float32, copy=False)
    mean, std = affine_of(v, norm)
    return (v - mean) / std
