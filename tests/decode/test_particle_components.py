import numpy as np
import pytest
from scipy.ndimage import gaussian_filter, generate_binary_structure, label

from inference.decode.mask_cells import HOPS, component_stats, label_cells_cpu
from inference.decode.particle_components import decode_components
from inference.decode.particle_params import decode_params
from inference.manifest.particle_classes import ParticleClass
from tests.decode.particle_balls import ball, cone

CELL = (20.0, 20.0, 20.0)
CLS = ParticleClass("p", 60.0, 1.0, 0.16)


def params(**kw):
    return decode_params(CLS, "components", **kw)


@pytest.mark.parametrize("weighted", [True, False])
def test_a_ball_gives_its_centre(weighted):
    prob = cone((30, 40, 50), (12, 20, 31), radius=6)
    cells, conf = decode_components(prob, params(weighted_centroid=weighted), CELL)
    np.testing.assert_allclose(cells, [[12.0, 20.0, 31.0]], atol=1e-12)
    assert conf.tolist() == [1.0]


def test_the_centroid_rule():
    prob = np.zeros((3, 3, 12), np.float32)
    prob[1, 1, 5:8] = [0.2, 0.4, 0.6]
    p = params(min_blob_A3=0.0)
    cells, conf = decode_components(prob, p, CELL)
    w = np.float32([0.2, 0.4, 0.6]).astype(np.float64)
    assert cells[0, 2] == pytest.approx((5 * w[0] + 6 * w[1] + 7 * w[2]) / w.sum(), abs=1e-12)
    assert conf.tolist() == [float(np.float32(0.6))]  # the highest prob of the blob
    cells, _ = decode_components(prob, params(min_blob_A3=0.0, weighted_centroid=False), CELL)
    assert cells.tolist() == [[1.0, 1.0, 6.0]]


@pytest.mark.parametrize("n_cells, kept", [(3, 1), (2, 0)])
def test_the_minimum_blob_in_cells(n_cells, kept):
    prob = np.zeros((3, 3, 8), np.float32)
    prob[1, 1, 2:2 + n_cells] = 0.5
    # 3 cells of 20^3 Å^3 = 24000 Å^3: a blob of 3 cells reaches it, one of 2 does not
    assert len(decode_components(prob, params(min_blob_A3=24000.0), CELL)[1]) == kept


def test_the_default_minimum_blob_is_five_percent_of_the_ball():
    # 60 Å ball / (20 Å)^3 = 113.1 cells; 5 %: 5.65 -> 6 cells
    prob = np.zeros((3, 3, 12), np.float32)
    prob[1, 1, 1:7] = 0.5   # 6 cells: kept
    prob[1, 1, 8:13] = 0.5  # 4 cells: dropped
    cells, _ = decode_components(prob, params(), CELL)
    assert cells.tolist() == [[1.0, 1.0, 3.5]]


@pytest.mark.parametrize("offset, picks", [
    ((0, 0, 1), {6: 1, 18: 1, 26: 1}),  # faces touch
    ((0, 1, 1), {6: 2, 18: 1, 26: 1}),  # an edge
    ((1, 1, 1), {6: 2, 18: 2, 26: 1}),  # a corner
])
def test_connectivity(offset, picks):
    prob = np.zeros((4, 4, 4), np.float32)
    prob[1, 1, 1] = 0.9
    prob[1 + offset[0], 1 + offset[1], 1 + offset[2]] = 0.8
    for conn, n in picks.items():
        assert len(decode_components(prob, params(connectivity=conn, min_blob_A3=0.0), CELL)[1]) == n


def test_order_ties_border_and_cap():
    prob = np.zeros((3, 3, 30), np.float32)
    for x, v in ((2, 0.5), (8, 0.9), (14, 0.5), (20, 0.7), (27, 0.6)):
        prob[1, 1, x] = v
    p = params(min_blob_A3=0.0)
    cells, conf = decode_components(prob, p, CELL)
    assert cells[:, 2].tolist() == [8, 20, 27, 2, 14]  # conf descending; the 0.5 tie by raster order
    assert decode_components(prob, params(min_blob_A3=0.0, max_picks=2), CELL)[0][:, 2].tolist() == [8, 20]
    cells, _ = decode_components(prob, params(min_blob_A3=0.0, border_A=50.0), CELL)
    assert cells.shape == (0, 3)  # z = y = 1: 20 Å from the edge
    cells, _ = decode_components(np.pad(prob, ((3, 3), (3, 3), (0, 0))), params(min_blob_A3=0.0, border_A=50.0), CELL)
    assert cells[:, 2].tolist() == [8, 20, 14]  # x = 2 (40 Å) and x = 27 (2 cells = 40 Å from 29) dropped


def test_empty_map():
    cells, conf = decode_components(np.zeros((5, 6, 7), np.float32), params(), CELL)
    assert cells.shape == (0, 3) and conf.shape == (0,)


def partition(cells):
    """The components as a set of frozensets of raster indices (ids do not matter)."""
    groups = {}
    for f, lab in zip(cells.flat.tolist(), cells.label.tolist()):
        groups.setdefault(lab, set()).add(f)
    return {frozenset(g) for g in groups.values()}


@pytest.mark.parametrize("connectivity", [6, 18, 26])
def test_sparse_and_cc3d_labelling_find_scipys_components(connectivity):
    pytest.importorskip("cc3d")
    rng = np.random.default_rng(connectivity)
    prob = gaussian_filter(rng.random((20, 30, 26)), 1.2).astype(np.float32)
    mask = prob >= np.quantile(prob, 0.8)
    ref, n = label(mask, structure=generate_binary_structure(3, HOPS[connectivity]))
    want = {frozenset(np.flatnonzero(ref.reshape(-1) == i).tolist()) for i in range(1, n + 1)}
    for method in ("sparse", "cc3d"):
        cells = label_cells_cpu(mask, prob, connectivity, method)
        assert cells.n == n and partition(cells) == want


def test_component_stats_formulas():
    prob = ball((9, 9, 9), (4, 4, 4), 2.0, value=0.5) + ball((9, 9, 9), (4, 4, 4), 1.0, value=0.3)
    prob[0, 0, 0] = 0.2
    cells = label_cells_cpu(prob > 0, prob, 26, "sparse")
    st = component_stats(cells, weighted=True)
    order = np.argsort(st.first)  # the corner cell comes first in raster order
    assert st.count[order].tolist() == [1, int((prob[1:] > 0).sum())]
    assert st.first[order].tolist() == [0, int(np.flatnonzero(prob.reshape(-1)[1:] > 0)[0] + 1)]
    assert st.lo[order].tolist() == [[0, 0, 0], [2, 2, 2]] and st.hi[order].tolist() == [[0, 0, 0], [6, 6, 6]]
    assert st.conf[order].tolist() == [float(np.float32(0.2)), float(np.float32(0.8))]
    np.testing.assert_allclose(st.centroid[order], [[0, 0, 0], [4, 4, 4]], atol=1e-12)


@pytest.mark.parametrize("method", ["components", "watershed"])
def test_the_threshold_boundary_is_inclusive_in_float32(method):
    from inference.decode.particle_decode import decode_class

    t = np.float32(0.16)
    prob = np.zeros((3, 3, 12), np.float32)
    prob[1, 1, 2] = t                                   # exactly the threshold (as float32): a blob
    prob[1, 1, 8] = np.nextafter(t, np.float32(0))      # one float32 step below: nothing
    cells, conf = decode_class(prob, decode_params(CLS, method, min_blob_A3=0.0), CELL)
    assert cells.tolist() == [[1.0, 1.0, 2.0]] and conf.tolist() == [float(t)]


@pytest.mark.parametrize("method", ["components", "watershed"])
def test_the_decoders_give_the_same_picks_without_cc3d(method, monkeypatch):
    from inference.decode import mask_cells
    from inference.decode.particle_decode import decode_particles
    from inference.decode.particle_params import class_targets
    from inference.manifest.particle_classes import CZII_CLASSES
    from inference.synth.particle_maps import blob_stack

    probs, _ = blob_stack((30, 80, 80), [c.radius_A for c in CZII_CLASSES], 8, (20.0,) * 3, seed=5)
    targets = class_targets(CZII_CLASSES, range(1, 7), method)
    auto = decode_particles(probs, targets, (20.0,) * 3)
    monkeypatch.setattr(mask_cells, "_cc3d", lambda: None)  # the sparse-graph labelling
    sparse = decode_particles(probs, targets, (20.0,) * 3)
    for name in auto:
        assert np.array_equal(auto[name][0], sparse[name][0]) and np.array_equal(auto[name][1], sparse[name][1])
    assert sum(len(c) for _, c in auto.values()) > 20
