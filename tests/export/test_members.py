"""The five members as the 3rd-place solution trained them: names, shapes, counts, axis order,
normalisation inside the net, output grid.

The facts come from ``../shared/recipe-checkpoints/<member>.json`` (every key their training saved,
with its shape; built from their code): our ``state_dict`` must equal it key for key, less the
training-only ``reg_head.*``. Axis order is checked with non-cubic inputs, where a net running its
kernels over the wrong axes still produces an output of the right shape.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.export

from export.models.registry import REGISTRY, build_model

ROOT = Path(__file__).resolve().parents[2]
FACTS = ROOT.parent / "shared" / "recipe-checkpoints"
MEMBERS_3D = ["x3d_m", "densenet121", "resnext50"]
MEMBERS_2D = ["maxvit_tiny", "coat_lite_medium"]
PATCH_2D = (896, 896)  # the 2d members' checkpoints fit only this patch


def facts(name: str) -> dict:
    path = FACTS / f"{name}.json"
    if not path.is_file():
        pytest.skip(f"{path} not found (the shared/ folder beside the repository)")
    return json.loads(path.read_text())


def model_for(name: str):
    return build_model(REGISTRY[name], PATCH_2D if name in MEMBERS_2D else (32, 64, 64), seed=0)[0]


@pytest.mark.parametrize("name", MEMBERS_3D + MEMBERS_2D)
def test_state_dict_equals_their_checkpoint_key_for_key(name):
    f = facts(name)
    want = {k["name"][len("model."):]: tuple(k["shape"]) for k in f["keys"]}
    training_only = {k for k in want if k.startswith("reg_head.")}
    assert REGISTRY[name].ignored_prefixes == (("reg_head.",) if training_only else ())
    model = model_for(name)
    have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert have == {k: v for k, v in want.items() if k not in training_only}
    # their README's parameter count includes the training-only regression head
    reg = sum(math.prod(want[k]) for k in training_only)
    assert sum(p.numel() for p in model.parameters()) + reg == f["peer"]["parameters"]
    # every norm's eps as trained
    eps = {k["name"][len("model."):].rsplit(".", 1)[0]: k["eps"] for k in f["keys"] if "eps" in k}
    mods = dict(model.named_modules())
    for mod_name, e in eps.items():
        if mod_name in mods:
            assert mods[mod_name].eps == pytest.approx(e), mod_name


def test_coat_shares_its_conv_position_modules_under_two_names():
    f = facts("coat_lite_medium")
    tied = {k["name"][len("model."):]: k["tied_to"][len("model."):] for k in f["keys"] if "tied_to" in k}
    sd = model_for("coat_lite_medium").state_dict(keep_vars=True)
    assert len(tied) == f["checkpoint_layout"]["tied_keys"] == 216
    assert all(sd[a] is sd[b] for a, b in tied.items())


@pytest.mark.parametrize("name", MEMBERS_3D + MEMBERS_2D)
def test_normalisation_inside_the_net_as_trained(name):
    f = facts(name)
    model = model_for(name)
    values = {k["name"][len("model."):]: k["value"] for k in f["keys"] if "value" in k}
    sd = model.state_dict()
    for key, value in values.items():  # mean/std buffers (SMP encoders, 2d nets), x 255
        assert sd[key].flatten().tolist() == pytest.approx(value, rel=1e-6)
    if name == "x3d_m":  # constants in forward: (x - 114.75) / 57.375
        from export.models.x3d import X3D_MEAN, X3D_STD
        assert (X3D_MEAN, X3D_STD) == (114.75, 57.375) and not values
    assert f["input"]["manifest_normalize"] == {"mean": 0.0, "std": 1.0}


def record_inputs(model, names):
    seen = {}
    mods = dict(model.named_modules())

    def hook(name):
        def record(module, inputs, output):
            seen.setdefault(name, tuple(inputs[0].shape))  # returns None: the output is kept
        return record

    return seen, [mods[n].register_forward_hook(hook(n)) for n in names]


@pytest.mark.parametrize("name, first_conv, order", [
    ("x3d_m", "encoder.encoder.s1.pathway0_stem.conv_xy", "DHW"),
    ("densenet121", "encoder.encoder.features.conv0", "HWD"),
    ("resnext50", "encoder.encoder.conv1", "HWD"),
])
def test_3d_axis_order_as_trained(name, first_conv, order):
    """DenseNet121/ResNeXt50 run the whole net on (H, W, D); X3D runs its encoder on (D, H, W) and the
    rest on (H, W, D); the output is (N, 1, D/16, H/16, W/16) either way."""
    model = model_for(name)
    d, h, w = 32, 64, 96
    seen, hooks = record_inputs(model, [first_conv, "ms_seg_heads.0.0"])
    with torch.no_grad():
        y = model(torch.rand(1, 1, d, h, w) * 255)
    for hk in hooks:
        hk.remove()
    dims = {"D": d, "H": h, "W": w}
    assert seen[first_conv] == (1, 3, *(dims[a] for a in order))  # 3 identical channels
    assert seen["ms_seg_heads.0.0"][2:] == (h // 16, w // 16, d // 16)  # the decoder runs on (H, W, D)
    assert tuple(y.shape) == (1, 1, d // 16, h // 16, w // 16)


def test_3d_output_follows_the_input_axes():
    """Permuting the input's spatial axes permutes the output only where the net is axis-symmetric;
    these nets are not: transposing D and W of the input changes the logits, not just their order."""
    model = build_model(REGISTRY["resnext50"], (32, 32, 32), seed=0, random_init=True)[0]
    x = torch.rand(1, 1, 32, 32, 32) * 255
    with torch.no_grad():
        y = model(x)
        y_t = model(x.transpose(2, 4)).transpose(2, 4)
    assert (y - y_t).abs().max() > 1e-3 * y.abs().max()


@pytest.mark.parametrize("name", MEMBERS_2D)
def test_2d_members_take_three_slices_and_give_the_stride_16_heatmap(name):
    f = facts(name)
    assert f["output"]["index"] == 2 and f["output"]["stride"] == 16
    model = build_model(REGISTRY[name], (64, 64), seed=0)[0]  # any multiple of 32 builds (random init)
    with torch.no_grad():
        y = model(torch.rand(2, 3, 64, 64) * 255)
    assert tuple(y.shape) == (2, 1, 4, 4)
