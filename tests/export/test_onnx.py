"""export: members, ONNX export with parity, metadata, `all` over a manifest, and predict on the result.

The default run exports one small 3d member (x3d_m at 32x64x64) through ``export all`` and uses it
for every check, including ``run_predict`` on a tiny synthetic set; the other members are slow tests.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.export

from export.cli import build_parser, main  # noqa: E402
from export.errors import ExportError  # noqa: E402
from export.manifest_export import export_all, read_manifest, scale_patch  # noqa: E402
from export.models.registry import REGISTRY, arch_for_member, build_model, check_patch, resolve_arch
from export.onnx_export import export_onnx, read_metadata  # noqa: E402
from inference.common.errors import InputError
from inference.manifest.parse import load_manifest, parse_manifest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "weights_manifest.yaml"
SMALL_3D = (32, 64, 64)
SMALL_2D = (64, 64)
SCALE_3D = 1 / 7  # 224x448x448 -> 32x64x64


@pytest.fixture(scope="module")
def x3d_export(tmp_path_factory):
    """``export all --only x3d_m --patch-scale 1/7 --random-init`` of the shipped manifest."""
    out = tmp_path_factory.mktemp("export_x3d")
    return export_all(SHIPPED, out, random_init=True, patch_scale=SCALE_3D, only=["x3d_m"], seed=0)


# --------------------------------------------------------------------------- members


def test_registry_has_the_manifest_members_with_kind_channels_stride():
    manifest, _ = read_manifest(SHIPPED)
    for m in manifest.members:
        spec = REGISTRY[arch_for_member(m.name)]
        assert (spec.kind, spec.stride) == (m.kind, m.stride)
        assert spec.in_channels == (1 if m.kind == "3d" else m.channels)
    assert arch_for_member("x3d_m_fold2") == "x3d_m"
    assert arch_for_member("resnext50-ema") == "resnext50"
    assert arch_for_member("unet") is None


@pytest.mark.parametrize("name", ["x3d_m", "densenet121", "resnext50"])
def test_3d_members_give_one_channel_at_stride_16(name):
    model, spec = build_model(REGISTRY[name], SMALL_3D, seed=0)
    with torch.no_grad():
        y = model(torch.zeros(1, 1, 32, 32, 64))  # convnets: any multiple of 32
    assert tuple(y.shape) == (1, 1, 2, 2, 4)
    assert spec.patch_multiple == 32


def test_patch_check_names_the_multiple_and_suggests_one():
    spec = REGISTRY["x3d_m"]
    assert check_patch(spec, (32, 64, 96)) == (32, 64, 96)
    with pytest.raises(InputError, match="multiple of 32.*use e.g. 32 64 64"):
        check_patch(spec, (40, 64, 64))
    with pytest.raises(InputError, match="needs 3 sides"):
        check_patch(spec, (64, 64))
    assert scale_patch((224, 448, 448), SCALE_3D, 32) == SMALL_3D
    assert scale_patch((896, 896), 0.01, 32) == (32, 32)


def test_unknown_arch_is_an_input_error():
    with pytest.raises(InputError, match="unknown arch"):
        resolve_arch("unet3d", "3d")
    with pytest.raises(InputError, match="contradicts"):
        resolve_arch("x3d_m", "3d", stride=8)


# --------------------------------------------------------------------------- export of the small x3d_m


def test_all_writes_the_member_and_a_derived_manifest_that_validates(x3d_export):
    (report,) = x3d_export.reports
    assert report.path.is_file() and report.path.parent.name == "members"
    assert x3d_export.manifest.name == "weights_manifest.exported.yaml"
    m = load_manifest(x3d_export.manifest)
    assert [mm.name for mm in m.members] == ["x3d_m"]
    assert m.members[0].patch == SMALL_3D and m.members[0].model == report.path.resolve()
    assert m.threshold.quantile == 0.55  # the rest of the shipped manifest is kept


def test_parity_shapes_and_metadata(x3d_export):
    import onnx
    import onnxruntime as ort

    (report,) = x3d_export.reports
    assert report.rel_diff <= 1e-4 and report.max_abs_diff <= 1e-4 * report.output_scale
    assert report.output_std > 1e-3  # a non-constant output, so the parity check compares something
    model = onnx.load(str(report.path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    meta = read_metadata(report.path)
    assert meta["arch"] == "x3d_m" and meta["kind"] == "3d" and meta["stride"] == "16"
    assert json.loads(meta["patch"]) == list(SMALL_3D)
    assert meta["spacing"] == "16.0" and meta["activation"] == "sigmoid"
    assert json.loads(meta["normalize"]) == {"mean": 0.0, "std": 1.0}  # raw 0..255 in, normalised inside
    assert meta["input"].startswith("raw 0..255 float32, normalised inside the net (N, 1, D, H, W)")
    assert meta["checkpoint_sha256"] == "random-init" and meta["member"] == "x3d_m"
    assert meta["weights"] == "random-init" and meta["ignored_keys"] == "0"
    assert meta["exporter_torch"] == torch.__version__ and meta["exporter_onnx"] == onnx.__version__
    assert float(meta["parity_max_abs_diff"]) == pytest.approx(report.max_abs_diff, rel=1e-3)
    # dynamic batch, fixed spatial axes: batch 3 runs and the grid is patch / 16
    sess = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"input": np.zeros((3, 1, *SMALL_3D), np.float32)})
    assert y.shape == (3, 1, 2, 4, 4)
    assert sess.get_inputs()[0].shape[1:] == [1, *SMALL_3D]


def test_same_seed_same_weights():
    spec = REGISTRY["x3d_m"]
    a = build_model(spec, SMALL_3D, seed=5, random_init=True)[0].state_dict()
    b = build_model(spec, SMALL_3D, seed=5, random_init=True)[0].state_dict()
    c = build_model(spec, SMALL_3D, seed=6, random_init=True)[0].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # including the calibrated BatchNorm statistics
    assert not torch.equal(a["ms_seg_heads.0.0.weight"], c["ms_seg_heads.0.0.weight"])
    assert not torch.equal(a["decoder.blocks.0.conv1.1.running_var"], c["decoder.blocks.0.conv1.1.running_var"])


def test_predict_runs_on_the_exported_member(x3d_export, tmp_path):
    from inference.run.runner import PredictConfig, run_predict
    from inference.synth.generate import generate

    data = tmp_path / "data"
    labels = generate(data, n=2, seed=3, split="test", scale=0.1, progress=False)
    manifest = load_manifest(x3d_export.manifest)
    out = tmp_path / "submission.csv"
    result = run_predict(PredictConfig(manifest=manifest, input_dir=data / "test", output=out,
                                       spacing_csv=data / "test_labels.csv", candidates_dir=tmp_path / "cands",
                                       progress=False))
    assert not result.failures
    import pandas as pd

    sub = pd.read_csv(out)
    assert sorted(sub.tomo_id) == sorted(set(labels.tomo_id))
    cands = pd.read_csv(tmp_path / "cands" / "x3d_m@zyx.csv")  # the shipped recipe: one list per TTA
    assert list(cands.columns) == ["tomo_id", "z", "y", "x", "conf", "voxel_spacing"]
    assert len(cands) > 0 and cands.conf.between(0, 1).all()


# --------------------------------------------------------------------------- bring your own, failures


BYO = """
import torch
from torch import nn

class Net(nn.Module):
    def __init__(self, stride=16, noisy=False):
        super().__init__()
        self.conv = nn.Conv3d(1, 1, stride, stride=stride)
        self.noisy = noisy
        self.stride = 16
    def forward(self, x):
        y = self.conv(x)
        return y + torch.rand_like(y) if self.noisy else y

def good():
    return Net()

def with_patch(patch):
    assert len(patch) == 3
    return Net()

def wrong_stride():
    return Net(stride=8)

def noisy():
    return Net(noisy=True)

def not_a_module():
    return 42


# fp32 eager 3e-4 of the scale off, float64 and the traced graph exact ("eager": a deep net's fp32
# rounding), or the traced graph off ("graph": a wrong export)
class Offset(Net):
    def __init__(self, where):
        super().__init__()
        self.where = where
    def forward(self, x):
        y = self.conv(x)
        tracing = torch.jit.is_tracing()
        if (self.where == "eager" and not tracing and y.dtype == torch.float32) or (self.where == "graph" and tracing):
            y = y + 3e-4 * y.detach().abs().amax()
        return y

def rounded_in_eager():
    return Offset("eager")

def wrong_in_graph():
    return Offset("graph")
"""


@pytest.fixture
def byo(tmp_path):
    path = tmp_path / "mynets.py"
    path.write_text(textwrap.dedent(BYO))
    return path


def test_bring_your_own_arch(byo, tmp_path):
    for fn in ("good", "with_patch"):
        r = export_onnx(f"{byo}:{fn}", (32, 32, 32), tmp_path / f"{fn}.onnx", random_init=True)
        assert r.output_shape == ("N", 1, 2, 2, 2) and r.rel_diff <= 1e-4
        meta = read_metadata(r.path)
        assert meta["arch"] == f"{byo}:{fn}" and json.loads(meta["normalize"]) == {"mean": 0.0, "std": 255.0}


def test_parity_batch_is_1_for_large_inputs(byo, tmp_path, monkeypatch):
    import export.onnx_export as oe

    r = export_onnx(f"{byo}:good", (32, 32, 32), tmp_path / "a.onnx", random_init=True)
    assert read_metadata(r.path)["parity_batch"] == "2"
    monkeypatch.setattr(oe, "PARITY_BATCH2_ELEMENTS", 32 ** 3 - 1)  # as the 224x448x448 windows are
    r = export_onnx(f"{byo}:good", (32, 32, 32), tmp_path / "b.onnx", random_init=True)
    assert read_metadata(r.path)["parity_batch"] == "1"
    r = export_onnx(f"{byo}:good", (32, 32, 32), tmp_path / "c.onnx", random_init=True, parity_batch=3)
    assert read_metadata(r.path)["parity_batch"] == "3"


def test_output_grid_must_be_patch_over_stride(byo, tmp_path):
    out = tmp_path / "bad.onnx"
    with pytest.raises(ExportError, match=r"gives output \[2, 1, 4, 4, 4\], expected \[2, 1, 2, 2, 2\]"):
        export_onnx(f"{byo}:wrong_stride", (32, 32, 32), out, random_init=True)
    assert not out.exists()


def test_parity_failure_is_an_error_and_writes_nothing(byo, tmp_path):
    out = tmp_path / "noisy.onnx"
    with pytest.raises(ExportError, match="differs from torch by max"):
        export_onnx(f"{byo}:noisy", (32, 32, 32), out, random_init=True)
    assert not out.exists() and list(tmp_path.glob("*.tmp")) == []


def test_parity_verdict_tells_fp32_rounding_from_a_wrong_graph():
    from export.parity import FP32_ROUNDING_CAP, FP64_MARGIN, parity_verdict

    assert (FP64_MARGIN, FP32_ROUNDING_CAP) == (2.0, 1e-3)
    t = np.array([1.0, -2.0], np.float32)  # scale 2: tol 1e-4 allows 2e-4
    off = lambda d: t + np.array([d, 0.0], np.float32)  # noqa: E731
    exact = lambda d: t.astype(np.float64) + np.array([d, 0.0])  # noqa: E731
    assert parity_verdict(t, off(1.5e-4), 1e-4) == (True, "")
    assert parity_verdict(t, off(5e-4), 1e-4) == (False, "")  # no float64 result: fails
    # torch fp32 4e-4 from float64, ORT 1e-4 from it: rounding, passes (1e-4 <= max(2e-4, 2 x 4e-4))
    ok, why = parity_verdict(t, off(5e-4), 1e-4, exact(4e-4))
    assert ok and list(map(float, re.findall(r"\d\.\d+e[-+]\d+", why))) == pytest.approx([1e-4, 4e-4], rel=1e-3)
    # torch exact, ORT 5e-4 off: a wrong graph (5e-4 > max(2e-4, 2 x 0))
    assert parity_verdict(t, off(5e-4), 1e-4, exact(0.0))[0] is False
    # torch 3e-3 off, ORT 2.5e-3 off: within 2x, but past the cap 1e-3 x 2
    assert parity_verdict(t, off(5.5e-3), 1e-4, exact(3e-3))[0] is False
    assert parity_verdict(t, np.array([np.nan, -2.0], np.float32), 1e-4, exact(0.0))[0] is False


def test_fp32_rounding_is_told_apart_from_a_wrong_graph_by_float64(byo, tmp_path):
    # torch fp32 off by 3e-4 of the scale (> --tol 1e-4), the graph exact: written, float64 figures recorded
    r = export_onnx(f"{byo}:rounded_in_eager", (32, 32, 32), tmp_path / "r.onnx", random_init=True)
    assert r.rel_diff > 1e-4
    ort_err, torch_err = map(float, re.findall(r"\d\.\d+e[-+]\d+", read_metadata(r.path)["parity_fp64"]))
    assert ort_err < 1e-5 * r.output_scale and torch_err == pytest.approx(3e-4 * r.output_scale, rel=0.05)
    # the graph off by 3e-4, torch exact: refused, the float64 figures in the message
    out = tmp_path / "w.onnx"
    with pytest.raises(ExportError, match="differs from torch by max .*; float64: max [|]ORT - fp64[|]"):
        export_onnx(f"{byo}:wrong_in_graph", (32, 32, 32), out, random_init=True)
    assert not out.exists()


def test_float64_memory_estimate_and_guard(byo, tmp_path, monkeypatch):
    import export.parity as parity

    # a 7x7x7 stem: im2col columns 3 x 343 x 16^3 doubles; the output 64 x 16^3, three times; the weights
    conv = torch.nn.Conv3d(3, 64, 7, stride=2, padding=3)
    want = 8 * ((64 * 3 * 343 + 64) + 3 * 343 * 16 ** 3 + 3 * 64 * 16 ** 3)
    assert parity.fp64_peak_bytes(conv, torch.zeros(1, 3, 32, 32, 32)) == want
    # too little memory: the float64 run does not start; a gap within the fp32-rounding cap (3e-4 <= 1e-3 of
    # the scale) is written with that said in the metadata (and a warning); a bigger one is refused
    monkeypatch.setattr(parity, "available_bytes", lambda: 1024)
    r = export_onnx(f"{byo}:rounded_in_eager", (32, 32, 32), tmp_path / "r.onnx", random_init=True)
    assert 1e-4 < r.rel_diff <= 1e-3
    assert re.match(r"not run \(the float64 check would need ~.* GB available: rerun at a smaller --patch",
                    read_metadata(r.path)["parity_fp64"])
    out = tmp_path / "n.onnx"
    with pytest.raises(ExportError, match=r"differs from torch by max .*float64 check would need"):
        export_onnx(f"{byo}:noisy", (32, 32, 32), out, random_init=True)  # uniform noise: ~1 of the scale
    assert not out.exists()


def test_byo_errors_are_input_errors(byo, tmp_path):
    with pytest.raises(InputError, match="not an nn.Module"):
        export_onnx(f"{byo}:not_a_module", (32, 32, 32), tmp_path / "x.onnx", random_init=True)
    with pytest.raises(InputError, match="no callable"):
        export_onnx(f"{byo}:missing", (32, 32, 32), tmp_path / "x.onnx", random_init=True)
    with pytest.raises(InputError, match="cannot import"):
        export_onnx("no_such_module_xyz:build", (32, 32, 32), tmp_path / "x.onnx", random_init=True)


def test_option_errors(tmp_path):
    with pytest.raises(InputError, match="opset 13 is too old"):
        export_onnx("x3d_m", SMALL_3D, tmp_path / "m.onnx", random_init=True, opset=13)
    with pytest.raises(InputError, match="exactly one of a checkpoint or random init"):
        export_onnx("x3d_m", SMALL_3D, tmp_path / "m.onnx")
    with pytest.raises(InputError, match="3d member but the patch"):
        export_onnx("x3d_m", SMALL_2D, tmp_path / "m.onnx", random_init=True)
    with pytest.raises(InputError, match=r"\.onnx file"):
        export_onnx("x3d_m", SMALL_3D, tmp_path / "m.pt", random_init=True)


# --------------------------------------------------------------------------- manifest handling


def test_parse_manifest_without_file_check(tmp_path):
    import yaml

    data = yaml.safe_load(SHIPPED.read_text())
    where = tmp_path / "weights_manifest.yaml"
    with pytest.raises(InputError, match="file not found"):
        parse_manifest(data, where)
    m = parse_manifest(data, where, check_files=False)
    assert len(m.members) == 5
    data["members"][0]["patch"] = [100, 448, 448]  # still validated
    with pytest.raises(InputError, match="not a multiple of stride"):
        parse_manifest(data, where, check_files=False)


def test_all_rejects_members_it_cannot_export(tmp_path):
    import yaml

    data = yaml.safe_load(SHIPPED.read_text())
    data["members"] = [dict(data["members"][0], name="unet")]
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match="no arch for member name 'unet'"):
        export_all(p, tmp_path, random_init=True)
    data["members"] = [dict(data["members"][0], name="x3d_m", kind="2d", patch=[896, 896], slice_spacing=32.0,
                            tta=["yx"])]
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match="arch x3d_m is 3d"):
        export_all(p, tmp_path, random_init=True)
    data["members"] = [dict(yaml.safe_load(SHIPPED.read_text())["members"][0], normalize={"mean": 0.0, "std": 255.0})]
    p.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError, match=r"normalize: \{mean: 0.0, std: 255.0\}, but arch x3d_m takes raw 0..255"):
        export_all(p, tmp_path, random_init=True)
    with pytest.raises(InputError, match="--only names nope"):
        export_all(SHIPPED, tmp_path, random_init=True, only=["nope"])
    with pytest.raises(InputError, match="no checkpoint for member x3d_m"):
        export_all(SHIPPED, tmp_path, checkpoints=tmp_path, only=["x3d_m"])


# --------------------------------------------------------------------------- CLI


def test_every_option_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == {"onnx", "all", "tensorrt", "archs"}
    for name, p in sub.choices.items():
        for action in p._actions:
            assert action.help, f"{name} {action.option_strings} has no help"


def test_cli_onnx_and_one_line_errors(tmp_path, capsys, byo):
    out = tmp_path / "m.onnx"
    assert main(["-q", "onnx", "--arch", f"{byo}:good", "--random-init", "--patch", "32", "32", "32",
                 "--out", str(out), "--normalize", "zscore", "--spacing", "12.5"]) == 0
    assert "parity max|diff|" in capsys.readouterr().out
    meta = read_metadata(out)
    assert meta["normalize"] == "zscore" and meta["spacing"] == "12.5"
    rc = main(["onnx", "--arch", "x3d_m", "--random-init", "--patch", "30", "64", "64", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "multiple of 32" in err and "Traceback" not in err
    rc = main(["onnx", "--arch", "x3d_m", "--checkpoint", str(tmp_path / "none.pt"), "--patch", "32", "64", "64",
               "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "none.pt: checkpoint not found" in err


def test_cli_module_runs(tmp_path):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "export", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0 and "tensorrt" in res.stdout and "onnx" in res.stdout


def test_cli_archs_lists_the_registry(capsys):
    assert main(["archs"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in REGISTRY)


# --------------------------------------------------------------------------- slow: the other members


@pytest.mark.slow
@pytest.mark.parametrize("name", ["densenet121", "resnext50"])
def test_slow_3d_member_parity(name, tmp_path):
    r = export_onnx(name, SMALL_3D, tmp_path / f"{name}.onnx", random_init=True)
    assert r.rel_diff <= 1e-4 and r.output_std > 1e-3
    assert r.output_shape == ("N", 1, 2, 4, 4)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["maxvit_tiny", "coat_lite_medium"])
def test_slow_2d_member_parity(name, tmp_path):
    pytest.importorskip("timm")
    r = export_onnx(name, SMALL_2D, tmp_path / f"{name}.onnx", random_init=True)
    assert r.rel_diff <= 1e-4 and r.output_std > 1e-3
    assert r.output_shape == ("N", 1, 4, 4)


@pytest.mark.slow
def test_slow_all_3d_members_then_predict(tmp_path):
    from inference.run.runner import PredictConfig, run_predict
    from inference.synth.generate import generate

    res = export_all(SHIPPED, tmp_path / "out", random_init=True, patch_scale=SCALE_3D,
                     only=["x3d_m", "densenet121", "resnext50"])
    assert [r.arch for r in res.reports] == ["x3d_m", "densenet121", "resnext50"]
    assert all(r.rel_diff <= 1e-4 for r in res.reports)
    generate(tmp_path / "data", n=2, seed=4, split="test", scale=0.1, progress=False)
    result = run_predict(PredictConfig(manifest=load_manifest(res.manifest), input_dir=tmp_path / "data" / "test",
                                       output=tmp_path / "sub.csv", progress=False))
    assert not result.failures and (tmp_path / "sub.csv").is_file()


@pytest.mark.slow
def test_slow_all_members_of_the_shipped_manifest(tmp_path):
    pytest.importorskip("timm")
    res = export_all(SHIPPED, tmp_path, random_init=True, patch_scale=SCALE_3D)
    assert len(res.reports) == 5 and all(r.rel_diff <= 1e-4 for r in res.reports)
    assert len(load_manifest(res.manifest).members) == 5


BLOCKED = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # import fails as if the library were absent or broken
from export.cli import main
raise SystemExit(main({argv!r}))
"""


@pytest.mark.parametrize("blocked, arch, patch, says", [
    (["torch"], "x3d_m", ["32", "64", "64"], "python -m export (export.onnx_export needs torch, onnx and onnxruntime) "
                                              "cannot be loaded (ModuleNotFoundError"),
    (["torchvision"], "maxvit_tiny", ["64", "64"], "2d members need timm, which imports torchvision, and that failed"),
])
def test_a_library_that_fails_to_load_is_one_line(tmp_path, blocked, arch, patch, says):
    import subprocess
    import sys

    argv = ["onnx", "--arch", arch, "--random-init", "--patch", *patch, "--out", str(tmp_path / "m.onnx")]
    res = subprocess.run([sys.executable, "-c", BLOCKED.format(blocked=blocked, argv=argv)], capture_output=True,
                         text=True, cwd=ROOT)
    lines = [ln for ln in res.stderr.splitlines() if not ln.startswith("INFO ")]
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and says in lines[0] and "Fix: install the [export] extra" in lines[0]
    assert "Traceback" not in res.stderr and not (tmp_path / "m.onnx").exists()
