"""Host memory for volumes: an allocation that fails says how much it wanted and what to do."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from inference.common.errors import InputError


def allocate(shape: tuple[int, ...], dtype: np.dtype, path: Path) -> np.ndarray:
    try:
        return np.empty(shape, dtype=dtype)
    except MemoryError:
        gib = math.prod(shape) * np.dtype(dtype).itemsize / 2**30
        raise InputError(path, f"not enough memory for a {shape} {np.dtype(dtype)} volume ({gib:.1f} GiB)",
                         "free memory or process this tomogram on a larger machine") from None


def as_float32(data: np.ndarray, path: Path) -> np.ndarray:
    try:
        return data.astype(np.float32, copy=False)
    except MemoryError:
        gib = data.size * 4 / 2**30
        raise InputError(path, f"not enough memory to convert the {tuple(data.shape)} volume to float32 "
                         f"({gib:.1f} GiB)", "free memory or process this tomogram on a larger machine") from None
