"""Stitching: add (or max) a batch of window outputs into the heatmap accumulator, in place.

Semantics (both paths): windows ``n = 0 .. N-1`` are applied one after the other; window ``n``
covers cells ``starts[n] + [0, (d, h, w))`` (cell units) and

* ``mode='mean'``: ``acc[region] += acc.dtype(weight) * float32(outputs[n])`` and
  ``count[region] += count.dtype(weight)`` (arithmetic in the accumulator's own dtype);
* ``mode='max'``: ``acc[region] = maximum(acc[region], outputs[n])`` (NaN propagates, as
  ``numpy.maximum``); ``count`` is not touched (may be None).

Windows of one batch may overlap each other and must lie inside ``acc``.

CUDA, ``method='gather'`` (default): one thread per heatmap cell of the batch's bounding box
walks the N windows in order and adds/maxes the ones covering it, then writes the cell once. No
atomics, deterministic, and the same float operations in the same order per cell as the
sequential reference, so it is bit-identical to it for mean (float32 or float64) and max alike
(float32 subnormals aside: CuPy compiles with ``-ftz=true``, see ``kernels.array_module.NVRTC_OPTIONS``).
Cost: ``cells_in_bbox * N`` cheap index tests (55k cells x 64 windows = 3.6M for a 16x60x58
heatmap), next to ``N * d*h*w`` useful reads.

CUDA, ``method='atomic'``: one thread per window output voxel; mean uses ``atomicAdd`` (double
needs sm_60+), max a compare-and-swap loop on the value's bits. Work is ``N*d*h*w`` but the
order of additions is arbitrary: mean equals the reference up to floating-point reassociation
(exact for float64 sums of float32 values of similar magnitude, a few ulp for float32); max is
exact except for which NaN / signed zero wins. Kept for the benchmark.
"""

from __future__ import annotations

import functools

import numpy as np

from kernels.array_module import CTYPES, NVRTC_OPTIONS, get_array_module, grid_1d, import_cupy, to_numpy

MODES = ("mean", "max")
METHODS = ("gather", "atomic")
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _validate(acc, count, outputs, starts, mode):
    """Shared checks; returns ``(outputs_shape_dhw, starts as (N, 3) int64 NumPy)``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if acc.ndim != 3 or acc.dtype not in _FLOATS:
        raise ValueError(f"acc must be a 3D float32/float64 array, got {acc.dtype} {tuple(acc.shape)}")
    if mode == "mean":
        if count is None:
            raise ValueError("mode='mean' needs a count array")
        if tuple(count.shape) != tuple(acc.shape) or count.dtype not in _FLOATS:
            raise ValueError(f"count must be float32/float64 of shape {tuple(acc.shape)}, "
                             f"got {count.dtype} {tuple(count.shape)}")
    shape = tuple(outputs.shape)
    if len(shape) == 5 and shape[1] == 1:
        shape = shape[:1] + shape[2:]
    if len(shape) != 4:
        raise ValueError(f"outputs must be (N, d, h, w) or (N, 1, d, h, w), got {tuple(outputs.shape)}")
    st = to_numpy(starts)
    if st.size == 0:
        st = st.reshape(0, 3)
    if st.ndim != 2 or st.shape[1] != 3 or st.shape[0] != shape[0]:
        raise ValueError(f"starts must be ({shape[0]}, 3), got {st.shape}")
    if st.dtype.kind not in "iu":
        if not np.array_equal(st, np.round(st)):
            raise ValueError("starts must be integers (cell units)")
    st = st.astype(np.int64)
    dhw = np.asarray(shape[1:], dtype=np.int64)
    if len(st) and ((st < 0).any() or (st + dhw > np.asarray(acc.shape)).any()):
        bad = int(np.nonzero((st < 0).any(1) | (st + dhw > np.asarray(acc.shape)).any(1))[0][0])
        raise ValueError(f"window {bad} at {st[bad].tolist()} of {shape[1:]} cells leaves the "
                         f"accumulator {tuple(acc.shape)}")
    return shape[1:], st


def accumulate_ref(acc, count, outputs, starts, weight: float = 1.0, mode: str = "mean") -> None:
    """NumPy reference (and CPU path) of :func:`accumulate`; modifies ``acc`` (and ``count``)."""
    dhw, st = _validate(acc, count, outputs, starts, mode)
    out = to_numpy(outputs).astype(np.float32, copy=False).reshape((len(st),) + dhw)
    w_acc = acc.dtype.type(weight)
    w_cnt = count.dtype.type(weight) if count is not None else None
    for n, (z, y, x) in enumerate(st):
        region = (slice(z, z + dhw[0]), slice(y, y + dhw[1]), slice(x, x + dhw[2]))
        if mode == "mean":
            acc[region] += w_acc * out[n].astype(acc.dtype, copy=False)
            count[region] += w_cnt
        else:
            view = acc[region]
            np.maximum(view, out[n], out=view)


def accumulate(acc, count, outputs, starts, weight: float = 1.0, mode: str = "mean", *,
               method: str = "gather") -> None:
    """Stitch a batch of window outputs into ``acc`` (and ``count``) in place; see the module doc.

    ``acc``: (Z, Y, X) float32/float64; ``count``: same shape, float32/float64 (mean; None allowed
    for max); ``outputs``: (N, d, h, w) or (N, 1, d, h, w), cast to float32; ``starts``: (N, 3)
    integer cell offsets (NumPy, CuPy or a sequence). Dispatches on ``acc``'s array module; on
    CuPy ``acc``/``count`` must be C-contiguous and ``method`` picks the kernel.
    """
    if get_array_module(acc) is np:
        accumulate_ref(acc, count, outputs, starts, weight, mode)
    else:
        _accumulate_cupy(acc, count, outputs, starts, weight, mode, method)


# ----------------------------------------------------------------------------------- CUDA

_COMMON = r"""
typedef {acc_t} acc_t;
typedef {cnt_t} cnt_t;
#define MEAN {mean}

__device__ __forceinline__ float add_rn(float a, float b) {{ return __fadd_rn(a, b); }}
__device__ __forceinline__ double add_rn(double a, double b) {{ return __dadd_rn(a, b); }}
__device__ __forceinline__ float mul_rn(float a, float b) {{ return __fmul_rn(a, b); }}
__device__ __forceinline__ double mul_rn(double a, double b) {{ return __dmul_rn(a, b); }}
// numpy.maximum's rule: keep a if a >= b or a is NaN, else b (so a NaN on either side wins).
template <typename T> __device__ __forceinline__ T np_max(T a, T b) {{
    return (a >= b || isnan(a)) ? a : b;
}}
"""

_GATHER = r"""
extern "C" __global__ void {name}(
        acc_t* __restrict__ acc, cnt_t* __restrict__ cnt, const float* __restrict__ out,
        const int* __restrict__ starts, const int N, const int d, const int h, const int w,
        const int Y, const int X, const int z0, const int y0, const int x0,
        const int bz, const int by, const int bx, const acc_t wa, const cnt_t wc) {{
    const long long total = (long long)bz * by * bx;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total;
         t += (long long)blockDim.x * gridDim.x) {{
        const int x = x0 + (int)(t % bx);
        const int y = y0 + (int)((t / bx) % by);
        const int z = z0 + (int)(t / ((long long)bx * by));
        const long long cell = ((long long)z * Y + y) * X + x;
        acc_t a = acc[cell];
#if MEAN
        cnt_t c = cnt[cell];
#endif
        bool hit = false;
        for (int n = 0; n < N; ++n) {{
            const int lz = z - starts[3 * n], ly = y - starts[3 * n + 1], lx = x - starts[3 * n + 2];
            if ((unsigned)lz < (unsigned)d && (unsigned)ly < (unsigned)h && (unsigned)lx < (unsigned)w) {{
                const acc_t o = (acc_t)out[(((long long)n * d + lz) * h + ly) * w + lx];
#if MEAN
                a = add_rn(a, mul_rn(wa, o));
                c = add_rn(c, wc);
#else
                a = np_max(a, o);
#endif
                hit = true;
            }}
        }}
        if (hit) {{
            acc[cell] = a;
#if MEAN
            cnt[cell] = c;
#endif
        }}
    }}
}}
"""

_ATOMIC = r"""
__device__ __forceinline__ void atomic_np_max(float* p, float v) {{
    unsigned int* u = (unsigned int*)p;
    unsigned int old = *u;
    while (true) {{
        const unsigned int want = __float_as_uint(np_max(__uint_as_float(old), v));
        if (want == old) return;
        const unsigned int seen = atomicCAS(u, old, want);
        if (seen == old) return;
        old = seen;
    }}
}}
__device__ __forceinline__ void atomic_np_max(double* p, double v) {{
    unsigned long long* u = (unsigned long long*)p;
    unsigned long long old = *u;
    while (true) {{
        const unsigned long long want =
            (unsigned long long)__double_as_longlong(np_max(__longlong_as_double((long long)old), v));
        if (want == old) return;
        const unsigned long long seen = atomicCAS(u, old, want);
        if (seen == old) return;
        old = seen;
    }}
}}

extern "C" __global__ void {name}(
        acc_t* __restrict__ acc, cnt_t* __restrict__ cnt, const float* __restrict__ out,
        const int* __restrict__ starts, const int N, const int d, const int h, const int w,
        const int Y, const int X, const acc_t wa, const cnt_t wc) {{
    const long long per = (long long)d * h * w;
    const long long total = per * N;
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < total;
         t += (long long)blockDim.x * gridDim.x) {{
        const int n = (int)(t / per);
        const long long r = t % per;
        const int lx = (int)(r % w), ly = (int)((r / w) % h), lz = (int)(r / ((long long)w * h));
        const long long cell = ((long long)(starts[3 * n] + lz) * Y + starts[3 * n + 1] + ly) * X
                               + starts[3 * n + 2] + lx;
        const acc_t o = (acc_t)out[t];
#if MEAN
        atomicAdd(acc + cell, mul_rn(wa, o));
        atomicAdd(cnt + cell, wc);
#else
        atomic_np_max(acc + cell, o);
#endif
    }}
}}
"""


@functools.lru_cache(maxsize=None)
def _kernel(method: str, mode: str, acc_dtype: np.dtype, cnt_dtype: np.dtype):
    cp = import_cupy()
    name = f"accumulate_{method}_{mode}_{acc_dtype.name}_{cnt_dtype.name}"
    fmt = dict(name=name, acc_t=CTYPES[acc_dtype], cnt_t=CTYPES[cnt_dtype], mean=int(mode == "mean"))
    body = _GATHER if method == "gather" else _ATOMIC
    return cp.RawKernel(_COMMON.format(**fmt) + body.format(**fmt), name, options=NVRTC_OPTIONS)


def _accumulate_cupy(acc, count, outputs, starts, weight, mode, method):
    cp = import_cupy()
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    dhw, st = _validate(acc, count, outputs, starts, mode)
    if not acc.flags.c_contiguous or (mode == "mean" and not count.flags.c_contiguous):
        raise ValueError("acc and count must be C-contiguous (they are updated in place)")
    if max(acc.size, len(st) * int(np.prod(dhw))) >= 2**31:
        raise ValueError("accumulate kernel: sizes beyond int32 indexing")
    n = len(st)
    if n == 0 or 0 in dhw:
        return
    out = cp.ascontiguousarray(cp.asarray(outputs), dtype=cp.float32).reshape((n,) + dhw)
    st_dev = cp.asarray(st.astype(np.int32))
    if mode == "mean":
        cnt, cnt_dtype = count, count.dtype
    else:  # the kernel never touches cnt in max mode; pass acc as a harmless pointer
        cnt, cnt_dtype = acc, acc.dtype
    wa, wc = acc.dtype.type(weight), cnt_dtype.type(weight)
    kernel = _kernel(method, mode, acc.dtype, cnt_dtype)
    d, h, w = (np.int32(v) for v in dhw)
    Y, X = np.int32(acc.shape[1]), np.int32(acc.shape[2])
    if method == "gather":
        lo = st.min(axis=0)
        size = st.max(axis=0) + np.asarray(dhw) - lo
        grid, block = grid_1d(int(np.prod(size)))
        kernel(grid, block, (acc, cnt, out, st_dev, np.int32(n), d, h, w, Y, X,
                             *(np.int32(v) for v in lo), *(np.int32(v) for v in size), wa, wc))
    else:
        grid, block = grid_1d(n * int(np.prod(dhw)))
        kernel(grid, block, (acc, cnt, out, st_dev, np.int32(n), d, h, w, Y, X, wa, wc))
