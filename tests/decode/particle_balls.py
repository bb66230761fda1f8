"""Test maps for the particle decoders: balls and cones of known centre and radius (in cells or Å)."""

from __future__ import annotations

import numpy as np


def distance(shape, centre, cell=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Distance (in the unit of ``cell``) of every cell centre from ``centre`` (cells)."""
    zz, yy, xx = np.indices(shape, dtype=np.float64)
    c = np.asarray(centre, np.float64)
    s = np.asarray(cell, np.float64)
    return np.sqrt(((zz - c[0]) * s[0]) ** 2 + ((yy - c[1]) * s[1]) ** 2 + ((xx - c[2]) * s[2]) ** 2)


def cone(shape, centre, radius, cell=(1.0, 1.0, 1.0), peak=1.0) -> np.ndarray:
    """``peak * (1 - d / (2 radius))`` inside the ball of ``radius``, 0 outside (float32): one maximum."""
    d = distance(shape, centre, cell)
    return np.where(d <= radius, peak * (1.0 - d / (2.0 * radius)), 0.0).astype(np.float32)


def ball(shape, centre, radius, cell=(1.0, 1.0, 1.0), value=1.0) -> np.ndarray:
    """``value`` inside the ball of ``radius`` (cell centres at distance <= radius), 0 outside (float32)."""
    return np.where(distance(shape, centre, cell) <= radius, value, 0.0).astype(np.float32)
