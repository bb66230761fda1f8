"""CUDA kernels run on the CPU: their real source, compiled as C++ by g++, launched block by block.

The kernels of ``kernels/`` are tested on every CI run without a GPU (tests marked ``emulated``).
The CUDA source strings the kernel factories generate are compiled unchanged after a small header
(:data:`HEADER`) supplying what they use of CUDA: ``threadIdx``/``blockIdx``/``blockDim``/``gridDim``,
``__global__``/``__device__``/``__forceinline__``, the ``_rn`` intrinsics, bit casts, ``min``/``max``,
``isnan``, the C math functions (``fminf``, ``truncf``, ...) and the atomics. A launch runs every block of the grid (or the blocks asked for), each
thread in turn. That is exact for kernels whose threads do not communicate; the header defines no
``__syncthreads``, ``__shared__`` or warp intrinsics, so a kernel using them fails to compile here
rather than being emulated wrongly. Atomics are trivially atomic (one thread at a time).

Semantics: CuPy compiles every kernel with ``-ftz=true`` (float32 subnormal inputs and results --
comparisons included -- flushed to sign-preserving zero) and ours add ``--fmad=false``. The
emulation runs with the CPU's flush-to-zero and denormals-are-zero modes (MXCSR FTZ|DAZ on x86-64,
FPCR.FZ on aarch64) and ``-ffp-contract=off``: the same float32 results. The one difference: those
CPU modes also flush float64 subnormals (below 2.2e-308), which CUDA keeps.

Every launch checks its arguments against the kernel's C signature, parsed from the source: a
C-contiguous device array of the pointee's dtype for each pointer, a NumPy scalar of exactly the
parameter's type for each scalar (CuPy passes a Python int as a 64-bit ``long long``: a silent bug
for an ``int`` parameter), the grid and block within CUDA's limits.

:func:`fake_cupy` builds a stand-in ``cupy`` module (device arrays in host memory, ``RawKernel``
emulated), so the kernels' real host code -- argument preparation, launch geometry -- runs as well.
Compiled libraries are cached by content in ``$MOTORFINDER_EMU_CACHE`` (default: a folder in the
temp dir).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import mmap
import os
import re
import shutil
import signal
import subprocess
import tempfile
import types
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

HEADER = r"""
#include <cstdint>
#include <cstring>
#include <math.h>  // fminf, fmaxf, truncf, ... as CUDA's device math functions
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

struct uint3 { unsigned int x, y, z; };
struct dim3 { unsigned int x, y, z; };
static uint3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define isnan(v) __builtin_isnan(v)

static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dsub_rn(double a, double b) { return a - b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __ddiv_rn(double a, double b) { return a / b; }
static inline unsigned int __float_as_uint(float v) { unsigned int u; std::memcpy(&u, &v, 4); return u; }
static inline float __uint_as_float(unsigned int u) { float v; std::memcpy(&v, &u, 4); return v; }
static inline long long __double_as_longlong(double v) { long long u; std::memcpy(&u, &v, 8); return u; }
static inline double __longlong_as_double(long long u) { double v; std::memcpy(&v, &u, 8); return v; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }

// one thread runs at a time: every read-modify-write is atomic
static inline unsigned int atomicCAS(unsigned int* p, unsigned int cmp, unsigned int v) {
    unsigned int old = *p; if (old == cmp) *p = v; return old; }
static inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long cmp, unsigned long long v) {
    unsigned long long old = *p; if (old == cmp) *p = v; return old; }
static inline float atomicAdd(float* p, float v) { float old = *p; *p = old + v; return old; }
static inline double atomicAdd(double* p, double v) { double old = *p; *p = old + v; return old; }

namespace emu {
// CuPy's -ftz=true: float32 subnormal inputs and results are zero
struct FlushToZero {
#if defined(__x86_64__) || defined(__i386__)
    unsigned int saved;
    FlushToZero() : saved(_mm_getcsr()) { _mm_setcsr(saved | 0x8040u); }  // FTZ | DAZ
    ~FlushToZero() { _mm_setcsr(saved); }
#elif defined(__aarch64__)
    unsigned long long saved;
    FlushToZero() { asm volatile("mrs %0, fpcr" : "=r"(saved)); unsigned long long f = saved | (1ull << 24);
                    asm volatile("msr fpcr, %0" :: "r"(f)); }
    ~FlushToZero() { asm volatile("msr fpcr, %0" :: "r"(saved)); }
#else
#error "no flush-to-zero emulation for this CPU"
#endif
};

template <class Kernel>
void run(const unsigned* g, const unsigned* b, const unsigned long long* blocks, long long n, Kernel kernel) {
    FlushToZero ftz;
    gridDim = {g[0], g[1], g[2]};
    blockDim = {b[0], b[1], b[2]};
    const unsigned long long plane = (unsigned long long)g[0] * g[1];
    const long long count = blocks ? n : (long long)(plane * g[2]);
    for (long long i = 0; i < count; ++i) {
        const unsigned long long lin = blocks ? blocks[i] : (unsigned long long)i;
        blockIdx = {(unsigned)(lin % g[0]), (unsigned)((lin / g[0]) % g[1]), (unsigned)(lin / plane)};
        for (unsigned z = 0; z < b[2]; ++z)
            for (unsigned y = 0; y < b[1]; ++y)
                for (unsigned x = 0; x < b[0]; ++x) {
                    threadIdx = {x, y, z};
                    kernel();
                }
    }
}
}  // namespace emu
"""

CXXFLAGS = ("-std=c++17", "-O2", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math", "-w")
CTYPE_DTYPES = {
    "float": np.float32, "double": np.float64, "bool": np.bool_, "char": np.int8, "signed char": np.int8,
    "unsigned char": np.uint8, "short": np.int16, "unsigned short": np.uint16, "int": np.int32,
    "unsigned": np.uint32, "unsigned int": np.uint32, "long long": np.int64, "long long int": np.int64,
    "unsigned long long": np.uint64,
}
GRID_LIMITS = (2**31 - 1, 65535, 65535)
BLOCK_LIMITS = (1024, 1024, 64)
BIG = 64 << 20  # device allocations from this size on are lazy, shared memory maps (only touched pages cost)
_MAP_NORESERVE = 0x4000  # Linux: no swap reservation for a lazily used map


def compiler() -> str | None:
    """The C++ compiler (``$CXX``, else g++, else c++), or None."""
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@dataclass(frozen=True)
class Param:
    name: str
    ctype: str       # as written in the source (a typedef name, e.g. src_t)
    dtype: np.dtype  # what it resolves to
    pointer: bool
    const: bool


def parse_signature(code: str, name: str) -> list[Param]:
    """The parameters of ``extern "C" __global__ void name(...)`` in ``code``, typedefs resolved."""
    sigs = {m.group(1): m.group(2) for m in re.finditer(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)', code)}
    if name not in sigs:
        raise ValueError(f"no extern \"C\" __global__ kernel {name!r} in the source (found {sorted(sigs)})")
    typedefs = {alias: " ".join(base.split()) for base, alias in re.findall(r"typedef\s+([\w\s]+?)\s+(\w+)\s*;", code)}
    params = []
    for raw in sigs[name].split(","):
        words = [w for w in raw.replace("*", " * ").split() if w != "__restrict__"]
        pointer = words.count("*") == 1
        if words.count("*") > 1:
            raise ValueError(f"{name}: pointer-to-pointer parameter {raw.strip()!r} is not supported")
        words = [w for w in words if w != "*"]
        const = "const" in words
        base = " ".join(w for w in words[:-1] if w != "const")
        while base in typedefs:
            base = typedefs[base]
        if base not in CTYPE_DTYPES:
            raise ValueError(f"{name}: parameter {raw.strip()!r} has a type ({base}) the emulator does not map")
        params.append(Param(words[-1], " ".join(w for w in words[:-1] if w != "const"), np.dtype(CTYPE_DTYPES[base]),
                            pointer, const))
    return params


class DeviceArray:
    """A 'device' array of the fake CuPy: host memory; like CuPy it refuses implicit NumPy conversion."""

    def __init__(self, host: np.ndarray, shared: bool = False):
        self._a = host
        self.shared = shared  # lives in a shared map (visible to the parent of a forked launch)

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    flags = property(lambda self: self._a.flags)

    def reshape(self, *shape):
        return DeviceArray(self._a.reshape(*shape), self.shared)

    def get(self) -> np.ndarray:
        return self._a.copy()

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed (as in CuPy). Use .get()")

    def __repr__(self) -> str:
        return f"DeviceArray({self.shape}, {self.dtype})"


def lazy_array(shape, dtype) -> np.ndarray:
    """A zero-filled array in a shared, lazily committed map: terabytes cost only the pages touched."""
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buf = mmap.mmap(-1, max(n, 1), flags=mmap.MAP_SHARED | _MAP_NORESERVE)
    return np.frombuffer(buf, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


class Emulator:
    """Compiles kernels (many per library, cached by content) and runs launches."""

    def __init__(self, cache_dir: Path | None = None, cxx: str | None = None):
        self.cxx = cxx or compiler()
        if self.cxx is None:
            raise RuntimeError("no C++ compiler found (g++ or c++; or set CXX)")
        default = Path(tempfile.gettempdir()) / f"motorfinder-cuda-emu-{getattr(os, 'getuid', lambda: 'u')()}"
        self.cache_dir = Path(cache_dir or os.environ.get("MOTORFINDER_EMU_CACHE") or default)
        self.pending: dict[str, str] = {}             # name -> source, registered, not yet compiled
        self.compiled: dict[tuple[str, str], ctypes.CDLL] = {}
        self.blocks: Callable | None = None          # grid -> the block indices to run (None: all)
        self.isolate = False                         # run launches in a forked child (a crash fails the test)
        self.launches = 0

    # -- compile -------------------------------------------------------------------------
    def register(self, name: str, code: str) -> None:
        if (name, code) not in self.compiled:
            self.pending[name] = code

    def build(self) -> None:
        """Compile every registered kernel into one library."""
        if not self.pending:
            return
        kernels = sorted(self.pending.items())
        lib = self._compile(kernels)
        for name, code in kernels:
            self.compiled[(name, code)] = lib
        self.pending.clear()

    def _compile(self, kernels: list[tuple[str, str]]) -> ctypes.CDLL:
        parts = [HEADER]
        for i, (name, code) in enumerate(kernels):
            params = parse_signature(code, name)
            args = ", ".join(f"({'const ' if p.const else ''}{p.ctype}*)a[{k}]" if p.pointer
                             else f"*(const {p.ctype}*)a[{k}]" for k, p in enumerate(params))
            parts.append(f"namespace emu_k{i} {{\n{code}\n"
                         f'extern "C" void emu_launch_{name}(void* const* a, const unsigned* g, const unsigned* b, '
                         f"const unsigned long long* blocks, long long n) {{\n"
                         f"    emu::run(g, b, blocks, n, [&]() {{ {name}({args}); }});\n}}\n}}\n")
            parts += [f"#undef {m}\n" for m in re.findall(r"^\s*#define\s+(\w+)", code, re.M)]
        source = "".join(parts)
        version = subprocess.run([self.cxx, "--version"], capture_output=True, text=True).stdout
        key = hashlib.sha256("\0".join([source, version, *CXXFLAGS]).encode()).hexdigest()[:24]
        lib = self.cache_dir / f"kernels-{key}.so"
        if not lib.is_file():
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            src = self.cache_dir / f"kernels-{key}.{os.getpid()}.cpp"
            src.write_text(source)
            tmp = lib.with_name(f".{lib.name}.{os.getpid()}.tmp")
            proc = subprocess.run([self.cxx, *CXXFLAGS, "-o", str(tmp), str(src)], capture_output=True, text=True)
            src.unlink()
            if proc.returncode != 0:
                raise RuntimeError(f"{self.cxx} could not compile the kernels as C++:\n{proc.stderr[-4000:]}")
            os.replace(tmp, lib)
        return ctypes.CDLL(str(lib))

    # -- launch --------------------------------------------------------------------------
    def launch(self, name: str, code: str, params: list[Param], grid, block, args) -> None:
        grid, block = _dims(grid, "grid"), _dims(block, "block")
        for i, (g, lim) in enumerate(zip(grid, GRID_LIMITS)):
            if not 1 <= g <= lim:
                raise ValueError(f"{name}: gridDim.{'xyz'[i]} = {g} is outside CUDA's 1..{lim}")
        if any(not 1 <= b <= lim for b, lim in zip(block, BLOCK_LIMITS)) or np.prod(block) > 1024:
            raise ValueError(f"{name}: block {block} is outside CUDA's limits (1024 threads, z <= 64)")
        keep, ptrs = check_args(name, params, args)
        if self.isolate and any(p.pointer and not p.const and not a.shared for p, a in zip(params, args)):
            raise ValueError(f"{name}: a forked launch needs its outputs in shared memory (lazy_array)")
        if (name, code) not in self.compiled:
            self.register(name, code)
            self.build()
        fn = getattr(self.compiled[(name, code)], f"emu_launch_{name}")
        fn.restype = None
        blocks = self.blocks(grid) if self.blocks else None
        block_arr = None if blocks is None else (ctypes.c_ulonglong * len(blocks))(*blocks)
        call = (ptrs, (ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), block_arr,
                ctypes.c_longlong(0 if blocks is None else len(blocks)))
        self.launches += 1
        if self.isolate and hasattr(os, "fork"):
            _forked(name, lambda: fn(*call))
        else:
            fn(*call)
        del keep

    @contextlib.contextmanager
    def only_blocks(self, choose: Callable, isolate: bool = True):
        """Run only the blocks ``choose(grid)`` names (linear indices, x fastest), in a forked child."""
        self.blocks, self.isolate = choose, isolate
        try:
            yield
        finally:
            self.blocks, self.isolate = None, False


def _dims(value, what: str) -> tuple[int, int, int]:
    dims = tuple(int(v) for v in (value if isinstance(value, (tuple, list)) else (value,)))
    if not 1 <= len(dims) <= 3:
        raise ValueError(f"{what} must have 1 to 3 dimensions, got {value!r}")
    return dims + (1,) * (3 - len(dims))


def check_args(name: str, params: list[Param], args) -> tuple[list, ctypes.Array]:
    """Each argument against its parameter (see the module doc); returns (buffers to keep, void* array)."""
    args = tuple(args)
    if len(args) != len(params):
        raise TypeError(f"{name} takes {len(params)} arguments, the launch passes {len(args)}")
    keep, ptrs = [], (ctypes.c_void_p * len(args))()
    for i, (p, a) in enumerate(zip(params, args)):
        where = f"{name} argument {i} ({p.ctype}{'*' if p.pointer else ''} {p.name})"
        if p.pointer:
            if not isinstance(a, DeviceArray):
                raise TypeError(f"{where}: expected a device array, got {type(a).__name__}")
            if a.dtype != p.dtype:
                raise TypeError(f"{where}: array of {a.dtype}, the kernel reads {p.dtype}")
            if not a.flags.c_contiguous:
                raise TypeError(f"{where}: the array is not C-contiguous")
            ptrs[i] = a._a.ctypes.data
        else:
            if not isinstance(a, np.generic):
                raise TypeError(f"{where}: a Python {type(a).__name__}; CuPy would pass it as a 64-bit value, "
                                f"the kernel reads {p.dtype} (pass np.{p.dtype.name}(...))")
            if a.dtype != p.dtype:
                raise TypeError(f"{where}: a {a.dtype} scalar, the kernel reads {p.dtype}")
            buf = np.array(a, dtype=p.dtype)
            keep.append(buf)
            ptrs[i] = buf.ctypes.data
    return keep, ptrs


def _forked(name: str, fn: Callable) -> None:
    """Run ``fn`` (one ctypes call into the emulated kernel, no locks taken) in a forked child."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+: fork() with threads alive
        pid = os.fork()
    if pid == 0:  # the child: run, then leave without Python's clean-up
        code = 3
        try:
            fn()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        raise AssertionError(f"the emulated kernel {name} crashed ({sig}): an index left its buffer")
    if os.WEXITSTATUS(status) != 0:
        raise AssertionError(f"the emulated launch of {name} failed in its child process")


def fake_cupy(emu: Emulator) -> types.ModuleType:
    """A ``cupy`` stand-in: the parts the kernels' host code and the GPU parity tests use."""
    cp = types.ModuleType("cupy")
    cp.__version__ = "emulated"
    cp.ndarray = DeviceArray
    for t in ("float32", "float64", "bool_", "int8", "uint8", "int16", "uint16", "int32", "int64"):
        setattr(cp, t, getattr(np, t))

    def empty(shape, dtype=np.float64):
        shape = (shape,) if np.ndim(shape) == 0 else tuple(shape)
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if nbytes >= BIG:
            return DeviceArray(lazy_array(shape, dtype), shared=True)
        return DeviceArray(np.empty(shape, dtype))

    def asarray(x, dtype=None):
        if isinstance(x, DeviceArray):
            if dtype is None or np.dtype(dtype) == x.dtype:
                return x
            return DeviceArray(x._a.astype(dtype))
        return DeviceArray(np.array(x, dtype=dtype, order="C", copy=True))  # a host -> device copy

    def ascontiguousarray(x, dtype=None):
        x = asarray(x, dtype)
        return x if x.flags.c_contiguous else DeviceArray(np.ascontiguousarray(x._a))

    class RawKernel:
        def __init__(self, code, name, options=(), **kwargs):
            if any(str(o).startswith("-ftz") or str(o).startswith("--ftz") for o in options):
                raise ValueError(f"{name}: CuPy already compiles with -ftz=true; a second -ftz is a compile error")
            self.code, self.name, self.options = code, name, tuple(options)
            self.params = parse_signature(code, name)
            emu.register(name, code)

        def __call__(self, grid, block, args, **kwargs):
            emu.launch(self.name, self.code, self.params, grid, block, args)

    cp.empty, cp.asarray, cp.ascontiguousarray, cp.RawKernel = empty, asarray, ascontiguousarray, RawKernel
    cp.asnumpy = lambda x: x.get() if isinstance(x, DeviceArray) else np.asarray(x)
    return cp
