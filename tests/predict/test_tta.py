import itertools

import numpy as np
import pytest

from inference.manifest.types import parse_tta
from inference.predict import tta

AXES3 = ["".join(p) for p in itertools.permutations("zyx")]
NAMES3 = [o + ("_" + f if f else "") for o in AXES3 for f in ["", "z", "y", "x", "zy", "xy", "zyx"]]
NAMES2 = ["yx", "xy", "yx_x", "yx_y", "xy_x", "xy_yx"]


@pytest.mark.parametrize("name", NAMES3)
def test_inverse_3d_on_asymmetric_data(name):
    x = np.arange(3 * 4 * 5, dtype=np.float32).reshape(1, 3, 4, 5) * 1.5 - 7
    t = parse_tta(name, "zyx")
    y = tta.apply(x, t)
    assert np.array_equal(tta.invert(y, t), x)
    # the transposition moves each original axis to its position in the name
    order = name.split("_")[0]
    assert y.shape[1:] == tuple({"z": 3, "y": 4, "x": 5}[a] for a in order)


@pytest.mark.parametrize("name", NAMES2)
def test_inverse_2d(name):
    x = np.random.default_rng(0).random((3, 4, 7))
    t = parse_tta(name, "yx")
    assert np.array_equal(tta.invert(tta.apply(x, t), t), x)


def test_semantics_flip_names_original_axis():
    x = np.arange(24).reshape(2, 3, 4)  # z=2, y=3, x=4
    t = parse_tta("zxy_x")
    y = tta.apply(x, t)
    assert y.shape == (2, 4, 3)
    # after zxy the x axis sits at position 1; it is flipped
    assert np.array_equal(y, np.flip(x.transpose(0, 2, 1), axis=1))


def test_heatmap_of_point_maps_back():
    """A point seen in the transformed frame is found at its original place after invert."""
    vol = np.zeros((4, 6, 8))
    vol[1, 2, 5] = 1
    for name in NAMES3:
        t = parse_tta(name)
        heat_t = tta.apply(vol, t)  # an identity "model"
        back = tta.invert(heat_t, t)
        assert tuple(np.argwhere(back)[0]) == (1, 2, 5), name


@pytest.mark.parametrize("bad", ["zy", "zyy", "zyx_", "zyx_q", "zyx_xx", "abc", "yx"])
def test_bad_names(bad):
    with pytest.raises(ValueError, match="TTA"):
        parse_tta(bad, "zyx")
