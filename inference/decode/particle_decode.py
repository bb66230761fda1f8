"""Decode every class of a probability stack into picks in Å: the particle task's entry point.

    targets = class_targets(CZII_CLASSES, channels=range(1, 7), method="watershed")
    picks = decode_particles(probs, targets, cell_A=(20.024,) * 3)      # {name: (zyx_A (K, 3), conf (K,))}

``probs`` (C, D, H, W) float32 on ``xp`` (NumPy, or CuPy for ``--device cuda``); each target reads its
channel and decodes it with its :class:`~inference.decode.particle_params.DecodeParams` (``peaks``,
``components`` or ``watershed``). Cell ``c`` on axis ``a`` has its centre at ``origin_A[a] + c *
cell_A[a]`` Å (a stride-2 map of a tomogram at 10.012 Å: ``cell_A`` 20.024 per axis and ``origin_A``
where the first cell's centre lies). The result is on the host: per class name, ``zyx_A`` (K, 3) float64
(z, y, x in Å) and ``conf`` (K,) float64, best first. On the GPU only small arrays leave the device on
the way: the peak candidates, the per-component sums, and the crops of the components the watershed
splits (cuCIM has no watershed).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from inference.decode.particle_components import decode_components
from inference.decode.particle_params import ClassTarget, DecodeParams, check_cell_A
from inference.decode.particle_peaks import decode_peaks
from inference.decode.particle_watershed import decode_watershed

DECODERS = {"peaks": decode_peaks, "components": decode_components, "watershed": decode_watershed}


def decode_class(prob, params: DecodeParams, cell_A: Sequence[float], xp=np) -> tuple[np.ndarray, np.ndarray]:
    """One class map (D, H, W) -> ``(cells (K, 3) float64, conf (K,) float64)`` by ``params.method``."""
    if prob.ndim != 3:
        raise ValueError(f"a class map must be 3D (D, H, W), got shape {tuple(prob.shape)}")
    return DECODERS[params.method](prob, params, check_cell_A(cell_A), xp=xp)


def decode_particles(probs, targets: Sequence[ClassTarget], cell_A: Sequence[float],
                     origin_A: Sequence[float] = (0.0, 0.0, 0.0), xp=np) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every target's picks: ``{name: (zyx_A (K, 3) float64, conf (K,) float64)}`` (see the module docstring)."""
    if probs.ndim != 4:
        raise ValueError(f"probs must be (C, D, H, W), got shape {tuple(probs.shape)}")
    cell = np.asarray(check_cell_A(cell_A), np.float64)
    origin = np.asarray(origin_A, np.float64).reshape(-1)
    if origin.shape != (3,) or not np.all(np.isfinite(origin)):
        raise ValueError(f"origin_A must be 3 finite values in Å (z, y, x), got {tuple(origin_A)}")
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise ValueError(f"class names repeat: {names}")
    out = {}
    for t in targets:
        if not 0 <= t.channel < probs.shape[0]:
            raise ValueError(f"class {t.name}: channel {t.channel} is not in the stack's {probs.shape[0]} channels")
        coords, conf = decode_class(probs[t.channel], t.params, cell, xp=xp)
        out[t.name] = (origin + coords * cell, conf)
    return out
