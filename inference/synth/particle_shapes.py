"""The shapes of the six CZII particles: unions of soft ellipsoids (some hollow), scaled to each class's radius.

A shape is a tuple of :class:`Part` in the particle's own frame, in units of the class radius: an
ellipsoid (centre ``c``, semi-axes ``a`` along the frame's axes) with an optional hollow core (the
ellipsoid scaled by ``hollow`` is empty). Each class's raw geometry (:data:`_RAW`) is drawn after
the complex it stands for and then scaled so that its outer radius (the largest distance of a
surface point from the particle's centre, :func:`outer_radius`) is exactly 1, so a rendered particle
reaches exactly ``radius_A`` from its pick:

* apo-ferritin: a hollow sphere, the 24-mer cage (outer 120 Å, cavity 80 Å across);
* beta-amylase: a compact tetramer, four lobes at the corners of a tetrahedron around a core;
* beta-galactosidase: a box-like D2 tetramer, four flattened lobes in a 2 x 2 block;
* ribosome: two lobes, a large subunit and a flatter small subunit beside it, with a cleft;
* thyroglobulin: an elongated dimer, two long lobes side by side;
* virus-like-particle: a thick hollow shell with twelve capsomer bumps at the vertices of an
  icosahedron.

:func:`particle_density` evaluates a shape on a grid of offsets (Å) for a rotation; densities are
positive inside (0..1, edges soft over ~:data:`EDGE_A`); the renderer (:mod:`inference.synth.particle_render`)
turns them dark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from inference.synth.render import logistic

#: Soft edge of every part (Å): the density falls from 0.73 to 0.27 over 2 x EDGE_A across a surface.
EDGE_A = 3.0


@dataclass(frozen=True)
class Part:
    """A soft ellipsoid of a shape, in units of the class radius: centre ``c`` and semi-axes ``a``
    (u, v, w of the particle frame); ``hollow`` > 0 empties the same ellipsoid scaled by it."""

    c: tuple[float, float, float]
    a: tuple[float, float, float]
    hollow: float = 0.0


def _icosahedron() -> np.ndarray:
    """The 12 unit vertices of an icosahedron."""
    g = (1.0 + math.sqrt(5.0)) / 2.0
    v = []
    for s1 in (-1.0, 1.0):
        for s2 in (-1.0, 1.0):
            v += [(0.0, s1, s2 * g), (s1, s2 * g, 0.0), (s2 * g, 0.0, s1)]
    v = np.asarray(v)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _tetrahedron() -> np.ndarray:
    v = np.array([(1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1)], dtype=float)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _raw_shapes() -> dict[str, tuple[Part, ...]]:
    """Each class's geometry before scaling (units roughly of the radius)."""
    t = _tetrahedron()
    lobes = tuple(Part(tuple(0.5 * p), (0.42, 0.42, 0.42)) for p in t)
    box = tuple(Part((0.0, sv * 0.25, sw * 0.33), (0.4, 0.36, 0.46)) for sv in (-1, 1) for sw in (-1, 1))
    caps = tuple(Part(tuple(0.84 * p), (0.17, 0.17, 0.17)) for p in _icosahedron())
    return {
        "apo-ferritin": (Part((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), hollow=2.0 / 3.0),),
        "beta-amylase": (Part((0.0, 0.0, 0.0), (0.45, 0.45, 0.45)),) + lobes,
        "beta-galactosidase": box,
        "ribosome": (Part((0.0, 0.0, 0.22), (0.72, 0.72, 0.66)), Part((0.0, 0.08, -0.5), (0.6, 0.48, 0.3))),
        "thyroglobulin": (Part((0.0, 0.32, 0.05), (0.36, 0.34, 0.85)), Part((0.05, -0.32, -0.05), (0.36, 0.34, 0.85))),
        "virus-like-particle": (Part((0.0, 0.0, 0.0), (0.88, 0.88, 0.88), hollow=0.7),) + caps,
    }


def _unit_sphere(n: int = 4000) -> np.ndarray:
    """``n`` nearly uniform unit vectors (Fibonacci sphere)."""
    k = np.arange(n) + 0.5
    phi = np.arccos(1.0 - 2.0 * k / n)
    theta = math.pi * (1.0 + math.sqrt(5.0)) * k
    return np.stack([np.cos(phi), np.sin(phi) * np.sin(theta), np.sin(phi) * np.cos(theta)], axis=1)


def outer_radius(parts: tuple[Part, ...]) -> float:
    """The largest distance from the origin of a point on any part's surface (the shape's radius).

    For an ellipsoid ``c + diag(a) u`` (``u`` a unit vector) the distance ``|c + diag(a) u|`` is
    maximised over a dense set of ``u`` and then refined by a few steps of projected gradient ascent.
    """
    u0 = _unit_sphere()
    best = 0.0
    for p in parts:
        c, a = np.asarray(p.c), np.asarray(p.a)
        u = u0.copy()
        for _ in range(50):  # ascent on the sphere: d|c + a u|^2/du = 2 a (c + a u)
            g = a * (c + a * u)
            u = u + 0.5 * g
            u /= np.linalg.norm(u, axis=1, keepdims=True)
        best = max(best, float(np.linalg.norm(c + a * u, axis=1).max()))
    return best


def _scaled(parts: tuple[Part, ...], factor: float) -> tuple[Part, ...]:
    return tuple(Part(tuple(factor * v for v in p.c), tuple(factor * v for v in p.a), p.hollow) for p in parts)


@cache
def class_shape(name: str) -> tuple[Part, ...]:
    """The shape of class ``name`` in units of its radius (outer radius exactly 1); computed once per name."""
    raw = _raw_shapes()
    if name not in raw:
        raise KeyError(f"no shape for particle class {name!r} (known: {', '.join(raw)})")
    parts = raw[name]
    return _scaled(parts, 1.0 / outer_radius(parts))


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3 x 3 rotation matrix (from a random unit quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _soft_inside(q: np.ndarray, scale_A: float) -> np.ndarray:
    """Logistic inside-ness from the ellipsoidal radius ``q`` (1 on the surface), edge ~EDGE_A."""
    return logistic((1.0 - q) * scale_A / EDGE_A)


def particle_density(parts: tuple[Part, ...], radius_A: float, rotation: np.ndarray, dz: np.ndarray,
                     dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Density 0..1 of a shape of radius ``radius_A`` on the grid of offsets ``dz, dy, dx`` (Å, 1D each).

    ``rotation`` maps the particle frame to z, y, x: a grid point at offset ``o`` lies at
    ``rotation.T @ o`` in the frame. Parts are combined by their maximum (a union).
    """
    off = np.stack(np.meshgrid(dz, dy, dx, indexing="ij"), axis=-1).astype(np.float64)
    local = off @ np.asarray(rotation, dtype=np.float64) / radius_A  # row vectors: o @ R == (R.T o).T
    out = np.zeros(off.shape[:3])
    for p in parts:
        a = np.asarray(p.a)
        q = np.linalg.norm((local - np.asarray(p.c)) / a, axis=-1)
        dens = _soft_inside(q, radius_A * float(a.max()))
        if p.hollow > 0:
            dens = dens * (1.0 - _soft_inside(q / p.hollow, radius_A * float(a.max()) * p.hollow))
        np.maximum(out, dens, out=out)
    return out.astype(np.float32)
