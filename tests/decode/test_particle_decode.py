import numpy as np
import pytest

from inference.decode.particle_decode import decode_class, decode_particles
from inference.decode.particle_params import ClassTarget, class_targets, decode_params
from inference.manifest.particle_classes import CZII_CLASSES, ParticleClass
from tests.decode.particle_balls import cone

A = ParticleClass("a", 60.0, 1.0, 0.2)
B = ParticleClass("b", 90.0, 2.0, 0.3)


def stack():
    probs = np.zeros((3, 20, 30, 40), np.float32)
    probs[2] = cone((20, 30, 40), (5, 10, 15), 4.0)                 # class a in channel 2
    probs[1] = cone((20, 30, 40), (12, 20, 30), 5.0, peak=0.8)     # class b in channel 1
    return probs


@pytest.mark.parametrize("method", ["peaks", "components", "watershed"])
def test_cells_to_angstrom_with_origin_and_anisotropic_cells(method):
    cell, origin = (40.0, 20.0, 10.0), (100.0, -50.0, 7.5)
    out = decode_particles(stack(), class_targets([A, B], [2, 1], method), cell, origin)
    assert list(out) == ["a", "b"]
    zyx, conf = out["a"]
    # cell c on axis k: origin[k] + c * cell[k]
    np.testing.assert_allclose(zyx, [[100.0 + 5 * 40.0, -50.0 + 10 * 20.0, 7.5 + 15 * 10.0]], atol=1e-9)
    assert conf.tolist() == [1.0] and zyx.dtype == np.float64 and conf.dtype == np.float64
    np.testing.assert_allclose(out["b"][0], [[100.0 + 12 * 40.0, -50.0 + 20 * 20.0, 7.5 + 30 * 10.0]], atol=1e-9)
    assert out["b"][1].tolist() == [float(np.float32(0.8))]


def test_each_target_uses_its_own_parameters():
    probs = stack()
    targets = (ClassTarget("a", 2, decode_params(A, "peaks", threshold=0.99)),
               ClassTarget("b", 1, decode_params(B, "components")))
    out = decode_particles(probs, targets, (20.0, 20.0, 20.0))
    assert len(out["a"][1]) == 1 and out["a"][1][0] == 1.0      # only the cone's apex reaches 0.99
    assert len(decode_particles(probs, (ClassTarget("a", 2, decode_params(A, threshold=1.0)),),
                                (20.0,) * 3)["a"][1]) == 1
    assert out["b"][0].shape == (1, 3)


def test_an_empty_stack_gives_empty_arrays_per_class():
    out = decode_particles(np.zeros((7, 8, 9, 10), np.float32), class_targets(CZII_CLASSES, range(1, 7)), (20.0,) * 3)
    assert list(out) == [c.name for c in CZII_CLASSES]
    assert all(z.shape == (0, 3) and c.shape == (0,) for z, c in out.values())


def test_bad_inputs():
    probs = stack()
    targets = class_targets([A], [2])
    with pytest.raises(ValueError, match=r"probs must be \(C, D, H, W\)"):
        decode_particles(probs[0], targets, (20.0,) * 3)
    with pytest.raises(ValueError, match="channel 5 is not in the stack's 3 channels"):
        decode_particles(probs, class_targets([A], [5]), (20.0,) * 3)
    with pytest.raises(ValueError, match="class names repeat"):
        decode_particles(probs, targets + targets, (20.0,) * 3)
    with pytest.raises(ValueError, match="origin_A must be 3"):
        decode_particles(probs, targets, (20.0,) * 3, origin_A=(0.0, 0.0))
    with pytest.raises(ValueError, match="cell_A must be 3 positive"):
        decode_particles(probs, targets, (20.0, -1.0, 20.0))
    with pytest.raises(ValueError, match="must be 3D"):
        decode_class(probs, targets[0].params, (20.0,) * 3)
