"""The fault suite (issue 15): every fault and bad input ends in one clear line and a valid submission.

Each case asserts the message (one line, naming the file, no traceback at default verbosity) and, where
a run happens, the submission (valid: the columns, every tomo_id once, each row all -1 or a finite
point). Tomograms are tiny uint8/float volumes built here; the models are the demo detectors (and a few
hand-made ONNX files with the wrong shapes). Most runs are in-process; a few go through the command
line where the exit code and stderr are the point. Classes: input listing, silently wrong values,
late or raw errors, the work folder, quiet fallbacks, the Kaggle runtime and builds.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import yaml
from onnx import TensorProto, helper

from inference.cli.main import main as cli_main
from inference.common import atomic
from inference.common.errors import EngineError, InputError, WriteError
from inference.ensemble.submission import SUBMISSION_COLUMNS
from inference.manifest.parse import load_manifest
from inference.run import preflight, runner
from inference.run.runner import PredictConfig, run_predict
from inference.synth.demo_models import avgpool_model, write_demo_models

mrcfile = pytest.importorskip("mrcfile")
REPO = Path(__file__).resolve().parents[2]
COORDS = SUBMISSION_COLUMNS[1:]


# ------------------------------------------------------------------------------------ helpers


def volume(shape=(24, 48, 48), seed=0, blob=None) -> np.ndarray:
    """uint8 noise around 128 (std ~10), optionally with a dark blob (a motor-like spot) at ``blob``."""
    rng = np.random.default_rng(seed)
    vol = rng.normal(128, 10, shape)
    if blob is not None:
        z, y, x = np.indices(shape)
        vol -= 60 * np.exp(-((z - blob[0]) ** 2 + (y - blob[1]) ** 2 + (x - blob[2]) ** 2) / (2 * 8.0 ** 2))
    return np.clip(np.rint(vol), 0, 255).astype(np.uint8)


def tomograms(folder: Path, n: int = 3, prefix: str = "tomo_") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"{prefix}{i}" for i in range(n)]
    for i, t in enumerate(ids):
        np.save(folder / f"{t}.npy", volume(seed=i))
    return ids


def write_mrc(path: Path, data: np.ndarray, voxel=16.0) -> Path:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel
    return path


def assert_valid(path: Path, ids: list[str]) -> pd.DataFrame:
    """The submission has the columns, every id once (in this order), each row all -1 or finite >= 0."""
    df = pd.read_csv(path)
    assert list(df.columns) == SUBMISSION_COLUMNS
    assert df.tomo_id.astype(str).tolist() == ids
    xyz = df[COORDS].to_numpy(float)
    assert np.isfinite(xyz).all()
    assert all((r == -1).all() or (r >= 0).all() for r in xyz)
    return df.set_index("tomo_id")


def lines(caplog, level: int, *needles: str) -> list[str]:
    """Messages at ``level`` or above containing every needle; each one line and without a traceback."""
    found = []
    for r in caplog.records:
        msg = r.getMessage()
        if r.levelno >= level and all(n in msg for n in needles):
            assert "\n" not in msg and r.exc_info is None, msg
            found.append(msg)
    return found


def no_traceback(caplog) -> None:
    assert not [r for r in caplog.records if r.exc_info and r.levelno >= logging.INFO]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """The demo 3d detector and its manifest (one TTA: fast)."""
    root = tmp_path_factory.mktemp("models")
    manifest = write_demo_models(root)
    data = yaml.safe_load(manifest.read_text())
    data["members"][0]["tta"] = ["zyx"]
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    return manifest


def variant(models: Path, folder: Path, **member) -> Path:
    """The demo manifest with ``member`` keys changed (None removes a key), beside copies of the models."""
    folder.mkdir(parents=True, exist_ok=True)
    for p in models.parent.glob("*.onnx"):
        shutil.copy2(p, folder / p.name)
    data = yaml.safe_load(models.read_text())
    for k, v in member.items():
        if v is None:
            data["members"][0].pop(k, None)
        else:
            data["members"][0][k] = v
    out = folder / "manifest.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def cfg(manifest: Path, inp: Path, out: Path, **kw) -> PredictConfig:
    kw.setdefault("workers", 0)
    return PredictConfig(manifest=load_manifest(manifest), input_dir=inp, output=out, progress=False,
                         write_every_s=0.0, **kw)


def run_cli(*args: str, timeout: float = 120) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "inference", *args, "--no-progress"] if args[0] == "predict" else
                          [sys.executable, "-m", "inference", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
    return proc.returncode, proc.stderr


def error_line(stderr: str, *needles: str) -> str:
    """The one ``error:`` line of a failed command (no traceback), containing every needle."""
    assert "Traceback" not in stderr, stderr
    errs = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert len(errs) == 1, stderr
    assert all(n in errs[0] for n in needles), errs[0]
    return errs[0]


# --------------------------------------------------------------------- 1. input entries not used


@pytest.mark.parametrize("make,reason", [
    (lambda d: (d / "empty_dir").mkdir(), "empty folder"),
    (lambda d: ((d / "noslices").mkdir(), (d / "noslices" / "readme.md").write_text("x")), "no slice images"),
    (lambda d: (d / "notes.txt").write_text("x"), "unknown suffix '.txt'"),
    (lambda d: (d / "broken").symlink_to(d / "nowhere"), "a link that cannot be followed"),
    (lambda d: (d / "loop").symlink_to(d / "loop"), "a link that cannot be followed"),
    (lambda d: os.mkfifo(d / "fifo"), "neither a file nor a folder"),
    (lambda d: write_mrc(d / "tomo_m.map", volume()), "rename it to tomo_m.mrc"),
    (lambda d: np.save(d / ".tomo_hidden.npy", volume()), "hidden"),
])
def test_an_entry_that_is_not_a_tomogram_is_named_in_one_warning(models, tmp_path, caplog, make, reason):
    ids = tomograms(tmp_path / "in", 2)
    make(tmp_path / "in")
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.WARNING, "not a tomogram, not used", reason)
    assert str(tmp_path / "in") in msg
    assert_valid(tmp_path / "sub.csv", ids)
    assert not res.failures


def test_duplicate_sources_fail_that_tomogram_alone_and_a_rerun_after_the_fix_runs_it(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)
    (tmp_path / "in" / "tomo_0").mkdir()  # a slice folder with the id of tomo_0.npy
    from PIL import Image

    for z in range(24):
        Image.fromarray(volume(seed=0)[z]).save(tmp_path / "in" / "tomo_0" / f"slice_{z:04d}.png")
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.ERROR, "tomo_0/ and tomo_0.npy")
    assert "written as -1" in msg and "Fix:" in msg
    sub = assert_valid(tmp_path / "sub.csv", ids)
    assert (sub.loc["tomo_0"] == -1).all() and set(res.failures) == {"tomo_0"}
    assert res.results["tomo_1"].status == "ok"
    shutil.rmtree(tmp_path / "in" / "tomo_0")
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    assert not res.failures and res.results["tomo_0"].status == "ok"


def test_names_that_would_break_a_line_or_a_file_name(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 1)
    long_id = "tomo_" + "L" * 240  # its result file name is shortened with a hash; the submission keeps the id
    np.save(tmp_path / "in" / f"{long_id}.npy", volume(seed=2))
    np.save(tmp_path / "in" / "tomo_a\nb.npy", volume(seed=3))
    with open(os.fsencode(tmp_path / "in") + b"/tomo_\xff.npy", "wb") as fh:
        fh.write((tmp_path / "in" / "tomo_0.npy").read_bytes())
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    assert lines(caplog, logging.WARNING, "'" + str(tmp_path / "in" / "tomo_a\\nb.npy") + "'", "control character")
    assert lines(caplog, logging.WARNING, "not valid UTF-8")
    assert not res.failures and res.results[long_id].status == "ok"
    assert_valid(tmp_path / "sub.csv", sorted(ids + [long_id]))


def test_extra_files_in_a_slice_folder_are_named(models, tmp_path, caplog):
    from PIL import Image

    folder = tmp_path / "in" / "tomo_s"
    folder.mkdir(parents=True)
    for z in range(24):
        Image.fromarray(volume(seed=3)[z]).save(folder / f"slice_{z:04d}.png")
    (folder / "Thumbs.db").write_text("x")
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.WARNING, str(folder), "Thumbs.db", "not used")
    assert res.results["tomo_s"].status == "ok"
    assert_valid(tmp_path / "sub.csv", ["tomo_s"])


def test_input_one_level_too_high_says_where_the_tomograms_are(models, tmp_path, caplog):
    tomograms(tmp_path / "in" / "test", 1)
    (tmp_path / "in" / "test" / "tomo_0.npy").unlink()
    from PIL import Image

    (tmp_path / "in" / "test" / "tomo_a").mkdir()
    Image.fromarray(volume()[0]).save(tmp_path / "in" / "test" / "tomo_a" / "slice_0000.png")
    with pytest.raises(InputError, match="holds no tomograms"):
        run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.WARNING, "its sub-folders tomo_a are tomograms", "point the input at")


@pytest.mark.parametrize("make,needle", [
    (lambda d: d.mkdir(), "input folder is empty"),
    (lambda d: None, "input does not exist"),
    (lambda d: (d.mkdir(), (d / "a.txt").write_text("x")), "holds no tomograms"),
    (lambda d: d.symlink_to(d), "a link that cannot be followed"),
])
def test_an_unusable_input_is_one_error_line(models, tmp_path, make, needle):
    make(tmp_path / "in")
    rc, err = run_cli("predict", "--manifest", str(models), "--input", str(tmp_path / "in"), "--output",
                      str(tmp_path / "sub.csv"), "--workers", "0")
    assert rc == 2
    error_line(err, str(tmp_path / "in"), needle, "Fix:")
    assert not (tmp_path / "sub.csv").exists()


# ------------------------------------------------------------------------- 2. silently wrong values


def test_nan_and_inf_voxels_are_replaced_with_a_warning(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)
    vol = volume(seed=5).astype(np.float32)
    vol[3, 4, 5], vol[6, 7, 8], vol[1, 1, 1] = np.nan, np.inf, -np.inf
    np.save(tmp_path / "in" / "tomo_nan.npy", vol)
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.WARNING, str(tmp_path / "in" / "tomo_nan.npy"), "3 voxel(s) are NaN or infinite",
                   "replaced by")
    assert res.results["tomo_nan"].status == "ok"
    assert all(np.isfinite(p).all() for p in res.results["tomo_nan"].fused)
    assert_valid(tmp_path / "sub.csv", sorted(ids + ["tomo_nan"]))


def test_a_volume_without_one_finite_voxel_fails_alone(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)
    np.save(tmp_path / "in" / "tomo_void.npy", np.full((8, 16, 16), np.nan, np.float32))
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.ERROR, "tomo_void.npy", "every voxel is NaN or infinite", "written as -1")
    sub = assert_valid(tmp_path / "sub.csv", sorted(ids + ["tomo_void"]))
    assert (sub.loc["tomo_void"] == -1).all() and set(res.failures) == {"tomo_void"}


@pytest.fixture(scope="module")
def motor(tmp_path_factory):
    """A full-range uint8 tomogram with a dark blob, and an affine member tuned to it (mean/std for 0..255)."""
    root = tmp_path_factory.mktemp("motor")
    vol8 = volume((48, 96, 96), seed=11, blob=(24, 40, 56))
    lo, hi = np.percentile(vol8, [0.5, 99.5])
    vol8 = np.clip(np.rint((vol8 - lo) * 255 / (hi - lo)), 0, 255).astype(np.uint8)  # spans 0..255
    return root, vol8, {"mean": round(float(vol8.mean()), 3), "std": round(float(vol8.std()), 3)}


def _top(res, tomo_id):
    return max(res.results[tomo_id].fused, key=lambda p: p[3])


def test_a_16bit_or_float_volume_reaches_an_affine_member_as_0_255(models, motor, tmp_path, caplog):
    root, vol8, norm = motor
    manifest = variant(models, tmp_path / "m", normalize=norm)
    caplog.set_level(logging.INFO)
    (tmp_path / "u8").mkdir()
    np.save(tmp_path / "u8" / "tomo_m.npy", vol8)
    ref = run_predict(cfg(manifest, tmp_path / "u8", tmp_path / "u8.csv", default_spacing=16.0))
    (tmp_path / "f32").mkdir()
    np.save(tmp_path / "f32" / "tomo_m.npy", (vol8.astype(np.uint16) * 200 + 1000))  # 16-bit counts
    got = run_predict(cfg(manifest, tmp_path / "f32", tmp_path / "f32.csv", default_spacing=16.0))
    (msg,) = lines(caplog, logging.INFO, "tomo_m: float32 voxels 1000..52000 mapped to 0..255 by the 0.5/99.5 "
                   "percentiles")
    assert "for demo3d" in msg and got.results["tomo_m"].intensity
    a, b = _top(ref, "tomo_m"), _top(got, "tomo_m")
    assert b[3] > 0.5 and np.allclose(a[:3], b[:3], atol=2.0) and abs(a[3] - b[3]) < 0.05
    # before the rule the member saw raw counts: the same volume with intensity: raw misses the motor
    raw = variant(models, tmp_path / "raw", normalize=norm, intensity="raw")
    miss = run_predict(cfg(raw, tmp_path / "f32", tmp_path / "raw.csv", default_spacing=16.0))
    assert not miss.results["tomo_m"].fused or _top(miss, "tomo_m")[3] < 0.5


def test_a_float_volume_of_whole_0_255_values_is_8bit_data_bit_for_bit(models, motor, tmp_path, caplog):
    root, vol8, norm = motor
    manifest = variant(models, tmp_path / "m", normalize=norm)
    caplog.set_level(logging.INFO)
    for name, arr in (("u8", vol8), ("f32", vol8.astype(np.float32))):
        (tmp_path / name).mkdir()
        np.save(tmp_path / name / "tomo_m.npy", arr)
    a = run_predict(cfg(manifest, tmp_path / "u8", tmp_path / "a.csv", default_spacing=16.0))
    b = run_predict(cfg(manifest, tmp_path / "f32", tmp_path / "b.csv", default_spacing=16.0))
    assert a.results["tomo_m"].fused == b.results["tomo_m"].fused
    assert not lines(caplog, logging.INFO, "mapped to 0..255")


def test_16bit_png_slices_reach_an_affine_member_as_0_255(models, motor, tmp_path, caplog):
    from PIL import Image

    root, vol8, norm = motor
    manifest = variant(models, tmp_path / "m", normalize=norm)
    caplog.set_level(logging.INFO)
    folder = tmp_path / "in" / "tomo_p"
    folder.mkdir(parents=True)
    for z, plane in enumerate(vol8.astype(np.uint16) * 257):  # 0..65535
        Image.fromarray(plane).save(folder / f"slice_{z:04d}.png")
    res = run_predict(cfg(manifest, tmp_path / "in", tmp_path / "sub.csv", default_spacing=16.0))
    assert lines(caplog, logging.INFO, "tomo_p: float32 voxels 0..65535 mapped to 0..255")
    assert _top(res, "tomo_p")[3] > 0.5
    assert_valid(tmp_path / "sub.csv", ["tomo_p"])


def test_a_float_mrc_with_minmax_rule_is_mapped_and_logged(models, motor, tmp_path, caplog):
    root, vol8, norm = motor
    manifest = variant(models, tmp_path / "m", normalize=norm, intensity={"rule": "minmax"})
    caplog.set_level(logging.INFO)
    (tmp_path / "in").mkdir()
    write_mrc(tmp_path / "in" / "tomo_m.mrc", vol8.astype(np.float32) / 255.0 - 0.5)
    res = run_predict(cfg(manifest, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.INFO, "tomo_m: float32 voxels -0.5..0.5 mapped to 0..255 by min/max")
    assert _top(res, "tomo_m")[3] > 0.5
    assert_valid(tmp_path / "sub.csv", ["tomo_m"])


@pytest.mark.parametrize("intensity,needle", [
    ({"rule": "percentiles", "low": 60, "high": 40}, "low 60 must be below high 40"),
    ({"rule": "minmax", "low": 1}, "low/high go with rule: percentiles"),
    ("stretch", "'stretch' is not one of percentiles, minmax, raw"),
])
def test_a_bad_intensity_key_is_one_manifest_error(models, tmp_path, intensity, needle):
    manifest = variant(models, tmp_path / "m", intensity=intensity)
    with pytest.raises(InputError) as err:
        load_manifest(manifest)
    assert str(manifest) in str(err.value) and needle in str(err.value) and "\n" not in str(err.value)


class _NaNOnSpikes:
    """The real engine, but NaN out for windows whose input has a value above 8 (a z-scored spike)."""

    def __init__(self, member):
        from inference.engines.registry import load_engine

        self.engine = load_engine(member.model)

    def __call__(self, batch):
        out = self.engine(batch)
        return np.full_like(out, np.nan) if float(np.max(batch)) > 8 else out


def test_a_model_giving_nan_fails_that_tomogram_naming_the_member(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)
    spiky = volume(seed=9)
    spiky[10:14, 22:26, 22:26] = 255  # z-scored: far above 8
    np.save(tmp_path / "in" / "tomo_spike.npy", spiky)
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"), engine_factory=_NaNOnSpikes)
    (msg,) = lines(caplog, logging.ERROR, "tomo_spike", "member demo3d", "NaN value(s)", "written as -1")
    assert res.results["tomo_spike"].status == "failed" and "member demo3d" in res.failures["tomo_spike"]
    assert all(res.results[t].status == "ok" for t in ids)
    sub = assert_valid(tmp_path / "sub.csv", sorted(ids + ["tomo_spike"]))
    assert (sub.loc["tomo_spike"] == -1).all()
    no_traceback(caplog)


def test_a_model_always_nan_warns_at_load_and_every_tomogram_fails(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"),
                      engine_factory=lambda m: (lambda b: np.full((len(b), 1, 4, 8, 8), np.nan, np.float32)))
    assert lines(caplog, logging.WARNING, "member demo3d", "output on a window of zeros is not finite")
    assert set(res.failures) == set(ids)
    assert_valid(tmp_path / "sub.csv", ids)


# ------------------------------------------------------------------------- 3. late or raw errors


def _squeezed_model(path: Path) -> Path:
    """(N,1,D,H,W) -> (N,D/16,H/16,W/16): rank 4 for a 3d member."""
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, "D", "H", "W"])
    out = helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["N", "d", "h", "w"])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [helper.make_node("AveragePool", ["input"], ["p"], kernel_shape=[16] * 3, strides=[16] * 3),
             helper.make_node("Squeeze", ["p", "axes"], ["heatmap"])]
    graph = helper.make_graph(nodes, "squeezed", [inp], [out], initializer=[axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("change,needle", [
    ({"stride": 8, "patch": [64, 128, 128]}, "cells, a stride of 16, 16, 16, but the manifest says stride 8"),
    ({"model": "avgpool8.onnx"}, "a stride of 8, 8, 8, but the manifest says stride 16"),
    ({"model": "squeezed.onnx"}, "output of rank 4"),
    ({"model": "garbage.onnx"}, "ONNX Runtime cannot load the model"),
    ({"kind": "2d", "patch": [128, 128], "slice_spacing": 32.0, "tta": ["yx"]}, "the model takes input"),
])
def test_a_model_that_does_not_fit_the_manifest_stops_at_load_in_one_line(models, tmp_path, change, needle):
    folder = tmp_path / "m"
    manifest = variant(models, folder, **change)
    onnx.save(avgpool_model(8), folder / "avgpool8.onnx")
    _squeezed_model(folder / "squeezed.onnx")
    (folder / "garbage.onnx").write_bytes(b"not a model")
    tomograms(tmp_path / "in", 2)
    with pytest.raises(EngineError) as err:
        run_predict(cfg(load_manifest(manifest).path, tmp_path / "in", tmp_path / "sub.csv"))
    text = str(err.value)
    assert needle in text and "Fix:" in text and "\n" not in text and str(folder) in text
    assert_valid(tmp_path / "sub.csv", ["tomo_0", "tomo_1"])  # written before any tomogram: all -1


def test_a_model_mismatch_through_a_worker_process_is_one_error_line(models, tmp_path):
    manifest = variant(models, tmp_path / "m", stride=8)
    tomograms(tmp_path / "in", 1)
    rc, err = run_cli("predict", "--manifest", str(manifest), "--input", str(tmp_path / "in"), "--output",
                      str(tmp_path / "sub.csv"), "--workers", "1")
    assert rc == 2
    error_line(err, str(tmp_path / "m" / "demo3d.onnx"), "member demo3d", "manifest says stride 8", "Fix:")
    assert_valid(tmp_path / "sub.csv", ["tomo_0"])


@pytest.mark.parametrize("patch,needle", [
    (lambda raw: raw.__setitem__(slice(0, 4), np.int32(-5).tobytes()), "impossible dimensions"),
    (lambda raw: raw.__setitem__(slice(0, 8), np.int32(2**30).tobytes() * 2), "does not match its header"),
    (lambda raw: raw.__setitem__(slice(92, 96), np.int32(-7).tobytes()), "negative extended header"),
    (lambda raw: raw.__setitem__(slice(12, 16), np.int32(77).tobytes()), "unknown mode 77"),
])
def test_an_mrc_with_an_impossible_header_fails_alone(models, tmp_path, caplog, patch, needle):
    ids = tomograms(tmp_path / "in", 2)
    path = write_mrc(tmp_path / "in" / "tomo_bad.mrc", volume(seed=4))
    raw = bytearray(path.read_bytes())
    patch(raw)
    path.write_bytes(bytes(raw))
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.ERROR, "tomo_bad.mrc", needle)
    assert set(res.failures) == {"tomo_bad"}
    assert_valid(tmp_path / "sub.csv", sorted(ids + ["tomo_bad"]))
    no_traceback(caplog)


def test_an_unexpected_error_in_one_tomogram_is_one_line_and_the_traceback_is_debug(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 3)

    def factory(member):
        from inference.engines.registry import load_engine

        real = load_engine(member.model)
        calls = {"n": 0}

        def engine(batch):
            calls["n"] += 1
            if calls["n"] == 3:  # the second tomogram's window (the first call is the load check)
                raise RuntimeError("CUDA error: an illegal memory access\nwith a second line")
            return real(batch)
        return engine

    caplog.set_level(logging.DEBUG)
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"), engine_factory=factory)
    assert len(res.failures) == 1
    (msg,) = lines(caplog, logging.ERROR, "failed and is written as -1", "RuntimeError: CUDA error: an illegal "
                   "memory access")
    assert "second line" not in msg
    assert [r for r in caplog.records if r.exc_info and r.levelno == logging.DEBUG]  # -v shows it
    assert_valid(tmp_path / "sub.csv", ids)


def _fail_writes(monkeypatch, path_part: str, err: int, after: int = 0):
    """Make os.replace fail with ``err`` for targets containing ``path_part`` after ``after`` successes."""
    real = os.replace
    seen = {"n": 0}

    def replace_(src, dst, *a, **k):
        if path_part in str(dst):
            seen["n"] += 1
            if seen["n"] > after:
                raise OSError(err, os.strerror(err), str(dst))
        return real(src, dst, *a, **k)

    monkeypatch.setattr(atomic.os, "replace", replace_)


def test_a_read_only_output_folder_is_one_line_naming_it(models, tmp_path, monkeypatch):
    tomograms(tmp_path / "in", 2)
    _fail_writes(monkeypatch, "sub.csv", errno.EROFS)
    with pytest.raises(WriteError) as err:
        run_predict(cfg(models, tmp_path / "in", tmp_path / "out" / "sub.csv"))
    text = str(err.value)
    assert text.startswith(str(tmp_path / "out")) and "Read-only file system" in text and "writable" in text
    assert not list((tmp_path / "out").glob(".sub.csv.*"))  # no temporary file left behind


def test_a_full_disk_mid_run_stops_in_one_line_and_the_rerun_resumes(models, tmp_path, monkeypatch, caplog):
    ids = tomograms(tmp_path / "in", 4)
    out = tmp_path / "sub.csv"
    _fail_writes(monkeypatch, "tomograms", errno.ENOSPC, after=2)
    with pytest.raises(WriteError, match="No space left on device.*Fix: free disk space.*rerun the same command"):
        run_predict(cfg(models, tmp_path / "in", out))
    assert_valid(out, ids)  # the last submission written stays valid
    assert len(list((tmp_path / "sub.csv.work" / "tomograms").glob("*.json"))) == 2
    monkeypatch.undo()
    caplog.set_level(logging.INFO)
    res = run_predict(cfg(models, tmp_path / "in", out))
    assert lines(caplog, logging.INFO, "resuming: 2 of 4 tomograms")
    assert not res.failures and len(res.results) == 4
    assert_valid(out, ids)


def test_an_unexpected_error_on_the_command_line_is_one_line_exit_1(models, tmp_path, monkeypatch, capsys):
    tomograms(tmp_path / "in", 1)

    def boom(cfg, **kw):
        raise RuntimeError("something nobody foresaw\nline two")

    monkeypatch.setattr(runner, "run_predict", boom)
    rc = cli_main(["-q", "predict", "--manifest", str(models), "--input", str(tmp_path / "in"), "--output",
                   str(tmp_path / "sub.csv")])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert err.strip() == ("error: RuntimeError: something nobody foresaw (an unexpected error; -v shows the "
                           "traceback)")


# ----------------------------------------------------------------------------- 4. the work folder


def _results(tmp_path) -> Path:
    return tmp_path / "sub.csv.work" / "tomograms"


@pytest.mark.parametrize("damage,needle", [
    (lambda p: p.write_text('{"tomo_id": "tomo_1"'), "corrupt result (Expecting"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "fused": "oops"})), "field 'fused' is 'oops'"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "status": "maybe"})), "status 'maybe'"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "tomo_id": "tomo_0"})), "the result of 'tomo_0'"),
    (lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "corrupt result"),
])
def test_a_corrupt_result_is_recomputed_with_a_warning(models, tmp_path, caplog, damage, needle):
    ids = tomograms(tmp_path / "in", 3)
    first = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    damage(_results(tmp_path) / "tomo_1.json")
    again = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.WARNING, str(_results(tmp_path) / "tomo_1.json"), needle, "computed again")
    assert again.submission.equals(first.submission) and again.results["tomo_1"].status == "ok"
    assert_valid(tmp_path / "sub.csv", ids)


@pytest.mark.parametrize("record", ["garbage", "[1, 2]", '{"format": 1}'])
def test_a_corrupt_run_record_stops_in_one_line_suggesting_restart(models, tmp_path, record):
    tomograms(tmp_path / "in", 2)
    run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (tmp_path / "sub.csv.work" / "run.json").write_text(record)
    with pytest.raises(InputError) as err:
        run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    assert str(tmp_path / "sub.csv.work" / "run.json") in str(err.value) and "--restart" in str(err.value)
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv", restart=True))
    assert not res.failures


def test_a_failed_tomogram_is_retried_on_the_rerun(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)

    def flaky(member):  # the second tomogram's engine call fails this time (out of memory, say)
        from inference.engines.registry import load_engine

        real, calls = load_engine(member.model), {"n": 0}

        def engine(batch):
            calls["n"] += 1
            if calls["n"] == 3:
                raise MemoryError()
            return real(batch)
        return engine

    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"), engine_factory=flaky)
    assert set(res.failures) == {"tomo_1"} and "MemoryError" in res.failures["tomo_1"]
    caplog.set_level(logging.INFO)
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    assert lines(caplog, logging.INFO, "resuming: 1 of 2", "1 that failed before are tried again")
    assert not res.failures and res.results["tomo_1"].status == "ok"
    assert_valid(tmp_path / "sub.csv", ids)


def test_a_broken_source_fixed_after_the_run_is_run_again(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)
    (tmp_path / "in" / "tomo_1.npy").write_bytes(b"\x93NUMPY truncated")
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    assert set(res.failures) == {"tomo_1"}
    np.save(tmp_path / "in" / "tomo_1.npy", volume(seed=1))  # fixed
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    assert not res.failures and res.results["tomo_1"].status == "ok"
    assert_valid(tmp_path / "sub.csv", ids)


def test_a_changed_source_is_recomputed(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)
    first = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    time.sleep(0.01)
    np.save(tmp_path / "in" / "tomo_0.npy", volume(seed=42))
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.WARNING, "1 stored result(s) were computed from other inputs", "tomo_0")
    assert res.results["tomo_1"].fused == first.results["tomo_1"].fused
    fresh = run_predict(cfg(models, tmp_path / "in", tmp_path / "fresh" / "sub.csv"))
    assert res.results["tomo_0"].fused == fresh.results["tomo_0"].fused
    assert_valid(tmp_path / "sub.csv", ids)


def test_a_changed_model_file_is_recomputed(models, tmp_path, caplog):
    tomograms(tmp_path / "in", 2)
    manifest = variant(models, tmp_path / "m")
    run_predict(cfg(manifest, tmp_path / "in", tmp_path / "sub.csv"))
    model = onnx.load(tmp_path / "m" / "demo3d.onnx")
    model.doc_string = "retrained"  # same size class, different content
    onnx.save(model, tmp_path / "m" / "demo3d.onnx")
    run_predict(cfg(manifest, tmp_path / "in", tmp_path / "sub.csv"))
    assert lines(caplog, logging.WARNING, "2 stored result(s) were computed from other inputs")


def test_a_second_live_run_on_the_same_output_stops_in_one_line(models, tmp_path):
    ids = tomograms(tmp_path / "in", 2)
    first = runner.Run(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))  # holds the work folder
    try:
        with pytest.raises(InputError) as err:
            run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
        text = str(err.value)
        assert text.startswith(str(tmp_path / "sub.csv.work")) and f"another predict run (pid {os.getpid()})" in text
    finally:
        first.close()
    run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))  # free again
    assert_valid(tmp_path / "sub.csv", ids)


def test_a_killed_runs_lock_never_blocks_its_rerun(models, tmp_path):
    ids = tomograms(tmp_path / "in", 2)
    work = tmp_path / "sub.csv.work"
    code = ("import sys, time; from pathlib import Path; from inference.run.workdir import RunLock; "
            f"RunLock(Path({str(work)!r})); print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(InputError, match=f"another predict run \\(pid {holder.pid}\\)"):
        run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))  # the pid is still in the file: no matter
    assert_valid(tmp_path / "sub.csv", ids)


def test_workers_end_quietly_when_the_dispatcher_is_killed(models, tmp_path):
    """kill -9 of the dispatcher mid-run: its worker ends on its own, without a BrokenPipe traceback."""
    big = tmp_path / "in"
    big.mkdir()
    for i in range(6):
        np.save(big / f"tomo_{i}.npy", volume((64, 160, 160), seed=i))
    err = tmp_path / "stderr.txt"
    with open(err, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "inference", "-q", "predict", "--manifest", str(models),
                                 "--input", str(big), "--output", str(tmp_path / "sub.csv"), "--workers", "1",
                                 "--no-progress"], stderr=fh, cwd=REPO)
        results_dir = _results(tmp_path)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60 and not list(results_dir.glob("*.json")):
            time.sleep(0.05)
        children = _children(proc.pid)
        assert children, "the worker process is running"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 20 and any(_alive(c) for c in children):
            time.sleep(0.1)
    assert not any(_alive(c) for c in children), "the worker outlived its dispatcher"
    assert "Traceback" not in err.read_text() and "BrokenPipe" not in err.read_text()
    assert_valid(tmp_path / "sub.csv", [f"tomo_{i}" for i in range(6)])


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def test_restart_on_a_foreign_folder_deletes_nothing(models, tmp_path):
    tomograms(tmp_path / "in", 1)
    mine = tmp_path / "mydata"
    (mine / "tomograms").mkdir(parents=True)
    (mine / "tomograms" / "cell.json").write_text('{"my": "data"}')
    (mine / "notes.txt").write_text("keep me")
    rc, err = run_cli("predict", "--manifest", str(models), "--input", str(tmp_path / "in"), "--output",
                      str(tmp_path / "sub.csv"), "--work-dir", str(mine), "--restart", "--workers", "0")
    assert rc == 2
    error_line(err, str(mine), "not a motorfinder work folder", "nothing was changed")
    assert (mine / "tomograms" / "cell.json").read_text() == '{"my": "data"}'
    assert (mine / "notes.txt").read_text() == "keep me"


def test_restart_removes_only_what_the_run_wrote(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)
    run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    work = tmp_path / "sub.csv.work"
    (work / "README").write_text("my notes on this run")
    (work / "tomograms" / "plot.png").write_bytes(b"png")
    caplog.set_level(logging.INFO)
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv", restart=True))
    assert lines(caplog, logging.INFO, "--restart: removed 3 file(s)")  # run.json and two results
    assert (work / "README").read_text() == "my notes on this run" and (work / "tomograms" / "plot.png").exists()
    assert not lines(caplog, logging.INFO, "resuming") and len(res.results) == 2
    assert_valid(tmp_path / "sub.csv", ids)


def test_a_work_dir_that_is_a_file_is_one_line(models, tmp_path):
    tomograms(tmp_path / "in", 1)
    (tmp_path / "work").write_text("x")
    with pytest.raises(InputError, match="the work folder is a file"):
        run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv", work_dir=tmp_path / "work"))
    assert (tmp_path / "work").read_text() == "x"


def test_a_member_without_a_peak_on_a_tomogram_is_no_candidate_not_a_failure(models, tmp_path):
    ids = tomograms(tmp_path / "in", 2)  # noise: no peak above min_conf
    manifest = variant(models, tmp_path / "m", decode={"nms_kernel": 3, "min_conf": 0.99, "top_k": 5,
                                                       "nms_radius_A": 1000.0})
    res = run_predict(cfg(manifest, tmp_path / "in", tmp_path / "sub.csv"))
    assert not res.failures and all(r.fused == [] for r in res.results.values())
    assert_valid(tmp_path / "sub.csv", ids)


@pytest.mark.parametrize("target", ["sample", "manifest", "tomogram"])
def test_an_output_that_is_an_input_is_refused_before_anything_is_written(models, tmp_path, target):
    ids = tomograms(tmp_path / "in", 2)
    sample = tmp_path / "sample.csv"
    sample.write_text("tomo_id,Motor axis 0,Motor axis 1,Motor axis 2\ntomo_0,0,0,0\ntomo_1,0,0,0\n")
    manifest = variant(models, tmp_path / "m")
    out = {"sample": sample, "manifest": manifest, "tomogram": tmp_path / "in" / "tomo_1.npy"}[target]
    before = out.read_bytes()
    with pytest.raises(InputError, match="writing the submission there would destroy it"):
        run_predict(cfg(manifest, tmp_path / "in", out, sample_submission=sample))
    assert out.read_bytes() == before and len(ids) == 2


# ------------------------------------------------------------------------------ 5. quiet fallbacks


def test_tomograms_missing_from_the_spacing_csv_are_named(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 3)
    (tmp_path / "spacing.csv").write_text("tomo_id,voxel_spacing\ntomo_0,16.0\n")
    run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv", spacing_csv=tmp_path / "spacing.csv"))
    (msg,) = lines(caplog, logging.WARNING, "2 of 3 tomogram(s) are not in the spacing CSV", "tomo_1, tomo_2",
                   "13.1 Å")
    assert_valid(tmp_path / "sub.csv", ids)


def test_duplicate_ids_in_the_sample_submission_are_named_and_written_once(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)
    sample = tmp_path / "sample.csv"
    sample.write_text("\ufefftomo_id,Motor axis 0,Motor axis 1,Motor axis 2\ntomo_1,0,0,0\ntomo_0,0,0,0\n"
                      "tomo_1,0,0,0\n,0,0,0\n")
    run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv", sample_submission=sample))
    (msg,) = lines(caplog, logging.WARNING, str(sample), "lists 1 tomo_id(s) more than once", "tomo_1")
    (blank,) = lines(caplog, logging.WARNING, str(sample), "without a tomo_id", "line(s) 5")
    assert sorted(ids) == ["tomo_0", "tomo_1"]
    assert_valid(tmp_path / "sub.csv", ["tomo_1", "tomo_0"])


@pytest.mark.parametrize("args,needle", [
    (["--default-spacing", "500"], "--default-spacing: 500 Å is outside 1-100 Å"),
    (["--default-spacing", "0.13"], "--default-spacing: 0.13 Å is outside 1-100 Å"),
    (["--spacing-csv", "{spacing}"], "line 3 (tomo_1): voxel spacing 0.5 Å is outside 1-100 Å"),
])
def test_a_spacing_outside_1_to_100_is_an_error_before_any_work(models, tmp_path, args, needle):
    tomograms(tmp_path / "in", 2)
    spacing = tmp_path / "spacing.csv"
    spacing.write_text("tomo_id,voxel_spacing\ntomo_0,16\ntomo_1,0.5\n")
    rc, err = run_cli("predict", "--manifest", str(models), "--input", str(tmp_path / "in"), "--output",
                      str(tmp_path / "sub.csv"), "--workers", "0", *[a.format(spacing=spacing) for a in args])
    assert rc == 2
    error_line(err, needle, "Fix:")
    assert not (tmp_path / "sub.csv").exists() and not (tmp_path / "sub.csv.work").exists()


def test_a_header_spacing_outside_1_to_100_is_ignored_with_a_warning(models, tmp_path, caplog):
    (tmp_path / "in").mkdir()
    write_mrc(tmp_path / "in" / "tomo_h.mrc", volume(), voxel=0.448)
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.WARNING, "tomo_h.mrc", "ignoring the MRC header's voxel size", "outside 1-100")
    assert res.results["tomo_h"].spacing_source == "default" and res.results["tomo_h"].spacing == 13.1


def test_a_spacing_csv_that_disagrees_with_the_header_is_one_warning_per_tomogram(models, tmp_path, caplog):
    (tmp_path / "in").mkdir()
    write_mrc(tmp_path / "in" / "tomo_h.mrc", volume(), voxel=10.0)
    (tmp_path / "spacing.csv").write_text("tomo_id,voxel_spacing\ntomo_h,16.0\n")
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv", spacing_csv=tmp_path / "spacing.csv"))
    (msg,) = lines(caplog, logging.WARNING, "tomo_h: spacing CSV says 16 Å but the MRC header says 10 Å")
    assert res.results["tomo_h"].spacing_source == "csv" and res.results["tomo_h"].spacing == 16.0


def test_a_resample_that_cannot_fit_in_memory_is_an_error_before_any_work(models, tmp_path, monkeypatch):
    tomograms(tmp_path / "in", 2)
    monkeypatch.setattr(preflight, "machine_memory", lambda: 2**20)  # 1 MiB
    with pytest.raises(InputError) as err:
        run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv", default_spacing=100.0))
    text = str(err.value)
    assert text.startswith(str(tmp_path / "in" / "tomo_0.npy")) and "at 100 Å (from the default)" in text
    assert "more than this machine's 0.0 GiB of memory" in text and "Å, not nm" in text
    assert not (tmp_path / "sub.csv").exists()
    manifest = load_manifest(models)
    assert preflight.estimate_bytes((500, 1000, 1000), 100.0, 1, manifest) > 100 * 2**30  # 100 Å: ~6x per axis
    # the largest BYU tomogram at 13.1 Å fits a 29 GiB Kaggle machine; given 90 Å (a typo) it cannot fit any
    assert preflight.estimate_bytes((500, 1912, 1847), 13.1, 1, manifest) < 20 * 2**30
    assert preflight.estimate_bytes((500, 1912, 1847), 90.0, 1, manifest) > 1000 * 2**30
    assert preflight.estimate_bytes((500, 1912, 1847), 90.0, 1, manifest, on_gpu=True) < 2 * 2**30  # host part


# ----------------------------------------------------------------------- 6. the Kaggle runtime, builds


def _kaggle_tree(tmp_path, record: str | None) -> tuple[Path, Path]:
    root = tmp_path / "kaggle"
    ds = root / "input" / "motor-offline"
    ds.mkdir(parents=True)
    if record is not None:
        (ds / "motorfinder-build.json").write_text(record)
    comp = root / "input" / "byu-locating-bacterial-flagellar-motors-2025"
    (comp / "test").mkdir(parents=True)
    (comp / "sample_submission.csv").write_text(",".join(SUBMISSION_COLUMNS) + "\ntomo_a,-1,-1,-1\ntomo_b,-1,-1,-1\n")
    return root, ds


@pytest.mark.parametrize("record", [None, "not json", '{"wheel": ""}'])
def test_the_notebook_never_raises_and_ends_with_a_valid_submission(tmp_path, monkeypatch, capsys, record):
    from kaggle_builder import runtime
    from kaggle_builder.target import COMPETITION, RECORD_NAME

    root, ds = _kaggle_tree(tmp_path, record)
    if record is not None:
        (ds / "motorfinder-build.json").rename(ds / RECORD_NAME)
    monkeypatch.setenv("MOTORFINDER_PYTHON", str(tmp_path / "no-such-python"))
    run = runtime.Run(root, ds, {"competition": COMPETITION, "gpus": 1, "budget_h": 8.5, "fp16_engines": False})
    assert run.install() is False and run.print_environment() is None
    run.build_engines()
    assert run.predict() is False
    assert run.check_submission() == ["no submission"]
    assert_valid(root / "working" / "submission.csv", ["tomo_a", "tomo_b"])
    assert "FAILED" in capsys.readouterr().out


def test_the_notebooks_predict_with_a_missing_interpreter_is_a_step_failure(tmp_path, monkeypatch, capsys):
    from kaggle_builder import runtime
    from kaggle_builder.target import COMPETITION, RECORD_NAME

    root, ds = _kaggle_tree(tmp_path, None)
    (ds / RECORD_NAME).write_text(json.dumps({"wheel": "motorfinder-0.1.0-py3-none-any.whl"}))
    monkeypatch.setenv("MOTORFINDER_PYTHON", str(tmp_path / "no-such-python"))
    run = runtime.Run(root, ds, {"competition": COMPETITION, "gpus": 1, "budget_h": 8.5, "fp16_engines": False})
    run.status["steps"]["install"] = {"ok": True}  # as if installed: predict itself cannot start python
    assert run.predict() is False
    assert "predict FAILED: FileNotFoundError" in capsys.readouterr().out
    run.check_submission()
    assert_valid(root / "working" / "submission.csv", ["tomo_a", "tomo_b"])


def test_a_build_into_a_folder_with_user_files_is_refused_and_deletes_nothing(tmp_path):  # issue 11's guarantee
    from kaggle_builder import ownership

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("years of work")
    with pytest.raises(InputError) as err:
        ownership.check_writable(tmp_path / "out")
    assert str(tmp_path / "out") in str(err.value) and "\n" not in str(err.value)
    assert (tmp_path / "out" / "thesis.tex").read_text() == "years of work"


def test_sigterm_writes_the_submission_and_exits_143(models, tmp_path):
    big = tmp_path / "in"
    big.mkdir()
    for i in range(6):
        np.save(big / f"tomo_{i}.npy", volume((64, 160, 160), seed=i))
    proc = subprocess.Popen([sys.executable, "-m", "inference", "-q", "predict", "--manifest", str(models), "--input",
                             str(big), "--output", str(tmp_path / "sub.csv"), "--workers", "0", "--no-progress"],
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60 and not list(_results(tmp_path).glob("*.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("terminated (SIGTERM); what was done is saved")
    sub = assert_valid(tmp_path / "sub.csv", [f"tomo_{i}" for i in range(6)])
    assert len(sub) == 6


@pytest.mark.parametrize("option,needle", [
    (["--read-threads", "0"], "--read-threads 0 must be >= 1"),
    (["--threads", "-2"], "--threads -2 must be >= 1"),
    (["--decoder", "bogus"], "unknown slice decoder 'bogus'"),
    (["--deadline-h", "nan"], "--deadline-h nan must be a number of hours > 0"),
    (["--workers", "-1"], "--workers and --retries must be >= 0"),
])
def test_an_option_that_would_fail_every_tomogram_is_one_line_before_any_work(models, tmp_path, capsys, option,
                                                                              needle):
    tomograms(tmp_path / "in", 1)
    rc = cli_main(["-q", "predict", "--manifest", str(models), "--input", str(tmp_path / "in"), "--output",
                   str(tmp_path / "sub.csv"), *option])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and needle in err and "Fix:" in err and err.count("\n") == 1
    assert not (tmp_path / "sub.csv").exists()


def test_an_os_error_outside_our_checks_is_one_line_naming_the_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    rc = cli_main(["-q", "synth", "--out", str(tmp_path / "file" / "data"), "--n", "1", "--scale", "0.05",
                   "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.startswith(f"error: {tmp_path / 'file' / 'data'}") and "Not a directory" in err and "Fix:" in err


def test_a_hostile_file_name_reaches_the_notebook_as_a_literal(tmp_path):
    import ast

    from kaggle_builder.config import BuildConfig
    from kaggle_builder.notebook import notebook_cells

    name = 'x"); import os; os.system("rm -rf ~"); ("'
    cells = notebook_cells(BuildConfig(manifest=tmp_path / "m.yaml", out=tmp_path / "b", dataset_id=f"me/{name}"),
                           wheel_name=name + ".whl", members=[name], engines=[], wheels=[])
    code = [src for kind, src in cells if kind == "code"]
    for src in code:
        tree = ast.parse(src)
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "system"]
        assert not calls, src
    assert repr(name + ".whl") in code[0]
