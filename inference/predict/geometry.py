"""How a member sees a tomogram (:class:`Geometry`) and where its heatmap cells are.

Per axis (z, y, x): the resampled volume's spacing ``t``, the model's output stride, the window
(patch) and overlap, and the cell size of the stitched heatmap in resampled voxels (the output
stride, or the recipe's resized grid -- ``stitch.grid_stride``, or the stride for end-placed windows
and ``slices``; a 2d member's z: 1 slice, or ``slices.cell``).

Coordinates (both conventions are exact inverses of their resampling, :mod:`inference.predict.resample`):

* cell ``k`` of cell size ``c`` is at resampled voxel ``j = k*c + (c - 1)/2`` (= ``(k + 0.5)*c - 0.5``);
* resampled voxel ``j`` is original voxel ``j * t / s`` (``resample.grid: corner``) or
  ``(j + 0.5) * t / s - 0.5`` (``half_pixel``), ``s`` the tomogram's spacing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.decode.peaks import cell_centres_A, cells_to_voxels
from inference.manifest.types import Member
from inference.predict.window_placement import count_windows, end_starts, end_step, padded_size, stride_starts


@dataclass(frozen=True)
class Geometry:
    """How a member sees a tomogram, per axis (z, y, x)."""

    spacings: tuple[float, float, float]  # Å per voxel of the member's resampled volume
    strides: tuple[int, int, int]         # output stride (a 2d member's z: 1 slice or the slice window)
    patch: tuple[int, int, int]           # window, voxels
    overlap: tuple[float, float, float]
    grid: tuple[int, int, int] | None = None  # stitched cell size on the recipe's grid; None: cell-aligned
    half_pixel: bool = False              # resample.grid == half_pixel

    @property
    def cells(self) -> tuple[int, int, int]:
        """Cell size of the stitched heatmap, resampled voxels per axis."""
        return self.grid if self.grid is not None else self.strides

    @property
    def cell_A(self) -> tuple[float, ...]:
        return tuple(c * t for c, t in zip(self.cells, self.spacings))


def member_geometry(member: Member, target_spacing: float) -> Geometry:
    t = float(target_spacing)
    g = member.stitch.grid_stride
    if g is None and (member.windows.placement == "end" or member.slices is not None):
        g = member.stride  # windows off the output grid: the resized grid at the output stride
    half = member.resample.grid == "half_pixel"
    if member.kind == "3d":
        grid = (g, g, g) if g is not None else None
        return Geometry((t, t, t), (member.stride,) * 3, tuple(member.patch), tuple(member.overlap), grid, half)
    spacings = (float(member.slice_spacing), t, t)
    if member.slices is not None:
        w = member.slices.window
        return Geometry(spacings, (w, member.stride, member.stride), (w, *member.patch), (0.0, *member.overlap),
                        (member.slices.cell, g, g), half)
    grid = (1, g, g) if g is not None else None
    return Geometry(spacings, (1, member.stride, member.stride), (1, *member.patch), (0.0, *member.overlap),
                    grid, half)


def grid_window_starts(member: Member, shape, patch, strides, overlap) -> list[list[int]]:
    """Window starts per axis on the recipe's grid path (``Geometry.grid`` set), in voxels.

    A 2d member's z with ``slices``: every ``slices.step`` slices, the last ending at the volume's
    end; otherwise ``windows.placement`` (``end``: :func:`~inference.predict.window_placement.end_starts`;
    ``stride``: on the output grid, the end padded). ``shape``/``patch``/... in the (possibly
    transposed) frame the windows run in; a transposition never moves z for 2d members.
    """
    starts = []
    for a, (n, p, s, o) in enumerate(zip(shape, patch, strides, overlap)):
        if a == 0 and member.slices is not None:
            starts.append(end_starts(n, p, member.slices.step))
        elif member.windows.placement == "end":
            starts.append(end_starts(n, p, end_step(p, o)))
        else:
            starts.append(stride_starts(n, p, s, o))
    return starts


def count_member_windows(member: Member, target_spacing: float, resampled_shape) -> int:
    """Engine windows one transform of ``member`` runs on a volume of ``resampled_shape`` (z, y, x)."""
    g = member_geometry(member, target_spacing)
    if g.grid is None:
        return count_windows(tuple(padded_size(n, p, s) for n, p, s in zip(resampled_shape, g.patch, g.strides)),
                             g.patch, g.strides, g.overlap)
    total = 1
    for st in grid_window_starts(member, resampled_shape, g.patch, g.strides, g.overlap):
        total *= len(st)
    return total


def cell_voxels(idx: np.ndarray, g: Geometry, tomo_spacing: float) -> np.ndarray:
    """Heatmap cells ``idx`` (K, 3) -> float indices in the ORIGINAL tomogram's voxels."""
    if not g.half_pixel:
        return cells_to_voxels(idx, g.cells, g.spacings, tomo_spacing)
    c = np.asarray(g.cells, dtype=np.float64)
    j = np.asarray(idx, dtype=np.float64) * c + (c - 1.0) / 2.0
    return (j + 0.5) * np.asarray(g.spacings, dtype=np.float64) / float(tomo_spacing) - 0.5


def border_mask(heat, g: Geometry, tomo_shape, tomo_spacing: float, border_A: float, xp=np):
    """``heat`` with cells centred closer than ``border_A`` Å to the tomogram's border set to -inf.

    The tomogram spans ``[0, (n - 1) * s]`` Å between its outer voxel centres.
    """
    out = heat.copy()
    for axis, (n, c, t) in enumerate(zip(tomo_shape, g.cells, g.spacings)):
        k = np.arange(heat.shape[axis])[:, None]
        if g.half_pixel:
            idx = np.zeros((len(k), 3), dtype=np.int64)
            idx[:, axis] = k[:, 0]
            centres = cell_voxels(idx, g, tomo_spacing)[:, axis] * tomo_spacing
        else:
            centres = cell_centres_A(k, (c,), (t,))[:, 0]
        extent = (n - 1) * tomo_spacing
        bad = np.nonzero((centres < border_A) | (centres > extent - border_A))[0]
        index = [slice(None)] * heat.ndim
        index[axis] = xp.asarray(bad)
        out[tuple(index)] = -xp.inf
    return out


def cell_frame_A(g: Geometry, tomo_spacing: float) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """``(origin_A, cell_A)``: heatmap cell ``c`` on axis ``a`` has its centre at ``origin_A[a] + c * cell_A[a]`` Å
    (voxel ``i`` of the tomogram at ``i * tomo_spacing``): :func:`cell_voxels`, which is linear in ``c``."""
    first = cell_voxels(np.zeros((1, 3)), g, tomo_spacing)[0] * float(tomo_spacing)
    second = cell_voxels(np.ones((1, 3)), g, tomo_spacing)[0] * float(tomo_spacing)
    return tuple(float(v) for v in first), tuple(float(v) for v in second - first)
