"""The recipe keys (issue 13), one by one, with expected values written as formulas.

Reference semantics: ../shared/recipe-3rd-place-inference.md (section 2) and docs/RECIPE.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference.decode.nms_points import greedy_nms
from inference.ensemble.fusion import fuse_points
from inference.ensemble.submission import decide
from inference.manifest.types import Decode, Member, Normalize, Resample, Slices, Stitch, Threshold, Windows, parse_tta
from inference.predict.geometry import cell_voxels, member_geometry
from inference.predict.predictor import MemberPredictor
from inference.predict.tta import apply, invert
from inference.predict.window_merge import grid_cells, resize_linear, resize_positions, scale_range, window_plan
from inference.predict.window_placement import end_starts, end_step
from kernels.resample import axis_table, output_length, quantize_uint8_ref, resample_normalize_ref

# ------------------------------------------------------------------------------ windows: placement end


@pytest.mark.parametrize("m,p", [(100, 224), (224, 224), (450, 224), (448, 224), (1000, 224), (7, 3)])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_end_starts_formula(m, p, overlap):
    step = max(1, math.floor(p * (1 - overlap)))
    assert end_step(p, overlap) == step
    want = [k * step for k in range(m) if k * step < m - p] + [m - p]
    assert end_starts(m, p, step) == want
    assert end_starts(m, p, step)[-1] + p == m  # the last window ends at the volume's end


def test_end_starts_named_cases():
    assert end_starts(100, 224, 224) == [100 - 224]     # m < p: one window, padding at its START
    assert end_starts(224, 224, 224) == [0]              # m = p
    assert end_starts(450, 224, 224) == [0, 224, 450 - 224]  # their example: 0, 224, 226


def test_end_placed_window_pads_at_the_start_with_raw_zero():
    """m < p: the window holds p - m voxels of raw 0 first, then the volume (normalised)."""
    seen = []

    def engine(batch):
        seen.append(np.array(batch))
        return np.zeros((len(batch), 1, 2, 2, 2), np.float32)

    m = _member(patch=(32, 32, 32), windows=Windows("end", "zero"), stitch=Stitch(grid_stride=8),
                normalize=Normalize("affine", 10.0, 2.0), overlap=(0.0,) * 3)
    vol = np.full((20, 32, 32), 50.0, np.float32)
    MemberPredictor(m, engine, 16.0).heatmaps(MemberPredictor(m, engine, 16.0).prepare(vol))
    (batch,) = seen
    assert batch.shape == (1, 1, 32, 32, 32)
    np.testing.assert_array_equal(batch[0, 0, :12], (0.0 - 10.0) / 2.0)   # 32 - 20 padded slices, raw 0
    np.testing.assert_array_equal(batch[0, 0, 12:], (50.0 - 10.0) / 2.0)


# ------------------------------------------------------------------------------ resample: half_pixel, uint8


@pytest.mark.parametrize("n,s,t", [(300, 13.1, 16.0), (61, 10.0, 16.0), (45, 19.7, 16.0), (37, 6.5, 16.0)])
def test_half_pixel_positions_and_length(n, s, t):
    r = s / t
    assert output_length(n, s, t, "half_pixel") == math.floor(n * r)
    i0, i1, w = axis_table(n, s, t, "half_pixel")
    j = np.arange(len(i0))
    u = np.maximum(0.0, (j + 0.5) / r - 0.5)
    np.testing.assert_allclose(i0 + w.astype(np.float64), np.minimum(u, n - 1), rtol=0, atol=2e-4)
    np.testing.assert_array_equal(i0, np.minimum(np.floor(u + 1e-9), n - 1).astype(int))
    np.testing.assert_array_equal(i1, np.minimum(i0 + 1, n - 1))


def test_half_pixel_identity_when_equal():
    assert output_length(50, 16.0, 16.0, "half_pixel") == 50
    np.testing.assert_array_equal(axis_table(50, 16.0, 16.0, "half_pixel")[0], np.arange(50))


@pytest.mark.parametrize("n,s", [(75, 16.1), (77, 16.1), (159, 16.1), (23, 16.5), (1, 19.7)])
def test_half_pixel_axis_copied_when_its_length_does_not_change(n, s):
    """PyTorch's CPU ``F.interpolate`` copies an axis whose output length ``floor(n * s/t)`` equals
    ``n`` (ATen ``compute_source_index_and_lambda``), whatever the scale factor: 1 < s/t < 1 + 1/n."""
    t = 16.0
    assert math.floor(n * s / t) == n
    assert output_length(n, s, t, "half_pixel") == n
    i0, i1, w = axis_table(n, s, t, "half_pixel")
    np.testing.assert_array_equal(i0, np.arange(n))
    np.testing.assert_array_equal(i1, np.arange(n))
    np.testing.assert_array_equal(w, np.zeros(n, np.float32))


def test_half_pixel_axis_resampled_once_its_length_changes():
    n, s, t = 160, 16.1, 16.0          # floor(160 * 1.00625) = 161: resampled, half-pixel positions
    r = s / t
    m = math.floor(n * r)
    assert m == n + 1 == output_length(n, s, t, "half_pixel")
    i0, i1, w = axis_table(n, s, t, "half_pixel")
    u = np.maximum(0.0, (np.arange(m) + 0.5) / r - 0.5)
    ramp = i0 * (1.0 - w.astype(np.float64)) + i1 * w.astype(np.float64)   # linear read of arange(n)
    np.testing.assert_allclose(ramp, np.minimum(u, n - 1), rtol=0, atol=2e-4)


def test_half_pixel_volume_copies_only_the_unchanged_axes():
    """(23, 31, 29) at 16.6 Å -> 16 Å (r = 1.0375): z keeps 23 voxels (floor(23.86)) and is copied, y
    and x become floor(31r) = 32 and floor(29r) = 30 and are interpolated at (j + 0.5)/r - 0.5."""
    v = np.random.default_rng(5).integers(0, 256, (23, 31, 29)).astype(np.float32)
    s, t = 16.6, 16.0
    r = s / t
    out = resample_normalize_ref(v, s, t, 0.0, 1.0, grid="half_pixel")
    assert out.shape == (23, math.floor(31 * r), math.floor(29 * r)) == (23, 32, 30)

    def lerp(a, axis, m):
        u = np.minimum(np.maximum(0.0, (np.arange(m) + 0.5) / r - 0.5), a.shape[axis] - 1)
        i0 = np.floor(u).astype(int)
        i1 = np.minimum(i0 + 1, a.shape[axis] - 1)
        shape = [1, 1, 1]
        shape[axis] = -1
        f = (u - i0).reshape(shape)
        return np.take(a, i0, axis) * (1 - f) + np.take(a, i1, axis) * f

    want = lerp(lerp(v.astype(np.float64), 1, 32), 2, 30)   # z untouched
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-3)


def test_half_pixel_16_1_A_tomogram_of_77_slices_copies_z_as_the_recipes_cpu_resample():
    """77 x 170 x 20 voxels at 16.1 Å -> 16 Å (r = 1.00625). Their resample ran on the CPU (submit_3d.py:156,
    ``TOMO_SPACING_DEVICE = "cpu"``), whose kernel copies an axis whose length stays: z (floor(77r) = 77)
    and x (floor(20r) = 20) are copied, y (floor(170r) = 171) is read at max(0, (j + 0.5)/r - 0.5), in
    float32 with the scale float32(1/r) as the CPU kernel computes it. PyTorch's CUDA kernel copies only
    when all three lengths stay, so it would read slice j of z there too: 0, 0.99068, ..., 75.52485, a
    different volume (checked below, so this test tells the two rules apart)."""
    s, t = 16.1, 16.0
    r = s / t
    v = np.random.default_rng(23).integers(0, 256, (77, 170, 20)).astype(np.float32)
    out = resample_normalize_ref(v, s, t, 0.0, 1.0, grid="half_pixel")
    assert out.shape == (77, 171, 20)

    def taps(n, m):
        j = np.arange(m, dtype=np.float32)
        u = np.maximum(np.float32(1 / r) * (j + np.float32(0.5)) - np.float32(0.5), np.float32(0)).astype(np.float64)
        i0 = np.minimum(np.floor(u).astype(int), n - 1)
        return u, i0, np.minimum(i0 + 1, n - 1), u - i0

    _, y0, y1, fy = taps(170, 171)
    want = v[:, y0] * (1 - fy)[None, :, None] + v[:, y1] * fy[None, :, None]   # z and x untouched
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-3)

    uz, z0, z1, fz = taps(77, 77)                                             # the CUDA rule's z samples
    np.testing.assert_allclose(uz[[0, 1, 38, 76]], [0.0, 0.99068, 37.76087, 75.52484], atol=1e-5)
    cuda = want[z0] * (1 - fz)[:, None, None] + want[z1] * fz[:, None, None]
    assert np.abs(cuda - out).max() > 10.0


def test_uint8_truncates():
    x = np.array([254.7, 254.2, 0.99, 0.0, 255.0, 17.5, 300.2, -3.5, np.nan], np.float32)
    np.testing.assert_array_equal(quantize_uint8_ref(x), [254, 254, 0, 0, 255, 17, 255, 0, 0])


def test_half_pixel_resample_matches_torch():
    torch = pytest.importorskip("torch")
    v = np.random.default_rng(3).integers(0, 256, (23, 31, 29), dtype=np.uint8)
    for s in (13.1, 19.7, 16.6, 16.5):  # 16.6: z (23) copied by PyTorch; 16.5: every axis copied
        ours = resample_normalize_ref(v, s, 16.0, 0.0, 1.0, grid="half_pixel")
        theirs = torch.nn.functional.interpolate(
            torch.from_numpy(v)[None, None].float(), scale_factor=(s / 16.0,) * 3, mode="trilinear",
            align_corners=False, recompute_scale_factor=False)[0, 0].numpy()
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=2e-3)
        q = resample_normalize_ref(v, s, 16.0, 0.0, 1.0, grid="half_pixel", quantize="uint8")
        assert np.mean(q != theirs.astype(np.uint8)) < 1e-3  # truncation flips only where float rounding does


# ------------------------------------------------------------------------------ the stride-8 grid


def test_grid_cells_round_half_to_even_and_resize_not_always_x2():
    assert grid_cells(52, 8) == 6            # round(6.5) = 6 (Python's round)
    assert grid_cells(60, 8) == 8            # round(7.5) = 8
    cells, scale, resized = window_plan((52,), (64,), (8,))
    assert cells == (6,) and scale == (6 / 52,) and resized == (round(64 * 6 / 52),) == (7,)


def test_scale_range_formula_and_end_shift():
    m, g = 324, 8
    G = round(m / g)
    scale = G / m
    # a window [100, 324): n = round(224*scale) cells from round(100*scale)
    a, b = scale_range(100, 324, scale, 0, G)
    assert (a, b) == (round(100 * scale), round(100 * scale) + round(224 * scale))
    assert 8 * a - 100 == -4  # decoded at the nominal 8 voxels per cell: points of this window move by -4 voxels
    # the fallback: round(end*s) - round(start*s) != n; the candidate with the smaller end errors wins
    start, end, s = 5, 20, 0.3      # n = round(4.5) = 4; round(6.0) - round(1.5) = 6 - 2 = 4: regular
    assert scale_range(start, end, s, 0, 10) == (2, 6)
    start, end, s = 3, 13, 0.25     # n = round(2.5) = 2; round(3.25) - round(0.75) = 3 - 1 = 2
    assert scale_range(start, end, s, 0, 10) == (1, 3)
    start, end, s = 2, 12, 0.25     # n = 2; round(3.0) - round(0.5) = 3 - 0 = 3 != 2: candidates int 0, round 0
    assert scale_range(start, end, s, 0, 10) == (0, 2)
    start, end, s = 6, 16, 0.25     # n = 2; round(4.0) - round(1.5) = 4 - 2 = 2
    assert scale_range(start, end, s, 0, 10) == (2, 4)
    start, end, s = 14, 24, 0.25    # n = round(2.5) = 2; round(6) - round(3.5) = 6 - 4 = 2
    assert scale_range(start, end, s, 0, 10) == (4, 6)
    start, end, s = 10, 20, 0.25    # n = 2; round(5) - round(2.5) = 5 - 2 = 3: int 2 / round 2 -> (2, 4)
    assert scale_range(start, end, s, 0, 10) == (2, 4)
    start, end, s = 3, 6, 0.25      # 2d z: n = max(1, round(0.75)) = 1
    assert scale_range(start, end, s, 0, 10, at_least_one=True) == (1, 2)


@pytest.mark.parametrize("n_in,n_out", [(14, 28), (14, 29), (13, 26), (7, 14), (2, 5), (5, 3), (6, 6)])
def test_resize_positions_formula(n_in, n_out):
    """PyTorch's source index given an output size, in float32 (area_pixel_compute_source_index)."""
    i0, i1, l0, l1 = resize_positions(n_in, n_out)
    scale = np.float32(n_in) / np.float32(n_out)
    for o in range(n_out):
        u = max(scale * (np.float32(o) + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
        k = min(int(np.floor(u)), n_in - 1)
        assert (i0[o], i1[o]) == (k, min(k + 1, n_in - 1))
        assert l1[o] == np.float32(u - np.float32(k)) and l0[o] == np.float32(1.0) - l1[o]
        assert l1.dtype == l0.dtype == np.float32


def test_resize_linear_matches_torch_align_corners_false():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(size=(2, 7, 14, 13)).astype(np.float32)
    ours = resize_linear(x, (14, 28, 26), (1, 2, 3))
    theirs = torch.nn.functional.interpolate(torch.from_numpy(x)[:, None], size=(14, 28, 26), mode="trilinear",
                                             align_corners=False)[:, 0].numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.parametrize("shape,size", [((14, 28, 28), (14, 56, 56)), ((7, 14, 13), (14, 14, 26)),
                                        ((14, 28, 28), (28, 28, 28))])
def test_resize_linear_leaves_a_matching_axis_as_the_cuda_kernel_reads_it(shape, size):
    """Their window resize ran on the GPU (upsample_trilinear3d_out_frame): a copy only when every size
    matches, else every axis is sampled, a matching one at scale float32(n)/n = 1: u = j, l1 = 0, l0 = 1.
    Sampling every axis so (their nesting: x, then y, then z) gives exactly what resize_linear gives by
    leaving the matching axes alone (as the CPU kernel, which copies them)."""
    x = np.random.default_rng(1).normal(size=(2,) + shape).astype(np.float32)
    cuda = x
    for axis in (3, 2, 1):
        n = cuda.shape[axis]
        i0, i1, l0, l1 = resize_positions(n, size[axis - 1])
        if n == size[axis - 1]:
            np.testing.assert_array_equal(i0, np.arange(n))
            assert (l1 == 0).all() and (l0 == 1).all()
        w = [1, 1, 1, 1]
        w[axis] = -1
        cuda = np.take(cuda, i0, axis) * l0.reshape(w) + np.take(cuda, i1, axis) * l1.reshape(w)
    np.testing.assert_array_equal(resize_linear(x, size, (1, 2, 3)), cuda)


def test_decode_at_the_nominal_stride_half_pixel():
    """cell k -> resampled (k + 0.5)*8 - 0.5 -> original ((that) + 0.5)*t/s - 0.5 = (k + 0.5)*8*t/s - 0.5."""
    g = member_geometry(_member(stitch=Stitch(grid_stride=8), resample=Resample("half_pixel", "uint8")), 16.0)
    k = np.array([[0, 3, 17]])
    s = 13.1
    np.testing.assert_allclose(cell_voxels(k, g, s), (k + 0.5) * 8 * 16.0 / s - 0.5, rtol=0, atol=1e-12)
    corner = member_geometry(_member(stitch=Stitch(grid_stride=8)), 16.0)
    np.testing.assert_allclose(cell_voxels(k, corner, s), (k * 8 + 3.5) * 16.0 / s, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------ logit vs prob stitching


def _sig(x):
    return 1.0 / (1.0 + math.exp(-x))


@pytest.mark.parametrize("grid", [None, 16])
def test_logit_vs_prob_stitching(grid):
    """Two windows overlapping on one cell, each output a constant logit a / b: the overlap is
    sigmoid((a + b)/2) with space logit, (sigmoid(a) + sigmoid(b))/2 with prob."""
    a, b = -1.0, 3.0

    def engine(batch):  # window value -> its logit: left window (input 0) -> a, right (input 1) -> b
        v = batch.reshape(len(batch), -1).mean(axis=1)
        return np.where(v < 0.5, a, b).astype(np.float32)[:, None, None, None, None] * np.ones((1, 1, 1, 1, 2),
                                                                                                   np.float32)

    vol = np.zeros((16, 16, 48), np.float32)
    vol[:, :, 32:] = 1.0  # windows start at 0 and 16 on x (overlap 0.5 of 32): [0,32) mean 0, [16,48) mean 0.5
    out = {}
    for space in ("prob", "logit"):
        windows = Windows("end" if grid else "stride", "mean")
        m = _member(patch=(16, 16, 32), overlap=(0.0, 0.0, 0.5), stitch=Stitch("mean", space, grid), windows=windows,
                    normalize=Normalize("affine", 0.0, 1.0))
        heat = MemberPredictor(m, engine, 16.0).heatmap(vol)
        out[space] = heat[0, 0]
    assert out["logit"][1] == pytest.approx(_sig((a + b) / 2), abs=1e-6)
    assert out["prob"][1] == pytest.approx((_sig(a) + _sig(b)) / 2, abs=1e-6)
    for space in out:
        assert out[space][0] == pytest.approx(_sig(a), abs=1e-6) and out[space][2] == pytest.approx(_sig(b), abs=1e-6)


# ------------------------------------------------------------------------------ NMS radius


def test_nms_radius_keeps_at_exactly_r():
    R = 1000.0
    pts = np.array([[0, 0, 0], [0, 0, R], [0, 0, R + R - 1e-6], [0, 0, 3 * R], [0, 0, 0.5 * R]], float)
    # best first: 0 kept; R away: kept (>= R); R - 1e-6 from the second: dropped; 3R: kept; 0.5R: dropped
    assert greedy_nms(pts, R).tolist() == [0, 1, 3]
    assert greedy_nms(pts, R, max_keep=2).tolist() == [0, 1]


def test_decode_nms_radius_then_top_k():
    """Peaks 2 cells apart (2 x 256 Å at stride 16 = 512 Å): a 600 Å radius keeps the higher only, a radius
    of exactly 512 Å keeps both; top_k applies after NMS."""
    heat = np.zeros((1, 1, 12), np.float32)
    heat[0, 0, [1, 3, 7, 10]] = [0.9, 0.8, 0.7, 0.6]
    for radius, top_k, want in ((0.0, 3, [1, 3, 7]), (600.0, 3, [1, 7, 10]), (600.0, 2, [1, 7]),
                                 (512.0, 4, [1, 3, 7, 10]), (512.001, 4, [1, 7, 10])):
        m = _member(decode=Decode(nms_kernel=1, min_conf=0.1, top_k=top_k, nms_radius_A=radius))
        c = MemberPredictor(m, None, 16.0).decode(heat, 16.0)
        assert np.round((c.zyx[:, 2] - 7.5) / 16.0).astype(int).tolist() == want, (radius, top_k)  # voxel = 16c + 7.5


# ------------------------------------------------------------------------------ threshold ties, WBF rescale


def test_threshold_keep_equal():
    import pandas as pd

    best = pd.DataFrame({"tomo_id": list("abcd"), "z": [1.0] * 3 + [-1.0], "y": [1.0] * 3 + [-1.0],
                         "x": [1.0] * 3 + [-1.0], "conf": [0.1, 0.2, 0.3, 0.0]})
    thr = float(np.quantile([0.1, 0.2, 0.3, 0.0], 0.5))   # = 0.15
    assert decide(best, Threshold(quantile=0.5)).threshold == pytest.approx(thr)
    fixed = Threshold(fixed=0.2)
    assert decide(best, fixed).n_motor == 1                            # 0.3 > 0.2 only
    keep = Threshold(fixed=0.2, keep_equal=True)
    assert decide(best, keep).n_motor == 2                             # 0.2 >= 0.2 and 0.3
    # no candidate (conf 0) stays "no motor" even at a threshold of 0
    assert decide(best, Threshold(fixed=0.0, keep_equal=True)).n_motor == 3


def test_rescale_members_vs_weights():
    """A cluster of n points: avg conf (sum c'/n) x min(n, M)/sum(w) or x min(n, sum(w))/sum(w)."""
    c1, c2 = 0.8, 0.6
    pts = np.zeros((2, 3))
    for w in ([1.0, 1.0], [0.5, 0.5], [2.0, 0.5]):
        W, M, n = sum(w), len(w), 2
        base = (c1 * w[0] + c2 * w[1]) / n
        _, fm = fuse_points(pts, [c1, c2], [0, 1], w, rescale="members")
        _, fw = fuse_points(pts, [c1, c2], [0, 1], w, rescale="weights")
        assert fm[0] == pytest.approx(base * min(n, M) / W)
        assert fw[0] == pytest.approx(base * min(n, W) / W)


# ------------------------------------------------------------------------------ TTA names vs theirs


@pytest.mark.parametrize("ours,theirs", [
    ("zxy_x", lambda x: np.rot90(x, 1, axes=(-2, -1))),
    ("zxy_xz", lambda x: np.flip(np.rot90(x, 1, axes=(-2, -1)), -3)),
    ("zyx_x", lambda x: np.flip(x, -1)),
    ("zyx_y", lambda x: np.flip(x, -2)),
    ("zyx_z", lambda x: np.flip(x, -3)),
    ("zxy_xy", lambda x: np.flip(np.rot90(x, 1, axes=(-2, -1)), -1)),        # their zxy_x
    ("zxy", lambda x: np.flip(np.rot90(x, 1, axes=(-2, -1)), -2)),           # their zxy_y
    ("zxy_y", lambda x: np.flip(np.rot90(x, 1, axes=(-2, -1)), (-2, -1))),   # their zxy_xy
])
def test_their_tta_is_ours_renamed(ours, theirs):
    """Their `zxy` = torch.rot90(k=1, dims=(Y, X)) (np.rot90 rotates the same way) = our zxy_x; etc."""
    x = np.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4)
    t = parse_tta(ours)
    np.testing.assert_array_equal(apply(x, t), theirs(x))
    np.testing.assert_array_equal(invert(apply(x, t), t), x)


def test_their_2d_xy_is_our_xy_x():
    x = np.arange(2 * 3 * 5 * 5).reshape(2, 3, 5, 5)
    np.testing.assert_array_equal(apply(x, parse_tta("xy_x", "yx")), np.rot90(x, 1, axes=(-2, -1)))


# ------------------------------------------------------------------------------ 2d slices geometry


def test_2d_slices_one_output_per_window_into_its_z_cell():
    """Windows of 3 slices every 3 (the last at Z-3), the slices as channels; window k's output lands
    in z cell scale_range(z0, z0+3) with G = round(Z/4)."""
    seen = []

    def engine(batch):  # (N, 3, H, W): output = the mean of the window's first channel
        seen.append(batch.shape)
        return np.broadcast_to(batch[:, :1, :1, :1].mean(axis=(2, 3), keepdims=True), (len(batch), 1, 2, 2)).copy()

    Z = 14
    vol = np.repeat(np.arange(Z, dtype=np.float32), 32 * 32).reshape(Z, 32, 32)
    m = _member(kind="2d", patch=(32, 32), channels=3, slice_spacing=32.0, slices=Slices(3, 3, 4),
                stitch=Stitch("mean", "prob", 8), windows=Windows("end", "mean"), overlap=(0.0, 0.0),
                activation="none", normalize=Normalize("affine", 0.0, 1.0))
    heat = MemberPredictor(m, engine, 16.0).heatmap(vol)
    G = round(Z / 4)
    assert heat.shape == (G, 4, 4) and all(s[1] == 3 for s in seen)
    sums, counts = np.zeros(G), np.zeros(G)
    for z0 in end_starts(Z, 3, 3):                           # 0, 3, 6, 9, 11
        a, b = scale_range(z0, z0 + 3, G / Z, 0, G, at_least_one=True)
        sums[a:b] += z0                                     # window output = its first slice's value
        counts[a:b] += 1
    np.testing.assert_allclose(heat[:, 0, 0], sums / counts, rtol=1e-6)


def _member(kind="3d", patch=(32, 32, 32), **kw):
    base = dict(name=f"m{kind}", kind=kind, model=None, patch=tuple(patch), stride=16, overlap=(0.0,) * len(patch),
                normalize=Normalize("affine", 0.0, 1.0), activation="sigmoid",
                tta=("zyx",) if kind == "3d" else ("yx",), weight=1.0, stitch="mean", batch_size=2,
                decode=Decode(nms_kernel=3, min_conf=0.0, top_k=5))
    base.update(kw)
    return Member(**base)


def test_window_counts_of_the_shipped_recipe():
    """246x786x760-ish at 16 Å: 2 end-placed windows per axis (3d); 2d: 3-slice windows every 3 slices."""
    from pathlib import Path

    from inference.manifest.parse import load_manifest
    from inference.predict.geometry import count_member_windows

    m = load_manifest(Path(__file__).parents[2] / "weights_manifest.yaml", check_files=False)
    assert count_member_windows(m.member("x3d_m"), 16.0, (245, 786, 759)) == 2 * 2 * 2
    assert count_member_windows(m.member("maxvit_tiny"), 16.0, (122, 786, 759)) == len(end_starts(122, 3, 3)) == 41
    demo = _member(patch=(64, 128, 128), overlap=(0.5,) * 3)     # cell-aligned: padded 64x144x128
    assert count_member_windows(demo, 16.0, (60, 130, 128)) == 1 * 2 * 1
