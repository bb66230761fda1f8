import numpy as np
import pytest

from inference.decode.peaks import cell_centres_A, cells_to_voxels, find_peaks


def test_two_separated_peaks_and_suppression():
    h = np.zeros((5, 6, 7), np.float32)
    h[1, 1, 1] = 0.9
    h[1, 1, 2] = 0.5   # neighbour of the first: suppressed by a 3-kernel
    h[4, 5, 6] = 0.7   # corner: the border counts as -inf
    idx, conf = find_peaks(h, nms_kernel=3, min_conf=0.1, top_k=10)
    assert idx.tolist() == [[1, 1, 1], [4, 5, 6]]
    np.testing.assert_allclose(conf, [0.9, 0.7])


def test_kernel_one_keeps_everything_above_min_conf():
    h = np.array([[[0.3, 0.2, 0.01]]], np.float32)
    idx, conf = find_peaks(h, nms_kernel=1, min_conf=0.02, top_k=10)
    assert idx.tolist() == [[0, 0, 0], [0, 0, 1]]


def test_kernel_five_suppresses_farther():
    h = np.zeros((1, 1, 9), np.float32)
    h[0, 0, 2], h[0, 0, 4], h[0, 0, 8] = 0.8, 0.6, 0.4
    assert find_peaks(h, nms_kernel=5, min_conf=0.1)[0][:, 2].tolist() == [2, 8]
    assert find_peaks(h, nms_kernel=3, min_conf=0.1)[0][:, 2].tolist() == [2, 4, 8]


def test_top_k_and_min_conf_and_order():
    h = np.zeros((1, 1, 20), np.float32)
    h[0, 0, ::2] = np.linspace(0.1, 1.0, 10)
    idx, conf = find_peaks(h, nms_kernel=1, min_conf=0.5, top_k=3)
    assert conf.tolist() == pytest.approx([1.0, 0.9, 0.8])
    assert idx[:, 2].tolist() == [18, 16, 14]


def test_plateau_ties_are_kept_in_index_order():
    h = np.zeros((1, 1, 6), np.float32)
    h[0, 0, 2:4] = 0.5
    idx, conf = find_peaks(h, nms_kernel=3, min_conf=0.1)
    assert idx[:, 2].tolist() == [2, 3]


def test_empty():
    idx, conf = find_peaks(np.zeros((2, 2, 2), np.float32), min_conf=0.1)
    assert idx.shape == (0, 3) and conf.shape == (0,)


def test_peaks_of_a_2d_heatmap():
    # any rank: the box is kernel cells wide on each of its axes
    h = np.zeros((5, 7), np.float32)
    h[1, 1], h[1, 2], h[4, 6], h[3, 3] = 0.9, 0.5, 0.7, 0.05
    idx, conf = find_peaks(h, nms_kernel=3, min_conf=0.1)
    assert idx.tolist() == [[1, 1], [4, 6]]
    np.testing.assert_allclose(conf, [0.9, 0.7])


def test_cell_geometry_formula():
    # cell c covers resampled voxels [16c, 16c+16): centre (16c + 7.5) * t Å
    idx = np.array([[0, 1, 2]])
    np.testing.assert_allclose(cell_centres_A(idx, (16, 16, 16), (16.0,) * 3),
                               [[7.5 * 16, 23.5 * 16, 39.5 * 16]])
    np.testing.assert_allclose(cells_to_voxels(idx, (16, 16, 16), (16.0,) * 3, 8.0),
                               [[7.5 * 2, 23.5 * 2, 39.5 * 2]])
    # 2d member geometry: stride 1 along z at slice spacing 32 Å
    np.testing.assert_allclose(cell_centres_A(np.array([[3, 0, 0]]), (1, 16, 16), (32.0, 16.0, 16.0)),
                               [[96.0, 120.0, 120.0]])


def test_per_axis_kernel_and_physical_extent():
    from inference.decode.peaks import nms_kernel_for

    assert nms_kernel_for((256.0, 256.0, 256.0), 3) == (3, 3, 3)
    assert nms_kernel_for((64.0, 256.0, 256.0), 3) == (13, 3, 3)   # 3*256/64 = 12 -> odd 13
    assert nms_kernel_for((32.0, 256.0, 256.0), 1) == (9, 1, 1)
    h = np.zeros((20, 3, 3), np.float32)
    h[4, 1, 1], h[9, 1, 1] = 0.9, 0.8          # 5 cells apart along z
    assert len(find_peaks(h, nms_kernel=(3, 3, 3), min_conf=0.1)[1]) == 2
    assert len(find_peaks(h, nms_kernel=(13, 3, 3), min_conf=0.1)[1]) == 1
    with pytest.raises(ValueError, match="odd"):
        find_peaks(h, nms_kernel=(2, 3, 3))
