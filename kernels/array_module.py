"""CuPy plumbing shared by the kernels: availability, array-module dispatch, launch geometry.

Nothing here imports CuPy at module import time; :func:`cupy_available` and :func:`import_cupy`
import it on first use. :func:`get_array_module` never imports CuPy: an object can only be a CuPy
array if CuPy is already in ``sys.modules``.
"""

from __future__ import annotations

import functools
import sys

import numpy as np

BLOCK = 256  # threads per block of every 1-D launch here
_MAX_GRID = 2**31 - 1  # gridDim.x limit; the kernels loop (grid-stride) past it


@functools.lru_cache(maxsize=1)
def cupy_available() -> bool:
    """True only if CuPy imports AND the CUDA runtime reports at least one device.

    Cached for the process (a device does not come and go). Without a driver or a GPU CuPy still
    imports, but ``getDeviceCount`` raises ``CUDARuntimeError``; that is caught and means False.
    """
    try:
        import cupy
    except ImportError:
        return False
    try:
        return cupy.cuda.runtime.getDeviceCount() > 0
    except (cupy.cuda.runtime.CUDARuntimeError, cupy.cuda.driver.CUDADriverError):
        return False


def import_cupy():
    """The ``cupy`` module (imported now if need be); ImportError with a hint if absent."""
    try:
        import cupy
    except ImportError as exc:
        raise ImportError("this kernel needs CuPy (pip install 'motorfinder[gpu]')") from exc
    return cupy


def get_array_module(x):
    """``cupy`` if ``x`` is a CuPy array, else ``numpy``. Never imports CuPy."""
    if isinstance(x, np.ndarray):
        return np
    cp = sys.modules.get("cupy")
    if cp is not None and isinstance(x, cp.ndarray):
        return cp
    return np


def is_cupy(x) -> bool:
    return get_array_module(x) is not np


def to_numpy(x) -> np.ndarray:
    """A NumPy array from a NumPy/CuPy array or a sequence (CuPy arrays are copied to the host)."""
    if is_cupy(x):
        return x.get()
    return np.asarray(x)


def grid_1d(n: int, block: int = BLOCK) -> tuple[tuple[int], tuple[int]]:
    """``(grid, block)`` for ``n`` threads with a grid-stride loop in the kernel."""
    blocks = max(1, min((int(n) + block - 1) // block, _MAX_GRID))
    return (blocks,), (block,)


# CUDA scalar type names of the dtypes the kernels are generated for.
CTYPES = {
    np.dtype(np.uint8): "unsigned char",
    np.dtype(np.int8): "signed char",
    np.dtype(np.uint16): "unsigned short",
    np.dtype(np.int16): "short",
    np.dtype(np.float32): "float",
    np.dtype(np.float64): "double",
}

# Compile options of every kernel: no contraction of a*b+c into one FMA, so the kernels round
# exactly like NumPy's separate multiply and add (the code also uses the _rn intrinsics).
# CuPy itself always adds -ftz=true (a second -ftz is a compile error): float32 subnormal inputs
# and results -- comparisons included -- are flushed to zero on the GPU, where NumPy keeps them.
# So "bit-identical to the NumPy reference" below always means: for values that are not float32
# subnormals (|x| < 1.18e-38). tests/kernels/test_kernels_emulated.py runs the kernels with these semantics.
NVRTC_OPTIONS = ("--fmad=false",)
