"""How a synthetic CZII scene becomes a float32 tomogram like the competition's ``denoised.zarr``.

Densities accumulate positive (each particle's shape, :mod:`inference.synth.particle_shapes`, times its
contrast; a few unlabelled small blobs), then the imaging: a little anisotropic blur (z a bit more, as
after a missing wedge), band-limited Gaussian noise (white noise low-passed to the few-voxel grain of a
denoised tomogram, its slowest part removed), a slowly varying background, and the sign flip that
makes matter darker than the ice around it (the cryo-ET convention of the competition's tomograms).
The result is ``offset + gain * (background + noise - blurred density)`` in arbitrary units: a model
normalizes it as it would real data. :func:`draw_run` draws a whole run: counts, places, volume.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from inference.common.errors import InputError
from inference.manifest.particle_classes import ParticleClass
from inference.synth.particle_scene import Particle, particle_counts, place_particles
from inference.synth.particle_shapes import class_shape, particle_density
from inference.synth.render import box_offsets, logistic, radius2, scipy_ndimage

BLUR_Z = (1.0, 1.4)  # Gaussian blur sigma along z (voxels)
BLUR_YX = (0.7, 1.0)  # along y and x
NOISE_SD = (0.2, 0.35)  # noise std after filtering, in units of a particle's density (contrast 1)
NOISE_GRAIN = (0.9, 1.2)  # low-pass sigma of the noise (voxels): the grain of a denoised tomogram
NOISE_SLOW = 8.0  # the part of the noise slower than this sigma (voxels) is removed (the background's role)
BACKGROUND = (0.1, 0.25)  # amplitude of the slowly varying background (same units)
BLOBS_PER_VOXEL = 4e-6  # unlabelled small blobs (other proteins, ice specks) per voxel
BLOB_RADIUS_A = (20.0, 40.0)
BLOB_CONTRAST = (0.3, 0.7)
GAIN = (0.5, 2.0)  # arbitrary units of the written volume
OFFSET = (-1.0, 1.0)


def render_particle(vol: np.ndarray, particle: Particle, cls: ParticleClass, spacing_A: float) -> None:
    """Add one particle's density (its class shape at its radius, rotation and contrast) to ``vol``."""
    box = box_offsets(particle.zyx, cls.radius_A / spacing_A + 2.0, vol.shape, spacing_A, np.float64)
    if box is None:
        return
    sl, (dz, dy, dx) = box
    dens = particle_density(class_shape(cls.name), cls.radius_A, particle.rotation, dz, dy, dx)
    vol[sl] += np.float32(particle.contrast) * dens


def _blobs(vol: np.ndarray, particles: Sequence[Particle], classes: Sequence[ParticleClass], spacing_A: float,
           rng: np.random.Generator) -> None:
    """Unlabelled small dark blobs, none touching a particle (labels stay unambiguous)."""
    centres = np.array([p.zyx for p in particles], dtype=float).reshape(-1, 3) * spacing_A
    radii = np.array([classes[p.cls].radius_A for p in particles], dtype=float)
    hi = np.asarray(vol.shape, dtype=float) - 1.0
    for _ in range(int(rng.poisson(BLOBS_PER_VOXEL * vol.size))):
        r = rng.uniform(*BLOB_RADIUS_A)
        c = rng.uniform(0.0, hi)
        amp = rng.uniform(*BLOB_CONTRAST)
        if len(centres) and (np.linalg.norm(centres - c * spacing_A, axis=1) < radii + r + 10.0).any():
            continue
        box = box_offsets(c, r / spacing_A + 2.0, vol.shape, spacing_A, np.float64)
        if box is None:
            continue
        sl, offs = box
        vol[sl] += (amp * logistic((r - np.sqrt(radius2(offs))) / 3.0)).astype(np.float32)


def _smooth_1d(rng: np.random.Generator, n: int, knots: int) -> np.ndarray:
    """A smooth random curve of ``n`` samples through ``knots`` normal knots (cubic interpolation)."""
    k = rng.normal(size=knots)
    return scipy_ndimage().zoom(k, n / knots, order=3, mode="reflect", grid_mode=True)[:n]


def _add_smooth_field(rng: np.random.Generator, out: np.ndarray, amplitude: float, terms: int = 3) -> None:
    """Add ``amplitude`` x a smooth random 3D field of unit-ish amplitude to ``out``: a sum of ``terms``
    products of smooth curves along z, y and x (separable: a few passes over the volume, no big temporaries)."""
    for _ in range(terms):
        gz, gy, gx = (_smooth_1d(rng, n, k) for n, k in zip(out.shape, (3, 5, 5)))
        plane = (gy[:, None] * gx[None, :]).astype(np.float32)
        gz = gz * (amplitude / math.sqrt(terms))
        for z in range(out.shape[0]):
            out[z] += np.float32(gz[z]) * plane


def render_particle_tomogram(rng: np.random.Generator, shape: Sequence[int], spacing_A: float,
                             particles: Sequence[Particle], classes: Sequence[ParticleClass], *,
                             noise: bool = True, blobs: bool = True) -> np.ndarray:
    """Render one run as float32 (Z, Y, X): particles darker than the background.

    ``noise=False`` and ``blobs=False`` give a clean rendering (for tests): no noise, background or
    unlabelled blobs, gain 1 and offset 0 (the blur is kept), so the volume is minus the blurred density.
    ``rng`` only seeds independent sub-streams: switching a part off does not change what the others draw.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(None, f"tomogram shape must be 3 positive ints, got {shape}", "pass (Z, Y, X)")
    r_look, r_blobs, r_noise, r_bg = (np.random.default_rng(s) for s in rng.integers(0, 2**63 - 1, size=4))
    vol = np.zeros(shape, dtype=np.float32)
    for p in particles:
        render_particle(vol, p, classes[p.cls], spacing_A)
    if blobs:
        _blobs(vol, particles, classes, spacing_A, r_blobs)
    sigmas = (r_look.uniform(*BLUR_Z), r_look.uniform(*BLUR_YX), r_look.uniform(*BLUR_YX))
    noise_sd, grain = r_look.uniform(*NOISE_SD), r_look.uniform(*NOISE_GRAIN)
    bg_amp, gain, offset = r_look.uniform(*BACKGROUND), r_look.uniform(*GAIN), r_look.uniform(*OFFSET)
    out = np.empty_like(vol)
    scipy_ndimage().gaussian_filter(vol, sigmas, output=out, mode="nearest")
    np.negative(out, out=out)
    if not noise:
        return out
    buf = vol  # the density is drawn: its buffer holds the white noise, then the noise's slow part
    r_noise.standard_normal(dtype=np.float32, out=buf)
    fine = scipy_ndimage().gaussian_filter(buf, grain, mode="wrap")
    scipy_ndimage().gaussian_filter(fine, NOISE_SLOW, output=buf, mode="wrap")
    fine -= buf
    fine *= np.float32(noise_sd / max(float(fine.std()), 1e-12))
    out += fine
    del fine
    _add_smooth_field(r_bg, out, float(bg_amp))
    out *= np.float32(gain)
    out += np.float32(offset)
    return out


def draw_run(rng: np.random.Generator, shape: Sequence[int], spacing_A: float, classes: Sequence[ParticleClass],
             **render_options) -> tuple[list[Particle], np.ndarray]:
    """One run: particle counts (:func:`particle_counts`), places (:func:`place_particles`) and the rendered
    volume (:func:`render_particle_tomogram`, ``render_options`` passed on), each from its own sub-stream."""
    r_count, r_place, r_render = (np.random.default_rng(s) for s in rng.integers(0, 2**63 - 1, size=3))
    counts = particle_counts(r_count, shape, classes)
    particles = place_particles(r_place, shape, spacing_A, classes, counts)
    return particles, render_particle_tomogram(r_render, shape, spacing_A, particles, classes, **render_options)
