"""kernels/: NumPy references vs the inference implementations (everywhere), CUDA vs reference (GPU).

Tolerances: the NumPy references reproduce inference/ bit-for-bit (asserted with array_equal).
The CUDA resample kernel performs the same float32 operations in the same order without FMA
contraction, so it should be bit-identical too (float32 subnormals aside: CuPy compiles with
-ftz=true); the parity test allows 1e-4 relative to the output's scale (float32 rounding) as its
contract. The GPU parity tests below also run on every CI run against the kernels emulated on the
CPU (tests/kernels/test_kernels_emulated.py). Accumulate (gather) and NMS are asserted
exact; accumulate (atomic, mean) to 1e-6 relative (float32) / 1e-12 (float64) since atomics
reorder the additions.
"""

from __future__ import annotations

import itertools
import math
import subprocess
import sys
import types

import numpy as np
import pytest

from inference.decode.peaks import find_peaks
from inference.manifest.types import Normalize
from inference.predict.resample import normalize, resample
from inference.predict.window_placement import pad_end, padded_size, window_starts
from inference.predict.windows import sliding_window
from kernels.accumulate import accumulate, accumulate_ref
from kernels.array_module import cupy_available, get_array_module
from kernels.nms import box_max, local_max_mask, local_max_mask_ref
from kernels.resample import output_shape, resample_normalize, resample_normalize_ref

requires_gpu = pytest.mark.skipif(
    not cupy_available(), reason="CuPy is not installed or sees no CUDA device (kernels.cupy_available() is False)")

SPACINGS = [6.5, 13.1, 19.7]


# ------------------------------------------------------------------------- import hygiene


def test_import_does_not_import_cupy():
    code = ("import sys, kernels.array_module, kernels.resample, kernels.accumulate, kernels.nms; "
            "assert 'cupy' not in sys.modules, 'kernels imported cupy'; "
            "import numpy as np; assert kernels.array_module.get_array_module(np.zeros(1)) is np")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cupy_available_is_bool_and_numpy_dispatch():
    assert isinstance(cupy_available(), bool)
    assert get_array_module(np.zeros(3)) is np
    assert get_array_module([1, 2]) is np


# ------------------------------------------------------------------ resample + normalize


def inference_resample_normalize(v, src, dst, mean, std):
    return normalize(resample(v, src, dst), Normalize("affine", mean, std))


@pytest.mark.parametrize("shape", [(17, 23, 29), (40, 33, 31), (1, 12, 9), (9, 50, 41)])
@pytest.mark.parametrize("src", SPACINGS)
def test_resample_ref_equals_inference_exactly(shape, src):
    v = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    got = resample_normalize_ref(v, src, 16.0, 127.5, 60.0)
    want = inference_resample_normalize(v, src, 16.0, 127.5, 60.0)
    assert got.dtype == np.float32 and got.shape == output_shape(shape, src, 16.0)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("src,dst", [
    ((16.0, 13.1, 6.5), 16.0),            # z not resampled (identity), y and x shrink
    ((20.0, 13.1, 16.0), (16.0, 16.0, 16.0)),  # z upsampled, x identity
    ((6.5, 19.7, 13.1), (16.0, 16.0, 16.0)),   # the axis order differs from (0, 1, 2)
    (16.0, 16.0),                         # nothing to do but normalize
])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float32])
def test_resample_ref_equals_inference_per_axis(src, dst, dtype):
    rng = np.random.default_rng(1)
    v = (rng.standard_normal((12, 30, 20)) * 40 + 100).astype(dtype)
    np.testing.assert_array_equal(resample_normalize_ref(v, src, dst, 0.0, 255.0, chunk=3),
                                  inference_resample_normalize(v, src, dst, 0.0, 255.0))


def test_resample_output_length_formula():
    for n, s, t in [(300, 13.1, 16.0), (960, 6.5, 16.0), (928, 19.7, 16.0), (1, 13.1, 16.0)]:
        assert output_shape((n, n, n), s, t) == (math.floor((n - 1) * s / t + 1e-9) + 1,) * 3


def test_resample_linear_volume_is_exact():
    # v = 3z + 2y + x is reproduced exactly by (tri)linear interpolation: out = (3 j0 + 2 j1 + j2) * t / s
    z, y, x = np.meshgrid(np.arange(10), np.arange(20), np.arange(30), indexing="ij")
    v = (3 * z + 2 * y + x).astype(np.uint8)
    s, t, mean, std = 13.1, 16.0, 10.0, 4.0
    out = resample_normalize_ref(v, s, t, mean, std)
    j0, j1, j2 = np.meshgrid(*(np.arange(m) for m in out.shape), indexing="ij")
    want = ((3 * j0 + 2 * j1 + j2) * (t / s) - mean) / std
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-4)


def test_resample_small_hand_case():
    v = np.array([0, 10, 20, 30, 40], np.uint8).reshape(1, 1, 5)
    out = resample_normalize_ref(v, 10.0, 15.0, 5.0, 2.0)   # samples at 0, 1.5, 3 voxels
    np.testing.assert_array_equal(out.ravel(), (np.array([0.0, 15.0, 30.0], np.float32) - 5) / 2)


def trilinear_float64(v, src, dst):
    """The definition in one pass: sum over the 8 corners of the product of 1D weights."""
    idx, wts = [], []
    for n, s, t in zip(v.shape, src, dst):
        m = math.floor((n - 1) * s / t + 1e-9) + 1
        p = np.arange(m) * (t / s)
        i0 = np.clip(np.floor(p).astype(int), 0, n - 1)
        idx.append((i0, np.minimum(i0 + 1, n - 1)))
        wts.append(((1 - (p - i0)), p - i0))
    out = 0.0
    for c in itertools.product((0, 1), repeat=3):
        g = np.ix_(idx[0][c[0]], idx[1][c[1]], idx[2][c[2]])
        out = out + (wts[0][c[0]][:, None, None] * wts[1][c[1]][None, :, None]
                     * wts[2][c[2]][None, None, :]) * v.astype(np.float64)[g]
    return out


@pytest.mark.parametrize("src", [(13.1, 6.5, 19.7), (19.7, 19.7, 13.1)])
def test_resample_ref_is_trilinear(src):
    v = np.random.default_rng(2).integers(0, 256, (21, 25, 19), dtype=np.uint8)
    got = resample_normalize_ref(v, src, 16.0, 0.0, 1.0)
    np.testing.assert_allclose(got, trilinear_float64(v, src, (16.0,) * 3), rtol=1e-5, atol=1e-4)


def test_resample_rejects_bad_input():
    with pytest.raises(ValueError):
        resample_normalize_ref(np.zeros((4, 4), np.uint8), 13.1, 16.0, 0.0, 1.0)
    with pytest.raises(ValueError):
        resample_normalize_ref(np.zeros((4, 4, 4), np.uint8), (13.1, 16.0), 16.0, 0.0, 1.0)
    with pytest.raises(ValueError):
        resample_normalize_ref(np.zeros((4, 4, 4), np.uint8), 13.1, 16.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        resample_normalize_ref(np.zeros((4, 4, 4), np.uint8), 0.0, 16.0, 0.0, 1.0)


# ------------------------------------------------------------------------------ accumulate


def test_accumulate_overlapping_windows_by_hand():
    # three (1, 2, 3) windows on a (2, 3, 5) heatmap; windows 0 and 1 overlap at [0, 1, 2], 1 and 2 not
    acc = np.zeros((2, 3, 5))
    count = np.zeros((2, 3, 5))
    outs = np.stack([np.full((1, 2, 3), v, np.float32) for v in (1.0, 2.0, 4.0)])
    starts = np.array([[0, 0, 0], [0, 1, 2], [1, 0, 2]])
    accumulate(acc, count, outs, starts, weight=0.5, mode="mean")
    want_acc, want_cnt = np.zeros((2, 3, 5)), np.zeros((2, 3, 5))
    for o, (z, y, x) in zip((1.0, 2.0, 4.0), starts):
        want_acc[z, y:y + 2, x:x + 3] += 0.5 * o
        want_cnt[z, y:y + 2, x:x + 3] += 0.5
    np.testing.assert_array_equal(acc, want_acc)
    np.testing.assert_array_equal(count, want_cnt)
    assert acc[0, 1, 2] == 0.5 * 1.0 + 0.5 * 2.0 and count[0, 1, 2] == 1.0
    assert acc[0, 2, 4] == 0.5 * 2.0 and acc[0, 0, 3] == 0.0

    mx = np.full((2, 3, 5), -np.inf, np.float32)
    accumulate(mx, None, outs, starts, mode="max")
    assert mx[0, 1, 2] == 2.0 and mx[0, 0, 0] == 1.0 and mx[1, 1, 4] == 4.0 and mx[1, 2, 0] == -np.inf


def pool(batch, s):
    n, c = batch.shape[:2]
    r = batch.reshape((n, c) + sum(((d // k, k) for d, k in zip(batch.shape[2:], s)), ()))
    return (r.mean(axis=(3, 5, 7)) + r.max(axis=(3, 5, 7))).astype(np.float32)


@pytest.mark.parametrize("mode", ["mean", "max"])
@pytest.mark.parametrize("shape,overlap", [((40, 100, 90), 0.5), ((17, 50, 33), 0.25), ((5, 7, 9), 0.0)])
def test_accumulate_ref_reproduces_sliding_window(mode, shape, overlap):
    patch, stride, batch = (16, 32, 32), (8, 8, 8), 5
    vol = np.random.default_rng(3).random((1,) + shape).astype(np.float32)
    predictor = lambda b: pool(b, stride)  # noqa: E731
    want = sliding_window(vol, predictor, patch, stride, overlap, batch_size=batch, mode=mode, pad_value=0.5)

    padded = tuple(padded_size(n, p, s) for n, p, s in zip(shape, patch, stride))
    pv = pad_end(vol, padded, 0.5)
    cells = tuple(p // s for p, s in zip(padded, stride))
    acc = np.zeros(cells) if mode == "mean" else np.full(cells, -np.inf, np.float32)
    count = np.zeros(cells) if mode == "mean" else None
    starts = list(itertools.product(*(window_starts(P, p, s, overlap) for P, p, s in zip(padded, patch, stride))))
    for b in range(0, len(starts), batch):
        chunk = np.array(starts[b:b + batch])
        windows = np.stack([pv[:, z:z + patch[0], y:y + patch[1], x:x + patch[2]] for z, y, x in chunk])
        accumulate_ref(acc, count, predictor(windows), chunk // np.array(stride), mode=mode)
    heat = (acc / count).astype(np.float32) if mode == "mean" else acc
    keep = tuple(slice(0, math.ceil(n / s)) for n, s in zip(shape, stride))
    np.testing.assert_array_equal(heat[keep], want)


def test_accumulate_float32_weighted_formula():
    rng = np.random.default_rng(4)
    acc = rng.random((4, 5, 6)).astype(np.float32)
    count = np.ones((4, 5, 6), np.float32)
    outs = rng.random((3, 2, 3, 4)).astype(np.float32)
    starts = [[0, 0, 0], [1, 1, 1], [2, 2, 2]]
    want_acc, want_cnt = acc.copy(), count.copy()
    for o, (z, y, x) in zip(outs, starts):
        want_acc[z:z + 2, y:y + 3, x:x + 4] += np.float32(0.3) * o
        want_cnt[z:z + 2, y:y + 3, x:x + 4] += np.float32(0.3)
    accumulate(acc, count, outs[:, None], starts, weight=0.3)   # (N, 1, d, h, w) accepted
    np.testing.assert_array_equal(acc, want_acc)
    np.testing.assert_array_equal(count, want_cnt)


def test_accumulate_rejects_bad_input():
    acc, count = np.zeros((4, 4, 4)), np.zeros((4, 4, 4))
    outs = np.zeros((1, 2, 2, 2), np.float32)
    with pytest.raises(ValueError, match="leaves"):
        accumulate(acc, count, outs, [[3, 0, 0]])
    with pytest.raises(ValueError, match="leaves"):
        accumulate(acc, count, outs, [[0, -1, 0]])
    with pytest.raises(ValueError, match="count"):
        accumulate(acc, None, outs, [[0, 0, 0]], mode="mean")
    with pytest.raises(ValueError, match="mode"):
        accumulate(acc, count, outs, [[0, 0, 0]], mode="sum")
    with pytest.raises(ValueError, match="starts"):
        accumulate(acc, count, outs, [[0, 0, 0], [1, 1, 1]])


# ------------------------------------------------------------------------------------ NMS


def plateau_heat(rng, shape, levels=5):
    """Random heatmap with many exact ties (plateaus): values k / (levels - 1)."""
    return (rng.integers(0, levels, shape) / (levels - 1)).astype(np.float32)


@pytest.mark.parametrize("shape", [(20, 60, 60), (7, 9, 11), (1, 13, 5), (6, 1, 1)])
@pytest.mark.parametrize("kernel", [1, 3, 5, (3, 5, 1), (7, 3, 3)])
@pytest.mark.parametrize("min_conf", [0.0, 0.5, 0.7])
def test_local_max_mask_ref_equals_inference(shape, kernel, min_conf):
    rng = np.random.default_rng(5)
    for heat in (plateau_heat(rng, shape), rng.random(shape).astype(np.float32)):
        mask = local_max_mask(heat, kernel, min_conf)
        assert mask.dtype == np.bool_ and mask.shape == shape
        np.testing.assert_array_equal(mask, (heat == box_max(heat, kernel)) & (heat >= min_conf))
        idx, _ = find_peaks(heat, nms_kernel=kernel, min_conf=min_conf, top_k=heat.size)
        assert sorted(map(tuple, idx.tolist())) == sorted(map(tuple, np.argwhere(mask).tolist()))


def test_local_max_mask_brute_force_box_and_plateau():
    rng = np.random.default_rng(6)
    heat = plateau_heat(rng, (6, 7, 8), levels=3)
    ks = (3, 5, 1)
    mask = local_max_mask_ref(heat, ks, 0.25)
    for z, y, x in np.ndindex(heat.shape):
        box = heat[max(z - 1, 0):z + 2, max(y - 2, 0):y + 3, x:x + 1]
        assert mask[z, y, x] == (heat[z, y, x] == box.max() and heat[z, y, x] >= 0.25)
    flat = np.zeros((3, 3, 3), np.float32)
    flat[1] = 0.5   # a 3x3 plateau: every cell of it is kept
    assert local_max_mask_ref(flat, 3, 0.1).sum() == 9


def test_local_max_mask_nan_and_min_conf_rounding():
    heat = np.zeros((3, 5, 5), np.float32)
    heat[1, 2, 2] = np.nan
    heat[1, 2, 3] = 0.9   # its box holds the NaN: not kept (max is NaN), as in inference
    heat[1, 0, 0] = 0.8
    mask = local_max_mask_ref(heat, 3, 0.5)
    np.testing.assert_array_equal(mask, (heat == box_max(heat, 3)) & (heat >= 0.5))
    assert not mask[1, 2, 3] and mask[1, 0, 0]
    # min_conf is compared in float32 (NumPy's rule for a Python float)
    h = np.full((1, 1, 1), 0.7, np.float32)
    assert local_max_mask_ref(h, 1, 0.7)[0, 0, 0]


def test_box_max_matches_brute_force():
    h = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32)
    m = box_max(h, 3)
    for z, y, x in np.ndindex(h.shape):
        ref = h[max(z - 1, 0):z + 2, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].max()
        assert m[z, y, x] == ref


@pytest.mark.parametrize("shape,kernel", [((9,), 3), ((6, 7), (3, 5)), ((3, 4, 2, 5), (1, 3, 3, 5)), ((1, 6), 3)])
def test_box_max_and_mask_any_rank_brute_force(shape, kernel):
    rng = np.random.default_rng(7)
    heat = plateau_heat(rng, shape)
    ks = (kernel,) * len(shape) if isinstance(kernel, int) else kernel
    got, mask = box_max(heat, kernel), local_max_mask(heat, kernel, 0.25)
    assert mask.shape == shape and mask.dtype == np.bool_
    for cell in np.ndindex(shape):
        box = heat[tuple(slice(max(c - k // 2, 0), c + k // 2 + 1) for c, k in zip(cell, ks))].max()
        assert got[cell] == box
        assert mask[cell] == (heat[cell] == box and heat[cell] >= 0.25)


def test_box_max_runs_on_the_array_module_it_is_given():
    """Only ``xp.pad``, ``xp.maximum``, ``xp.inf`` and array methods: the same code runs on CuPy arrays."""
    calls = []

    def pad(*args, **kwargs):
        calls.append("pad")
        return np.pad(*args, **kwargs)

    def maximum(*args, **kwargs):
        calls.append("maximum")
        return np.maximum(*args, **kwargs)

    xp = types.SimpleNamespace(pad=pad, maximum=maximum, inf=np.inf)
    heat = np.random.default_rng(8).random((5, 6)).astype(np.float32)
    np.testing.assert_array_equal(box_max(heat, (3, 5), xp=xp), box_max(heat, (3, 5)))
    assert calls.count("pad") == 2 and calls.count("maximum") == 2 + 4


def test_local_max_mask_rejects_even_kernel():
    with pytest.raises(ValueError):
        local_max_mask_ref(np.zeros((3, 3, 3), np.float32), 2, 0.0)
    with pytest.raises(ValueError):
        local_max_mask_ref(np.zeros((3, 3, 3), np.float32), (3, 3), 0.0)


# ------------------------------------------------------------------- GPU parity (CuPy vs ref)


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("shape", [(37, 61, 53), (5, 7, 9), (1, 40, 33), (64, 200, 190)])
@pytest.mark.parametrize("src", SPACINGS + [(16.0, 13.1, 6.5), (6.5, 19.7, 13.1)])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_gpu_resample_parity(shape, src, dtype):
    import cupy as cp
    rng = np.random.default_rng(7)
    v = (rng.integers(0, 256, shape) if dtype == np.uint8 else rng.standard_normal(shape) * 50).astype(dtype)
    ref = resample_normalize_ref(v, src, 16.0, 127.5, 60.0)
    got = resample_normalize(cp.asarray(v), src, 16.0, 127.5, 60.0)
    assert isinstance(got, cp.ndarray) and got.dtype == cp.float32 and got.shape == ref.shape
    got = got.get()
    scale = float(np.abs(ref).max()) or 1.0
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("shape", [(37, 61, 53), (1, 40, 33), (64, 200, 190)])
@pytest.mark.parametrize("src", [13.1, (16.0, 13.1, 6.5), 19.7, (16.1, 13.1, 16.1)])
@pytest.mark.parametrize("quantize", ["none", "uint8"])
def test_gpu_resample_half_pixel_parity(shape, src, quantize):
    """The recipe's grid and uint8 truncation: same tables, same float32 operations as the reference;
    truncation can flip only where the interpolated value's last bit does. (16.1, 13.1, 16.1): z (and x
    under 160 voxels) keep their lengths at 16.1 Å and are copied while y shrinks, PyTorch's CPU rule."""
    import cupy as cp
    v = np.random.default_rng(11).integers(0, 256, shape).astype(np.uint8)
    ref = resample_normalize_ref(v, src, 16.0, 0.0, 1.0, grid="half_pixel", quantize=quantize)
    got = resample_normalize(cp.asarray(v), src, 16.0, 0.0, 1.0, grid="half_pixel", quantize=quantize).get()
    assert got.shape == ref.shape == output_shape(shape, src, 16.0, "half_pixel")
    if quantize == "uint8":
        assert np.mean(got != ref) < 1e-4 and np.abs(got - ref).max() <= 1.0
    else:
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-3)


@pytest.mark.gpu
@requires_gpu
def test_gpu_resample_realistic_matches_inference():
    import cupy as cp
    v = np.random.default_rng(8).integers(0, 256, (60, 240, 232), dtype=np.uint8)
    want = inference_resample_normalize(v, 13.1, 16.0, 127.5, 60.0)
    got = resample_normalize(cp.asarray(v), 13.1, 16.0, 127.5, 60.0).get()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def _overlapping_batch(rng, cells, n, dhw):
    starts = np.stack([rng.integers(0, c - d + 1, n) for c, d in zip(cells, dhw)], axis=1)
    return rng.standard_normal((n,) + dhw).astype(np.float32), starts


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("method", ["gather", "atomic"])
@pytest.mark.parametrize("mode,acc_dtype", [("mean", np.float64), ("mean", np.float32), ("max", np.float32),
                                            ("max", np.float64)])
@pytest.mark.parametrize("cells,n,dhw", [((16, 60, 58), 64, (14, 28, 28)), ((5, 9, 7), 11, (3, 4, 5)),
                                         ((3, 3, 3), 1, (3, 3, 3))])
def test_gpu_accumulate_parity(method, mode, acc_dtype, cells, n, dhw):
    import cupy as cp
    rng = np.random.default_rng(9)
    outs, starts = _overlapping_batch(rng, cells, n, dhw)
    if mode == "mean":
        acc0, cnt0 = rng.random(cells).astype(acc_dtype), rng.random(cells)
    else:
        acc0, cnt0 = np.full(cells, -np.inf, acc_dtype), None
        acc0[0, 0, 0] = 10.0  # a prior value larger than any output stays
    acc_r, cnt_r = acc0.copy(), (cnt0.copy() if cnt0 is not None else None)
    accumulate_ref(acc_r, cnt_r, outs, starts, 0.75, mode)
    acc_g = cp.asarray(acc0)
    cnt_g = cp.asarray(cnt0) if cnt0 is not None else None
    accumulate(acc_g, cnt_g, cp.asarray(outs), starts, 0.75, mode, method=method)
    if method == "gather" or mode == "max":
        np.testing.assert_array_equal(acc_g.get(), acc_r)
        if cnt_r is not None:
            np.testing.assert_array_equal(cnt_g.get(), cnt_r)
    else:
        rtol = 1e-12 if acc_dtype == np.float64 else 1e-6
        np.testing.assert_allclose(acc_g.get(), acc_r, rtol=rtol, atol=rtol * 10)
        np.testing.assert_allclose(cnt_g.get(), cnt_r, rtol=1e-12)


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("shape", [(20, 60, 60), (7, 9, 11), (1, 13, 5), (33, 1, 17)])
@pytest.mark.parametrize("kernel", [1, 3, 5, (3, 5, 1), (9, 3, 3)])
@pytest.mark.parametrize("min_conf", [0.0, 0.5, -np.inf])
def test_gpu_local_max_mask_parity(shape, kernel, min_conf):
    import cupy as cp
    rng = np.random.default_rng(10)
    for heat in (plateau_heat(rng, shape), rng.random(shape).astype(np.float32)):
        heat.ravel()[rng.integers(0, heat.size)] = np.nan
        got = local_max_mask(cp.asarray(heat), kernel, min_conf)
        assert isinstance(got, cp.ndarray) and got.dtype == cp.bool_
        np.testing.assert_array_equal(got.get(), local_max_mask_ref(heat, kernel, min_conf))
