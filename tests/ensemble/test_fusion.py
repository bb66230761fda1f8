import numpy as np
import pandas as pd
import pytest

from inference.common.errors import InputError
from inference.ensemble.fusion import fuse_points, fuse_tables


def test_join_within_distance_weighted_mean_and_avg_conf():
    pts = [[0, 0, 0], [0, 0, 600]]
    conf = [0.8, 0.4]
    fused, fc = fuse_points(pts, conf, [0, 1], [1.0, 1.0], dist_A=1000)
    assert len(fused) == 1
    np.testing.assert_allclose(fused[0], [0, 0, (0.8 * 0 + 0.4 * 600) / (0.8 + 0.4)])
    np.testing.assert_allclose(fc, [(0.8 + 0.4) / 2 * min(2, 2) / 2.0])


def test_no_join_at_exactly_dist():
    fused, fc = fuse_points([[0, 0, 0], [0, 600, 800]], [0.9, 0.5], [0, 1], [1, 1], dist_A=1000)
    assert len(fused) == 2
    # a point seen by one member of M=2 scores conf / M
    np.testing.assert_allclose(fc, [0.9 / 2, 0.5 / 2])


def test_joins_follow_descending_weighted_conf_and_moving_centre():
    # c' order: A(0.9 @ 0), B(0.6 @ 900), C(0.3 @ 1700).
    # B joins A (900 < 1000): centre -> (0.9*0 + 0.6*900)/1.5 = 360. C is 1340 from 360: new cluster.
    pts = [[0, 0, 1700], [0, 0, 0], [0, 0, 900]]
    conf = [0.3, 0.9, 0.6]
    fused, fc = fuse_points(pts, conf, [2, 0, 1], [1, 1, 1], dist_A=1000)
    np.testing.assert_allclose(fused[:, 2], [360.0, 1700.0])
    np.testing.assert_allclose(fc, [(0.9 + 0.6) / 2 * 2 / 3, 0.3 * 1 / 3])


def test_nearest_cluster_is_chosen():
    pts = [[0, 0, 0], [0, 0, 1500], [0, 0, 1000]]
    fused, _ = fuse_points(pts, [0.9, 0.8, 0.5], [0, 1, 2], [1, 1, 1], dist_A=1000)
    # the third point is 1000 from the first (no join) and 500 from the second: joins the second
    np.testing.assert_allclose(sorted(fused[:, 2]), [0.0, (0.8 * 1500 + 0.5 * 1000) / 1.3])


def test_weights_and_max_conf():
    pts = [[0, 0, 0], [0, 0, 100]]
    w = [2.0, 1.0]
    _, avg = fuse_points(pts, [0.5, 0.9], [0, 1], w, dist_A=1000, conf_type="avg")
    np.testing.assert_allclose(avg, [(0.5 * 2 + 0.9 * 1) / 2 * 2 / 3.0])
    _, mx = fuse_points(pts, [0.5, 0.9], [0, 1], w, dist_A=1000, conf_type="max")
    np.testing.assert_allclose(mx, [max(0.5 * 2, 0.9 * 1) / 2.0])


def test_more_points_than_members_caps_at_M():
    pts = [[0, 0, 0], [0, 0, 10], [0, 0, 20]]
    _, fc = fuse_points(pts, [0.6, 0.6, 0.6], [0, 0, 1], [1, 1], dist_A=1000)
    np.testing.assert_allclose(fc, [0.6 * min(3, 2) / 2])


def test_skip_conf():
    fused, fc = fuse_points([[0, 0, 0], [0, 0, 5000]], [0.05, 0.5], [0, 1], [1, 1], skip_conf=0.1)
    assert len(fused) == 1 and fc[0] == pytest.approx(0.25)
    f0, c0 = fuse_points(np.zeros((0, 3)), [], [], [1, 1])
    assert f0.shape == (0, 3) and c0.shape == (0,)


def frame(rows):
    return pd.DataFrame(rows, columns=["tomo_id", "z", "y", "x", "conf", "voxel_spacing"])


def test_tables_in_angstrom_per_tomogram():
    a = frame([("t1", 10, 10, 10, 0.8, 10.0), ("t2", 0, 0, 0, 0.6, 20.0)])
    b = frame([("t1", 10, 10, 90, 0.4, 10.0), ("t2", 0, 0, 60, 0.6, 20.0)])
    out = fuse_tables([a, b], [1, 1], dist_A=1000)
    t1 = out[out.tomo_id == "t1"]
    assert len(t1) == 1  # 80 voxels x 10 Å = 800 Å < 1000
    assert t1.x.iloc[0] == pytest.approx((0.8 * 100 + 0.4 * 900) / 1.2 / 10.0)
    t2 = out[out.tomo_id == "t2"]
    assert len(t2) == 2  # 60 voxels x 20 Å = 1200 Å
    assert list(out.columns) == ["tomo_id", "z", "y", "x", "conf", "voxel_spacing"]


def test_spacing_disagreement_names_file_and_row():
    a = frame([("t1", 1, 1, 1, 0.5, 10.0)])
    b = frame([("t0", 1, 1, 1, 0.5, 10.0), ("t1", 1, 1, 1, 0.5, 12.0)])
    with pytest.raises(InputError, match=r"b.csv: row 2 \(line 3\): tomogram t1"):
        fuse_tables([a, b], [1, 1], names=["a.csv", "b.csv"])
