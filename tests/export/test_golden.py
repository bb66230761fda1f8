"""Each member against numbers THEIR model computed (``dangnh0611/kaggle_byu`` at 1d81c3e, configs
``REPRODUCE_*.yaml``), so a change to a forward (activation, norm eps, resize mode, concat order, axis
order, normalisation, head) shows here without their code.

The golden outputs were measured once with their model code rebuilt outside this repository (their
``Unet3dModel`` / ``Unet2dModel`` and what it imports; timm 1.0.31, torch 2.14.1, CPU, fp32) on the
weights of :func:`golden_state` and the input of :func:`golden_input`; our registry module gave the same
values bit for bit, and their fp32 output was within 2e-6 of its float64 result. 3d members at
32 x 64 x 96, the 2d members built for 64 x 64 (their architecture at another ``img_size``; the
relative-position tables and patch embeddings follow it).
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.export

from export.models.registry import REGISTRY

SHAPES = {"x3d_m": (1, 1, 32, 64, 96), "densenet121": (1, 1, 32, 64, 96), "resnext50": (1, 1, 32, 64, 96),
          "maxvit_tiny": (1, 3, 64, 64), "coat_lite_medium": (1, 3, 64, 64)}
TOL = 1e-4  # of max |golden|
DISTINCT = 1e-3  # the same net on another axis order must differ by more, of max |golden|


def golden_state(model) -> dict:
    """Weights keyed by name, each from a generator seeded by crc32 of its name (tensors shared under
    several names use the first name, sorted); the normalisation buffers and BN counters as built."""
    sd = model.state_dict(keep_vars=True)
    first: dict[int, str] = {}
    for k in sorted(sd):
        first.setdefault(sd[k].data_ptr(), k)
    out = {}
    for k, t in sd.items():
        g = torch.Generator().manual_seed(zlib.crc32(first[t.data_ptr()].encode()))
        if k.endswith("num_batches_tracked") or k in ("mean", "std", "encoder.mean", "encoder.std"):
            out[k] = t.detach().clone()
        elif k.endswith("running_mean"):
            out[k] = 0.1 * torch.randn(t.shape, generator=g)
        elif k.endswith("running_var"):
            out[k] = 0.5 + torch.rand(t.shape, generator=g)
        elif t.ndim >= 2:
            out[k] = torch.randn(t.shape, generator=g) / math.sqrt(max(1, t[0].numel()))
        elif k.endswith("bias"):
            out[k] = 0.1 * torch.randn(t.shape, generator=g)
        else:
            out[k] = 0.6 + 0.4 * torch.rand(t.shape, generator=g)
    return out


def golden_input(name: str) -> torch.Tensor:
    return (torch.rand(SHAPES[name], generator=torch.Generator().manual_seed(0)) * 255).round()


# their model(x)[0] (3d, (1, 1, 2, 4, 6)) or model(x)[2] (2d, (1, 1, 4, 4)), flattened
GOLDEN = {
    "x3d_m": [
        -0.0948235, -0.065833, -0.112594, -0.146485, -0.0918662, -0.0468295, -0.0379736, -0.101348,
        -0.0957754, -0.106622, -0.121188, -0.0958849, -0.0223406, -0.0720897, -0.0714201, -0.143707,
        -0.105855, -0.0513997, -0.0490944, -0.0539946, -0.0669061, -0.0606485, -0.0682539, -0.0458443,
        -0.0720575, -0.0664717, -0.05447, -0.0679973, -0.0482294, -0.0236679, -0.0414586, -0.0321233,
        -0.0430548, -0.0144345, -0.0579483, -0.0263644, -0.0606025, -0.0578049, -0.0634269, -0.0502493,
        -0.069665, -0.0529738, -0.132231, -0.150009, -0.184505, -0.139298, -0.138198, -0.0602826],
    "densenet121": [
        -0.0632588, 0.00801771, -0.036441, -0.0231608, -0.0332419, -0.0247502, -0.0417552, 0.00713611,
        -0.0018279, 0.00621572, -0.0292599, -0.0185569, -0.0280469, 0.0214079, -0.000579379, 0.033322,
        0.00844714, 0.023576, -0.0528971, -0.0492862, -0.0629611, -0.0487557, -0.0612933, -0.049465,
        -0.0659621, -0.0745599, -0.0877261, -0.0771869, -0.0931761, -0.079684, -0.0432456, -0.083839,
        -0.0847688, -0.0689131, -0.104908, -0.0944847, -0.0682048, -0.116612, -0.128369, -0.115563,
        -0.127278, -0.111734, -0.0974053, -0.144326, -0.137893, -0.138828, -0.148347, -0.0954875],
    "resnext50": [
        -0.095536, -0.112498, -0.164521, -0.157977, -0.191115, -0.154647, -0.0536885, -0.117266, -0.165407,
        -0.194758, -0.196423, -0.182872, -0.0179114, -0.0865963, -0.0893962, -0.105844, -0.101251,
        -0.131937, -0.0193014, -0.0493324, -0.0587713, -0.0701021, -0.0500793, -0.0905466, -0.129115,
        -0.130811, -0.172036, -0.172515, -0.173923, -0.113129, -0.163722, -0.158807, -0.193215, -0.187744,
        -0.21224, -0.0856123, -0.163347, -0.193842, -0.172804, -0.133234, -0.189145, -0.0350111, -0.182718,
        -0.238666, -0.24847, -0.23791, -0.276343, -0.0783318],
    "maxvit_tiny": [
        0.147872, -0.316806, -0.234965, -0.123718, -0.311787, -0.371076, -0.327335, -0.452547, -0.127054,
        -0.856093, -0.416991, -0.363868, 0.183518, -0.356441, -0.03207, -0.294188],
    "coat_lite_medium": [
        -0.496911, -0.340424, -0.585959, -0.933133, -0.342466, -1.05775, -0.568183, -0.452486, -0.139821,
        -0.714337, -0.426735, -0.35633, -0.270317, -0.653318, -0.412512, 0.0371669],
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_member_reproduces_their_model(name):
    torch.set_num_threads(2)
    model = REGISTRY[name].builder(SHAPES[name][2:]).eval()
    model.load_state_dict(golden_state(model), strict=True)
    x = golden_input(name)
    want = np.asarray(GOLDEN[name], np.float64)
    scale = np.abs(want).max()
    with torch.no_grad():
        got = model(x).numpy().astype(np.float64)
        # the same weights on another axis order: the golden values tell it apart
        if x.dim() == 5:
            other = model(x.permute(0, 1, 4, 2, 3)).permute(0, 1, 3, 4, 2)
        else:
            other = model(x.transpose(-1, -2)).transpose(-1, -2)
    assert got.size == want.size
    assert np.abs(got.ravel() - want).max() <= TOL * scale
    assert np.abs(other.numpy().ravel() - want).max() > DISTINCT * scale
