"""One member over one tomogram: resample -> normalize -> TTA x sliding window -> heatmap(s) -> peaks.

:class:`MemberPredictor` is the stateful part (it holds the engine); the steps it calls are the
stateless helpers of :mod:`inference.predict.resample`, :mod:`inference.predict.windows` (the window loop:
cell-aligned windows, or the recipe's resized grid), :mod:`inference.predict.tta`,
:mod:`inference.decode.peaks`, :mod:`inference.decode.nms_points` and :mod:`inference.predict.geometry`. Everything is
written against an array module ``xp``.

Both member kinds run as one 3D sliding window over (z, y, x):

* ``3d``: the volume at ``target_spacing`` on every axis; window ``patch``; the engine sees
  ``(N, 1, D, H, W)``.
* ``2d``: the volume at ``slice_spacing`` along z and ``target_spacing`` in-plane. Without
  ``slices``: channel ``c`` of slice ``k`` is slice ``k + c - C//2`` (edges replicate), window
  ``(1, H, W)``, one z cell per slice. With ``slices``: windows of ``window`` consecutive slices
  (the channels) every ``step`` slices, each output pasted into the ``cell``-slice z cells it
  maps to. The engine sees ``(N, C, H, W)``.

Per TTA transform the member produces one stitched heatmap; ``tta_merge: mean`` averages them
(in the stitching space) into one heatmap, ``separate`` keeps each as its own fusion input
``<member>@<tta>``. ``stitch.space: logit`` applies the activation after stitching and merging,
``prob`` to every window output. ``tta_scope: window`` transforms each window and inverts its
output; ``volume`` transforms the whole volume and inverts the stitched heatmap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from inference.common.errors import ModelOutputError
from inference.common.timing import StageTimer
from inference.decode.nms_points import greedy_nms
from inference.decode.peaks import find_peaks, nms_kernel_for
from inference.manifest.types import Member, Transform
from inference.predict.geometry import border_mask, cell_voxels, grid_window_starts, member_geometry
from inference.predict.resample import affine_of, resample
from inference.predict.tta import apply, invert
from inference.predict.window_placement import count_windows, pad_end
from inference.predict.windows import sliding_window, sliding_window_grid
from kernels.resample import resample_normalize


@dataclass(frozen=True)
class Candidates:
    """Points of one fusion input on one tomogram: ``zyx`` (K, 3) in ORIGINAL voxel indices, ``conf`` (K,)."""

    zyx: np.ndarray
    conf: np.ndarray


@dataclass(frozen=True)
class Prepared:
    """A normalized (Z, Y, X) float32 volume and the value raw intensity 0 has after normalizing
    (the pad value of ``windows.pad: zero``)."""

    volume: object
    raw_zero: float


__all__ = ["Candidates", "MemberPredictor", "Prepared", "member_geometry", "slice_stack"]


def _sigmoid(x, xp):
    with np.errstate(over="ignore"):  # exp(-x) -> inf for logits below ~-88 gives 0, as it should
        return 1.0 / (1.0 + xp.exp(-x))


def slice_stack(volume, channels: int, xp=np, z_range: tuple[int, int] | None = None):
    """(Z, Y, X) -> (C, Z, Y, X): channel c of slice k is slice k + c - C//2, edges replicated.

    ``z_range=(a, b)``: only slices ``a..b-1`` (their channels still come from the whole volume).
    """
    z = volume.shape[0]
    a, b = z_range if z_range is not None else (0, z)
    idx = np.clip(np.arange(a, b)[None, :] + np.arange(channels)[:, None] - channels // 2, 0, z - 1)
    return xp.stack([volume[xp.asarray(row)] for row in idx])


def z_chunks(n_slices: int, windows_per_slice: int, batch_size: int, slice_bytes: int, budget: int) -> list:
    """Slice ranges whose channel stacks stay within ``budget`` bytes; each holds a multiple of
    ``batch_size`` windows (all but the last), so the engine sees the same batches as without chunks."""
    fit = max(1, budget // max(1, slice_bytes))
    unit = batch_size // math.gcd(batch_size, windows_per_slice)  # slices per whole number of batches
    step = max(unit, fit // unit * unit)
    return [(a, min(n_slices, a + step)) for a in range(0, n_slices, step)]


class MemberPredictor:
    """Runs one manifest member; ``engine`` is any callable batch -> output (an Engine, a lambda)."""

    #: A 2d member's channel stack (C x the volume) is built per chunk of slices within this many bytes.
    stack_budget_bytes = 256 * 2**20

    def __init__(self, member: Member, engine, target_spacing: float, xp=np):
        self.member = member
        self.engine = engine
        self.target_spacing = float(target_spacing)
        self.geometry = member_geometry(member, target_spacing)
        self.xp = xp
        self.transforms = list(member.transforms)
        self._nan = 0  # NaN values in the raw window outputs since heatmaps() began (a device scalar on CuPy)
        self._values = 0

    @property
    def resample_key(self) -> tuple:
        """Members with equal keys share one resampled volume."""
        r = self.member.resample
        return (self.geometry.spacings, r.grid, r.quantize)

    # -- stages ------------------------------------------------------------------------------
    def resample(self, volume, tomo_spacing: float, timer: StageTimer | None = None):
        """uint8/float (Z, Y, X) at ``tomo_spacing`` -> float32 at this member's spacings.

        On the GPU (``xp`` is CuPy) one fused kernel does the separable-linear resample
        (:mod:`kernels.resample`, same sampling grid as :mod:`inference.predict.resample`).
        """
        timer = timer or StageTimer()
        r = self.member.resample
        with timer.stage("resample"):
            vol = self.xp.asarray(volume)
            if self.xp is not np:
                return resample_normalize(vol, tomo_spacing, self.geometry.spacings, 0.0, 1.0,
                                          grid=r.grid, quantize=r.quantize)
            return resample(vol, tomo_spacing, self.geometry.spacings, xp=self.xp, grid=r.grid, quantize=r.quantize)

    def prepare(self, resampled, timer: StageTimer | None = None) -> Prepared:
        """The member's normalisation of ``resampled``, keeping where raw intensity 0 lands (the zero pad value)."""
        timer = timer or StageTimer()
        with timer.stage("resample"):
            v = resampled.astype(self.xp.float32, copy=False)
            mean, std = affine_of(v, self.member.normalize)
            return Prepared(volume=(v - mean) / std, raw_zero=(0.0 - mean) / std)

    def heatmaps(self, prepared, timer: StageTimer | None = None, tta_limit: int | None = None) -> dict:
        """``{input name: stitched heatmap after activation}`` of a prepared (or normalized) volume.

        One entry (the member's name) with ``tta_merge: mean``, one per transform (``<member>@<tta>``)
        with ``separate``. ``tta_limit`` runs only the first that many transforms (the deadline
        guard drops TTA).
        A model output with NaN values, or a heatmap that is not finite, raises
        :class:`~inference.common.errors.ModelOutputError` naming the member (the tomogram fails, not "ok").
        """
        timer = timer or StageTimer()
        m = self.member
        with timer.stage("stitch"):
            per_tta = self._per_transform(prepared, timer, tta_limit)
            if m.tta_merge == "separate":
                heats = {name: self._after_stitch(h) for name, h in zip(m.input_names, per_tta)}
            else:
                heats = {m.name: self._after_stitch(_mean(per_tta))}
        self._check_finite(heats)
        return heats

    def logits(self, prepared, timer: StageTimer | None = None, tta_limit: int | None = None):
        """The stitched logits of a multi-channel member (task particles), averaged over its TTA transforms:
        ``(channels, *cells)`` float32 in the order of ``member.outputs``, no activation (the ensemble applies
        it). Not finite -> :class:`~inference.common.errors.ModelOutputError`, as :meth:`heatmaps`."""
        timer = timer or StageTimer()
        with timer.stage("stitch"):
            logits = self.xp.ascontiguousarray(_mean(self._per_transform(prepared, timer, tta_limit)))
        self._check_finite({self.member.name: logits})
        return logits

    def _per_transform(self, prepared, timer: StageTimer, tta_limit: int | None) -> list:
        """One stitched map per TTA transform (the first ``tta_limit``), before any merge or activation."""
        m = self.member
        vol = prepared.volume if isinstance(prepared, Prepared) else prepared
        pad_value = self._pad_value(prepared)
        transforms = self.transforms[:tta_limit] if tta_limit else self.transforms
        self._nan, self._values = 0, 0
        if self.geometry.grid is None:
            return self._stitch_aligned(vol, transforms, pad_value, timer)
        # the 2d channel stack does not depend on the transform: built once
        base = vol[None] if (m.kind == "3d" or m.slices is not None) else slice_stack(vol, m.channels, xp=self.xp)
        return [self._stitch_grid(base, t, pad_value, timer) for t in transforms]

    def heatmap(self, prepared, timer: StageTimer | None = None, tta_limit: int | None = None):
        """The one heatmap of a member with ``tta_merge: mean`` (see :meth:`heatmaps`)."""
        heats = self.heatmaps(prepared, timer, tta_limit)
        if len(heats) != 1:
            raise ValueError(f"member {self.member.name} has separate TTAs; use heatmaps()")
        return next(iter(heats.values()))

    def decode(self, heat, tomo_spacing: float, timer: StageTimer | None = None,
               tomo_shape: tuple[int, ...] | None = None) -> Candidates:
        """Peaks of ``heat`` in original voxels; ``tomo_shape`` is needed for ``decode.border_A``.

        Local maxima ``>= min_conf`` by conf (descending); with ``nms_radius_A`` greedy L2 NMS in Å
        on the cells' nominal positions; then the first ``top_k``.
        """
        timer = timer or StageTimer()
        d, g = self.member.decode, self.geometry
        with timer.stage("decode"):
            if d.border_A > 0:
                if tomo_shape is None:
                    raise ValueError("decode.border_A needs the tomogram's shape")
                heat = border_mask(heat, g, tomo_shape, tomo_spacing, d.border_A, xp=self.xp)
            kernel = nms_kernel_for(g.cell_A, d.nms_kernel)
            if d.nms_radius_A > 0:
                idx, conf = find_peaks(heat, nms_kernel=kernel, min_conf=d.min_conf, top_k=None, xp=self.xp)
                keep = greedy_nms(idx * np.asarray(g.cell_A, dtype=np.float64), d.nms_radius_A, d.top_k)
                idx, conf = idx[keep], conf[keep]
            else:
                idx, conf = find_peaks(heat, nms_kernel=kernel, min_conf=d.min_conf, top_k=d.top_k, xp=self.xp)
            zyx = cell_voxels(idx, g, tomo_spacing)
        return Candidates(zyx=zyx, conf=conf)

    def predict_resampled(self, resampled, tomo_spacing: float, timer: StageTimer | None = None,
                          tta_limit: int | None = None, tomo_shape: tuple[int, ...] | None = None) -> dict:
        """``{input name: Candidates}`` from this member's resampled volume."""
        timer = timer or StageTimer()
        heats = self.heatmaps(self.prepare(resampled, timer), timer, tta_limit)
        return {name: self.decode(h, tomo_spacing, timer, tomo_shape) for name, h in heats.items()}

    def predict(self, volume, tomo_spacing: float, timer: StageTimer | None = None) -> dict:
        """``{input name: Candidates}`` of a raw (Z, Y, X) tomogram."""
        timer = timer or StageTimer()
        return self.predict_resampled(self.resample(volume, tomo_spacing, timer), tomo_spacing, timer,
                                      tomo_shape=tuple(volume.shape))

    def __call__(self, volume, tomo_spacing: float, timer: StageTimer | None = None) -> Candidates:
        """The candidates of a member with one fusion input (``tta_merge: mean``)."""
        out = self.predict(volume, tomo_spacing, timer)
        if len(out) != 1:
            raise ValueError(f"member {self.member.name} has separate TTAs; use predict()")
        return next(iter(out.values()))

    # -- internals ---------------------------------------------------------------------------
    def _check_finite(self, heats: dict) -> None:
        """One host read per member and tomogram: NaN in the raw outputs, or NaN/+inf in a heatmap (-inf
        marks the cells no window reached on the resized grid, which decoding never picks)."""
        xp, m = self.xp, self.member
        nan = int(self._nan)
        bad = {name: int(xp.count_nonzero(xp.isnan(h) | (h == xp.inf))) for name, h in heats.items()}
        if nan or any(bad.values()):
            what = (f"{nan} NaN value(s) among its {int(self._values)} window output values" if nan else
                    "a heatmap with NaN or infinite cells (" + ", ".join(f"{n}: {c}" for n, c in bad.items() if c)
                    + ")")
            raise ModelOutputError(f"member {m.name}: the model {m.model.name} gave {what} on this tomogram; "
                                   "no candidate of it can be trusted. Fix: check the model and its normalisation "
                                   "(an fp16 engine can overflow: try without --fp16)")

    def _pad_value(self, prepared) -> float:
        m = self.member
        vol = prepared.volume if isinstance(prepared, Prepared) else prepared
        if m.windows.pad == "mean":
            return float(vol.mean())
        if isinstance(prepared, Prepared):
            return float(prepared.raw_zero)
        if m.normalize.mode != "affine":
            raise ValueError("windows.pad: zero with zscore needs prepare()'s raw_zero")
        return (0.0 - m.normalize.mean) / m.normalize.std

    def _after_stitch(self, heat):
        m = self.member
        if m.stitch.space == "logit" and m.activation == "sigmoid":
            heat = _sigmoid(heat, self.xp)
        return self.xp.ascontiguousarray(heat)

    def _window_predictor(self, t: Transform | None, timer: StageTimer):
        """The engine as the window loop's predictor (batch -> outputs, the member's 2d reshaping,
        transform and activation around it); ``t``: a window-scope transform (or None)."""
        xp, m = self.xp, self.member
        if t is not None and t.is_identity:
            t = None
        activate = m.activation == "sigmoid" and m.stitch.space == "prob"

        def run(batch):
            if m.kind == "2d":
                batch = batch[:, :, 0] if m.slices is None else batch[:, 0]
            if t is not None:  # the transformed copy is the window loop's work, not the engine's
                batch = xp.ascontiguousarray(apply(batch, t))
            with timer.stage("engine"):
                out = self.engine(batch)
            out = xp.asarray(out, dtype=xp.float32)
            self._nan = self._nan + xp.count_nonzero(xp.isnan(out))  # stays on the device on CuPy: no sync
            self._values += int(out.size)
            if t is not None:
                out = invert(out, t)
            if activate:
                out = _sigmoid(out, xp)
            return out[:, :, None] if m.kind == "2d" else out

        return run

    def _perm3(self, t: Transform) -> tuple[int, ...]:
        """The transform's permutation of (z, y, x): a 2d member's transforms act on (y, x)."""
        lead = 3 - len(t.perm)
        return tuple(range(lead)) + tuple(lead + p for p in t.perm)

    def _stitch_aligned(self, vol, transforms, pad_value: float, timer: StageTimer) -> list:
        """Cell-aligned windows (:func:`inference.predict.windows.sliding_window`), one heatmap per transform.

        The volume is padded to a multiple of the stride BEFORE any transform, so flips and
        transpositions map output cells onto output cells exactly.
        """
        xp, m, g = self.xp, self.member, self.geometry
        shape = tuple(vol.shape)
        grid = tuple(math.ceil(n / s) * s for n, s in zip(shape, g.strides))
        base = pad_end(vol, grid, pad_value, xp=xp)
        keep = (Ellipsis,) + tuple(slice(0, math.ceil(n / s)) for n, s in zip(shape, g.strides))
        if m.kind == "3d":
            return [heat[keep] for heat in self._stitch_views(base[None], transforms, pad_value, timer)]
        # 2d: the channel stack triples the volume; built per chunk of slices (one slice's windows never
        # reach another slice's cells, so the chunks' heatmaps are the whole one's, cut along z)
        per_slice = count_windows(base.shape[1:], g.patch[1:], g.strides[1:], g.overlap[1:])
        slice_bytes = m.channels * base[0].size * base.dtype.itemsize
        parts: list[list] = [[] for _ in transforms]
        for a, b in z_chunks(base.shape[0], per_slice, m.batch_size, slice_bytes, self.stack_budget_bytes):
            stack = slice_stack(base, m.channels, xp=xp, z_range=(a, b))
            for k, heat in enumerate(self._stitch_views(stack, transforms, pad_value, timer)):
                parts[k].append(heat)
            del stack
        return [xp.concatenate(p, axis=-3)[keep] for p in parts]  # along z (after the channels, if any)

    def _stitch_views(self, base, transforms, pad_value: float, timer: StageTimer) -> list:
        """One stitched heatmap per transform of ``base`` (C, Z, Y, X), cell-aligned."""
        xp, m, g = self.xp, self.member, self.geometry
        out = []
        for t in transforms:
            if m.tta_scope == "window":
                heat = sliding_window(base, self._window_predictor(t, timer), g.patch, g.strides, g.overlap,
                                      batch_size=m.batch_size, mode=m.stitch.mode, pad_value=pad_value,
                                      channels=m.out_channels, xp=xp)
            else:
                perm3 = self._perm3(t)
                heat = sliding_window(apply(base, t), self._window_predictor(None, timer), g.patch,
                                      _pick(g.strides, perm3), _pick(g.overlap, perm3), batch_size=m.batch_size,
                                      mode=m.stitch.mode, pad_value=pad_value, channels=m.out_channels, xp=xp)
                heat = invert(heat, t)
            out.append(heat)
        return out

    def _stitch_grid(self, base, t: Transform, pad_value: float, timer: StageTimer):
        """The recipe's grid (:func:`inference.predict.windows.sliding_window_grid`) for one transform of ``base``
        (C, Z, Y, X)."""
        xp, m, g = self.xp, self.member, self.geometry
        volume_scope = m.tta_scope == "volume" and not t.is_identity
        perm3 = self._perm3(t) if volume_scope else (0, 1, 2)
        view = apply(base, t) if volume_scope else base
        patch, strides, overlap, cells = (_pick(v, perm3) for v in (g.patch, g.strides, g.overlap, g.grid))
        starts = grid_window_starts(m, view.shape[1:], patch, strides, overlap)
        heat = sliding_window_grid(
            view, self._window_predictor(None if volume_scope else t, timer), patch, starts, cells,
            tuple(p // s for p, s in zip(patch, strides)), resize_axes=(0, 1, 2) if m.kind == "3d" else (1, 2),
            batch_size=m.batch_size, mode=m.stitch.mode, pad_value=pad_value, empty=-math.inf,
            broadcast_z=m.kind == "2d", channels=m.out_channels, xp=xp)
        return invert(heat, t) if volume_scope else heat


def _mean(maps: list):
    """The mean of per-transform maps (summed in order, then divided: one transform's map as it is)."""
    total = None
    for heat in maps:
        total = heat if total is None else total + heat
    return total / float(len(maps))


def _pick(values, perm):
    """A per-axis setting follows its axis through a transposition."""
    return tuple(values[p] for p in perm)
