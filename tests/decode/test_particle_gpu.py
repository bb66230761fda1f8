"""The GPU paths of the particle decoders give the CPU's picks: on fake CuPy / cupyx / cuCIM modules
(NumPy, SciPy, scikit-image underneath: they run anywhere) and, marked ``gpu``, on the real ones."""

import numpy as np
import pytest

from inference.decode.particle_decode import decode_particles
from inference.decode.particle_params import class_targets
from inference.manifest.particle_classes import CZII_CLASSES
from inference.synth.particle_maps import blob_stack
from kernels.array_module import cupy_available
from tests.decode.particle_balls import ball
from tests.fake_gpu_arrays import FakeGpu

METHODS = ("peaks", "components", "watershed")


def probs_and_cells(cell=(20.024,) * 3, shape=(40, 96, 90), pair=False):
    probs, _ = blob_stack(shape, [c.radius_A for c in CZII_CLASSES], 12, cell, seed=3)
    # touching pairs, for the watershed: two ribosome-sized balls in channel 4
    r = CZII_CLASSES[3].radius_A
    c1 = np.array([20.0, 48.0, 30.0])
    c2 = c1 + np.array([0.0, 0.0, 2 * r / cell[2]])
    two = np.maximum(ball(shape, c1, r, cell, 0.9), ball(shape, c2, r, cell, 0.9))
    probs[4] = np.maximum(probs[4], two)
    return (probs, cell, (c1, c2)) if pair else (probs, cell)


def assert_same(a, b, exact=True):
    assert list(a) == list(b)
    for name in a:
        (za, ca), (zb, cb) = a[name], b[name]
        assert za.shape == zb.shape and ca.shape == cb.shape, name
        if exact:
            assert np.array_equal(za, zb) and np.array_equal(ca, cb), name
        else:
            np.testing.assert_allclose(zb, za, rtol=0, atol=1e-6, err_msg=name)
            np.testing.assert_allclose(cb, ca, rtol=0, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("cucim", [True, False], ids=["cucim", "cupyx-only"])
@pytest.mark.parametrize("method", METHODS)
def test_fake_gpu_gives_the_cpu_picks(method, cucim, monkeypatch):
    fake = FakeGpu().install(monkeypatch, cucim=cucim)
    probs, cell = probs_and_cells()
    targets = class_targets(CZII_CLASSES, range(1, 7), method)
    cpu = decode_particles(probs, targets, cell, origin_A=(10.0, 20.0, 30.0))
    assert sum(len(c) for _, c in cpu.values()) > 30
    gpu = decode_particles(fake.cupy.asarray(probs), targets, cell, origin_A=(10.0, 20.0, 30.0), xp=fake.cupy)
    assert_same(cpu, gpu)
    used = set(fake.calls)
    if method == "peaks":
        assert used == {"maximum_filter"}
    elif cucim:
        assert "cucim label" in used and (method != "watershed" or "cucim distance_transform_edt" in used)
    else:
        assert "label" in used and (method != "watershed" or "distance_transform_edt" in used)
    # only small arrays leave the device: candidates, per-blob sums (and the crops of split components)
    assert max(fake.transfers) < probs[1].nbytes / (2 if method == "watershed" else 20)


def test_watershed_splits_the_pair_on_both_devices(monkeypatch):
    fake = FakeGpu().install(monkeypatch)
    probs, cell, centres = probs_and_cells(pair=True)
    centres_A = np.asarray(centres) * cell

    def near_both(picks):
        return all(np.min(np.linalg.norm(picks - c, axis=1)) < 0.5 * cell[0] for c in centres_A)

    merged = decode_particles(probs, class_targets(CZII_CLASSES[3:4], [4], "components"), cell)["ribosome"][0]
    target = class_targets(CZII_CLASSES[3:4], [4], "watershed")
    split = decode_particles(probs, target, cell)["ribosome"][0]
    assert not near_both(merged) and near_both(split) and len(split) > len(merged)
    assert np.array_equal(decode_particles(fake.cupy.asarray(probs), target, cell, xp=fake.cupy)["ribosome"][0], split)


def test_anisotropic_cells_on_the_fake_gpu(monkeypatch):
    fake = FakeGpu().install(monkeypatch)
    cell = (30.0, 20.0, 15.0)
    probs, _ = probs_and_cells(cell, shape=(30, 80, 100))
    for method in METHODS:
        targets = class_targets(CZII_CLASSES, range(1, 7), method)
        assert_same(decode_particles(probs, targets, cell),
                    decode_particles(fake.cupy.asarray(probs), targets, cell, xp=fake.cupy))


def test_without_cupy_the_gpu_path_says_what_to_install(monkeypatch):
    import sys

    fake = FakeGpu()
    monkeypatch.setitem(sys.modules, "cupyx.scipy.ndimage", None)
    targets = class_targets(CZII_CLASSES[:1], [1], "peaks")
    with pytest.raises(ImportError, match=r"needs CuPy \(pip install 'motorfinder\[gpu\]'\)"):
        decode_particles(fake.cupy.asarray(np.zeros((2, 4, 4, 4), np.float32)), targets, (20.0,) * 3, xp=fake.cupy)


@pytest.mark.gpu
@pytest.mark.skipif(not cupy_available(), reason="needs CuPy and a CUDA GPU")
@pytest.mark.parametrize("method", METHODS)
def test_real_gpu_gives_the_cpu_picks(method):
    import cupy as cp

    probs, cell = probs_and_cells()
    targets = class_targets(CZII_CLASSES, range(1, 7), method)
    cpu = decode_particles(probs, targets, cell)
    gpu = decode_particles(cp.asarray(probs), targets, cell, xp=cp)
    assert_same(cpu, gpu, exact=False)  # the device sums float64 in another order: centroids to 1e-6 cells
