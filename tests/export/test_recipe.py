"""Each 3rd-place member, from a checkpoint in THEIR layout to an ONNX that reproduces the model.

Per member: stand-in weights are written as their training saved them (Lightning 2.5 dict, raw
weights under ``state_dict``, EMA weights under ``ema_state_dict[0.99]``, keys ``model.*``, the 2d
members' training-only ``reg_head.*`` at its real shapes, CoaT's shared modules under both names),
EMA and raw weights different. ``python -m export onnx --arch NAME --checkpoint X.ckpt --patch ...
--out M.onnx`` must succeed, and ONNX Runtime on a fixed raw 0..255 input must reproduce the torch
model holding the EMA weights within 1e-4 of the output's scale (max |output|). The same check
against the raw weights, or against the 3d net run with the wrong axis order, must fail by more
than 1e-3 of the scale: the check can tell the difference.

3d members run at a small non-cubic patch; the 2d members only take the patch their checkpoints
were trained at (896 x 896), so they run there (about a minute each on 2 cores).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.export

from export.cli import main  # noqa: E402
from export.models.registry import REGISTRY, build_model
from export.onnx_export import read_metadata  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PATCH_3D = (32, 64, 96)
PATCH_2D = (896, 896)
PARITY = 1e-4  # ONNX vs the EMA model, of the output's scale
DISTINCT = 1e-3  # what a wrong model must differ by, of the output's scale
DECAY = 0.99
# their 2d checkpoints' regression head (training only): shapes at the 896 x 896 patch
REG_HEAD = {"reg_head.norm.weight": (512,), "reg_head.norm.bias": (512,), "reg_head.proj_conv.weight": (64, 512, 1, 1),
            "reg_head.proj_conv.bias": (64,), "reg_head.pre_logits.fc.weight": (1024, 64 * 28 * 28),
            "reg_head.pre_logits.fc.bias": (1024,), "reg_head.reg_fc.weight": (2, 1024), "reg_head.reg_fc.bias": (2,),
            "reg_head.cls_fc.weight": (1, 1024), "reg_head.cls_fc.bias": (1,)}


def patch_of(name):
    return PATCH_3D if REGISTRY[name].kind == "3d" else PATCH_2D


def perturbed(model, seed: int, rel: float = 0.03):
    """The 'raw' (non-EMA) weights: every parameter and running stat moved by ~3% (shared tensors stay shared)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(model.parameters()) + [b for n, b in model.named_buffers() if n.endswith(("running_mean",
                                                                                               "running_var"))]:
            noise = torch.randn(t.shape, generator=gen) * rel
            t.mul_((1 + noise).abs() if t.min() >= 0 else 1 + noise)
    return model


def prefixed(sd):
    return {f"model.{k}": v for k, v in sd.items()}


def write_their_checkpoint(name: str, path: Path) -> dict:
    """Stand-in EMA and raw weights in their layout; returns both state dicts (without model.)."""
    patch = patch_of(name)
    # 3d: a calibrated stand-in; 2d: plain init (LayerNorm nets stay finite; saves a train-mode pass at 896)
    ema_model = build_model(REGISTRY[name], patch, seed=1, random_init=REGISTRY[name].kind == "3d")[0]
    ema = {k: v.clone() for k, v in ema_model.state_dict().items()}
    raw = {k: v.clone() for k, v in perturbed(ema_model, seed=2).state_dict().items()}
    extra = {}
    if REGISTRY[name].ignored_prefixes:
        gen = torch.Generator().manual_seed(3)
        extra = {k: torch.randn(s, generator=gen) * 0.01 for k, s in REG_HEAD.items()}
    torch.save({"epoch": 2, "global_step": 36000, "pytorch-lightning_version": "2.5.0.post0",
                "state_dict": prefixed({**raw, **extra}), "loops": {"fit_loop": {"epoch_progress": {"current": 2}}},
                "callbacks": {"ModelCheckpoint{'monitor': 'val/f2'}": {"best_model_score": torch.tensor(0.91)}},
                "optimizer_states": [{"state": {}, "param_groups": [{"lr": 1e-4, "weight_decay": 0.05}]}],
                "lr_schedulers": [{"last_epoch": 36000}], "MixedPrecision": {"scale": 65536.0, "growth_tracker": 7},
                "ema_state_dict": {DECAY: prefixed({**ema, **extra})}}, path)
    return {"ema": ema, "raw": raw}


def torch_model(name: str, sd: dict):
    model = build_model(REGISTRY[name], patch_of(name), seed=0)[0]
    model.load_state_dict(sd, strict=True)
    return model.eval()


def dhw_everywhere(model, x):
    """A 3d net with every kernel on (D, H, W): what the wrong axis order computes (the same shapes)."""
    from export.models.unet3d import SMPEncoder
    from export.models.x3d import X3D_MEAN, X3D_STD

    enc = model.encoder
    if isinstance(enc, SMPEncoder):
        feats = enc.encoder((x.expand(-1, 3, -1, -1, -1) - enc.mean) / enc.std)
    else:
        feats = enc.encoder(((x - X3D_MEAN) / X3D_STD).expand(-1, 3, -1, -1, -1))
    f = model.neck(feats[1:])
    return model.ms_seg_heads[0](model.decoder(f[-1], f[-2]))


def fixed_raw_input(name: str) -> torch.Tensor:
    spec = REGISTRY[name]
    gen = torch.Generator().manual_seed(7)
    return (torch.rand((1, spec.in_channels, *patch_of(name)), generator=gen) * 255).round()  # uint8 values


def run_onnx(path: Path, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]


def rel(a, b, scale) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))) / scale


@pytest.mark.parametrize("name", ["x3d_m", "densenet121", "resnext50", "maxvit_tiny", "coat_lite_medium"])
def test_their_checkpoint_exports_and_onnx_reproduces_the_ema_model(name, tmp_path, capsys):
    ckpt = tmp_path / f"{name}.ckpt"
    weights = write_their_checkpoint(name, ckpt)
    out = tmp_path / f"{name}.onnx"
    patch = [str(p) for p in patch_of(name)]
    argv = ["onnx", "--arch", name, "--checkpoint", str(ckpt), "--patch", *patch, "--out", str(out)]
    if REGISTRY[name].kind == "2d":
        argv += ["--parity-batch", "1"]  # the batch axis is proven dynamic by the small exports
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out

    x = fixed_raw_input(name)
    y_onnx = run_onnx(out, x)
    with torch.no_grad():
        y_ema = torch_model(name, weights["ema"])(x).numpy()
        y_raw = torch_model(name, weights["raw"])(x).numpy()
    scale = float(np.max(np.abs(y_ema)))
    assert y_onnx.shape == y_ema.shape == (1, 1, *(p // 16 for p in patch_of(name)))
    assert rel(y_onnx, y_ema, scale) <= PARITY
    assert rel(y_raw, y_ema, scale) > DISTINCT  # loading the raw weights would fail the check
    if REGISTRY[name].kind == "3d":
        model = torch_model(name, weights["ema"])
        with torch.no_grad():
            y_wrong = dhw_everywhere(model, x).numpy()
        assert y_wrong.shape == y_ema.shape and rel(y_wrong, y_ema, scale) > DISTINCT  # so would the wrong axes

    assert "weights ema (decay 0.99)" in printed
    meta = read_metadata(out)
    assert meta["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert meta["member"] == name and meta["weights"] == "ema (decay 0.99)"
    assert meta["checkpoint"].startswith(f"{ckpt.name}: ema_state_dict[0.99] (Lightning, model.*)")
    assert meta["ignored_keys"].startswith("10: reg_head.") if REGISTRY[name].ignored_prefixes else \
        meta["ignored_keys"] == "0"
    assert meta["normalize"] == '{"mean": 0.0, "std": 1.0}' and meta["input"].startswith("raw 0..255 float32")


def test_the_command_line_and_weights_model(tmp_path):
    """The literal ``python -m export onnx`` command; ``--weights model`` exports the raw weights."""
    ckpt = tmp_path / "x3d_m.ckpt"
    weights = write_their_checkpoint("x3d_m", ckpt)
    out = tmp_path / "x3d_m_raw.onnx"
    res = subprocess.run([sys.executable, "-m", "export", "-q", "onnx", "--arch", "x3d_m", "--checkpoint", str(ckpt),
                          "--weights", "model", "--patch", *map(str, PATCH_3D), "--out", str(out)],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert "weights model" in res.stdout and read_metadata(out)["weights"] == "model"
    x = fixed_raw_input("x3d_m")
    with torch.no_grad():
        y_raw = torch_model("x3d_m", weights["raw"])(x).numpy()
    assert rel(run_onnx(out, x), y_raw, float(np.max(np.abs(y_raw)))) <= PARITY
