"""Synthetic BYU-style tomograms: the data of every test and of the demo.

Real Kaggle tomograms are not shipped, so this module draws plausible stand-ins and writes
them in the Kaggle layout::

    out_dir/<split>/<tomo_id>/slice_0000.jpg ...   one 8-bit grayscale JPEG per z
    out_dir/<split>_labels.csv                     train_labels format, one row per motor
    out_dir/sample_submission.csv                  one row per tomogram, all -1

Shapes, voxel spacings and motor counts are drawn from the real ground-truth table
(``inference/data/byu_tomograms_gt_v3.csv``). The shape is scaled by ``scale`` but the voxel
spacing stays the real one, so a volume is a *crop* of a real field of view at real resolution
and a motor always spans ~450 Å / spacing voxels. What is modelled and what is not is written
up in docs/SYNTH.md.

Everything is deterministic per seed: tomogram ``i`` of a split draws from its own child seed
``SeedSequence(seed, spawn_key=(split, 1, i))`` and does not depend on ``n``.
"""

from __future__ import annotations

import argparse
import logging
import math
import numbers
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from inference.errors import InputError

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Physical constants (Å). Sizes are real; they are converted to voxels with each tomogram's
# real voxel spacing.
# --------------------------------------------------------------------------------------------
DEFAULT_SCALE = 0.25
MIN_DIM = 32  # no axis of a scaled tomogram is shorter than this (voxels)

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

TEST_MOTOR_PROBABILITY = 0.45  # Kaggle rerun test: 0 or 1 motor; the recipe's 55% "no motor" quantile

SPLITS = ("train", "test")
LABEL_COLUMNS = [
    "row_id",
    "tomo_id",
    "Motor axis 0",
    "Motor axis 1",
    "Motor axis 2",
    "Array shape (axis 0)",
    "Array shape (axis 1)",
    "Array shape (axis 2)",
    "Voxel spacing",
    "Number of motors",
]
SUBMISSION_COLUMNS = ["tomo_id", "Motor axis 0", "Motor axis 1", "Motor axis 2"]

_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))  # FWHM = _FWHM * sigma
_SPLIT_CODE = {"train": 0, "test": 1}
_Z_CHUNK = 8  # slices per chunk when evaluating whole-volume fields (keeps buffers in cache)


def default_reference_csv() -> Path:
    """The packaged ground-truth table of the 648 real tomograms."""
    return Path(__file__).resolve().parent / "data" / "byu_tomograms_gt_v3.csv"


def motor_radius_voxels(spacing_A: float) -> float:
    """Radius of a motor (half its 450 Å diameter) in voxels at ``spacing_A`` Å per voxel."""
    return MOTOR_DIAMETER_A / 2.0 / float(spacing_A)


def scaled_shape(shape: Sequence[int], scale: float) -> tuple[int, int, int]:
    """Each axis ``round(dim * scale)`` (half up), at least :data:`MIN_DIM`."""
    return tuple(max(MIN_DIM, int(math.floor(float(d) * scale + 0.5))) for d in shape)  # type: ignore[return-value]


# --------------------------------------------------------------------------------------------
# Reference table
# --------------------------------------------------------------------------------------------
_GT_COLUMNS = ["Z", "Y", "X", "voxel_spacing", "num_motors"]
_KAGGLE_MAP = {
    "Array shape (axis 0)": "Z",
    "Array shape (axis 1)": "Y",
    "Array shape (axis 2)": "X",
    "Voxel spacing": "voxel_spacing",
    "Number of motors": "num_motors",
}


def load_reference(path: str | Path | None = None) -> pd.DataFrame:
    """Read the reference table: one row per real tomogram with Z, Y, X, voxel_spacing, num_motors.

    Accepts the packaged ground-truth CSV or a Kaggle ``train_labels.csv`` (one row per motor,
    collapsed to one row per tomogram).
    """
    path = Path(path) if path is not None else default_reference_csv()
    fix = "pass a CSV like inference/data/byu_tomograms_gt_v3.csv or Kaggle's train_labels.csv"
    if not path.is_file():
        raise InputError(path, "reference CSV not found", fix)
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise InputError(path, f"cannot read the reference CSV ({exc})", fix) from exc
    if all(c in table.columns for c in _KAGGLE_MAP) and "tomo_id" in table.columns:
        table = table.rename(columns=_KAGGLE_MAP).drop_duplicates("tomo_id")
    missing = [c for c in _GT_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(path, f"reference CSV lacks the columns {missing}", fix)
    ref = table[_GT_COLUMNS].apply(pd.to_numeric, errors="coerce")
    bad = ~np.isfinite(ref.to_numpy(dtype=float)).all(axis=1)
    bad |= (ref[["Z", "Y", "X", "voxel_spacing"]] <= 0).any(axis=1).to_numpy()
    bad |= (ref["num_motors"] < 0).to_numpy()
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InputError(
            path,
            f"{int(bad.sum())} reference rows have missing, non-numeric or non-positive values "
            f"(first: data row {first + 1})",
            "fix or drop those rows",
        )
    if ref.empty:
        raise InputError(path, "reference CSV has no rows", fix)
    ref = ref.astype({"Z": int, "Y": int, "X": int, "num_motors": int, "voxel_spacing": float})
    return ref.reset_index(drop=True)


def _weighted_group_order(rng: np.random.Generator, groups: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """A random order of ``groups`` drawn without replacement, proportionally to ``weights``."""
    keys = np.log(rng.random(len(groups))) / weights  # Efraimidis-Spirakis: larger key first
    return groups[np.argsort(-keys, kind="stable")]


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

    def _parts(self, z, y, x):
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
        p, p2, q, q2 = self._parts(pts[..., 0], pts[..., 1], pts[..., 2])
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


def _extent_A(shape: Sequence[int], spacing_A: float) -> np.ndarray:
    return (np.asarray(shape, dtype=float) - 1.0) * spacing_A


def draw_cells(rng: np.random.Generator, shape: Sequence[int], spacing_A: float) -> list[Cell]:
    """1-3 non-overlapping rod cells crossing the volume, at least one side wall inside it.

    Cell sizes are relative to the field of view (the volume is a crop; a real cell is often
    wider than a scaled-down crop), roughly parallel to each other as in real cell clusters.
    """
    ext = _extent_A(shape, spacing_A)
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


# --------------------------------------------------------------------------------------------
# Rendering helpers (densities: positive = dense = dark in the JPEG)
# --------------------------------------------------------------------------------------------
def _box(centre_vox: np.ndarray, half_vox: float, shape: Sequence[int], spacing_A: float):
    """Slices of a local box around a point and the Å offsets of its voxels from the point per axis."""
    sl, offs = [], []
    for c, n in zip(centre_vox, shape):
        a = max(0, int(math.floor(c - half_vox)))
        b = min(int(n), int(math.ceil(c + half_vox)) + 1)
        if b <= a:
            return None
        sl.append(slice(a, b))
        offs.append(((np.arange(a, b) - c) * spacing_A).astype(np.float32))
    return tuple(sl), offs


def _r2(offs) -> np.ndarray:
    dz, dy, dx = offs
    return dz[:, None, None] ** 2 + dy[None, :, None] ** 2 + dx[None, None, :] ** 2


def _logistic(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def render_cells(vol: np.ndarray, cells: Sequence[Cell], spacing_A: float, rng: np.random.Generator) -> None:
    """Add each cell's envelope (two dark shells) and its slightly dense cytoplasm to ``vol``."""
    if not cells:
        return
    nz, ny, nx = vol.shape
    z = np.arange(nz, dtype=np.float64) * spacing_A
    y = (np.arange(ny, dtype=np.float64) * spacing_A)[:, None]
    x = (np.arange(nx, dtype=np.float64) * spacing_A)[None, :]
    step = 0.5  # Å per lookup-table bin
    sig = MEMBRANE_THICKNESS_A / _FWHM
    d_max = 4 * sig + 10
    d_min = -(MEMBRANE_SEPARATION_A + 4 * sig + 60)
    d_lut = np.arange(d_min, d_max + step, step)
    buf_f = np.empty((_Z_CHUNK, ny, nx), np.float32)
    buf_g = np.empty_like(buf_f)
    idx = np.empty(buf_f.shape, np.intp)
    for cell in cells:
        amp = rng.uniform(0.8, 1.1)
        cyto = rng.uniform(0.12, 0.25)
        lut = amp * (np.exp(-0.5 * (d_lut / sig) ** 2) + np.exp(-0.5 * ((d_lut + MEMBRANE_SEPARATION_A) / sig) ** 2))
        lut += cyto * _logistic(-(d_lut + MEMBRANE_SEPARATION_A + 2.5 * sig) / 8.0)
        lut = lut.astype(np.float32)
        p, p2, _, _ = cell._parts(0.0, y, x)
        _, _, q, q2 = cell._parts(z, 0.0, 0.0)
        p, p2 = p.astype(np.float32), p2.astype(np.float32)
        for z0 in range(0, nz, _Z_CHUNK):
            k = min(_Z_CHUNK, nz - z0)
            f, g, ix = buf_f[:k], buf_g[:k], idx[:k]
            np.add(p[None], q[z0 : z0 + k, None, None].astype(np.float32), out=f)
            np.sqrt(f, out=f)
            np.add(p2[None], q2[z0 : z0 + k, None, None].astype(np.float32), out=g)
            np.sqrt(g, out=g)
            g += 1e-12
            np.divide(f, g, out=g)  # f / |grad F|
            f -= 1.0
            f *= g  # approximate signed distance (Å)
            f -= d_min
            f *= 1.0 / step
            np.clip(f, 0, len(lut) - 1, out=f)
            np.copyto(ix, f, casting="unsafe")
            np.take(lut, ix, out=f)
            vol[z0 : z0 + k] += f


def _motor_axis(centre_A: np.ndarray, cells: Sequence[Cell], rng: np.random.Generator) -> np.ndarray:
    """Membrane normal (pointing into the cell) plus jitter when on a membrane; else random."""
    best, best_d = None, 0.5 * MOTOR_DIAMETER_A
    for cell in cells:
        d = abs(float(cell.distance_A(centre_A)) + MEMBRANE_SEPARATION_A)
        if d < best_d:
            best, best_d = cell, d
    if best is None:
        axis = rng.normal(size=3)
    else:
        axis = -best.normal(centre_A)[0] + rng.normal(0.0, math.radians(MOTOR_TILT_SD_DEG), size=3)
    return axis / (np.linalg.norm(axis) + 1e-12)


def render_motor(vol: np.ndarray, centre_vox: np.ndarray, axis: np.ndarray, contrast: float, spacing_A: float) -> None:
    """Add one motor: a torus-like C-ring (450 Å across, 225 Å thick) around a denser core."""
    half = (MOTOR_DIAMETER_A / 2 + 40.0) / spacing_A
    box = _box(centre_vox, half, vol.shape, spacing_A)
    if box is None:
        return
    sl, (dz, dy, dx) = box
    n = np.asarray(axis, dtype=np.float32)
    r2 = _r2((dz, dy, dx))
    a = dz[:, None, None] * n[0] + dy[None, :, None] * n[1] + dx[None, None, :] * n[2]
    rho = np.sqrt(np.maximum(r2 - a**2, 0.0))
    q_ring = np.sqrt(((rho - MOTOR_RING_RADIUS_A) / MOTOR_RING_HALF_WIDTH_A) ** 2 + (a / (MOTOR_THICKNESS_A / 2)) ** 2)
    q_core = np.sqrt((rho / MOTOR_CORE_RADIUS_A) ** 2 + (a / MOTOR_CORE_HALF_HEIGHT_A) ** 2)
    dens = np.maximum(_logistic((1.0 - q_ring) / 0.12), 1.25 * _logistic((1.0 - q_core) / 0.12))
    vol[sl] += (contrast * dens).astype(np.float32)


def _gauss_blob(vol: np.ndarray, centre_vox: np.ndarray, sigma_A: float, amp: float, spacing_A: float) -> None:
    box = _box(centre_vox, 2.5 * sigma_A / spacing_A, vol.shape, spacing_A)
    if box is None:
        return
    sl, (dz, dy, dx) = box
    k = -0.5 / sigma_A**2
    gz, gy, gx = np.exp(k * dz**2), np.exp(k * dy**2), np.exp(k * dx**2)
    vol[sl] += (amp * gz)[:, None, None] * gy[None, :, None] * gx[None, None, :]


def render_ribosome(vol: np.ndarray, centre_vox: np.ndarray, rng: np.random.Generator, spacing_A: float) -> None:
    """A ~250 Å dark blob made of a large and a small subunit (two Gaussians)."""
    amp = rng.uniform(*RIBOSOME_CONTRAST)
    sig_l = RIBOSOME_DIAMETER_A / 2 / 1.6
    _gauss_blob(vol, centre_vox, sig_l, amp, spacing_A)
    off = rng.normal(size=3)
    off *= 0.35 * RIBOSOME_DIAMETER_A / np.linalg.norm(off) / spacing_A
    _gauss_blob(vol, centre_vox + off, 0.7 * sig_l, 0.8 * amp, spacing_A)


def render_gold(vol: np.ndarray, centre_vox: np.ndarray, radius_A: float, amp: float, spacing_A: float) -> None:
    """A gold bead: a very dense sphere with a faint bright halo."""
    box = _box(centre_vox, 3.0 * radius_A / spacing_A, vol.shape, spacing_A)
    if box is None:
        return
    sl, offs = box
    r = np.sqrt(_r2(offs))
    dens = _logistic((radius_A - r) / (0.12 * radius_A)) - 0.08 * np.exp(-(((r - 1.8 * radius_A) / (0.5 * radius_A)) ** 2))
    vol[sl] += (amp * dens).astype(np.float32)


def render_vesicle(vol: np.ndarray, centre_vox: np.ndarray, radius_A: float, amp: float, spacing_A: float) -> None:
    """A membrane vesicle: one thin dark spherical shell."""
    sig = VESICLE_MEMBRANE_A / _FWHM
    box = _box(centre_vox, (radius_A + 4 * sig) / spacing_A, vol.shape, spacing_A)
    if box is None:
        return
    sl, offs = box
    r = np.sqrt(_r2(offs))
    vol[sl] += (amp * np.exp(-0.5 * ((r - radius_A) / sig) ** 2)).astype(np.float32)


def _far_from(points_A: np.ndarray, motors_A: np.ndarray, min_dist_A: float) -> np.ndarray:
    if len(motors_A) == 0 or len(points_A) == 0:
        return np.ones(len(points_A), dtype=bool)
    d = np.linalg.norm(points_A[:, None, :] - motors_A[None, :, :], axis=-1)
    return (d >= min_dist_A).all(axis=1)


def render_distractors(
    vol: np.ndarray,
    cells: Sequence[Cell],
    motors_vox: np.ndarray,
    spacing_A: float,
    rng: np.random.Generator,
) -> None:
    """Ribosomes in the cytoplasm, gold beads, vesicles and ice debris, none touching a motor."""
    shape = vol.shape
    ext = _extent_A(shape, spacing_A)
    motors_A = np.asarray(motors_vox, dtype=float).reshape(-1, 3) * spacing_A
    r_motor = MOTOR_DIAMETER_A / 2
    # ribosomes: uniform candidates, kept where they fall deep enough in a cytoplasm
    if cells:
        rate = rng.uniform(*RIBOSOMES_PER_A3)
        m = min(int(rng.poisson(rate * float(np.prod(ext + spacing_A)))), 20 * MAX_RIBOSOMES)
        pts = rng.uniform(0.0, ext, size=(m, 3))
        inner = np.full(m, np.inf)
        for cell in cells:
            inner = np.minimum(inner, cell.distance_A(pts))
        keep = inner < -(MEMBRANE_SEPARATION_A + RIBOSOME_DIAMETER_A / 2 + 20.0)
        keep &= _far_from(pts, motors_A, r_motor + RIBOSOME_DIAMETER_A / 2)
        for p in pts[keep][:MAX_RIBOSOMES]:
            render_ribosome(vol, p / spacing_A, rng, spacing_A)
    # gold fiducials: always at least one, anywhere, darkest thing in the volume
    n_gold = 1 + min(int(rng.poisson(2.5)), 11)
    for _ in range(n_gold):
        rad = rng.uniform(*GOLD_DIAMETER_A) / 2
        amp = rng.uniform(4.0, 7.0)
        for _try in range(20):  # a few draws, so a bead lands clear of the motors
            p = rng.uniform(rad, np.maximum(ext - rad, rad + 1))
            if _far_from(p[None], motors_A, r_motor + 2 * rad + 100.0)[0]:
                render_gold(vol, p / spacing_A, rad, amp, spacing_A)
                break
    # vesicles: thin single-shell rings
    for _ in range(int(rng.poisson(1.5))):
        rad = rng.uniform(*VESICLE_DIAMETER_A) / 2
        p = rng.uniform(0.0, ext)
        if _far_from(p[None], motors_A, r_motor + rad + 50.0)[0]:
            render_vesicle(vol, p / spacing_A, rad, rng.uniform(0.6, 1.0), spacing_A)
    # debris in the ice: lumpy blobs of varied size outside cells
    for _ in range(int(rng.poisson(4.0))):
        p = rng.uniform(0.0, ext)
        if cells and min(float(c.distance_A(p)) for c in cells) < 100.0:
            continue
        if _far_from(p[None], motors_A, r_motor + 300.0)[0]:
            sig = rng.uniform(*DEBRIS_DIAMETER_A) / 2 / 1.6
            _gauss_blob(vol, p / spacing_A, sig, rng.uniform(0.4, 0.9), spacing_A)


def _ndimage():
    """scipy.ndimage, imported on first use (``python -m inference --help`` stays fast)."""
    from scipy import ndimage

    return ndimage


def _noise_gain(sigmas: Sequence[float], truncate: float) -> float:
    """Standard deviation of unit white noise after ``gaussian_filter(sigma=sigmas)``."""
    g = 1.0
    for s in sigmas:
        half = int(truncate * s + 0.5)
        delta = np.zeros(2 * half + 1)
        delta[half] = 1.0
        w = _ndimage().gaussian_filter1d(delta, s, truncate=truncate, mode="constant")
        g *= float(np.sum(w**2))
    return math.sqrt(g)


def _smooth_field_2d(rng: np.random.Generator, ny: int, nx: int, n_knots: int = 5) -> np.ndarray:
    """A smooth random 2D field of unit-ish amplitude (cubic interpolation of a coarse grid)."""
    knots = rng.normal(size=(n_knots, n_knots))
    field = _ndimage().zoom(knots, (ny / n_knots, nx / n_knots), order=3, mode="reflect", grid_mode=True)
    out = np.zeros((ny, nx))
    out[: min(ny, field.shape[0]), : min(nx, field.shape[1])] = field[:ny, :nx]
    return out


def render_tomogram(
    rng: np.random.Generator,
    shape: Sequence[int],
    spacing_A: float,
    motors_zyx: np.ndarray | Sequence[Sequence[float]],
    *,
    cells: Sequence[Cell] | None = None,
    noise: bool = True,
    distractors: bool = True,
) -> np.ndarray:
    """Render one tomogram as uint8 (Z, Y, X); dark = dense, background mid-gray.

    ``motors_zyx`` are float voxel centres. ``cells`` defaults to :func:`draw_cells` from ``rng``.
    ``noise=False`` and ``distractors=False`` give a clean rendering (for tests): same cells and
    motors, no ribosomes, gold, vesicles, debris or noise (the blur is kept).
    The ``rng`` is only used to seed independent sub-streams, so switching a component off does
    not change what the others draw.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(None, f"tomogram shape must be 3 positive ints, got {shape}", "pass (Z, Y, X)")
    if not (spacing_A > 0 and math.isfinite(spacing_A)):
        raise InputError(None, f"voxel spacing must be a positive number of Å, got {spacing_A}", "pass e.g. 13.1")
    motors = np.asarray(motors_zyx, dtype=float).reshape(-1, 3)
    if len(motors) and (((motors < 0) | (motors > np.asarray(shape) - 1)).any() or not np.isfinite(motors).all()):
        raise InputError(None, "motor centres must lie inside the volume", "pass voxel z, y, x within the shape")
    r_cells, r_look, r_motor, r_dis, r_noise = (np.random.default_rng(s) for s in rng.integers(0, 2**63 - 1, size=5))
    if cells is None:
        cells = draw_cells(r_cells, shape, spacing_A)

    vol = np.zeros(shape, dtype=np.float32)
    render_cells(vol, cells, spacing_A, r_look)
    for m in motors:
        axis = _motor_axis(m * spacing_A, cells, r_motor)
        render_motor(vol, m, axis, r_motor.uniform(*MOTOR_CONTRAST), spacing_A)
    if distractors:
        render_distractors(vol, cells, motors, spacing_A, r_dis)

    # imaging: per-tomogram contrast, SNR, anisotropic (missing-wedge-like) blur
    gain = r_look.uniform(24.0, 40.0)  # gray levels per unit density (a strong motor stays above 0)
    noise_sd = gain * r_look.uniform(0.15, 0.4)  # gray levels after the blur
    sigmas = (r_look.uniform(1.4, 2.2), r_look.uniform(0.8, 1.2), r_look.uniform(0.8, 1.2))
    truncate = 3.0
    if noise:
        buf = np.empty(shape, dtype=np.float32)
        r_noise.standard_normal(dtype=np.float32, out=buf)
        buf *= np.float32(noise_sd / gain / _noise_gain(sigmas, truncate))
        vol += buf
    else:
        buf = np.empty(shape, dtype=np.float32)
    _ndimage().gaussian_filter(vol, sigmas, output=buf, truncate=truncate, mode="nearest")

    nz, ny, nx = shape
    base = r_look.uniform(128.0, 150.0)
    tilt = r_look.uniform(-6.0, 6.0, size=2)
    yy = np.linspace(-1.0, 1.0, ny)[:, None]
    xx = np.linspace(-1.0, 1.0, nx)[None, :]
    bg2 = base + tilt[0] * yy + tilt[1] * xx + 3.0 * _smooth_field_2d(r_look, ny, nx)
    bgz = r_look.uniform(-3.0, 3.0) * np.linspace(-1.0, 1.0, nz)
    buf *= np.float32(-gain)
    buf += bg2.astype(np.float32)[None]
    buf += bgz.astype(np.float32)[:, None, None]
    np.clip(buf, 0.0, 255.0, out=buf)
    np.rint(buf, out=buf)
    return buf.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Dataset generation
# --------------------------------------------------------------------------------------------
def _tomo_streams(seed: int, split: str, i: int) -> list[np.random.Generator]:
    ss = np.random.SeedSequence(seed, spawn_key=(_SPLIT_CODE[split], 1, i))
    return [np.random.default_rng(s) for s in ss.spawn(4)]  # id, reference row, motor count, scene


def _write_jpegs(folder: Path, vol: np.ndarray, quality: int, pool: ThreadPoolExecutor) -> list[Future]:
    folder.mkdir(parents=True, exist_ok=True)
    return [pool.submit(_write_jpeg, folder / f"slice_{z:04d}.jpg", vol[z], quality) for z in range(vol.shape[0])]


def _write_jpeg(path: Path, img: np.ndarray, quality: int) -> None:
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        if not cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
            raise InputError(path, "could not write the JPEG", "choose a writable output folder")
        return
    from PIL import Image

    try:
        Image.fromarray(img, mode="L").save(path, format="JPEG", quality=int(quality))
    except OSError as exc:
        raise InputError(path, f"could not write the JPEG ({exc})", "choose a writable output folder") from exc


def _write_zarr(path: Path, vol: np.ndarray, spacing: float) -> None:
    from inference.omezarr_write import write_omezarr

    levels = min(3, int(np.log2(min(vol.shape))) + 1)  # every level at least one voxel thick
    write_omezarr(path, vol, spacing, levels=levels)


def _prepare_out(out_dir: Path, split: str, overwrite: bool) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "output path exists and is not a folder", "pass a folder for --out")
    split_dir = out_dir / split
    if split_dir.exists() and not split_dir.is_dir():
        raise InputError(split_dir, "exists and is not a folder", "remove it or choose another --out")
    if split_dir.is_dir() and any(split_dir.iterdir()):
        if not overwrite:
            raise InputError(
                split_dir,
                "output folder is not empty",
                "choose another --out, remove the folder, or pass --overwrite (overwrite=True)",
            )
        for child in split_dir.glob("tomo_*"):
            if child.is_dir():
                shutil.rmtree(child)
    split_dir.mkdir(parents=True, exist_ok=True)
    return split_dir


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="synth", unit="tomo")


def generate(
    out_dir: str | Path,
    n: int,
    seed: int,
    *,
    split: str = "train",
    scale: float = DEFAULT_SCALE,
    reference_csv: str | Path | None = None,
    jpeg_quality: int = 90,
    progress: bool = True,
    overwrite: bool = False,
    fmt: str = "jpeg",
) -> pd.DataFrame:
    """Write ``n`` synthetic tomograms of ``split`` under ``out_dir`` in the Kaggle layout.

    Returns the labels frame (also written to ``out_dir/<split>_labels.csv``). Same arguments
    give byte-identical files. ``overwrite`` allows an existing non-empty ``out_dir/<split>``
    (its ``tomo_*`` folders are removed first). ``fmt="zarr"`` writes each tomogram as an OME-Zarr
    pyramid ``<tomo_id>.zarr`` (up to 3 levels, scale in Å; :mod:`inference.omezarr_write`) instead
    of JPEG slices: the rendered volume itself, without JPEG's loss.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(None, f"number of tomograms must be a positive integer, got {n!r}", "pass --n 1 or more")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(None, f"seed must be a non-negative integer, got {seed!r}", "pass e.g. --seed 0")
    if split not in SPLITS:
        raise InputError(None, f"unknown split {split!r}", f"use one of {', '.join(SPLITS)}")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not 0 < scale <= 1:
        raise InputError(None, f"scale must be in (0, 1], got {scale!r}", f"pass e.g. --scale {DEFAULT_SCALE}")
    if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, (int, np.integer)) or not 1 <= jpeg_quality <= 100:
        raise InputError(None, f"JPEG quality must be an integer 1-100, got {jpeg_quality!r}", "pass e.g. --quality 90")
    if fmt not in ("jpeg", "zarr"):
        raise InputError(None, f"unknown format {fmt!r}", "pass --format jpeg or zarr")
    n, seed, scale = int(n), int(seed), float(scale)
    ref = load_reference(reference_csv)
    out_dir = Path(out_dir)
    split_dir = _prepare_out(out_dir, split, overwrite)

    spacings = ref["voxel_spacing"].to_numpy()
    groups, counts = np.unique(spacings, return_counts=True)
    plan_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SPLIT_CODE[split], 0, 0)))
    group_order = _weighted_group_order(plan_rng, groups, counts / counts.sum())

    rows: list[dict] = []
    used_ids: set[str] = set()
    bar = _progress(n, progress)
    pending: list[Future] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        try:
            for i in range(n):
                r_id, r_ref, r_count, r_scene = _tomo_streams(seed, split, i)
                tomo_id = f"tomo_{int(r_id.integers(0, 16**6)):06x}"
                while tomo_id in used_ids:
                    tomo_id = f"tomo_{int(r_id.integers(0, 16**6)):06x}"
                used_ids.add(tomo_id)
                if i < len(group_order):  # first G tomograms: one per spacing group
                    candidates = np.flatnonzero(spacings == group_order[i])
                    row = ref.iloc[int(r_ref.choice(candidates))]
                else:
                    row = ref.iloc[int(r_ref.integers(0, len(ref)))]
                shape = scaled_shape((row["Z"], row["Y"], row["X"]), scale)
                spacing = float(row["voxel_spacing"])
                if split == "train":
                    want = int(row["num_motors"])
                else:
                    want = int(r_count.random() < TEST_MOTOR_PROBABILITY)
                r_cells, r_place, r_render = (np.random.default_rng(s) for s in r_scene.integers(0, 2**63 - 1, size=3))
                cells = draw_cells(r_cells, shape, spacing)
                motors = place_motors(r_place, shape, spacing, want, cells)
                vol = render_tomogram(r_render, shape, spacing, motors, cells=cells)
                for fut in pending:  # keep at most one tomogram in flight on the writers
                    fut.result()
                if fmt == "zarr":
                    pending = [pool.submit(_write_zarr, split_dir / f"{tomo_id}.zarr", vol, spacing)]
                else:
                    pending = _write_jpegs(split_dir / tomo_id, vol, jpeg_quality, pool)
                common = {
                    "tomo_id": tomo_id,
                    "Array shape (axis 0)": shape[0],
                    "Array shape (axis 1)": shape[1],
                    "Array shape (axis 2)": shape[2],
                    "Voxel spacing": spacing,
                    "Number of motors": len(motors),
                }
                if len(motors) == 0:
                    rows.append({"Motor axis 0": -1.0, "Motor axis 1": -1.0, "Motor axis 2": -1.0, **common})
                for m in motors:
                    rows.append({"Motor axis 0": round(float(m[0]), 3), "Motor axis 1": round(float(m[1]), 3),
                                 "Motor axis 2": round(float(m[2]), 3), **common})
                log.debug("%s: shape %s, %.1f Å, %d motor(s) (asked %d)", tomo_id, shape, spacing, len(motors), want)
                if bar is not None:
                    bar.update(1)
            for fut in pending:
                fut.result()
        finally:
            if bar is not None:
                bar.close()

    labels = pd.DataFrame(rows)
    labels = labels.sort_values("tomo_id", kind="stable").reset_index(drop=True)
    labels.insert(0, "row_id", np.arange(len(labels)))
    labels = labels[LABEL_COLUMNS]
    labels.to_csv(out_dir / f"{split}_labels.csv", index=False)
    ids = sorted(used_ids)
    sub = pd.DataFrame({"tomo_id": ids, "Motor axis 0": -1, "Motor axis 1": -1, "Motor axis 2": -1})
    sub.to_csv(out_dir / "sample_submission.csv", index=False)
    n_motors = int((labels["Number of motors"] > 0).sum())
    log.info("wrote %d %s tomograms (%d motors) to %s", n, split, n_motors, split_dir)
    return labels


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def add_cli(subparsers) -> argparse.ArgumentParser:
    """Register ``synth`` on the main CLI's subparsers; ``func=run_cli``."""
    p = subparsers.add_parser(
        "synth",
        help="write synthetic BYU-style tomograms (JPEG slices + labels) for tests and demos",
        description=(
            "Write N synthetic cryo-ET tomograms in the Kaggle BYU layout: OUT/<split>/<tomo_id>/"
            "slice_0000.jpg..., OUT/<split>_labels.csv and OUT/sample_submission.csv. "
            "Deterministic per seed. See docs/SYNTH.md."
        ),
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--n", type=int, default=8, metavar="N", help="number of tomograms (default: 8)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed, >= 0 (default: 0)")
    p.add_argument("--split", choices=SPLITS, default="train",
                   help="train: motor counts as in the reference; test: 0 or 1 motor (default: train)")
    p.add_argument("--scale", type=float, default=DEFAULT_SCALE, metavar="F",
                   help=f"shape factor on the real tomogram shapes, in (0, 1]; voxel spacing is kept "
                        f"(default: {DEFAULT_SCALE})")
    p.add_argument("--reference", type=Path, default=None, metavar="CSV",
                   help="reference table of real shapes/spacings/motor counts "
                        "(default: the packaged byu_tomograms_gt_v3.csv; a Kaggle train_labels.csv also works)")
    p.add_argument("--quality", type=int, default=90, metavar="Q", help="JPEG quality 1-100 (default: 90)")
    p.add_argument("--format", choices=("jpeg", "zarr"), default="jpeg", help="jpeg: a folder of slice_NNNN.jpg per "
                   "tomogram (Kaggle's layout, default); zarr: <tomo_id>.zarr OME-Zarr pyramids (the CryoET Data "
                   "Portal's format; needs zarr >= 3)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow a non-empty OUT/<split> folder (its tomo_* folders are replaced)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    """Run ``synth`` from parsed arguments; prints a one-line summary; returns the exit code."""
    labels = generate(
        args.out,
        args.n,
        args.seed,
        split=args.split,
        scale=args.scale,
        reference_csv=args.reference,
        jpeg_quality=args.quality,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        fmt=args.format,
    )
    n_motors = int((labels["Number of motors"] > 0).sum())
    print(  # the command's result line (stdout), not a diagnostic
        f"synth: {labels['tomo_id'].nunique()} {args.split} tomograms, {n_motors} motors -> "
        f"{Path(args.out) / args.split} (labels {Path(args.out) / f'{args.split}_labels.csv'})"
    )
    return 0
