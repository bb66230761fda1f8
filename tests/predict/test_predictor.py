"""A planted point comes back within one output cell, for 3d and 2d members, at real spacings."""

import numpy as np
import pytest

from inference.manifest.types import Decode, Member, Normalize
from inference.predict.geometry import member_geometry
from inference.predict.predictor import MemberPredictor, slice_stack


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
    prep = one.prepare(one.resample(vol, 16.0))
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


def test_z_chunks_hold_whole_batches_within_the_budget():
    from inference.predict.predictor import z_chunks

    # 1 window per slice, batch 4, 10 bytes a slice, budget 95 bytes: 9 slices fit, 8 = 2 whole batches
    assert z_chunks(20, 1, 4, 10, 95) == [(0, 8), (8, 16), (16, 20)]
    # 6 windows per slice, batch 4: 2 slices = 12 windows = 3 batches is the unit; 5 fit -> 4 slices
    assert z_chunks(9, 6, 4, 10, 50) == [(0, 4), (4, 8), (8, 9)]
    # a budget below one unit still makes progress, one unit at a time; a big budget is one chunk
    assert z_chunks(5, 1, 2, 100, 1) == [(0, 2), (2, 4), (4, 5)]
    assert z_chunks(5, 1, 2, 100, 10**9) == [(0, 5)]


@pytest.mark.parametrize("tta", [("yx",), ("yx", "xy_x")])
@pytest.mark.parametrize("scope", ["volume", "window"])
def test_2d_channel_stack_in_chunks_gives_the_same_heatmap_and_batches(tta, scope):
    """The 2d channel stack built per chunk of slices: the same heatmaps, from the same engine batches."""
    from dataclasses import replace

    m = replace(member("2d", tta, patch=(64, 64), channels=3, slice_spacing=32.0), tta_scope=scope)
    vol = planted((61, 97, 75), 13.1, (30.0, 50.5, 60.2))
    batches = {"whole": [], "chunks": []}

    def engine(key):
        def run(batch):
            batches[key].append(np.array(batch))
            return pool2(batch) + batch[:, 0:1, ::16, ::16] * 0.01  # channels differ: 0 weighs more
        return run

    whole = MemberPredictor(m, engine("whole"), 16.0)
    chunked = MemberPredictor(m, engine("chunks"), 16.0)
    chunked.stack_budget_bytes = 1  # one batch of slices per chunk
    prepared = whole.prepare(whole.resample(vol, 13.1))
    a, b = whole.heatmaps(prepared), chunked.heatmaps(prepared)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    # the same batches (the chunks run the transforms chunk by chunk, so in another order)
    assert sorted(x.tobytes() for x in batches["whole"]) == sorted(y.tobytes() for y in batches["chunks"])
    assert len(batches["chunks"]) > len(tta)  # it did run in chunks
