import math

import numpy as np
import pytest

from inference.decode.particle_components import decode_components
from inference.decode.particle_params import decode_params
from inference.decode.particle_watershed import decode_watershed
from inference.manifest.particle_classes import ParticleClass
from tests.decode.particle_balls import ball, cone

CELL = (20.0, 20.0, 20.0)
R_A = 120.0  # a 6-cell radius on 20 Å cells
CLS = ParticleClass("p", R_A, 1.0, 0.16)


def params(method="watershed", **kw):
    return decode_params(CLS, method, **kw)


def touching(shape=(20, 24, 40), r=6.0, cell=CELL):
    """Two balls of radius r cells, centres 2r apart along x (they touch): uniform prob 1."""
    c1, c2 = (10.0, 12.0, 12.0), (10.0, 12.0, 12.0 + 2 * r)
    return np.maximum(ball(shape, c1, r * cell[2], cell), ball(shape, c2, r * cell[2], cell)), c1, c2


def test_watershed_separates_touching_balls_that_components_merges():
    prob, c1, c2 = touching()
    merged, _ = decode_components(prob, params("components"), CELL)
    np.testing.assert_allclose(merged, [[10.0, 12.0, 18.0]], atol=1e-9)  # one blob: the pair's midpoint
    split, conf = decode_watershed(prob, params(), CELL)
    assert len(split) == 2 and conf.tolist() == [1.0, 1.0]
    got = split[np.argsort(split[:, 2])]
    # each half holds one ball; the cells on the plane between them go to one side (a tenth of a cell)
    np.testing.assert_allclose(got, [c1, c2], atol=0.1)


def test_a_single_ball_is_one_pick_as_components():
    prob = cone((20, 24, 30), (10, 12, 14), 6.0)
    p = params()
    assert p.in_cells(CELL).split_cells <= int((prob >= np.float32(0.16)).sum())  # big enough to be examined
    np.testing.assert_array_equal(decode_watershed(prob, p, CELL)[0], decode_components(prob, p, CELL)[0])
    np.testing.assert_allclose(decode_watershed(prob, p, CELL)[0], [[10, 12, 14]], atol=1e-12)


def test_components_under_the_split_size_stay_whole():
    prob, _, _ = touching()
    size_A3 = float((prob > 0).sum()) * 20.0 ** 3
    assert len(decode_watershed(prob, params(split_A3=size_A3 + 1.0), CELL)[1]) == 1
    assert len(decode_watershed(prob, params(split_A3=size_A3), CELL)[1]) == 2


def test_the_default_split_size_is_one_ball():
    p = params()
    assert p.in_cells(CELL).split_cells == math.ceil(4 / 3 * math.pi * 6.0 ** 3)


def test_markers_closer_than_marker_A_merge():
    prob, _, _ = touching()  # centres 12 cells = 240 Å apart
    assert len(decode_watershed(prob, params(marker_A=239.0), CELL)[1]) == 2
    # a box of half-width 13 cells holds both centres: one marker, the pair stays whole
    assert len(decode_watershed(prob, params(marker_A=260.0), CELL)[1]) == 1


def test_anisotropic_cells():
    # 40 x 20 x 20 Å cells; balls of 120 Å in Å, centres 240 Å apart along z
    cell = (40.0, 20.0, 20.0)
    shape = (16, 20, 20)
    c1, c2 = (4.0, 10.0, 10.0), (10.0, 10.0, 10.0)
    prob = np.maximum(ball(shape, c1, R_A, cell), ball(shape, c2, R_A, cell))
    assert len(decode_components(prob, params("components"), cell)[1]) == 1
    got = decode_watershed(prob, params(), cell)[0]
    got = got[np.argsort(got[:, 0])]
    np.testing.assert_allclose(got, [c1, c2], atol=0.2)


def test_regions_under_the_minimum_blob_are_dropped():
    # a big ball touching a small one: the small one's region is below min_blob_A3
    shape = (20, 24, 40)
    big = ball(shape, (10, 12, 12), 6 * 20.0, CELL)
    small = ball(shape, (10, 12, 20), 2 * 20.0, CELL)
    prob = np.maximum(big, small)
    p = params(marker_A=60.0, min_blob_A3=0.0)
    assert len(decode_watershed(prob, p, CELL)[1]) == 2
    small_cells = int((small > 0).sum())
    p = params(marker_A=60.0, min_blob_A3=(small_cells + 1) * 20.0 ** 3)
    cells, _ = decode_watershed(prob, p, CELL)
    assert len(cells) == 1 and abs(cells[0, 2] - 12.0) < 0.5


def test_conf_is_the_highest_prob_of_each_region():
    prob, c1, c2 = touching()
    prob = prob * np.where(np.arange(prob.shape[2]) < 18, 0.9, 0.6).astype(np.float32)
    cells, conf = decode_watershed(prob, params(), CELL)
    assert conf.tolist() == [float(np.float32(0.9)), float(np.float32(0.6))]
    assert cells[0, 2] < 18 < cells[1, 2]


def test_empty_map():
    cells, conf = decode_watershed(np.zeros((5, 6, 7), np.float32), params(), CELL)
    assert cells.shape == (0, 3) and conf.shape == (0,)


@pytest.mark.parametrize("connectivity", [6, 26])
def test_connectivity_is_passed_to_the_watershed(connectivity):
    prob, c1, c2 = touching()
    cells, _ = decode_watershed(prob, params(connectivity=connectivity), CELL)
    assert len(cells) == 2
