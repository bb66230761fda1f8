"""kernels/ on every CI run: the CUDA kernels' real source compiled as C++ and emulated on the CPU
(tests/cuda_emulator.py) against their NumPy references. No GPU needed; skipped, with the reason,
where no C++ compiler exists.

* Parity: the GPU parity tests of tests/kernels/test_kernels.py, each of their cases, run here unchanged
  with the emulated CuPy in place of CuPy (so the kernels' host code runs too).
* Every variant the kernel factories generate compiles, and its C signature parses.
* Indexing past 2**31 (a 2.8e9-voxel tomogram): only the blocks that cross it are emulated, on
  lazily committed memory maps of the full size (only the pages touched cost memory), in a forked
  child so that an index that overflows fails the test instead of crashing the run.
* CuPy's ``-ftz=true``: float32 subnormals are flushed (the emulation does the same; NumPy does not).
"""

from __future__ import annotations

import inspect
import itertools
import math
import sys

import numpy as np
import pytest

from kernels import accumulate as acc_mod
from kernels import nms as nms_mod
from kernels import resample as res_mod
from kernels.array_module import CTYPES
from tests.kernels import test_kernels as gpu_tests
from tests.kernels.cuda_emulator import DeviceArray, Emulator, compiler, fake_cupy, lazy_array, parse_signature

pytestmark = [pytest.mark.emulated,
              pytest.mark.skipif(compiler() is None, reason="no C++ compiler (g++ or c++; or set CXX): the "
                                 "emulated CUDA kernel tests compile the kernels with one")]

FACTORIES = (res_mod._kernel, acc_mod._kernel, nms_mod._kernel)


def clear_kernel_caches() -> None:
    for factory in FACTORIES:
        factory.cache_clear()


def flag_options(factory, fixed: int) -> list[tuple]:
    """Every combination of the factory's boolean switches after its first ``fixed`` parameters."""
    params = list(inspect.signature(inspect.unwrap(factory)).parameters.values())[fixed:]
    return list(itertools.product(*[(False, True) for p in params if isinstance(p.default, bool)]))


def every_variant():
    """Every kernel the factories can generate (resample: dtype x axis order x its switches; accumulate:
    method x mode x accumulator x count dtype; NMS)."""
    floats = (np.dtype(np.float32), np.dtype(np.float64))
    out = [res_mod._kernel(d, order, *flags) for d in CTYPES for order in itertools.permutations(range(3))
           for flags in flag_options(res_mod._kernel, 2)]
    out += [acc_mod._kernel(m, mode, a, c) for m in acc_mod.METHODS for mode in acc_mod.MODES
            for a in floats for c in floats]
    out.append(nms_mod._kernel())
    return out


@pytest.fixture(scope="module")
def emu():
    """One emulator, every variant compiled into one library (cached on disk by content)."""
    emulator = Emulator()
    saved = sys.modules.get("cupy")
    sys.modules["cupy"] = fake_cupy(emulator)
    clear_kernel_caches()
    try:
        emulator.variants = every_variant()
        emulator.build()
    finally:
        clear_kernel_caches()
        if saved is None:
            sys.modules.pop("cupy", None)
        else:
            sys.modules["cupy"] = saved
    return emulator


@pytest.fixture
def cp(emu, monkeypatch):
    """The emulated CuPy as ``cupy`` for one test; the kernels' caches cleared around it."""
    fake = fake_cupy(emu)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    clear_kernel_caches()
    yield fake
    clear_kernel_caches()


def cases(test_fn) -> list[tuple[dict, str]]:
    """The parametrize cases of a GPU test of tests/kernels/test_kernels.py: (keyword dict, id)."""
    marks = [m for m in getattr(test_fn, "pytestmark", []) if m.name == "parametrize"]
    names, combos = [], [()]
    for m in marks:
        argnames = m.args[0]
        argnames = [a.strip() for a in argnames.split(",")] if isinstance(argnames, str) else list(argnames)
        values = [tuple(getattr(v, "values", v)) if len(argnames) > 1 else tuple(getattr(v, "values", (v,)))
                  for v in m.args[1]]
        combos = [c + v for c in combos for v in values]
        names += argnames
    return [(dict(zip(names, c)), "-".join(_id(v) for v in c)) for c in combos]


def _id(v) -> str:
    return getattr(v, "__name__", None) or str(v).replace(" ", "")


def emulated(emu, test_fn, **kwargs):
    before = emu.launches
    test_fn(**kwargs)
    assert emu.launches > before, "the kernel did not run (the call took the NumPy path)"


# ------------------------------------------------------------------------------- parity


# every test_gpu_* of tests/kernels/test_kernels.py, each of its cases (a GPU test added there runs here too)
GPU_PARITY = [pytest.param(fn, kwargs, id=f"{name[len('test_gpu_'):]}[{case_id}]")
              for name, fn in vars(gpu_tests).items() if name.startswith("test_gpu_") and callable(fn)
              for kwargs, case_id in cases(fn)]


@pytest.mark.parametrize("test_fn, kwargs", GPU_PARITY)
def test_gpu_parity_emulated(emu, cp, test_fn, kwargs):
    emulated(emu, test_fn, **kwargs)


def test_the_gpu_parity_cases_are_all_here():
    names = {p.id.split("[")[0] for p in GPU_PARITY}
    assert {"resample_parity", "resample_realistic_matches_inference", "accumulate_parity",
            "local_max_mask_parity"} <= names
    assert len(GPU_PARITY) >= 40 + 1 + 24 + 60


def test_every_variant_compiles_and_its_signature_parses(emu):
    switches = len(flag_options(res_mod._kernel, 2))
    assert len(emu.variants) == 6 * 6 * switches + 2 * 2 * 2 * 2 + 1  # 53 without switches
    assert not emu.pending
    for k in emu.variants:
        assert (k.name, k.code) in emu.compiled
        assert k.params and all(p.dtype is not None for p in k.params)
    res = parse_signature(res_mod._SOURCE.format(ctype="unsigned short", name="r", p=0, q=1, r=2, quant=0), "r")
    assert [(p.name, p.dtype.name, p.pointer) for p in res[:4]] == [
        ("src", "uint16", True), ("dst", "float32", True), ("idx", "int32", True), ("wts", "float32", True)]
    assert [(p.name, p.dtype.name) for p in res[7:10]] == [("s0", "int64"), ("s1", "int64"), ("s2", "int64")]


def test_arguments_are_checked_against_the_signature(emu, cp):
    kernel = nms_mod._kernel()
    heat, mask = cp.asarray(np.zeros((2, 2, 2), np.float32)), cp.empty((2, 2, 2), dtype=np.bool_)
    good = [heat, mask] + [np.int32(2)] * 3 + [np.int32(1)] * 3 + [np.float32(0.0)]
    kernel((1,), (256,), good)
    with pytest.raises(TypeError, match=r"argument 2 \(int Z\): a Python int; CuPy would pass it as a 64-bit"):
        kernel((1,), (256,), good[:2] + [2] + good[3:])
    with pytest.raises(TypeError, match=r"argument 8 \(float min_conf\): a float64 scalar"):
        kernel((1,), (256,), good[:8] + [np.float64(0.0)])
    with pytest.raises(TypeError, match=r"argument 0 \(float\* heat\): array of float64"):
        kernel((1,), (256,), [cp.asarray(np.zeros((2, 2, 2)))] + good[1:])
    with pytest.raises(TypeError, match="takes 9 arguments, the launch passes 8"):
        kernel((1,), (256,), good[:8])
    with pytest.raises(ValueError, match="gridDim.y = 70000"):
        kernel((1, 70000), (256,), good)


def test_threads_that_communicate_are_refused(emu):
    code = ('extern "C" __global__ void k(float* x) { __shared__ float s[32]; '
            's[threadIdx.x] = x[threadIdx.x]; __syncthreads(); x[0] = s[1]; }')
    with pytest.raises(RuntimeError, match="could not compile"):
        Emulator(cache_dir=emu.cache_dir)._compile([("k", code)])


# ------------------------------------------------------------------------ -ftz=true


def test_float32_subnormals_are_flushed_as_cupy_compiles(emu, cp):
    from kernels.nms import local_max_mask, local_max_mask_ref
    from kernels.resample import resample_normalize, resample_normalize_ref

    numpy_keeps_subnormals = np.float32(1e-40) * np.float32(1.0) != 0
    v = np.arange(1, 4, dtype=np.uint8).reshape(1, 1, 3)
    got = resample_normalize(cp.asarray(v), 16.0, 16.0, 0.0, 3e38).get()  # v / 3e38: float32 subnormals
    assert (got == 0).all()
    ref = resample_normalize_ref(v, 16.0, 16.0, 0.0, 3e38)
    if numpy_keeps_subnormals:
        assert ((ref != 0) & (np.abs(ref) < np.finfo(np.float32).tiny)).all()
    heat = np.zeros((1, 1, 2), np.float32)
    heat[0, 0, 0] = 1e-40  # next to a zero: with -ftz=true they compare equal, a plateau of two maxima
    assert local_max_mask(cp.asarray(heat), 3, 0.0).get().tolist() == [[[True, True]]]
    if numpy_keeps_subnormals:
        assert local_max_mask_ref(heat, 3, 0.0).tolist() == [[[True, False]]]


# ------------------------------------------------------------------- indexing past 2**31


def plane_blocks(j0):
    """The resample launch's blocks of output plane ``j0`` (blockIdx.z == j0)."""
    return lambda grid: [j0 * grid[0] * grid[1] + k for k in range(grid[0] * grid[1])]


@pytest.mark.parametrize("src, j0", [
    ((16.0, 13.1, 13.1), 2147),   # z kept: plane 2147 straddles 2**31; y, x resampled
    ((6.5, 13.1, 13.1), 872),     # z interpolated first, from planes 2146 and 2147
    ((16.0, 16.0, 16.0), 2147),   # nothing resampled: the output index crosses 2**31 too
])
def test_resample_indexes_past_2_31(emu, cp, src, j0):
    from kernels.resample import axis_table, output_shape, resample_normalize, resample_normalize_ref

    shape = (2800, 1000, 1000)  # 2.8e9 voxels
    plane = shape[1] * shape[2]
    vol = lazy_array(shape, np.uint8)
    i0, i1, u = axis_table(shape[0], src[0], 16.0)
    a, b = int(i0[j0]), int(i1[j0])
    assert (b + 1) * plane > 2**31 > 2**31 - plane * 2 and a * plane < 2**31 + plane
    rng = np.random.default_rng(11)
    for i in {a, b}:
        vol[i] = rng.integers(0, 256, shape[1:], dtype=np.uint8)
    with emu.only_blocks(plane_blocks(j0)):
        out = resample_normalize(DeviceArray(vol, shared=True), src, 16.0, 127.5, 60.0)
    m = output_shape(shape, src, 16.0)
    assert tuple(out.shape) == m
    got = out._a[j0]  # the host view: copying the whole output would cost its full size
    if src[0] == 16.0:
        want = resample_normalize_ref(vol[j0:j0 + 1], (16.0,) + src[1:], 16.0, 127.5, 60.0)[0]
    else:  # z first (the most-shrinking axis): lerp the two planes in float32, then y and x
        pa, pb = vol[a].astype(np.float32), vol[b].astype(np.float32)
        lerped = pa + (pb - pa) * u[j0]
        want = resample_normalize_ref(lerped[None], (16.0,) + src[1:], 16.0, 127.5, 60.0)[0]
    np.testing.assert_array_equal(got, want)
    if m[0] * m[1] * m[2] > 2**31:
        assert (j0 + 1) * m[1] * m[2] > 2**31 > j0 * m[1] * m[2]  # the written indices straddle 2**31
    assert not out._a[j0 + 1].any()  # only plane j0's blocks ran


def test_local_max_mask_indexes_past_2_31(emu, cp):
    from kernels.nms import local_max_mask, local_max_mask_ref

    Y = X = 64
    plane = Y * X
    z0 = 2**31 // plane            # cell 2**31 is (z0, 0, 0)
    heat = lazy_array((z0 + 3, Y, X), np.float32)
    heat[z0 - 2:z0 + 2] = (np.random.default_rng(12).integers(0, 5, (4, Y, X)) / 4).astype(np.float32)
    lo, hi = 2**31 - plane, 2**31 + plane  # planes z0-1 and z0; their 3x3x3 boxes lie in z0-2 .. z0+1
    with emu.only_blocks(lambda grid: list(range(lo // 256, hi // 256))):
        mask = local_max_mask(DeviceArray(heat, shared=True), 3, 0.5)
    want = local_max_mask_ref(heat[z0 - 2:z0 + 2], 3, 0.5).reshape(-1)[plane:3 * plane]
    np.testing.assert_array_equal(mask._a.reshape(-1)[lo:hi], want)
    assert want.any() and not want.all()


def test_accumulate_refuses_past_2_31(cp):
    from kernels.accumulate import accumulate

    shape = (2**31 // 4096 + 1, 64, 64)
    acc, count = cp.empty(shape, np.float32), cp.empty(shape, np.float32)
    with pytest.raises(ValueError, match="beyond int32 indexing"):
        accumulate(acc, count, cp.asarray(np.zeros((1, 2, 2, 2), np.float32)), [[0, 0, 0]])
    assert math.prod(shape) > 2**31
