"""What a synthetic tomogram holds and where: the physical sizes (Å), the rod cells, the motors' places.

Sizes are real and in Å; each tomogram converts them to voxels with its real voxel spacing.
A scene is a few rod-shaped cells (:class:`Cell`, :func:`draw_cells`) and motor centres on their
inner membranes (:func:`place_motors`); :mod:`inference.synth.render` turns it into densities.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# --------------------------------------------------------------------------------------------
# Physical constants (Å). Sizes are real; they are converted to voxels with each tomogram's
# real voxel spacing.
# --------------------------------------------------------------------------------------------
MOTOR_DIAMETER_A = 450.0  # outer diameter of the C-ring
MOTOR_THICKNESS_A = 225.0  # extent along the motor axis
MOTOR_RING_RADIUS_A = 155.0  # major radius of the torus (tube centre line)
MOTOR_RING_HALF_WIDTH_A = MOTOR_DIAMETER_A / 2 - MOTOR_RING_RADIUS_A  # radial half-width: 70 Å
MOTOR_CORE_RADIUS_A = 75.0  # dense central core (rod / MS ring), radial
MOTOR_CORE_HALF_HEIGHT_A = 95.0  # dense central core, axial
MOTOR_MIN_SEPARATION_A = 1000.0  # centre-to-centre, between motors of one tomogram
MOTOR_TILT_SD_DEG = 12.0  # jitter of the motor axis around the membrane normal
MOTOR_CONTRAST = (1.0, 1.8)  # per-motor density multiplier (low end: faint, ribosome-like motors)

MEMBRANE_SEPARATION_A = 70.0  # centre-to-centre of the two dark shells of a cell envelope
MEMBRANE_THICKNESS_A = 35.0  # FWHM of each shell
RIBOSOME_DIAMETER_A = 250.0
RIBOSOME_CONTRAST = (0.4, 0.75)  # peak density of the large subunit
RIBOSOMES_PER_A3 = (0.6e-8, 1.8e-8)  # E. coli is ~2e-8 (≈2e4 ribosomes per µm³); fewer: less crowding
MAX_RIBOSOMES = 500
GOLD_DIAMETER_A = (100.0, 150.0)
VESICLE_DIAMETER_A = (300.0, 700.0)
VESICLE_MEMBRANE_A = 28.0  # FWHM, thinner than a motor by an order of magnitude
DEBRIS_DIAMETER_A = (150.0, 350.0)


def motor_radius_voxels(spacing_A: float) -> float:
    """Radius of a motor (half its 450 Å diameter) in voxels at ``spacing_A`` Å per voxel."""
    return MOTOR_DIAMETER_A / 2.0 / float(spacing_A)


# --------------------------------------------------------------------------------------------
# Cells
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """A rod-shaped bacterium: a capsule with an elliptic cross-section, in Å.

    The long axis lies in the y-x plane at angle ``theta`` (from +x towards +y). ``radius_A`` is
    the in-plane semi-axis of the cross-section, ``radius_z_A`` its semi-axis along z,
    ``half_length_A`` the half-length of the cylindrical part (the caps are half-ellipsoids).
    The outer membrane is the surface; the inner membrane lies ``MEMBRANE_SEPARATION_A`` inside.
    """

    centre_A: tuple[float, float, float]
    theta: float
    half_length_A: float
    radius_A: float
    radius_z_A: float

    def parts(self, z, y, x):
        """The terms of :meth:`distance_A`: ``p, p2`` from y-x only, ``q, q2`` from z only (broadcast)."""
        zc, yc, xc = self.centre_A
        c, s = math.cos(self.theta), math.sin(self.theta)
        dy, dx = y - yc, x - xc
        u = dx * c + dy * s
        v = -dx * s + dy * c
        uu = np.maximum(np.abs(u) - self.half_length_A, 0.0)
        a2 = self.radius_A**2
        c2 = self.radius_z_A**2
        w = z - zc
        p = (uu**2 + v**2) / a2
        p2 = (uu**2 + v**2) / a2**2
        q = w**2 / c2
        q2 = w**2 / c2**2
        return p, p2, q, q2

    def distance_A(self, zyx_A: np.ndarray) -> np.ndarray:
        """Approximate signed distance (Å) to the outer membrane; negative inside the cell."""
        pts = np.asarray(zyx_A, dtype=float)
        p, p2, q, q2 = self.parts(pts[..., 0], pts[..., 1], pts[..., 2])
        f = np.sqrt(p + q)
        return (f - 1.0) * f / (np.sqrt(p2 + q2) + 1e-12)

    def normal(self, zyx_A: np.ndarray, h: float = 5.0) -> np.ndarray:
        """Outward unit normal(s) of the distance field at the point(s), by central differences."""
        pts = np.atleast_2d(np.asarray(zyx_A, dtype=float))
        grad = np.empty_like(pts)
        for k in range(3):
            step = np.zeros(3)
            step[k] = h
            grad[:, k] = (self.distance_A(pts + step) - self.distance_A(pts - step)) / (2 * h)
        grad /= np.linalg.norm(grad, axis=1, keepdims=True) + 1e-12
        return grad


def extent_A(shape: Sequence[int], spacing_A: float) -> np.ndarray:
    """Å from the first voxel centre to the last, per axis: ``(n - 1) * spacing``."""
    return (np.asarray(shape, dtype=float) - 1.0) * spacing_A


def draw_cells(rng: np.random.Generator, shape: Sequence[int], spacing_A: float) -> list[Cell]:
    """1-3 non-overlapping rod cells crossing the volume, at least one side wall inside it.

    Cell sizes are relative to the field of view (the volume is a crop; a real cell is often
    wider than a scaled-down crop), roughly parallel to each other as in real cell clusters.
    """
    ext = extent_A(shape, spacing_A)
    mid = ext / 2.0
    n_cells = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
    theta0 = rng.uniform(0.0, math.pi)
    # coarse probe grid for overlap tests
    gz, gy, gx = (np.linspace(0, e, k) for e, k in zip(ext, (9, 25, 25)))
    probe = np.stack(np.meshgrid(gz, gy, gx, indexing="ij"), axis=-1).reshape(-1, 3)
    inside_any = np.zeros(len(probe), dtype=bool)
    cells: list[Cell] = []
    for _ in range(60):
        if len(cells) >= n_cells:
            break
        theta = theta0 + rng.normal(0.0, 0.12)
        c, s = abs(math.cos(theta)), abs(math.sin(theta))
        h_u = c * ext[2] / 2 + s * ext[1] / 2  # half extent of the volume along the cell axis
        h_v = s * ext[2] / 2 + c * ext[1] / 2  # ... and across it
        a = rng.uniform(0.22, 0.45) * min(ext[1], ext[2])
        a = max(a, 4.0 * MOTOR_DIAMETER_A / 2)
        cz = rng.uniform(0.6, 1.0) * a
        offset = rng.uniform(-(a + 0.6 * h_v), a + 0.6 * h_v)
        if min(abs(offset - a), abs(offset + a)) > 0.8 * h_v:
            continue  # no side wall inside the volume
        if rng.random() < 0.7:
            half_len, u0 = 4.0 * h_u, 0.0  # crosses the volume
        else:
            half_len, u0 = rng.uniform(0.0, 0.8) * h_u, rng.uniform(-0.5, 0.5) * h_u  # an end shows
        zc = mid[0] + rng.uniform(-0.2, 0.2) * ext[0]
        cy = mid[1] + offset * math.cos(theta) + u0 * math.sin(theta)
        cx = mid[2] - offset * math.sin(theta) + u0 * math.cos(theta)
        cell = Cell((float(zc), float(cy), float(cx)), float(theta), float(half_len), float(a), float(cz))
        inside = cell.distance_A(probe) < 150.0
        if (inside & inside_any).any():
            continue
        inside_any |= inside
        cells.append(cell)
    return cells


# --------------------------------------------------------------------------------------------
# Motor placement
# --------------------------------------------------------------------------------------------
def _motor_margins_vox(shape: Sequence[int], spacing_A: float) -> np.ndarray:
    """Distance of motor centres from the border per axis: the motor radius, or a quarter of a short axis."""
    r = motor_radius_voxels(spacing_A)
    return np.minimum(r, (np.asarray(shape, dtype=float) - 1.0) / 4.0)


def _greedy_separated(cands: np.ndarray, chosen: list[np.ndarray], n: int, min_sep: float) -> None:
    for p in cands:
        if len(chosen) >= n:
            return
        if all(np.linalg.norm(p - q) >= min_sep for q in chosen):
            chosen.append(p)


def place_motors(
    rng: np.random.Generator,
    shape: Sequence[int],
    spacing_A: float,
    n_motors: int,
    cells: Sequence[Cell],
) -> np.ndarray:
    """Up to ``n_motors`` motor centres (float voxel z, y, x), >= 1000 Å apart.

    Centres lie on the inner membrane of a cell when a cell membrane runs through the allowed
    region (the volume less a border of one motor radius); otherwise anywhere in that region.
    Returns fewer rows than asked when no more fit.
    """
    if n_motors <= 0:
        return np.zeros((0, 3))
    lo = _motor_margins_vox(shape, spacing_A)
    hi = np.asarray(shape, dtype=float) - 1.0 - lo
    lo_A, hi_A = lo * spacing_A, hi * spacing_A
    chosen: list[np.ndarray] = []
    membrane_found = False
    if cells:
        target = -MEMBRANE_SEPARATION_A
        tol = 0.1 * MOTOR_DIAMETER_A
        for _ in range(4):
            pts = rng.uniform(lo_A, hi_A, size=(512, 3))
            owner = rng.integers(0, len(cells), size=len(pts))
            for k, cell in enumerate(cells):
                sel = owner == k
                p = pts[sel]
                for _it in range(10):  # Newton steps onto the inner membrane
                    d = cell.distance_A(p)
                    p = p - (d - target)[:, None] * cell.normal(p)
                ok = np.abs(cell.distance_A(p) - target) < tol
                pts[sel] = np.where(ok[:, None], p, np.nan)
            good = np.isfinite(pts).all(axis=1)
            good &= ((pts >= lo_A) & (pts <= hi_A)).all(axis=1)
            cands = pts[good]
            membrane_found |= len(cands) > 0
            _greedy_separated(cands, chosen, n_motors, MOTOR_MIN_SEPARATION_A)
            if len(chosen) >= n_motors:
                break
    if not membrane_found:
        cands = rng.uniform(lo_A, hi_A, size=(512, 3))
        _greedy_separated(cands, chosen, n_motors, MOTOR_MIN_SEPARATION_A)
    if not chosen:
        return np.zeros((0, 3))
    return np.asarray(chosen) / spacing_A

