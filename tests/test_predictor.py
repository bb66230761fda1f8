"""A planted point comes back within one output cell, for 3d and 2d members, at real spacings."""

import numpy as np
import pytest

from inference.manifest import Decode, Member, Normalize
from inference.predictor import MemberPredictor, member_geometry, slice_stack


def pool3(batch, s=16):
    n, c, d, h, w = batch.shape
    return batch.reshape(n, c, d // s, s, h // s, s, w // s, s).mean(axis=(3, 5, 7)).mean(axis=1, keepdims=True)


def pool2(batch, s=16):
    n, c, h, w = batch.shape
    return batch.reshape(n, c, h // s, s, w // s, s).mean(axis=(3, 5)).mean(axis=1, keepdims=True)


def member(kind="3d", tta=("zyx",), patch=(32, 64, 64), **kw):
    return Member(name=f"m{kind}", kind=kind, model=None, patch=tuple(patch), stride=16,
                  overlap=(0.25,) * len(patch), normalize=Normalize("affine", 0.0, 1.0), activation="none",
                  tta=tuple(tta), weight=1.0, stitch="mean", batch_size=4,
                  decode=Decode(nms_kernel=3, min_conf=0.0, top_k=5), **kw)


def planted(shape, spacing, point, radius_A=200.0):
    zz, yy, xx = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    d2 = sum(((a - p) * spacing) ** 2 for a, p in zip((zz, yy, xx), point))
    vol = np.full(shape, 60, np.uint8)
    vol[d2 <= radius_A ** 2] = 220
    return vol


CASES = [
    (6.5, (150, 203, 171), (70.3, 120.8, 40.1)),
    (13.1, (61, 97, 75), (30.0, 50.5, 60.2)),
    (16.1, (45, 70, 33), (20.0, 10.0, 16.0)),   # odd shape, x smaller than the patch
    (19.7, (37, 61, 45), (18.4, 40.0, 22.7)),   # smaller than the patch on every axis
]


def within_one_cell(found_vox, true_vox, spacing, cell_A):
    delta_A = np.abs(np.asarray(found_vox) - np.asarray(true_vox)) * spacing
    return bool(np.all(delta_A <= np.asarray(cell_A)))


@pytest.mark.parametrize("spacing,shape,point", CASES)
@pytest.mark.parametrize("tta", [("zyx",), ("zyx", "zxy_x", "yxz_zy")])
def test_planted_point_3d(spacing, shape, point, tta):
    m = member("3d", tta)
    pred = MemberPredictor(m, pool3, 16.0)
    cands = pred(planted(shape, spacing, point), spacing)
    assert len(cands.conf) >= 1
    assert within_one_cell(cands.zyx[0], point, spacing, pred.geometry.cell_A), (cands.zyx[0], point)


@pytest.mark.parametrize("spacing,shape,point", CASES)
@pytest.mark.parametrize("tta", [("yx",), ("yx", "xy_x")])
def test_planted_point_2d(spacing, shape, point, tta):
    m = member("2d", tta, patch=(64, 64), channels=3, slice_spacing=32.0)
    pred = MemberPredictor(m, pool2, 16.0)
    g = pred.geometry
    assert g.strides == (1, 16, 16) and g.spacings == (32.0, 16.0, 16.0) and g.patch == (1, 64, 64)
    cands = pred(planted(shape, spacing, point), spacing)
    assert within_one_cell(cands.zyx[0], point, spacing, g.cell_A), (cands.zyx[0], point)


def test_tta_average_equals_single_for_symmetric_model():
    """An average pool commutes with flips/transpositions of cell-aligned volumes: TTA changes nothing."""
    vol = np.random.default_rng(0).integers(0, 255, (40, 50, 60), dtype=np.uint8)
    one = MemberPredictor(member("3d", ("zyx",)), pool3, 16.0)
    many = MemberPredictor(member("3d", ("zyx", "zyx_x", "xzy_zy")), pool3, 16.0)
    prep = one.normalize(one.resample(vol, 16.0))
    # equal up to float32 summation order (values ~128)
    np.testing.assert_allclose(one.heatmap(prep), many.heatmap(prep), rtol=1e-5, atol=0)


def test_slice_stack_replicates_edges():
    v = np.arange(4, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    s = slice_stack(v, 3)
    assert s.shape == (3, 4, 2, 2)
    assert s[:, :, 0, 0].tolist() == [[0, 0, 1, 2], [0, 1, 2, 3], [1, 2, 3, 3]]


def test_geometry_cell_size():
    assert member_geometry(member("3d"), 16.0).cell_A == (256.0, 256.0, 256.0)
    g2 = member_geometry(member("2d", ("yx",), patch=(64, 64), channels=3, slice_spacing=32.0), 16.0)
    assert g2.cell_A == (32.0, 256.0, 256.0)
