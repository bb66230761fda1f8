import math

import pytest

from inference.decode.particle_params import (
    ClassTarget,
    DecodeParams,
    Fractions,
    class_targets,
    decode_params,
    half_width_cells,
    size_cells,
)
from inference.manifest.particle_classes import CZII_CLASSES, ParticleClass

APO = CZII_CLASSES[0]  # 60 Å, threshold 0.16
STRIDE2 = (20.024,) * 3  # a stride-2 cell of a 10.012 Å tomogram


def test_defaults_are_fractions_of_the_radius_and_ball():
    p = decode_params(APO, "peaks")
    ball = 4 / 3 * math.pi * 60.0 ** 3
    assert (p.filter_A, p.nms_A, p.marker_A) == (60.0, 30.0, 60.0)
    assert p.min_blob_A3 == pytest.approx(0.05 * ball) and p.split_A3 == pytest.approx(ball)
    assert p.threshold == 0.16 and p.connectivity == 26 and p.weighted_centroid and p.border_A == 0.0
    assert p.max_picks == 1000


def test_other_fractions_scale_every_default():
    f = Fractions(filter=0.5, nms=0.25, marker=0.75, min_blob=0.1, split=2.0)
    p = decode_params(ParticleClass("x", 100.0, 1.0, 0.3), "watershed", fractions=f)
    ball = 4 / 3 * math.pi * 100.0 ** 3
    assert (p.filter_A, p.nms_A, p.marker_A) == (50.0, 25.0, 75.0)
    assert p.min_blob_A3 == pytest.approx(0.1 * ball) and p.split_A3 == pytest.approx(2 * ball)


def test_in_cells_on_a_stride2_map():
    # half-width: floor(60 / 20.024 + 0.5) = 3 cells per axis (width 7, the 1st place's apo-ferritin kernel)
    c = decode_params(APO).in_cells(STRIDE2)
    assert c.filter_half == (3, 3, 3) and c.filter_widths == (7, 7, 7)
    # minimum blob: 5 % of the 60 Å ball in cells of 20.024^3 Å^3 -> ceil(5.63) = 6 cells
    ball_cells = 4 / 3 * math.pi * 60.0 ** 3 / 20.024 ** 3
    assert c.min_cells == math.ceil(0.05 * ball_cells) == 6
    assert c.split_cells == math.ceil(ball_cells)


def test_widths_of_every_czii_class_at_stride2():
    # floor(r / 20.024 + 0.5): apo 3, beta-amylase 3, beta-gal 4, ribosome 7, thyroglobulin 6, VLP 7
    got = [decode_params(c).in_cells(STRIDE2).filter_half[0] for c in CZII_CLASSES]
    assert got == [3, 3, 4, 7, 6, 7]


def test_anisotropic_cells():
    c = decode_params(APO).in_cells((40.0, 20.0, 10.0))
    assert c.filter_half == (2, 3, 6)  # 60/40 = 1.5 -> 2 (halves up), 60/20 = 3, 60/10 = 6
    assert c.min_cells == math.ceil(0.05 * 4 / 3 * math.pi * 60.0 ** 3 / 8000.0)


def test_rounding_rules():
    assert half_width_cells(30.0, (20.0, 20.0, 20.0)) == (2, 2, 2)  # 1.5 -> 2
    assert half_width_cells(29.9, (20.0,)) == (1,)
    assert half_width_cells(0.0, (20.0,)) == (0,)
    assert size_cells(8000.0, (20.0, 20.0, 20.0)) == 1 and size_cells(8000.1, (20.0, 20.0, 20.0)) == 2
    assert size_cells(0.0, (20.0, 20.0, 20.0)) == 1


def test_overrides_in_their_units_and_unknown_keys():
    p = decode_params(APO, "components", min_blob_A3=1000.0, connectivity=6, threshold=0.5, max_picks=3)
    assert (p.min_blob_A3, p.connectivity, p.threshold, p.max_picks, p.filter_A) == (1000.0, 6, 0.5, 3, 60.0)
    with pytest.raises(ValueError, match="unknown decode parameter.*filter_a.*known: threshold"):
        decode_params(APO, filter_a=3)


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "blobs"}, "not one of peaks, components, watershed"),
    ({"threshold": 0.0}, "threshold"), ({"threshold": 1.5}, "threshold"),
    ({"connectivity": 8}, "connectivity"), ({"nms_A": -1.0}, "nms_A"), ({"border_A": float("nan")}, "border_A"),
    ({"max_picks": -1}, "max_picks"),
])
def test_bad_values_are_refused(kwargs, match):
    base = dict(method="peaks", threshold=0.5, filter_A=1.0, nms_A=1.0, min_blob_A3=1.0, split_A3=1.0, marker_A=1.0)
    with pytest.raises(ValueError, match=match):
        DecodeParams(**{**base, **kwargs})


def test_bad_cells_are_refused():
    with pytest.raises(ValueError, match="cell_A must be 3 positive"):
        decode_params(APO).in_cells((20.0, 20.0))
    with pytest.raises(ValueError, match="cell_A must be 3 positive"):
        decode_params(APO).in_cells((20.0, 0.0, 20.0))


def test_class_targets():
    targets = class_targets(CZII_CLASSES[:2], [3, 1], "watershed", overrides={"beta-amylase": {"threshold": 0.4}})
    assert targets == (ClassTarget("apo-ferritin", 3, decode_params(CZII_CLASSES[0], "watershed")),
                       ClassTarget("beta-amylase", 1, decode_params(CZII_CLASSES[1], "watershed", threshold=0.4)))
    with pytest.raises(ValueError, match="2 classes but 1 channels"):
        class_targets(CZII_CLASSES[:2], [1])
    with pytest.raises(ValueError, match="unknown class"):
        class_targets(CZII_CLASSES[:1], [1], overrides={"ribosome": {}})
