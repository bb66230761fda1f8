"""The particle ensembles (inference.ensemble.particle_ensemble): sampling on another grid, the per-channel
weighted mean, the activations, and both ensembles' picks, with expected values as formulas."""

from __future__ import annotations

import numpy as np
import pytest

from inference.decode.particle_params import decode_params
from inference.ensemble.particle_ensemble import (
    ClassMaps,
    activate,
    average_logits,
    axis_taps,
    heatmap_picks,
    on_grid,
    points_picks,
)
from inference.manifest.particle_classes import ParticleClass
from inference.manifest.types import Fusion, Particles
from tests.decode.particle_balls import distance

APO = ParticleClass("apo-ferritin", 60.0, 1.0, 0.5)
RIBO = ParticleClass("ribosome", 150.0, 1.0, 0.5)


def particles(*classes, ensemble="heatmap", method="peaks", floor=0.05):
    return Particles(classes=classes, decode=tuple(decode_params(c, method) for c in classes), ensemble=ensemble,
                     candidate_floor=floor)


def test_axis_taps_follow_the_cell_centres_in_angstrom():
    # source cells every 20 Å from 10 Å; destination cells every 10 Å from 5 Å
    i0, i1, w1 = axis_taps(4, 10.0, 20.0, 8, 5.0, 10.0)
    pos = np.clip((5.0 + 10.0 * np.arange(8) - 10.0) / 20.0, 0, 3)
    assert np.array_equal(i0, np.floor(pos).astype(int)) and np.array_equal(i1, np.minimum(i0 + 1, 3))
    np.testing.assert_allclose(w1, pos - np.floor(pos), rtol=0, atol=1e-7)
    assert i0[0] == 0 and w1[0] == 0.0  # before the first centre: clamped to it


def test_on_grid_is_linear_interpolation_and_identity_on_the_same_grid():
    z = np.arange(4, dtype=np.float32)
    logits = np.broadcast_to(z[None, :, None, None] * 3.0 + 1.0, (1, 4, 2, 2)).copy()
    m = ClassMaps(logits, ("apo-ferritin",), (0.0, 0.0, 0.0), (20.0, 20.0, 20.0))
    assert on_grid(m, m.origin_A, m.cell_A, m.shape) is logits
    out = on_grid(m, (10.0, 0.0, 0.0), (10.0, 20.0, 20.0), (5, 2, 2))
    # destination z centres 10, 20, ..., 50 Å = source positions 0.5, 1, ..., 2.5 (a linear function stays exact)
    expected = (np.array([0.5, 1.0, 1.5, 2.0, 2.5]) * 3.0 + 1.0).astype(np.float32)
    np.testing.assert_allclose(out[0, :, 0, 0], expected, rtol=0, atol=1e-6)


def test_average_is_per_channel_over_the_members_that_have_it_on_the_finest_grid():
    shape = (1, 2, 2, 2)
    fine = ClassMaps(np.stack([np.full(shape[1:], 1.0), np.full(shape[1:], 4.0)]).astype(np.float32),
                     ("background", "apo-ferritin"), (0.0,) * 3, (10.0,) * 3, weight=1.0)
    coarse = ClassMaps(np.stack([np.full((1, 1, 1), 3.0), np.full((1, 1, 1), 7.0)]).astype(np.float32),
                       ("ribosome", "apo-ferritin"), (5.0,) * 3, (20.0,) * 3, weight=3.0)
    avg = average_logits([fine, coarse], ("background", "apo-ferritin", "ribosome"))
    assert avg.channels == ("background", "apo-ferritin", "ribosome") and avg.cell_A == (10.0,) * 3
    assert avg.logits.shape == (3, 2, 2, 2)
    np.testing.assert_allclose(avg.logits[0], 1.0)                      # background: the fine member alone
    np.testing.assert_allclose(avg.logits[1], (1 * 4.0 + 3 * 7.0) / 4)  # weighted by 1 and 3
    np.testing.assert_allclose(avg.logits[2], 3.0)                      # ribosome: the coarse member alone


def test_softmax_and_sigmoid():
    x = np.array([[[[0.0]]], [[[np.log(3.0)]]]], dtype=np.float32)
    np.testing.assert_allclose(activate(x, "softmax")[:, 0, 0, 0], [0.25, 0.75], rtol=1e-6)
    np.testing.assert_allclose(activate(np.full((1, 1, 1, 1), 1000.0, np.float32), "softmax"), 1.0)  # no overflow
    np.testing.assert_allclose(activate(x, "sigmoid")[:, 0, 0, 0], [0.5, 0.75], rtol=1e-6)
    with pytest.raises(ValueError, match="softmax or sigmoid"):
        activate(x, "none")


def ball_logits(shape, centre, radius, high=4.0):
    """Logits: the class channel ``high`` at ``centre`` falling by 1 per cell of distance inside a ball of
    ``radius`` cells, -high outside (one maximum, at the centre); background 0."""
    d = distance(shape, centre)
    cls = np.where(d <= radius, high - d, -high).astype(np.float32)
    return np.stack([np.zeros(shape, np.float32), cls])


def test_heatmap_picks_are_in_angstrom_from_the_grid():
    maps = ClassMaps(ball_logits((12, 12, 12), (6, 5, 4), 2), ("background", "apo-ferritin"), (7.0, 7.0, 7.0),
                     (20.0, 20.0, 20.0))
    picks = heatmap_picks([maps], particles(APO))[0]
    zyx, conf = picks["apo-ferritin"]
    assert zyx.shape == (1, 3)
    np.testing.assert_allclose(zyx[0], [7.0 + 6 * 20.0, 7.0 + 5 * 20.0, 7.0 + 4 * 20.0])
    assert conf[0] == pytest.approx(np.exp(4.0) / (1.0 + np.exp(4.0)), rel=1e-6)


def test_the_floor_keeps_weaker_picks_as_candidates():
    logits = ball_logits((12, 12, 12), (6, 6, 6), 1, high=0.5)  # softmax 0.62 at the centre, 0.38 outside
    logits[1][2, 2, 2] = -0.2                                     # a weak lone peak: prob 0.45
    maps = ClassMaps(logits, ("background", "apo-ferritin"), (0.0,) * 3, (20.0,) * 3)
    task = particles(APO, floor=0.4)  # between the outside (0.38) and the weak peak
    strong, weak = (found["apo-ferritin"][1] for found in heatmap_picks([maps], task, floors=(False, True)))
    assert len(strong) == 1 and len(weak) == 2 and weak.min() == pytest.approx(1 / (1 + np.exp(0.2)), rel=1e-6)


def test_points_fuse_each_class_within_a_fraction_of_its_radius():
    a = ClassMaps(ball_logits((12, 12, 12), (6, 6, 6), 2), ("background", "ribosome"), (0.0,) * 3, (20.0,) * 3)
    # the second member sees the ribosome 60 Å further along x: within 0.5 x 150 Å, so one fused point
    b = ClassMaps(ball_logits((12, 12, 12), (6, 6, 9), 2), ("background", "ribosome"), (0.0,) * 3, (20.0,) * 3)
    # (each member alone: one peak, at the centre of its ball)
    task = particles(RIBO, ensemble="points")
    zyx, conf = points_picks([a, b], task, Fusion())[0]["ribosome"]
    assert zyx.shape == (1, 3)
    np.testing.assert_allclose(zyx[0], [120.0, 120.0, 150.0])  # the mean of x 120 and 180 (equal confs)
    # 0.3 x 150 = 45 Å < 60 Å: two points, each with conf / 2 (seen by one member of two)
    task = Particles(classes=(RIBO,), decode=task.decode, ensemble="points", fusion_radius=0.3)
    zyx, conf = points_picks([a, b], task, Fusion())[0]["ribosome"]
    assert zyx.shape == (2, 3)
    p = np.exp(4.0) / (1.0 + np.exp(4.0))
    np.testing.assert_allclose(conf, [p / 2, p / 2])


@pytest.mark.parametrize("ensemble", ["heatmap", "points"])
def test_the_gpu_path_gives_the_cpu_picks(monkeypatch, ensemble):
    """On (fake) CuPy device arrays: members on two grids, sampled, averaged, activated and decoded on the
    device; the picks equal the CPU's."""
    from tests.fake_gpu_arrays import FakeGpu

    fake = FakeGpu().install(monkeypatch)
    rng = np.random.default_rng(3)
    a_logits = ball_logits((16, 16, 16), (5, 6, 7), 3) + rng.normal(0, 0.05, (2, 16, 16, 16)).astype(np.float32)
    b_logits = ball_logits((8, 8, 8), (3, 3, 4), 2) + rng.normal(0, 0.05, (2, 8, 8, 8)).astype(np.float32)
    cpu_maps = [ClassMaps(a_logits, ("background", "ribosome"), (5.0,) * 3, (20.0,) * 3),
                ClassMaps(b_logits, ("background", "ribosome"), (15.0,) * 3, (40.0,) * 3, weight=2.0)]
    gpu_maps = [ClassMaps(fake.cupy.asarray(m.logits), m.channels, m.origin_A, m.cell_A, m.weight) for m in cpu_maps]
    task = particles(RIBO, ensemble=ensemble)
    if ensemble == "heatmap":
        cpu, gpu = heatmap_picks(cpu_maps, task)[0], heatmap_picks(gpu_maps, task, xp=fake.cupy)[0]
    else:
        cpu, gpu = points_picks(cpu_maps, task, Fusion())[0], points_picks(gpu_maps, task, Fusion(), xp=fake.cupy)[0]
    assert len(cpu["ribosome"][0]) >= 1
    np.testing.assert_array_equal(cpu["ribosome"][0], gpu["ribosome"][0])
    np.testing.assert_array_equal(cpu["ribosome"][1], gpu["ribosome"][1])
    assert sum(fake.transfers) < a_logits.nbytes  # only the picks' small arrays came back
