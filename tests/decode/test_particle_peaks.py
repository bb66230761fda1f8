import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, maximum_filter

from inference.decode.particle_params import decode_params
from inference.decode.particle_peaks import candidates_cpu, decode_peaks
from inference.manifest.particle_classes import ParticleClass
from tests.decode.particle_balls import cone

CELL = (20.0, 20.0, 20.0)
CLS = ParticleClass("p", 60.0, 1.0, 0.16)  # filter 60 Å = 3 cells, NMS 30 Å = 1.5 cells


def params(**kw):
    return decode_params(CLS, "peaks", **kw)


def test_a_cone_gives_its_centre():
    prob = cone((30, 40, 50), (12, 20, 31), radius=6)
    cells, conf = decode_peaks(prob, params(), CELL)
    assert cells.tolist() == [[12.0, 20.0, 31.0]] and conf.tolist() == [1.0]
    assert cells.dtype == np.float64 and conf.dtype == np.float64


@pytest.mark.parametrize("gap, picks", [(3, 1), (4, 2)])
def test_the_filter_box_is_the_radius_in_cells(gap, picks):
    # half-width floor(60 / 20 + 0.5) = 3 cells: a lower peak 3 cells away is inside the higher one's box
    prob = np.zeros((9, 9, 20), np.float32)
    prob[4, 4, 5], prob[4, 4, 5 + gap] = 0.9, 0.8
    cells, conf = decode_peaks(prob, params(), CELL)
    assert len(conf) == picks and cells[0].tolist() == [4, 4, 5]


def test_anisotropic_cells_give_a_box_per_axis():
    # cells 40 x 20 x 20 Å: half-widths floor(1.5 + 0.5) = 2 along z, 3 along y and x
    prob = np.zeros((12, 9, 9), np.float32)
    prob[2, 4, 4], prob[4, 4, 4] = 0.9, 0.8      # 2 z-cells apart: inside the box
    prob[9, 4, 4] = 0.7                          # 5 z-cells from the second, 7 from the first
    cells, _ = decode_peaks(prob, params(), (40.0, 20.0, 20.0))
    assert cells[:, 0].tolist() == [2.0, 9.0]
    prob[6, 4, 4] = 0.85                         # 2 z-cells from (4, 4, 4), 3 from (9, 4, 4): suppresses the first
    cells, _ = decode_peaks(prob, params(), (40.0, 20.0, 20.0))
    assert cells[:, 0].tolist() == [2.0, 6.0, 9.0]


def test_the_threshold_boundary_is_inclusive_in_float32():
    t = np.float32(0.16)
    prob = np.zeros((5, 5, 12), np.float32)
    prob[2, 2, 2] = t                                   # exactly the threshold (as float32): kept
    prob[2, 2, 9] = np.nextafter(t, np.float32(0))      # one float32 step below: not in the mask
    cells, conf = decode_peaks(prob, params(), CELL)
    assert cells.tolist() == [[2.0, 2.0, 2.0]] and conf.tolist() == [float(t)]


def test_a_plateau_gives_its_first_cell_after_the_nms():
    prob = np.zeros((5, 5, 9), np.float32)
    prob[2, 2, 3:5] = 0.5  # two equal neighbours: both candidates, 20 Å apart < 30 Å NMS
    cells, _ = decode_peaks(prob, params(), CELL)
    assert cells.tolist() == [[2.0, 2.0, 3.0]]
    cells, _ = decode_peaks(prob, params(nms_A=0.0), CELL)
    assert cells.tolist() == [[2.0, 2.0, 3.0], [2.0, 2.0, 4.0]]


@pytest.mark.parametrize("nms_A, kept", [(59.9, 3), (60.0, 3), (60.1, 2)])
def test_the_nms_distance_in_angstrom(nms_A, kept):
    # filter_A 0: every mask cell is a candidate; 3 cells at x = 0, 3, 6 (60 Å apart), best first
    prob = np.zeros((1, 1, 7), np.float32)
    prob[0, 0, [0, 3, 6]] = [0.9, 0.8, 0.7]
    cells, _ = decode_peaks(prob, params(filter_A=0.0, nms_A=nms_A), CELL)
    assert len(cells) == kept  # exactly nms_A apart is kept; 60.1: x=3 is suppressed, x=6 is 120 Å from x=0


def test_order_and_cap():
    prob = np.zeros((3, 3, 40), np.float32)
    xs = [3, 10, 17, 24, 31]
    prob[1, 1, xs] = [0.3, 0.9, 0.5, 0.9, 0.7]  # a tie: 0.9 twice, raster order breaks it
    cells, conf = decode_peaks(prob, params(), CELL)
    assert cells[:, 2].tolist() == [10, 24, 31, 17, 3]
    np.testing.assert_allclose(conf, np.float32([0.9, 0.9, 0.7, 0.5, 0.3]))
    cells, conf = decode_peaks(prob, params(max_picks=3), CELL)
    assert cells[:, 2].tolist() == [10, 24, 31]
    assert len(decode_peaks(prob, params(max_picks=0), CELL)[1]) == 0


def test_border_exclusion():
    prob = np.zeros((3, 3, 20), np.float32)
    prob[1, 1, [1, 6, 12, 18]] = [0.9, 0.8, 0.7, 0.6]
    # border 20 Å = 1 cell: x = 1 is 20 Å from the first centre (kept); 2 rows of z/y: 20 Å from both ends
    cells, _ = decode_peaks(prob, params(border_A=20.0), CELL)
    assert cells[:, 2].tolist() == [1, 6, 12, 18]
    # 20.1 Å: every pick has z = y = 1, 20 Å from the edge: all dropped
    assert len(decode_peaks(prob, params(border_A=20.1), CELL)[1]) == 0
    cells, _ = decode_peaks(np.pad(prob, ((2, 2), (2, 2), (0, 0))), params(border_A=30.0), CELL)
    assert cells[:, 2].tolist() == [6, 12]  # x = 1 and x = 18 are 20 Å from an end


def test_empty_maps():
    for prob in (np.zeros((4, 5, 6), np.float32), np.full((4, 5, 6), 0.1, np.float32)):
        cells, conf = decode_peaks(prob, params(), CELL)
        assert cells.shape == (0, 3) and conf.shape == (0,)


def reference_candidates(prob, threshold, widths):
    mask = prob >= np.float32(threshold)
    top = maximum_filter(np.where(mask, prob, -np.inf), size=widths, mode="constant", cval=-np.inf)
    flat = np.flatnonzero(mask & (prob == top))
    return flat, prob.reshape(-1)[flat]


@pytest.mark.parametrize("threshold", [0.55, 0.5, 0.3, 0.02])  # few blobs ... the whole map (the fallback)
@pytest.mark.parametrize("widths", [(7, 7, 7), (3, 5, 9), (1, 1, 1)])
def test_the_crops_give_the_whole_map_answer(threshold, widths):
    rng = np.random.default_rng(7)
    prob = gaussian_filter(rng.random((24, 40, 36)), 2.0).astype(np.float32)
    prob = (prob - prob.min()) / (prob.max() - prob.min())
    prob[rng.random(prob.shape) < 0.01] = 1.0  # isolated plateaus and edge cells
    flat, conf = candidates_cpu(prob, threshold, widths)
    ref_flat, ref_conf = reference_candidates(prob, threshold, widths)
    assert np.array_equal(flat, ref_flat) and np.array_equal(conf, ref_conf)


def test_nan_cells_never_take_part():
    prob = cone((9, 9, 9), (4, 4, 4), 3)
    prob[4, 4, 6] = np.nan
    cells, conf = decode_peaks(prob, params(), CELL)
    assert cells.tolist() == [[4.0, 4.0, 4.0]] and conf.tolist() == [1.0]
