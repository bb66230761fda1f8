"""Local-maximum mask (the NMS step of peak decoding), and the box maximum it is made of.

Semantics (both paths): with ``heat`` cast to float32, a cell is kept iff
``heat >= float32(min_conf)`` and ``heat == max(box)``, the box being ``kernel`` cells wide on
each axis (odd; one value or one per axis) centred on the cell, cells outside the array counting
as -inf (:func:`box_max`, separable, for any array module and rank). Every cell of a plateau that
equals its box maximum is kept (no spatial tie-breaking); a NaN anywhere in the box makes the
maximum NaN, so such cells are not kept (as with a ``numpy.maximum`` filter). Note ``min_conf`` is
rounded to float32, as NumPy does when a float32 array is compared with a Python float. On the GPU
(CuPy compiles with ``-ftz=true``) a float32 subnormal compares as zero, so it ties with a zero
neighbour; NumPy keeps it apart.

CUDA (3D heatmaps): one thread per cell scans its (bounds-clipped) box and stops at the first
neighbour that is not ``<=`` the centre (``!(u <= v)`` is also true for a NaN ``u``). Equivalent to
``v == max(box)`` because the centre belongs to its box and outside cells are -inf. A CuPy heatmap
of another rank goes through :func:`box_max` on the device.
"""

from __future__ import annotations

import functools

import numpy as np

from kernels.array_module import NVRTC_OPTIONS, get_array_module, grid_1d, import_cupy


def kernel_widths(kernel, ndim: int = 3) -> tuple[int, ...]:
    """Per-axis box widths from one odd width or one per axis; ValueError otherwise."""
    ks = tuple(int(k) for k in kernel) if isinstance(kernel, (list, tuple, np.ndarray)) else (int(kernel),) * ndim
    if len(ks) != ndim or any(k < 1 or k % 2 == 0 for k in ks):
        raise ValueError(f"nms kernel must be odd and >= 1 (one value or one per axis), got {kernel}")
    return ks


def box_max(heat, kernel, xp=None):
    """Max over the ``kernel``-wide box around each cell (one odd width, or one per axis); outside
    the array counts as -inf; NaN propagates. Separable: one padded pass per axis. Any rank;
    ``xp``: the array module (by default ``heat``'s, NumPy or CuPy)."""
    xp = get_array_module(heat) if xp is None else xp
    ks = kernel_widths(kernel, heat.ndim)
    out = heat
    for axis, k in enumerate(ks):
        r = k // 2
        if r == 0 or heat.shape[axis] == 1:  # a one-cell axis: its box holds the cell and -inf
            continue
        pad = [(0, 0)] * heat.ndim
        pad[axis] = (r, r)
        p = xp.pad(out, pad, mode="constant", constant_values=-xp.inf)
        n = out.shape[axis]
        acc = None
        for s in range(k):
            part = p[(slice(None),) * axis + (slice(s, s + n),)]
            acc = part.copy() if acc is None else xp.maximum(acc, part, out=acc)
        out = acc
    return out


def _mask(h, kernel, min_conf: float):
    """The mask of a float32 ``h`` composed of array operations (any module, any rank)."""
    return (h == box_max(h, kernel)) & (h >= np.float32(min_conf))


def local_max_mask_ref(heat, kernel=3, min_conf: float = 0.0) -> np.ndarray:
    """NumPy reference (and CPU path) of :func:`local_max_mask`; bool array of ``heat``'s shape (any rank)."""
    return _mask(np.ascontiguousarray(heat, dtype=np.float32), kernel, min_conf)


def local_max_mask(heat, kernel=3, min_conf: float = 0.0):
    """Bool mask of the cells kept by max-pool NMS (see module doc); NumPy or CuPy.

    NumPy: :func:`local_max_mask_ref`. CuPy: one CUDA launch for a 3D heatmap, :func:`box_max` on the
    device for another rank.
    """
    xp = get_array_module(heat)
    if xp is np:
        return local_max_mask_ref(heat, kernel, min_conf)
    if heat.ndim != 3:
        return _mask(xp.ascontiguousarray(heat, dtype=xp.float32), kernel, min_conf)
    return _local_max_mask_cupy(heat, kernel, min_conf)


# ----------------------------------------------------------------------------------- CUDA

_SOURCE = r"""
extern "C" __global__ void local_max_mask(
        const float* __restrict__ heat, bool* __restrict__ mask,
        const int Z, const int Y, const int X, const int rz, const int ry, const int rx,
        const float min_conf) {
    const long long total = (long long)Z * Y * X;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total;
         t += (long long)blockDim.x * gridDim.x) {
        const int x = (int)(t % X), y = (int)((t / X) % Y), z = (int)(t / ((long long)X * Y));
        const float v = heat[t];
        bool keep = v >= min_conf;
        const int z1 = min(z + rz, Z - 1), y1 = min(y + ry, Y - 1), x1 = min(x + rx, X - 1);
        for (int k = max(z - rz, 0); keep && k <= z1; ++k) {
            for (int j = max(y - ry, 0); keep && j <= y1; ++j) {
                const float* row = heat + ((long long)k * Y + j) * X;
                for (int i = max(x - rx, 0); i <= x1; ++i) {
                    if (!(row[i] <= v)) { keep = false; break; }
                }
            }
        }
        mask[t] = keep;
    }
}
"""


@functools.lru_cache(maxsize=1)
def _kernel():
    cp = import_cupy()
    return cp.RawKernel(_SOURCE, "local_max_mask", options=NVRTC_OPTIONS)


def _local_max_mask_cupy(heat, kernel, min_conf):
    cp = import_cupy()
    h = cp.ascontiguousarray(heat, dtype=cp.float32)  # 3D: local_max_mask sends other ranks to box_max
    rz, ry, rx = (k // 2 for k in kernel_widths(kernel, 3))
    mask = cp.empty(h.shape, dtype=cp.bool_)
    if h.size == 0:
        return mask
    if max(h.shape) >= 2**31:
        raise ValueError("local_max_mask kernel: axis beyond int32 indexing")
    grid, block = grid_1d(h.size)
    _kernel()(grid, block, (h, mask, *(np.int32(n) for n in h.shape),
                            np.int32(rz), np.int32(ry), np.int32(rx), np.float32(min_conf)))
    return mask
