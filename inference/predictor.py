"""One member over one tomogram: resample -> normalize -> TTA x sliding window -> heatmap -> peaks.

:class:`MemberPredictor` is the stateful part (it holds the engine); the steps it calls are the
stateless helpers of :mod:`inference.resample`, :mod:`inference.windows`, :mod:`inference.tta`
and :mod:`inference.peaks`. Everything is written against an array module ``xp``.

Both member kinds run as one 3D sliding window over (z, y, x):

* ``3d``: the volume at ``target_spacing`` on every axis; window ``patch``, stride ``s`` per axis;
  the engine sees ``(N, 1, D, H, W)``.
* ``2d``: the volume at ``slice_spacing`` along z and ``target_spacing`` in-plane; channel ``c`` of
  slice ``k`` is slice ``k + c - C//2`` (edge slices replicate); window ``(1, H, W)``, stride
  ``(1, s, s)``; the engine sees ``(N, C, H, W)``. The stacked per-slice outputs are a 3D heatmap
  with cells of ``slice_spacing x s*target x s*target`` Å, decoded by the same peak code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from inference import tta as tta_mod
from inference.manifest import Member
from inference.peaks import cell_centres_A, cells_to_voxels, find_peaks, nms_kernel_for
from inference.resample import normalize, resample
from inference.timing import StageTimer
from inference.windows import pad_end, sliding_window


@dataclass(frozen=True)
class Geometry:
    """How a member sees a tomogram, per axis (z, y, x)."""

    spacings: tuple[float, float, float]  # Å per voxel of the member's resampled volume
    strides: tuple[int, int, int]         # output stride
    patch: tuple[int, int, int]           # window, voxels
    overlap: tuple[float, float, float]

    @property
    def cell_A(self) -> tuple[float, ...]:
        return tuple(s * t for s, t in zip(self.strides, self.spacings))


def member_geometry(member: Member, target_spacing: float) -> Geometry:
    t = float(target_spacing)
    if member.kind == "3d":
        return Geometry((t, t, t), (member.stride,) * 3, tuple(member.patch), tuple(member.overlap))
    return Geometry((float(member.slice_spacing), t, t), (1, member.stride, member.stride),
                    (1, *member.patch), (0.0, *member.overlap))


@dataclass(frozen=True)
class Candidates:
    """Points of one member on one tomogram: ``zyx`` (K, 3) in ORIGINAL voxel indices, ``conf`` (K,)."""

    zyx: np.ndarray
    conf: np.ndarray


def _sigmoid(x, xp):
    return 1.0 / (1.0 + xp.exp(-x))


def slice_stack(volume, channels: int, xp=np):
    """(Z, Y, X) -> (C, Z, Y, X): channel c of slice k is slice k + c - C//2, edges replicated."""
    z = volume.shape[0]
    idx = np.clip(np.arange(z)[None, :] + np.arange(channels)[:, None] - channels // 2, 0, z - 1)
    return xp.stack([volume[xp.asarray(row)] for row in idx])


class MemberPredictor:
    """Runs one manifest member; ``engine`` is any callable batch -> output (an Engine, a lambda)."""

    def __init__(self, member: Member, engine, target_spacing: float, xp=np):
        self.member = member
        self.engine = engine
        self.target_spacing = float(target_spacing)
        self.geometry = member_geometry(member, target_spacing)
        self.xp = xp
        self.transforms = [tta_mod.parse_tta(n, member.spatial_axes) for n in member.tta]

    # -- stages ------------------------------------------------------------------------------
    def resample(self, volume, tomo_spacing: float, timer: StageTimer | None = None):
        """uint8/float (Z, Y, X) at ``tomo_spacing`` -> float32 at this member's spacings.

        On the GPU (``xp`` is CuPy) one fused kernel does the separable-linear resample
        (:mod:`kernels.resample`, same sampling grid as :mod:`inference.resample`).
        """
        timer = timer or StageTimer()
        with timer.stage("resample"):
            vol = self.xp.asarray(volume)
            if self.xp is not np:
                from kernels.resample import resample_normalize

                return resample_normalize(vol, tomo_spacing, self.geometry.spacings, 0.0, 1.0)
            return resample(vol, tomo_spacing, self.geometry.spacings, xp=self.xp)

    def normalize(self, resampled, timer: StageTimer | None = None):
        timer = timer or StageTimer()
        with timer.stage("resample"):
            return normalize(resampled, self.member.normalize, xp=self.xp)

    def heatmap(self, prepared, timer: StageTimer | None = None, tta_limit: int | None = None):
        """TTA-averaged, stitched heatmap (after activation) of a normalized (Z, Y, X) volume.

        The volume is padded to a multiple of the stride BEFORE any transform, so flips and
        transpositions map output cells onto output cells exactly. ``tta_limit`` runs only the
        first that many transforms (the deadline guard drops TTA).
        """
        timer = timer or StageTimer()
        xp, m, g = self.xp, self.member, self.geometry
        shape = tuple(prepared.shape)
        pad_value = float(prepared.mean())
        grid = tuple(math.ceil(n / s) * s for n, s in zip(shape, g.strides))
        base = pad_end(prepared, grid, pad_value, xp=xp)
        base = base[None] if m.kind == "3d" else slice_stack(base, m.channels, xp=xp)
        n_axes = len(m.spatial_axes)  # the axes TTA acts on: zyx, or yx for 2d

        def run(batch):
            if m.kind == "2d":
                batch = batch[:, :, 0]
            with timer.stage("engine"):
                out = self.engine(batch)
            out = xp.asarray(out, dtype=xp.float32)
            if m.activation == "sigmoid":
                out = _sigmoid(out, xp)
            return out[:, :, None] if m.kind == "2d" else out

        transforms = self.transforms[:tta_limit] if tta_limit else self.transforms
        total = None
        with timer.stage("stitch"):
            for t in transforms:
                view = tta_mod.apply(base, t)
                perm3 = tuple(range(3 - n_axes)) + tuple(3 - n_axes + p for p in t.perm)
                heat = sliding_window(view, run, g.patch, _pick(g.strides, perm3), _pick(g.overlap, perm3),
                                      batch_size=m.batch_size, mode=m.stitch, pad_value=pad_value, xp=xp)
                heat = tta_mod.invert(heat, t)
                total = heat if total is None else total + heat
            heat = total / float(len(transforms))
            keep = tuple(slice(0, math.ceil(n / s)) for n, s in zip(shape, g.strides))
            return xp.ascontiguousarray(heat[keep])

    def decode(self, heat, tomo_spacing: float, timer: StageTimer | None = None,
               tomo_shape: tuple[int, ...] | None = None) -> Candidates:
        """Peaks of ``heat`` in original voxels; ``tomo_shape`` is needed for ``decode.border_A``."""
        timer = timer or StageTimer()
        d, g = self.member.decode, self.geometry
        with timer.stage("decode"):
            if d.border_A > 0:
                if tomo_shape is None:
                    raise ValueError("decode.border_A needs the tomogram's shape")
                heat = border_mask(heat, g, tomo_shape, tomo_spacing, d.border_A, xp=self.xp)
            idx, conf = find_peaks(heat, nms_kernel=nms_kernel_for(g.cell_A, d.nms_kernel), min_conf=d.min_conf, top_k=d.top_k, xp=self.xp)
            zyx = cells_to_voxels(idx, g.strides, g.spacings, tomo_spacing)
        return Candidates(zyx=zyx, conf=conf)

    def __call__(self, volume, tomo_spacing: float, timer: StageTimer | None = None) -> Candidates:
        timer = timer or StageTimer()
        prepared = self.normalize(self.resample(volume, tomo_spacing, timer), timer)
        return self.decode(self.heatmap(prepared, timer), tomo_spacing, timer, tuple(volume.shape))


def border_mask(heat, g: Geometry, tomo_shape, tomo_spacing: float, border_A: float, xp=np):
    """``heat`` with cells centred closer than ``border_A`` Å to the tomogram's border set to -inf."""
    out = heat.copy()
    for axis, (n, stride, t) in enumerate(zip(tomo_shape, g.strides, g.spacings)):
        centres = cell_centres_A(np.arange(heat.shape[axis])[:, None], (stride,), (t,))[:, 0]
        extent = (n - 1) * tomo_spacing
        bad = np.nonzero((centres < border_A) | (centres > extent - border_A))[0]
        index = [slice(None)] * heat.ndim
        index[axis] = xp.asarray(bad)
        out[tuple(index)] = -xp.inf
    return out


def _pick(values, perm):
    """A per-axis setting follows its axis through a transposition."""
    return tuple(values[p] for p in perm)
