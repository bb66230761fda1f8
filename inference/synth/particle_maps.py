"""Synthetic class-probability stacks for the particle decoders (tests, benchmarks): Gaussian blobs of
each class's radius on a faint noise floor, channel 0 the background.

A blob of radius ``r`` Å is ``amplitude * exp(-d^2 / (2 sigma^2))`` with ``sigma = r / 2`` (d: distance
in Å from its centre), so it falls to ``amplitude * e^-2`` (0.14 of its peak) at the radius; classes are
combined by maximum, then every cell's class probabilities are scaled to sum at most 1 and the
background gets the rest (a softmax output's shape: most of a map is background).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def blob_stack(shape: Sequence[int], radii_A: Sequence[float], n_per_class: int, cell_A: Sequence[float], *,
               seed: int = 0, amplitude: tuple[float, float] = (0.6, 1.0), noise: float = 0.05,
               ) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(probs (1 + C, D, H, W) float32, centres)``: ``centres[c]`` (n, 3) float64 are class ``c``'s blob
    centres in cells (z, y, x; uniform in the map, anywhere between cell centres)."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    cell = np.asarray(cell_A, np.float64)
    probs = np.zeros((1 + len(radii_A),) + shape, np.float32)
    centres = []
    for c, radius in enumerate(radii_A):
        sigma_cells = float(radius) / 2.0 / cell
        reach = np.ceil(3.0 * sigma_cells).astype(int)
        pts = rng.uniform(0, np.asarray(shape) - 1, size=(n_per_class, 3))
        amps = rng.uniform(*amplitude, size=n_per_class)
        layer = probs[1 + c]
        for p, a in zip(pts, amps):
            lo = np.maximum(np.floor(p).astype(int) - reach, 0)
            hi = np.minimum(np.ceil(p).astype(int) + reach + 1, shape)
            axes = [(np.arange(lo[k], hi[k]) - p[k]) / sigma_cells[k] for k in range(3)]
            g = np.exp(-0.5 * (axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2
                               + axes[2][None, None, :] ** 2))
            box = tuple(slice(lo[k], hi[k]) for k in range(3))
            np.maximum(layer[box], (a * g).astype(np.float32), out=layer[box])
        centres.append(pts)
    if noise > 0:
        probs[1:] += rng.uniform(0.0, noise, size=probs[1:].shape).astype(np.float32)
    total = probs[1:].sum(axis=0)
    np.divide(probs[1:], np.maximum(total, 1.0), out=probs[1:])
    probs[0] = np.clip(1.0 - probs[1:].sum(axis=0), 0.0, 1.0)
    return probs, centres
