"""export.checkpoints: every accepted layout loads strictly; mismatches are one readable InputError.

Random-init x3d_m weights (seed 1) are saved in each layout; loading into a model built with seed 0
must reproduce them exactly (so a no-op load cannot pass).
"""

from __future__ import annotations

import argparse

import pytest

torch = pytest.importorskip("torch")

from export.checkpoints import (  # noqa: E402
    diff_state_dict,
    find_checkpoint,
    load_into,
    read_checkpoint,
    sha256_file,
)
from export.onnx_export import export_onnx, read_metadata  # noqa: E402
from export.registry import REGISTRY, build_model  # noqa: E402
from inference.errors import InputError  # noqa: E402

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
    del bad["head.bias"]
    bad["head.extra"] = torch.zeros(3)
    bad["neck.lateral16.weight"] = torch.zeros(128, 95, 1, 1, 1)
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(InputError) as exc:
        load_into(fresh(), read_checkpoint(tmp_path / "bad.pt"), "x3d_m")
    msg = str(exc.value)
    assert msg.startswith(str(tmp_path / "bad.pt"))
    assert "1 missing (head.bias)" in msg and "1 unexpected (head.extra)" in msg
    assert "1 shape mismatches (neck.lateral16.weight ckpt[128, 95, 1, 1, 1] != model[128, 96, 1, 1, 1])" in msg
    assert "\n" not in msg and "Fix: pass the --arch" in msg


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
    assert r.max_abs_diff <= 1e-4
