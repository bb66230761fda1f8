"""export.checkpoints: every accepted layout loads strictly; mismatches are one readable InputError.

Random-init x3d_m weights (seed 1) are saved in each layout; loading into a model built with seed 0
must reproduce them exactly (so a no-op load cannot pass). The 3rd-place layout (EMA per decay,
training-only keys, tied names) is covered here on small models and end to end, per member, in
test_export_recipe.py.
"""

from __future__ import annotations

import argparse

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.export

from export.checkpoints import diff_state_dict, find_checkpoint, load_into, read_checkpoint
from export.models.registry import REGISTRY, build_model
from export.onnx_export import export_onnx, read_metadata  # noqa: E402
from inference.common.errors import InputError
from inference.common.file_hash import sha256_file

PATCH = (32, 64, 64)


@pytest.fixture(scope="module")
def weights():
    """Two different x3d_m state dicts: 'trained' (seed 1) and 'ema' (seed 2)."""
    sd = {k: v.clone() for k, v in build_model(REGISTRY["x3d_m"], PATCH, seed=1)[0].state_dict().items()}
    ema = {k: v.clone() for k, v in build_model(REGISTRY["x3d_m"], PATCH, seed=2)[0].state_dict().items()}
    return sd, ema


def fresh():
    return build_model(REGISTRY["x3d_m"], PATCH, seed=0)[0]


def assert_loads(path, expected, weights="auto", **kw):
    model = fresh()
    ckpt = read_checkpoint(path, weights, **kw)
    load_into(model, ckpt, "x3d_m")
    got = model.state_dict()
    assert got.keys() == expected.keys()
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert ckpt.sha256 == sha256_file(path) and len(ckpt.sha256) == 64
    return ckpt


def prefixed(sd, prefix):
    return {prefix + k: v for k, v in sd.items()}


def test_fresh_model_differs_from_the_saved_weights(weights):
    sd, _ = weights
    own = fresh().state_dict()
    assert any(not torch.equal(own[k], sd[k]) for k in sd if own[k].is_floating_point())


def test_plain_state_dict(weights, tmp_path):
    sd, _ = weights
    torch.save(sd, tmp_path / "plain.pt")
    ckpt = assert_loads(tmp_path / "plain.pt", sd)
    assert not ckpt.ema


def test_ddp_and_compiled_prefixes_are_stripped(weights, tmp_path):
    sd, _ = weights
    torch.save(prefixed(sd, "module._orig_mod."), tmp_path / "ddp.pth")
    ckpt = assert_loads(tmp_path / "ddp.pth", sd)
    assert "module." in ckpt.source and "_orig_mod." in ckpt.source


def test_lightning_checkpoint(weights, tmp_path):
    sd, _ = weights
    state = prefixed(sd, "model.")
    state["criterion.pos_weight"] = torch.tensor([3.0])  # a loss buffer of the LightningModule: ignored
    torch.save({"state_dict": state, "pytorch-lightning_version": "2.4.0", "epoch": 7, "global_step": 700,
                "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-3}]}],
                "hyper_parameters": {"arch": "x3d_m", "lr": 1e-3}}, tmp_path / "last.ckpt")
    ckpt = assert_loads(tmp_path / "last.ckpt", sd)
    assert "Lightning" in ckpt.source and not ckpt.ema


def test_lightning_with_an_ema_submodule(weights, tmp_path):
    """EMA held as `self.ema_model = AveragedModel(self.model)` inside the LightningModule."""
    sd, ema = weights
    state = {**prefixed(sd, "model."), **prefixed(ema, "ema_model.module."),
             "ema_model.n_averaged": torch.tensor(100)}
    torch.save({"state_dict": state, "pytorch-lightning_version": "2.4.0", "epoch": 7}, tmp_path / "ema.ckpt")
    assert assert_loads(tmp_path / "ema.ckpt", ema).ema  # auto prefers EMA
    assert_loads(tmp_path / "ema.ckpt", ema, weights="ema")
    assert not assert_loads(tmp_path / "ema.ckpt", sd, weights="model").ema


@pytest.mark.parametrize("key", ["state_dict_ema", "model_ema", "ema"])
def test_top_level_ema_entries(weights, tmp_path, key):
    sd, ema = weights
    ema_value = prefixed(ema, "module.") if key == "model_ema" else ema  # timm ModelEmaV2 keeps `module.`
    torch.save({"state_dict": sd, key: ema_value, "epoch": 3}, tmp_path / "ema.pth")
    ckpt = assert_loads(tmp_path / "ema.pth", ema)
    assert ckpt.ema and key in ckpt.source
    assert_loads(tmp_path / "ema.pth", sd, weights="model")


def test_model_key_containers(weights, tmp_path):
    sd, _ = weights
    torch.save({"model_state_dict": sd, "optimizer_state_dict": {"state": {}}, "epoch": 1}, tmp_path / "a.pt")
    assert_loads(tmp_path / "a.pt", sd)
    torch.save({"model": prefixed(sd, "module.")}, tmp_path / "b.pt")
    assert_loads(tmp_path / "b.pt", sd)


def test_ema_requested_but_absent(weights, tmp_path):
    sd, _ = weights
    torch.save(sd, tmp_path / "plain.pt")
    with pytest.raises(InputError, match="no EMA weights"):
        read_checkpoint(tmp_path / "plain.pt", "ema")


def test_mismatch_lists_missing_unexpected_and_shapes(weights, tmp_path):
    sd, _ = weights
    bad = dict(sd)
    del bad["ms_seg_heads.0.0.bias"]
    bad["ms_seg_heads.0.0.extra"] = torch.zeros(3)
    bad["neck.convs.0.0.weight"] = torch.zeros(48, 23, 3, 3, 3)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(InputError) as exc:
        load_into(fresh(), read_checkpoint(tmp_path / "bad.pt"), "x3d_m", trained_patch=(224, 448, 448))
    msg = str(exc.value)
    assert msg.startswith(str(tmp_path / "bad.pt"))
    assert "1 missing (ms_seg_heads.0.0.bias)" in msg and "1 unexpected (ms_seg_heads.0.0.extra)" in msg
    assert "1 shape mismatches (neck.convs.0.0.weight ckpt[48, 23, 3, 3, 3] != model[48, 24, 3, 3, 3])" in msg
    assert "\n" not in msg and "Fix: pass the --arch and --patch" in msg and "--patch 224 448 448" in msg


def test_wrong_arch_shows_a_few_keys_and_counts(weights, tmp_path):
    sd = build_model(REGISTRY["resnext50"], PATCH, seed=0)[0].state_dict()
    missing, unexpected, shapes = diff_state_dict(fresh(), sd)
    assert missing and unexpected
    torch.save(sd, tmp_path / "resnext.pt")
    with pytest.raises(InputError, match=r"missing \(.*, \.\.\. \(\+\d+\)\)"):
        load_into(fresh(), read_checkpoint(tmp_path / "resnext.pt"), "x3d_m")


def test_unreadable_and_untrusted_files(weights, tmp_path):
    sd, _ = weights
    (tmp_path / "junk.pt").write_bytes(b"definitely not a checkpoint")
    with pytest.raises(InputError, match="junk.pt: not a readable torch checkpoint"):
        read_checkpoint(tmp_path / "junk.pt")
    torch.save({"state_dict": sd, "args": argparse.Namespace(lr=1.0)}, tmp_path / "timm.pth.tar")
    with pytest.raises(InputError, match=r"refused it \(it pickles argparse.Namespace\).*--trust-checkpoint"):
        read_checkpoint(tmp_path / "timm.pth.tar")
    assert_loads(tmp_path / "timm.pth.tar", sd, trust=True)
    torch.save({"step": 3}, tmp_path / "nothing.pt")
    with pytest.raises(InputError, match="no weights found"):
        read_checkpoint(tmp_path / "nothing.pt")
    with pytest.raises(InputError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "absent.pt")


def test_find_checkpoint(tmp_path):
    with pytest.raises(InputError, match="no checkpoint for member x3d_m"):
        find_checkpoint(tmp_path, "x3d_m")
    (tmp_path / "x3d_m.ckpt").write_bytes(b"x")
    assert find_checkpoint(tmp_path, "x3d_m") == tmp_path / "x3d_m.ckpt"
    (tmp_path / "x3d_m.pt").write_bytes(b"x")
    with pytest.raises(InputError, match="several checkpoints"):
        find_checkpoint(tmp_path, "x3d_m")


def test_export_records_the_checkpoint_sha256(weights, tmp_path):
    sd, _ = weights
    ckpt = tmp_path / "x3d_m.pt"
    torch.save({"state_dict": prefixed(sd, "model."), "pytorch-lightning_version": "2.4.0"}, ckpt)
    r = export_onnx("x3d_m", PATCH, tmp_path / "x3d_m.onnx", checkpoint=ckpt)
    meta = read_metadata(r.path)
    assert meta["checkpoint_sha256"] == sha256_file(ckpt) == r.checkpoint_sha256
    assert meta["checkpoint"].startswith("x3d_m.pt: state_dict (Lightning")
    assert meta["weights"] == "model" and meta["member"] == "x3d_m"
    assert r.rel_diff <= 1e-4


# --------------------------------------------------------------------------- the 3rd-place (yagm) layout


def yagm_checkpoint(raw: dict, ema_by_decay: dict) -> dict:
    """A Lightning 2.5 checkpoint as their training saved it (model weights under ``model.``)."""
    return {"epoch": 2, "global_step": 36000, "pytorch-lightning_version": "2.5.0.post0",
            "state_dict": prefixed(raw, "model."), "loops": {"fit_loop": {"state_dict": {}}},
            "callbacks": {"ModelCheckpoint": {"best_model_score": torch.tensor(0.9)}},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4}]}], "lr_schedulers": [],
            "MixedPrecision": {"scale": 1024.0},
            "ema_state_dict": {d: prefixed(w, "model.") for d, w in ema_by_decay.items()}}


def test_their_layout_ema_keyed_by_float_decay(weights, tmp_path):
    sd, ema = weights
    torch.save(yagm_checkpoint(sd, {0.99: ema}), tmp_path / "EXP23_X3DM_ep2_step36000.ckpt")
    path = tmp_path / "EXP23_X3DM_ep2_step36000.ckpt"
    ckpt = assert_loads(path, ema)
    assert ckpt.ema and ckpt.weights == "ema (decay 0.99)" and "ema_state_dict[0.99]" in ckpt.source
    assert "Lightning, model.*" in ckpt.source
    assert assert_loads(path, ema, weights="ema", ema_decay=0.99).ema
    assert assert_loads(path, sd, weights="model").weights == "model"
    with pytest.raises(InputError, match=r"no EMA weights for decay 0.999 \(it has 0.99\).*--ema-decay"):
        read_checkpoint(path, ema_decay=0.999)


def test_plain_data_in_training_state_loads_without_trust(weights, tmp_path):
    """numpy scalars and paths in callback states are data, not code: weights_only accepts them."""
    import pathlib

    import numpy as np

    sd, ema = weights
    state = yagm_checkpoint(sd, {0.99: ema})
    state["callbacks"]["EarlyStopping"] = {"best_score": np.float64(0.91), "wait_count": np.int64(2),
                                          "dirpath": pathlib.PosixPath("/runs/exp23")}
    torch.save(state, tmp_path / "np.ckpt")
    assert assert_loads(tmp_path / "np.ckpt", ema).ema


def test_several_decays_need_a_choice(weights, tmp_path):
    sd, ema = weights
    torch.save(yagm_checkpoint(sd, {0.99: ema, 0.999: sd}), tmp_path / "two.ckpt")
    with pytest.raises(InputError, match=r"several decays \(0.99, 0.999\).*Fix: pick one with --ema-decay"):
        read_checkpoint(tmp_path / "two.ckpt")
    assert assert_loads(tmp_path / "two.ckpt", ema, ema_decay=0.99).weights == "ema (decay 0.99)"
    assert assert_loads(tmp_path / "two.ckpt", sd, ema_decay=0.999).weights == "ema (decay 0.999)"
    torch.save(sd, tmp_path / "plain.pt")
    with pytest.raises(InputError, match="no EMA weights keyed by decay"):
        read_checkpoint(tmp_path / "plain.pt", ema_decay=0.99)


def test_training_only_keys_are_listed_and_ignored(weights, tmp_path, caplog):
    sd, _ = weights
    extra = {"reg_head.pre_logits.fc.weight": torch.zeros(8, 4), "reg_head.cls_fc.bias": torch.zeros(1)}
    torch.save({**sd, **extra}, tmp_path / "reg.pt")
    model = fresh()
    with caplog.at_level("INFO", logger="export.checkpoints"):
        res = load_into(model, read_checkpoint(tmp_path / "reg.pt"), "x3d_m", ignored_prefixes=("reg_head.",))
    assert res.ignored == ("reg_head.cls_fc.bias", "reg_head.pre_logits.fc.weight")
    assert "2 training-only keys ignored: reg_head.cls_fc.bias, reg_head.pre_logits.fc.weight" in caplog.text
    assert all(torch.equal(model.state_dict()[k], sd[k]) for k in sd)
    with pytest.raises(InputError, match=r"2 unexpected \(reg_head"):  # not ignorable for this caller
        load_into(fresh(), read_checkpoint(tmp_path / "reg.pt"), "x3d_m")


class Shared(torch.nn.Module):
    """A module reachable under two names, as CoaT's cpe1 / serial_blocks1.0.cpe."""

    def __init__(self):
        super().__init__()
        self.cpe1 = torch.nn.Conv2d(2, 2, 3, padding=1, groups=2)
        self.blocks = torch.nn.ModuleList([torch.nn.Sequential(self.cpe1, torch.nn.Conv2d(2, 1, 1))])


def test_tied_names_load_once(tmp_path):
    src = Shared()
    torch.nn.init.normal_(src.cpe1.weight)
    sd = src.state_dict()
    assert {"cpe1.weight", "blocks.0.0.weight"} <= set(sd)  # one tensor, two names
    for name, ckpt_sd in (("both", sd), ("one", {k: v for k, v in sd.items() if not k.startswith("blocks.0.0.")})):
        torch.save(ckpt_sd, tmp_path / f"{name}.pt")
        model = Shared()
        res = load_into(model, read_checkpoint(tmp_path / f"{name}.pt"), "shared")
        assert res.tied == 2 and torch.equal(model.cpe1.weight, src.cpe1.weight)  # weight and bias groups
        assert model.blocks[0][0] is model.cpe1
    bad = dict(sd)
    bad["blocks.0.0.weight"] = bad["blocks.0.0.weight"] + 1
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(InputError, match="name one shared tensor of the model but differ"):
        load_into(Shared(), read_checkpoint(tmp_path / "bad.pt"), "shared")
