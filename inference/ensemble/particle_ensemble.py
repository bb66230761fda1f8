"""Members' class maps -> picks per class in Å: the particle task's two ensembles.

A member gives :class:`ClassMaps`: its stitched logits ``(C, D, H, W)`` (TTA-averaged), the names of its
channels (``outputs``) and the grid they lie on (cell ``c`` on axis ``a`` centred at ``origin_A[a] + c *
cell_A[a]`` Å, in the frame where voxel ``i`` of the tomogram is at ``i * spacing``).

* ``heatmap`` (:func:`heatmap_picks`, the 1st place's way): the members' logits on ONE grid (the finest
  member's; the others sampled there by separable linear interpolation, edges clamped), averaged per channel
  with the weights of the members that output it, then the activation (softmax over the channels, or a
  sigmoid per channel), then one decode per class (:mod:`inference.decode.particle_decode`).
* ``points`` (:func:`points_picks`): each member activated and decoded on its own grid (its ``decode`` or
  the task's), then per class the members' picks fused by point WBF (:func:`inference.ensemble.fusion.
  fuse_points`) joining points closer than ``fusion_radius`` x the class radius.

Plain arrays in and out; everything on the maps runs on ``xp`` (NumPy or CuPy), only picks come back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from inference.decode.particle_decode import decode_particles
from inference.decode.particle_params import ClassTarget
from inference.ensemble.fusion import fuse_points
from inference.manifest.particles import BACKGROUND
from inference.manifest.types import Fusion, Particles


@dataclass(frozen=True)
class ClassMaps:
    """Logits ``(C, D, H, W)`` named by ``channels``, on the grid ``origin_A + c * cell_A`` (Å), with the
    member's ``weight``, ``activation`` and its own decoder (``decode``: one per manifest class, or empty:
    the task's)."""

    logits: object
    channels: tuple[str, ...]
    origin_A: tuple[float, float, float]
    cell_A: tuple[float, float, float]
    weight: float = 1.0
    activation: str = "softmax"
    decode: tuple = ()

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.logits.shape[1:])


def axis_taps(n_src: int, origin_src: float, cell_src: float, n_dst: int, origin_dst: float, cell_dst: float):
    """``(i0, i1, w1)``: destination cell ``k`` (centre ``origin_dst + k * cell_dst``) reads source cells ``i0``
    and ``i1`` with weights ``1 - w1`` and ``w1``; positions outside the source are clamped to its edge cells."""
    pos = (origin_dst + np.arange(n_dst, dtype=np.float64) * cell_dst - origin_src) / cell_src
    pos = np.clip(pos, 0.0, n_src - 1.0)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_src - 1)
    return i0, i1, (pos - i0).astype(np.float32)


def on_grid(maps: ClassMaps, origin_A: Sequence[float], cell_A: Sequence[float], shape: Sequence[int], xp=np):
    """``maps.logits`` sampled at the cells of another grid: separable linear interpolation in Å, axis by
    axis (z, y, x); the same grid returns the logits as they are."""
    out = maps.logits
    if (tuple(shape) == maps.shape and np.allclose(origin_A, maps.origin_A, rtol=0, atol=1e-9)
            and np.allclose(cell_A, maps.cell_A, rtol=0, atol=1e-9)):
        return out
    for a in range(3):
        i0, i1, w1 = axis_taps(out.shape[1 + a], maps.origin_A[a], maps.cell_A[a], int(shape[a]), origin_A[a],
                               cell_A[a])
        view = [1, 1, 1, 1]
        view[1 + a] = -1
        lo = xp.take(out, xp.asarray(i0), axis=1 + a)
        hi = xp.take(out, xp.asarray(i1), axis=1 + a)
        w = xp.asarray(w1).reshape(view)
        out = lo + (hi - lo) * w
    return out


def average_logits(members: Sequence[ClassMaps], order: Sequence[str], xp=np) -> ClassMaps:
    """The members' logits on the finest member's grid (the smallest cell volume; the first of equals),
    averaged per channel over the members that output it, weighted; channels in ``order`` (those some member
    has). One member on its own grid: its logits, in ``order``."""
    ref = min(members, key=lambda m: float(np.prod(m.cell_A)))
    names = [n for n in order if any(n in m.channels for m in members)]
    sampled = [on_grid(m, ref.origin_A, ref.cell_A, ref.shape, xp) for m in members]
    channels = []
    for name in names:
        total, wsum = None, 0.0
        for m, s in zip(members, sampled):
            if name in m.channels:
                part = s[m.channels.index(name)] * np.float32(m.weight)
                total = part if total is None else total + part
                wsum += m.weight
        channels.append(total / np.float32(wsum))
    return ClassMaps(logits=xp.stack(channels), channels=tuple(names), origin_A=ref.origin_A, cell_A=ref.cell_A)


def activate(logits, activation: str, xp=np):
    """``softmax`` over the channel axis (max subtracted first) or ``sigmoid`` per channel, float32."""
    x = logits.astype(xp.float32, copy=False)
    if activation == "softmax":
        e = xp.exp(x - x.max(axis=0, keepdims=True))
        return e / e.sum(axis=0, keepdims=True)
    if activation == "sigmoid":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + xp.exp(-x))
    raise ValueError(f"activation must be softmax or sigmoid, got {activation!r}")


def _targets(particles: Particles, channels: Sequence[str], decode: Sequence, floor: bool) -> list[ClassTarget]:
    """Decode targets of the classes among ``channels``; ``floor``: every threshold lowered to the task's
    candidate floor (candidates for ``tune``)."""
    out = []
    for c, params in zip(particles.classes, decode or particles.decode):
        if c.name in channels:
            if floor:
                params = replace(params, threshold=min(params.threshold, particles.candidate_floor))
            out.append(ClassTarget(c.name, list(channels).index(c.name), params))
    return out


def heatmap_picks(members: Sequence[ClassMaps], particles: Particles, *, floors: Sequence[bool] = (False,),
                  xp=np) -> list[dict[str, tuple[np.ndarray, np.ndarray]]]:
    """``ensemble: heatmap`` (module docstring; the members share one activation): per entry of ``floors``
    (:func:`_targets`), ``{class: (zyx_A (K, 3), conf (K,))}``. The maps are averaged and activated once."""
    avg = average_logits(members, (BACKGROUND, *particles.names), xp)
    probs = activate(avg.logits, members[0].activation, xp)
    return [decode_particles(probs, _targets(particles, avg.channels, (), floor), avg.cell_A, avg.origin_A, xp=xp)
            for floor in floors]


def points_picks(members: Sequence[ClassMaps], particles: Particles, fusion: Fusion, *,
                 floors: Sequence[bool] = (False,), xp=np) -> list[dict[str, tuple[np.ndarray, np.ndarray]]]:
    """``ensemble: points`` (module docstring): per entry of ``floors`` (:func:`_targets`), ``{class: (zyx_A
    (K, 3), conf (K,))}``. Each member is activated once (one member's probabilities in memory at a time)."""
    decoded = [[] for _ in floors]  # per floor, per member
    for m in members:
        probs = activate(m.logits, m.activation, xp)
        for per_member, floor in zip(decoded, floors):
            per_member.append(decode_particles(probs, _targets(particles, m.channels, m.decode, floor), m.cell_A,
                                               m.origin_A, xp=xp))
        del probs
    return [_fuse_classes(d, members, particles, fusion) for d in decoded]


def _fuse_classes(decoded: Sequence[dict], members: Sequence[ClassMaps], particles: Particles,
                  fusion: Fusion) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per class, the members' decoded picks fused by point WBF at ``fusion_radius`` x the class radius."""
    out = {}
    for c in particles.classes:
        having = [(i, d[c.name]) for i, d in enumerate(decoded) if c.name in d]
        if not having:  # no member of the plan outputs it (the deadline guard dropped them)
            continue
        weights = [members[i].weight for i, _ in having]
        pts = np.concatenate([p for _, (p, _) in having]).reshape(-1, 3)
        conf = np.concatenate([q for _, (_, q) in having]).reshape(-1)
        member = np.concatenate([np.full(len(q), k) for k, (_, (_, q)) in enumerate(having)]).astype(np.int64)
        out[c.name] = fuse_points(pts, conf, member, weights, dist_A=particles.fusion_radius * c.radius_A,
                                  conf_type=fusion.conf_type, skip_conf=fusion.skip_conf, rescale=fusion.rescale)
    return out
