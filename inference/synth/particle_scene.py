"""What a synthetic CZII run holds and where: its shape, how many particles of each class, and their places.

Sizes are real: a run is a crop of the competition's (184, 630, 630) tomogram at its real 10.012 Å
spacing (:func:`run_shape`), and every particle keeps its class radius in Å. :func:`particle_counts`
draws how many particles of each class a run holds (a Poisson count from a per-class rate per full
tomogram, scaled by the crop's volume, at least one); :func:`place_particles` places them without
overlap (centres at least the sum of the two radii apart), a share of them touching a neighbour,
each with a random rotation and contrast. :mod:`inference.synth.particle_render` draws the scene.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from inference.common.errors import InputError
from inference.manifest.particle_classes import ParticleClass
from inference.synth.particle_shapes import random_rotation

#: The competition's tomogram shape (z, y, x) at level 0.
FULL_SHAPE = (184, 630, 630)
#: The default ``scale``: a (92, 158, 158) crop (the demo's predict runs in seconds on 2 cores).
DEFAULT_SCALE = 0.25
#: The z axis keeps at least this fraction of its real 184 voxels, so the largest particles fit with room.
MIN_Z_FRACTION = 0.5
#: No axis of a run is shorter than this (voxels): a ribosome (300 Å) fits with a margin.
MIN_DIM = 40
#: Mean number of particles of each class in a full-size run (the real train runs hold 9-95 per class;
#: these are denser so that a small crop still holds a few of each).
PER_FULL_RUN = {
    "apo-ferritin": 120.0,
    "beta-amylase": 60.0,
    "beta-galactosidase": 70.0,
    "ribosome": 100.0,
    "thyroglobulin": 90.0,
    "virus-like-particle": 60.0,
}
NEAR_FRACTION = 0.35  # share of particles placed touching an already placed one (a watershed's case)
NEAR_GAP_A = (0.0, 20.0)  # surface-to-surface gap of such a pair (Å)
CONTRAST = (0.8, 1.2)  # per-particle density multiplier
PLACE_TRIES = 200  # draws per particle before it is left out (only in a crowded crop)


@dataclass(frozen=True)
class Particle:
    """One placed particle: its class (index into the run's classes), centre (level-0 voxel z, y, x),
    rotation (particle frame -> z, y, x) and contrast (density multiplier)."""

    cls: int
    zyx: tuple[float, float, float]
    rotation: np.ndarray = field(compare=False, repr=False)
    contrast: float = 1.0


def run_shape(scale: float) -> tuple[int, int, int]:
    """The (z, y, x) shape of a run at ``scale`` in (0, 1]: y and x are ``round(630 * scale)``, z is
    ``round(184 * max(scale, MIN_Z_FRACTION))``, each at least :data:`MIN_DIM`; 1 gives the full tomogram."""
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not 0 < scale <= 1:
        raise InputError(None, f"scale must be in (0, 1], got {scale!r}", f"pass e.g. --scale {DEFAULT_SCALE}")
    fz = max(float(scale), MIN_Z_FRACTION)
    z, y, x = (math.floor(n * f + 0.5) for n, f in zip(FULL_SHAPE, (fz, scale, scale)))
    return max(MIN_DIM, z), max(MIN_DIM, y), max(MIN_DIM, x)


def particle_counts(rng: np.random.Generator, shape: Sequence[int], classes: Sequence[ParticleClass]) -> list[int]:
    """How many particles of each class a run of ``shape`` holds: Poisson with mean
    ``PER_FULL_RUN[name] * volume / full volume``, at least 1 (every class is in every run)."""
    frac = float(np.prod(shape)) / float(np.prod(FULL_SHAPE))
    return [max(1, int(rng.poisson(PER_FULL_RUN.get(c.name, 60.0) * frac))) for c in classes]


def _unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def place_particles(rng: np.random.Generator, shape: Sequence[int], spacing_A: float,
                    classes: Sequence[ParticleClass], counts: Sequence[int]) -> list[Particle]:
    """Place ``counts[k]`` particles of ``classes[k]``: largest classes first; each centre at least its
    radius from every face and at least ``r_i + r_j`` (Å) from every other centre. With probability
    :data:`NEAR_FRACTION` a particle is drawn touching a placed one (gap :data:`NEAR_GAP_A`), else uniformly.
    A particle that finds no room in :data:`PLACE_TRIES` draws is left out (the caller reads what was placed).
    Returned in placement order."""
    hi = np.asarray(shape, dtype=float) - 1.0
    order = sorted(range(len(classes)), key=lambda k: -classes[k].radius_A)
    centres_A = np.zeros((0, 3))
    radii_A = np.zeros(0)
    placed: list[Particle] = []
    for k in order:
        r_A = float(classes[k].radius_A)
        r_vox = r_A / spacing_A
        if (hi < 2 * r_vox).any():
            continue  # the class does not fit in this crop at all
        for _ in range(int(counts[k])):
            for _try in range(PLACE_TRIES):
                if len(placed) and rng.random() < NEAR_FRACTION:
                    j = int(rng.integers(len(placed)))
                    dist = r_A + radii_A[j] + rng.uniform(*NEAR_GAP_A)
                    c_A = centres_A[j] + dist * _unit(rng)
                else:
                    c_A = rng.uniform(r_vox, hi - r_vox) * spacing_A
                c_vox = c_A / spacing_A
                if (c_vox < r_vox).any() or (c_vox > hi - r_vox).any():
                    continue
                if len(placed) and (np.linalg.norm(centres_A - c_A, axis=1) < radii_A + r_A).any():
                    continue
                placed.append(Particle(k, tuple(float(v) for v in c_vox), random_rotation(rng),
                                       float(rng.uniform(*CONTRAST))))
                centres_A = np.vstack([centres_A, c_A])
                radii_A = np.append(radii_A, r_A)
                break
    return placed
