"""How a synthetic scene becomes a uint8 tomogram: densities of membranes, motors and distractors, then imaging.

Densities are positive where matter is dense (dark in the JPEG). :func:`render_tomogram` adds the
cells' envelopes (:func:`render_cells`), the motors (:func:`render_motor`), ribosomes, gold beads,
vesicles and ice debris (:func:`render_distractors`), then blurs, adds noise and maps to gray levels.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from inference.common.errors import InputError
from inference.synth.scene import (
    DEBRIS_DIAMETER_A,
    GOLD_DIAMETER_A,
    MAX_RIBOSOMES,
    MEMBRANE_SEPARATION_A,
    MEMBRANE_THICKNESS_A,
    MOTOR_CONTRAST,
    MOTOR_CORE_HALF_HEIGHT_A,
    MOTOR_CORE_RADIUS_A,
    MOTOR_DIAMETER_A,
    MOTOR_RING_HALF_WIDTH_A,
    MOTOR_RING_RADIUS_A,
    MOTOR_THICKNESS_A,
    MOTOR_TILT_SD_DEG,
    RIBOSOME_CONTRAST,
    RIBOSOME_DIAMETER_A,
    RIBOSOMES_PER_A3,
    VESICLE_DIAMETER_A,
    VESICLE_MEMBRANE_A,
    Cell,
    draw_cells,
    extent_A,
)

_FWHM = 2.0 * math.sqrt(2.0 * math.log(2.0))  # FWHM = _FWHM * sigma
_Z_CHUNK = 8  # slices per chunk when evaluating whole-volume fields (keeps buffers in cache)


# --------------------------------------------------------------------------------------------
# Rendering helpers (densities: positive = dense = dark in the JPEG)
# --------------------------------------------------------------------------------------------
def box_offsets(centre_vox: np.ndarray, half_vox: float, shape: Sequence[int], spacing_A: float, dtype=np.float32):
    """Slices of a local box around a point and the Å offsets (``dtype``) of its voxels from the point per axis;
    None when the box lies outside the volume."""
    sl, offs = [], []
    for c, n in zip(centre_vox, shape):
        a = max(0, int(math.floor(c - half_vox)))
        b = min(int(n), int(math.ceil(c + half_vox)) + 1)
        if b <= a:
            return None
        sl.append(slice(a, b))
        offs.append(((np.arange(a, b) - c) * spacing_A).astype(dtype, copy=False))
    return tuple(sl), offs


def radius2(offs) -> np.ndarray:
    """Squared distance (Å²) of each voxel of a :func:`box_offsets` box from its point."""
    dz, dy, dx = offs
    return dz[:, None, None] ** 2 + dy[None, :, None] ** 2 + dx[None, None, :] ** 2


def logistic(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), written with tanh."""
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
        lut += cyto * logistic(-(d_lut + MEMBRANE_SEPARATION_A + 2.5 * sig) / 8.0)
        lut = lut.astype(np.float32)
        p, p2, _, _ = cell.parts(0.0, y, x)
        _, _, q, q2 = cell.parts(z, 0.0, 0.0)
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
    box = box_offsets(centre_vox, half, vol.shape, spacing_A)
    if box is None:
        return
    sl, (dz, dy, dx) = box
    n = np.asarray(axis, dtype=np.float32)
    r2 = radius2((dz, dy, dx))
    a = dz[:, None, None] * n[0] + dy[None, :, None] * n[1] + dx[None, None, :] * n[2]
    rho = np.sqrt(np.maximum(r2 - a**2, 0.0))
    q_ring = np.sqrt(((rho - MOTOR_RING_RADIUS_A) / MOTOR_RING_HALF_WIDTH_A) ** 2 + (a / (MOTOR_THICKNESS_A / 2)) ** 2)
    q_core = np.sqrt((rho / MOTOR_CORE_RADIUS_A) ** 2 + (a / MOTOR_CORE_HALF_HEIGHT_A) ** 2)
    dens = np.maximum(logistic((1.0 - q_ring) / 0.12), 1.25 * logistic((1.0 - q_core) / 0.12))
    vol[sl] += (contrast * dens).astype(np.float32)


def _gauss_blob(vol: np.ndarray, centre_vox: np.ndarray, sigma_A: float, amp: float, spacing_A: float) -> None:
    box = box_offsets(centre_vox, 2.5 * sigma_A / spacing_A, vol.shape, spacing_A)
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
    box = box_offsets(centre_vox, 3.0 * radius_A / spacing_A, vol.shape, spacing_A)
    if box is None:
        return
    sl, offs = box
    r = np.sqrt(radius2(offs))
    dens = logistic((radius_A - r) / (0.12 * radius_A)) - 0.08 * np.exp(-(((r - 1.8 * radius_A) / (0.5 * radius_A)) ** 2))
    vol[sl] += (amp * dens).astype(np.float32)


def render_vesicle(vol: np.ndarray, centre_vox: np.ndarray, radius_A: float, amp: float, spacing_A: float) -> None:
    """A membrane vesicle: one thin dark spherical shell."""
    sig = VESICLE_MEMBRANE_A / _FWHM
    box = box_offsets(centre_vox, (radius_A + 4 * sig) / spacing_A, vol.shape, spacing_A)
    if box is None:
        return
    sl, offs = box
    r = np.sqrt(radius2(offs))
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
    ext = extent_A(shape, spacing_A)
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


def scipy_ndimage():
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
        w = scipy_ndimage().gaussian_filter1d(delta, s, truncate=truncate, mode="constant")
        g *= float(np.sum(w**2))
    return math.sqrt(g)


def _smooth_field_2d(rng: np.random.Generator, ny: int, nx: int, n_knots: int = 5) -> np.ndarray:
    """A smooth random 2D field of unit-ish amplitude (cubic interpolation of a coarse grid)."""
    knots = rng.normal(size=(n_knots, n_knots))
    field = scipy_ndimage().zoom(knots, (ny / n_knots, nx / n_knots), order=3, mode="reflect", grid_mode=True)
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
    scipy_ndimage().gaussian_filter(vol, sigmas, output=buf, truncate=truncate, mode="nearest")

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

