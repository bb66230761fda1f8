"""Voxel values: non-finite voxels, and how a volume that is not 8-bit reaches the 0..255 range.

Two stateless steps, in this order:

* :func:`scan_voxels` (at read time, every volume that is not ``uint8``): NaN and +-inf voxels are
  replaced by the mean of the finite voxels, with a WARNING naming the file and the count; the
  volume's range is recorded (:class:`VoxelStats`). A volume without one finite voxel is an
  :class:`~inference.common.errors.InputError`.
* :func:`to_0_255` (per member rule, in :func:`inference.run.tomogram.load`): a member whose
  normalisation is a fixed ``mean``/``std`` takes them to be for 0..255 input (the 8-bit slices of
  the BYU data); so does ``resample.quantize: uint8``. A volume that is not 8-bit reaches that range
  by the member's ``intensity`` rule (manifest key, :class:`inference.manifest.types.Intensity`):

  - ``percentiles`` (the default for those members): the ``low`` and ``high`` percentiles (0.5 and
    99.5) of the volume map to 0 and 255, linearly, values beyond are clipped; the percentiles are
    taken on a regular subsample of at most ~2 million voxels (deterministic);
  - ``minmax``: the volume's minimum and maximum map to 0 and 255;
  - ``raw``: the values are used as they are (the member's mean/std are for this data's units).

  ``uint8`` volumes, and volumes whose every value is a whole number in 0..255 (8-bit data stored
  in a wider type), are never mapped: their results stay bit for bit those of the 8-bit data.
  A ``zscore`` member without ``quantize: uint8`` takes any range (``raw``), as a z-score does not
  depend on the scale.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.common.errors import InputError

logger = logging.getLogger(__name__)

SAMPLE_VOXELS = 2_000_000
_SLAB_BYTES = 64 * 2**20


@dataclass(frozen=True)
class VoxelStats:
    """What one pass over a volume that is not ``uint8`` found (after non-finite voxels were replaced)."""

    dtype: str           # the array's dtype as read (float32 for most sources)
    vmin: float
    vmax: float
    whole_0_255: bool    # every value is a whole number in 0..255: 8-bit data in a wider type
    nonfinite: int = 0   # voxels that were NaN or +-inf (replaced)
    fill: float | None = None  # what replaced them

    @property
    def is_8bit(self) -> bool:
        return self.whole_0_255


def _slabs(n: int, plane: int, itemsize: int) -> tuple[range, int]:
    step = max(1, _SLAB_BYTES // max(1, plane * itemsize))
    return range(0, n, step), step


def scan_voxels(data: np.ndarray, path: str | Path) -> tuple[np.ndarray, VoxelStats | None]:
    """``(data, stats)``: non-finite voxels replaced (a copy; the input may be a read-only memory map).

    ``uint8`` data is returned as it is with ``None``. Works slab by slab, so the temporaries stay small.
    """
    if data.dtype == np.uint8:
        return data, None
    plane = int(np.prod(data.shape[1:]))
    starts, step = _slabs(data.shape[0], plane, data.dtype.itemsize)
    bad = 0
    total = 0.0
    count = 0
    vmin, vmax = math.inf, -math.inf
    whole = True  # every value so far a whole number (integer dtypes: by construction)
    for z in starts:
        slab = np.asarray(data[z:z + step])
        finite = np.isfinite(slab)
        n_ok = int(np.count_nonzero(finite))
        bad += slab.size - n_ok
        if n_ok == 0:
            continue
        vals = slab if n_ok == slab.size else slab[finite]
        vmin = min(vmin, float(vals.min()))
        vmax = max(vmax, float(vals.max()))
        total += float(vals.sum(dtype=np.float64))
        count += n_ok
        if data.dtype.kind == "f" and whole and vmin >= 0 and vmax <= 255:
            whole = bool(np.array_equal(vals, np.trunc(vals)))
    if count == 0:
        raise InputError(path, f"every voxel is NaN or infinite ({data.size} voxels)",
                         "re-export the tomogram; a volume needs finite values")
    fill = None
    if bad:
        fill = float(np.float32(total / count))
        fixed = np.empty(data.shape, dtype=data.dtype if data.dtype.kind == "f" else np.float32)
        for z in starts:
            slab = np.asarray(data[z:z + step])
            fixed[z:z + step] = np.where(np.isfinite(slab), slab, fill)
        data = fixed
        logger.warning("%s: %d voxel(s) are NaN or infinite; replaced by %.6g, the mean of the finite voxels",
                       path, bad, fill)
    whole = whole and vmin >= 0 and vmax <= 255
    return data, VoxelStats(dtype=str(data.dtype), vmin=vmin, vmax=vmax, whole_0_255=whole, nonfinite=bad, fill=fill)


def stats_of(data) -> VoxelStats | None:
    """:class:`VoxelStats` of an already finite array (``None`` for ``uint8``): for volumes that did not
    come through :func:`scan_voxels` (a reader that does not scan, a test)."""
    if data.dtype == np.uint8:
        return None
    host = np.asarray(data) if type(data).__module__.startswith("numpy") else data.get()
    _, stats = scan_voxels(host, "<array>")
    return stats


def needs_mapping(rule, stats: VoxelStats | None) -> bool:
    """Whether a member with ``rule`` (an Intensity, or None for raw) maps this volume."""
    return rule is not None and rule.rule != "raw" and stats is not None and not stats.is_8bit


def sample(data, limit: int = SAMPLE_VOXELS):
    """A regular subsample (same step on every axis) of at most about ``limit`` voxels, as a flat host array."""
    step = max(1, math.ceil((data.size / limit) ** (1.0 / data.ndim)))
    view = data[tuple(slice(None, None, step) for _ in range(data.ndim))]
    view = view.get() if hasattr(view, "get") and not isinstance(view, np.ndarray) else view
    return np.asarray(view, dtype=np.float32).ravel()


def value_range(data, rule, stats: VoxelStats) -> tuple[float, float]:
    """The values that map to 0 and 255 under ``rule`` (percentiles on :func:`sample`; minmax: the stats)."""
    if rule.rule == "minmax":
        return stats.vmin, stats.vmax
    lo, hi = np.percentile(sample(data), [rule.low, rule.high])
    if not hi > lo:  # a nearly constant volume: fall back to the full range
        lo, hi = stats.vmin, stats.vmax
    return float(lo), float(hi)


def to_0_255(data, lo: float, hi: float, xp=np):
    """``clip((v - lo) * 255 / (hi - lo), 0, 255)`` as float32, slab by slab; a constant volume gives 0."""
    out = xp.empty(data.shape, dtype=xp.float32)
    if not hi > lo:
        out[...] = 0
        return out
    scale = np.float32(255.0 / (hi - lo))
    lo32 = np.float32(lo)
    plane = int(np.prod(data.shape[1:]))
    starts, step = _slabs(data.shape[0], plane, 4)
    for z in starts:
        slab = xp.asarray(data[z:z + step], dtype=xp.float32)
        out[z:z + step] = xp.clip((slab - lo32) * scale, 0, 255)
    return out


def describe(rule, lo: float, hi: float, stats: VoxelStats) -> str:
    """How a volume was mapped, for the log and the per-tomogram result."""
    how = "min/max" if rule.rule == "minmax" else f"the {rule.low:g}/{rule.high:g} percentiles"
    if not hi > lo:
        return f"{stats.dtype} voxels all {stats.vmin:.6g} (a constant volume) mapped to 0 by {how}"
    return (f"{stats.dtype} voxels {stats.vmin:.6g}..{stats.vmax:.6g} mapped to 0..255 by {how} "
            f"({lo:.6g} -> 0, {hi:.6g} -> 255, clipped)")
