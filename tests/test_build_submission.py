"""build_submission.py: Kaggle metadata, the notebook, the dry run, build errors, profile math."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import nbformat
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

import build_submission as bs
from inference.demo_models import write_demo_models
from inference.errors import InputError
from inference.manifest import load_manifest, parse_manifest

DATASET_ID = "alice/motor-offline"
KERNEL_ID = "alice/motor-submission"


def fake_wheel(dest: Path) -> Path:
    """A stand-in for the package wheel (tests that never install it)."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "motorfinder-0.1.0-py3-none-any.whl"
    path.write_bytes(b"not a real wheel")
    return path


def fake_downloader(requirement, dest, **kw):
    name = requirement.split(">")[0].split("=")[0].split("<")[0].replace("-", "_")
    (Path(dest) / f"{name}-1.0-py3-none-any.whl").write_bytes(b"wheel")


def cfg(manifest: Path, out: Path, **kw) -> bs.BuildConfig:
    return bs.BuildConfig(manifest=manifest, out=out, dataset_id=DATASET_ID, kernel_id=KERNEL_ID, **kw)


@pytest.fixture(scope="module")
def demo_manifest(tmp_path_factory) -> Path:
    return write_demo_models(tmp_path_factory.mktemp("models"), with_2d=True)


@pytest.fixture(scope="module")
def built(demo_manifest, tmp_path_factory) -> bs.BuildResult:
    """A real build (real wheel) of the demo members."""
    return bs.build(cfg(demo_manifest, tmp_path_factory.mktemp("build") / "out"))


def copy_models(src_manifest: Path, dest: Path) -> Path:
    shutil.copytree(src_manifest.parent, dest)
    return dest / src_manifest.name


# ------------------------------------------------------------------------------ metadata


def test_dataset_metadata_has_kaggles_fields(built):
    meta = json.loads((built.dataset_dir / "dataset-metadata.json").read_text())
    assert set(meta) == {"title", "id", "licenses", "description"}
    assert meta["id"] == DATASET_ID
    assert 6 <= len(meta["title"]) <= 50
    assert meta["licenses"] == [{"name": "other"}]
    assert meta["licenses"][0]["name"] in bs.KAGGLE_LICENSES


def test_kernel_metadata_has_kaggles_fields(built):
    meta = json.loads((built.notebook_dir / "kernel-metadata.json").read_text())
    documented = {"id", "title", "code_file", "language", "kernel_type", "is_private", "enable_gpu", "enable_tpu",
                  "enable_internet", "dataset_sources", "competition_sources", "kernel_sources", "model_sources",
                  "machine_shape"}
    assert set(meta) == documented
    assert meta["id"] == KERNEL_ID
    assert bs.slug_of_title(meta["title"]) == KERNEL_ID.split("/")[1]  # Kaggle links title and slug
    assert (built.notebook_dir / meta["code_file"]).is_file()
    assert meta["language"] == "python" and meta["kernel_type"] == "notebook"
    assert meta["enable_gpu"] is True and meta["enable_internet"] is False and meta["is_private"] is True
    assert meta["dataset_sources"] == [DATASET_ID]
    assert meta["competition_sources"] == ["byu-locating-bacterial-flagellar-motors-2025"]
    assert meta["kernel_sources"] == [] and meta["model_sources"] == []
    assert meta["machine_shape"] == "NvidiaTeslaT4"


def test_dataset_layout_and_manifest_validate(built, demo_manifest):
    ds = built.dataset_dir
    assert built.wheel.is_file() and built.wheel.suffix == ".whl"
    for name in ("demo3d.onnx", "demo2d.onnx"):
        assert (ds / name).read_bytes() == (demo_manifest.parent / name).read_bytes()
    m = load_manifest(ds / bs.MANIFEST_NAME)  # relative member paths resolve inside the dataset
    assert [x.name for x in m.members] == ["demo3d", "demo2d"]
    assert all(x.model.parent == ds.resolve() for x in m.members)
    marker = json.loads((ds / bs.MARKER_NAME).read_text())
    assert marker["wheel"] == built.wheel.name and marker["dataset_id"] == DATASET_ID
    assert not (ds / "wheels").exists() and not (ds / "engines").exists()


# ------------------------------------------------------------------------------ notebook


def test_notebook_is_valid_and_derived(built):
    nb = nbformat.read(str(built.notebook), as_version=4)
    nbformat.validate(nb)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert len(code) == 4
    for i, src in enumerate(code):
        compile(src, f"cell{i + 1}", "exec")
    setup, engines, predict, check = code
    assert 'os.environ.get("KAGGLE_ROOT", "/kaggle")' in setup
    assert "'motor-offline'" in setup and "'byu-locating-bacterial-flagellar-motors-2025'" in setup
    assert "--no-index" in setup and repr(built.wheel.name) in setup
    # no other absolute Kaggle path: everything hangs off KAGGLE_ROOT
    assert sum(src.count("/kaggle") for src in code) == 1
    assert "import tensorrt" in engines and "except ImportError" in engines and "'demo3d'" in engines
    assert "--deadline-h" in predict and "--devices" in predict and "GPU_IDS = '0,1'" in setup
    assert '"--device", "cpu", "--workers", "1"' in predict
    assert "sample_submission.csv" in check and "assert not missing" in check
    assert nb.metadata["kaggle"]["isInternetEnabled"] is False


def test_dry_run_executes_the_notebook(built, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a relative root (like the default --out build/) must work too
    res = bs.dry_run(built, Path("dry"), n=2, seed=3, scale=0.15)
    assert res.n_tomograms == 2
    assert bs.check_submission(res.submission, res.sample) == []
    nb = nbformat.read(str(res.executed), as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "submission OK: 2 tomograms" in text
    assert str(tmp_path / "dry" / "site") in text  # the wheel was installed and imported, not the source tree


def test_check_submission_finds_problems(tmp_path):
    sample = tmp_path / "s.csv"
    sample.write_text("tomo_id,Motor axis 0,Motor axis 1,Motor axis 2\na,-1,-1,-1\nb,-1,-1,-1\n")
    good = tmp_path / "g.csv"
    good.write_text("tomo_id,Motor axis 0,Motor axis 1,Motor axis 2\na,1,2,3\nb,-1,-1,-1\n")
    assert bs.check_submission(good, sample) == []
    bad = tmp_path / "b.csv"
    bad.write_text("tomo_id,Motor axis 0,Motor axis 1,Motor axis 2\nb,1,-1,3\na,nan,2,3\n")
    problems = " ".join(bs.check_submission(bad, sample))
    assert "tomo_ids differ" in problems and "not finite" in problems and "neither all -1" in problems


# --------------------------------------------------------------------------- build errors


def test_missing_member_file_is_an_error_before_writing(demo_manifest, tmp_path):
    manifest = copy_models(demo_manifest, tmp_path / "models")
    (manifest.parent / "demo2d.onnx").unlink()
    out = tmp_path / "out"
    with pytest.raises(InputError) as err:
        bs.build(cfg(manifest, out), wheel_builder=fake_wheel)
    assert "demo2d" in str(err.value) and "python -m export all" in str(err.value)
    assert not out.exists()


def test_bad_manifest_is_an_error_before_writing(demo_manifest, tmp_path):
    manifest = copy_models(demo_manifest, tmp_path / "models")
    raw = yaml.safe_load(manifest.read_text())
    raw["members"][0]["stride"] = 0
    manifest.write_text(yaml.safe_dump(raw))
    out = tmp_path / "out"
    with pytest.raises(InputError, match="stride"):
        bs.build(cfg(manifest, out), wheel_builder=fake_wheel)
    assert not out.exists()


def test_shipped_manifest_without_members_says_how_to_export(tmp_path):
    shipped = bs.REPO_ROOT / "weights_manifest.yaml"
    m = parse_manifest(yaml.safe_load(shipped.read_text()), shipped, check_files=False)
    if all(x.model.is_file() for x in m.members):
        pytest.skip("the members are exported here")
    with pytest.raises(InputError, match="--random-init"):
        bs.build(cfg(shipped, tmp_path / "out"), wheel_builder=fake_wheel)
    assert not (tmp_path / "out").exists()


def test_missing_wheel_is_an_error_before_writing(demo_manifest, tmp_path):
    def downloader(requirement, dest, **kw):
        if requirement.startswith("onnxruntime-gpu"):
            raise InputError(None, f"no wheel of {requirement} for CPython 3.11", "check the range")
        fake_downloader(requirement, dest)

    calls = []

    def wheel_builder(dest):
        calls.append(dest)
        return fake_wheel(dest)

    out = tmp_path / "out"
    with pytest.raises(InputError, match="onnxruntime-gpu"):
        bs.build(cfg(demo_manifest, out, wheels=True), downloader=downloader, wheel_builder=wheel_builder)
    assert not out.exists() and calls == []


def test_downloader_that_produces_nothing_is_an_error(demo_manifest, tmp_path):
    with pytest.raises(InputError, match="produced no wheel"):
        bs.build(cfg(demo_manifest, tmp_path / "out", wheels=True), downloader=lambda *a, **k: None,
                 wheel_builder=fake_wheel)
    assert not (tmp_path / "out").exists()


def test_wheels_are_shipped_and_installed_by_the_notebook(demo_manifest, tmp_path):
    seen = []

    def downloader(requirement, dest, **kw):
        seen.append((requirement, kw["python_version"], kw["platforms"]))
        fake_downloader(requirement, dest)

    res = bs.build(cfg(demo_manifest, tmp_path / "out", wheels=True), downloader=downloader, wheel_builder=fake_wheel)
    want = [w.requirement for w in bs.KAGGLE_WHEELS if w.group in ("base", "gpu")]
    assert [s[0] for s in seen] == want
    assert all(s[1] == "3.11" and "manylinux2014_x86_64" in s[2] for s in seen)
    shipped = sorted(p.name for p in (res.dataset_dir / "wheels").iterdir())
    assert shipped == sorted(res.wheels) and len(shipped) == len(want)
    setup = nbformat.read(str(res.notebook), as_version=4).cells[1].source
    assert f"EXTRA_WHEELS = {shipped!r}" in setup


def test_tensorrt_wheels_need_nvidias_index(demo_manifest, tmp_path):
    with pytest.raises(InputError, match="pypi.nvidia.com"):
        bs.build(cfg(demo_manifest, tmp_path / "out", wheels=True, tensorrt_wheels=True), downloader=fake_downloader,
                 wheel_builder=fake_wheel)
    reqs = bs.wheel_requirements(cfg(demo_manifest, tmp_path, tensorrt_wheels=True,
                                     extra_index_urls=("https://pypi.nvidia.com",)))
    assert [r.group for r in reqs].count("tensorrt") == 2


@pytest.mark.parametrize("field,value,match", [
    ("dataset_id", "no-slash", "--dataset-id"),
    ("kernel_id", "alice/Bad_Slug", "--kernel-id"),
    ("title", "short", "--title"),
    ("kernel_title", "Another Title", "--kernel-title"),
    ("license", "MIT", "--license"),
])
def test_config_errors(demo_manifest, tmp_path, field, value, match):
    c = bs.BuildConfig(manifest=demo_manifest, out=tmp_path / "out", **{field: value})
    with pytest.raises(InputError, match=match):
        bs.build(c, wheel_builder=fake_wheel)
    assert not (tmp_path / "out").exists()


def test_engines_next_to_the_onnx_are_shipped_with_gpu_tags(demo_manifest, tmp_path):
    from export.tensorrt import BatchProfile, EngineSidecar, TensorInfo, sha256_file, write_sidecar

    manifest = copy_models(demo_manifest, tmp_path / "models")
    onnx_path = manifest.parent / "demo3d.onnx"
    engine = manifest.parent / "demo3d-0123456789abcdef.engine"
    engine.write_bytes(b"serialized engine")
    write_sidecar(engine, EngineSidecar(
        tensorrt_version="10.7.0", gpu_name="Tesla T4", compute_capability="7.5", onnx_file=onnx_path.name,
        onnx_sha256=sha256_file(onnx_path), engine_sha256=sha256_file(engine), fp16=True,
        batch_profile=BatchProfile(1, 2, 2), workspace_gb=4.0,
        inputs=(TensorInfo("input", (-1, 1, 64, 128, 128)),), outputs=(TensorInfo("heatmap", (-1, 1, 4, 8, 8)),),
        built_at="2025-01-01T00:00:00Z"))
    stale = manifest.parent / "demo2d-old.engine"
    stale.write_bytes(b"x")
    res = bs.build(cfg(manifest, tmp_path / "out", engines=True), wheel_builder=fake_wheel)
    name = "demo3d.tesla-t4-sm75.trt10.7.0.engine"
    assert res.engines == (name,)
    assert (res.dataset_dir / "engines" / name).read_bytes() == b"serialized engine"
    assert json.loads((res.dataset_dir / "engines" / (name + ".json")).read_text())["gpu_name"] == "Tesla T4"
    assert any("demo2d-old.engine" in n for n in res.notes)  # no sidecar: skipped, said so
    cell = nbformat.read(str(res.notebook), as_version=4).cells[2].source
    assert f"'engines/{name}'" in cell

    plain = bs.build(cfg(demo_manifest, tmp_path / "out2", engines=True), wheel_builder=fake_wheel)
    assert plain.engines == () and any("builds them at run time" in n for n in plain.notes)


# ------------------------------------------------------------------------------- profile


def _measure(name, shape, spacing, **seconds):
    return bs.MemberMeasure(name=name, tomograms=(bs.TomoMeasure("tomo_x", shape, spacing, seconds),))


def test_profile_math_with_a_fake_measurement(demo_manifest):
    manifest = load_manifest(demo_manifest)
    stages = dict(read=2.0, resample=3.0, engine=10.0, stitch=5.0, decode=1.0, fusion=0.5)
    measured = [_measure(m.name, bs.MEDIAN_SHAPE, bs.MEDIAN_SPACING_A, **stages) for m in manifest.members]
    table = {"demo3d": ((1, 64, 128, 128), 2e12)}
    rep = bs.profile_report(manifest, measured, n_tomograms=900, gpus=2, flops_table=table,
                            gpu_seconds={"demo3d": 0.01}, machine="test")
    m3, m2 = rep.members
    # measured at the reference shape: no scaling
    assert m3.stage_s == pytest.approx(stages)
    assert m3.member_s == pytest.approx(3 + 10 + 5 + 1)
    assert rep.shared_s == pytest.approx({"read": 2.0, "fusion": 0.5})
    cpu = rep.scenarios()[0]
    assert cpu.per_tomogram_s == pytest.approx(2 * 19 + 2.5)
    assert rep.hours(cpu) == pytest.approx(cpu.per_tomogram_s * 900 / 2 / 3600)
    # FLOPs: flops.md row for demo3d (same input), counted from the ONNX for demo2d
    assert m3.flops_source == "flops.md" and m2.flops_source == "ONNX count"
    assert m3.windows == bs.reference_windows(manifest.member("demo3d"), 16.0)
    assert m3.bound_s(65e12) == pytest.approx(m3.windows * 2e12 / 65e12)
    names = [s.name for s in rep.scenarios()]
    assert names == ["this CPU, measured", "T4 bound, fp16", "T4 bound, fp32", "T4 projected"]
    fp16 = rep.scenarios()[1]
    assert fp16.segments["demo3d"] == pytest.approx(bs.flops_bound_seconds(m3.windows, 2e12, 65e12))
    proj = rep.scenarios()[3]
    assert proj.segments["demo3d"] == pytest.approx(m3.windows * 0.01)
    assert "demo2d (fp16 bound)" in proj.segments
    md = rep.markdown()
    assert "~900 tomograms in the hidden test set" in md and "| this CPU, measured |" in md


def test_profile_scales_a_small_tomogram_up(demo_manifest):
    manifest = load_manifest(demo_manifest)
    small, spacing = (100, 320, 310), 13.1
    measured = [_measure(m.name, small, spacing, read=1.0, resample=1.0, engine=1.0, stitch=1.0, decode=1.0,
                         fusion=1.0) for m in manifest.members]
    rep = bs.profile_report(manifest, measured, machine="test")
    m3 = rep.members[0]
    m = manifest.member("demo3d")
    w_ratio = bs.reference_windows(m, 16.0) / bs.reference_windows(m, 16.0, small, spacing)
    v_ratio = math.prod(bs.MEDIAN_SHAPE) / math.prod(small)
    assert m3.stage_s["engine"] == pytest.approx(w_ratio) and m3.stage_s["stitch"] == pytest.approx(w_ratio)
    assert m3.stage_s["read"] == pytest.approx(v_ratio)
    assert m3.stage_s["resample"] == pytest.approx(v_ratio)  # same spacing: resampled voxels scale alike
    assert w_ratio > 1


def test_reference_windows_of_the_shipped_members():
    shipped = bs.REPO_ROOT / "weights_manifest.yaml"
    m = parse_manifest(yaml.safe_load(shipped.read_text()), shipped, check_files=False)
    # 300x960x928 at 13.1 Å -> 246x786x760 at 16 Å: 2x3x2 windows of 224x448x448 at overlap 0.25, x 2 TTA
    assert bs.reference_windows(m.member("x3d_m"), 16.0) == 24
    # 2d: 123 slices at 32 Å, one 896x896 window each (padded), x 2 TTA
    assert bs.reference_windows(m.member("maxvit_tiny"), 16.0) == 246


def test_flops_table_and_onnx_count(tmp_path):
    table = bs.parse_flops_md(bs.REPO_ROOT / "bench" / "results" / "flops.md")
    assert table["x3d_m"] == ((1, 224, 448, 448), pytest.approx(1006.9e9))  # bench/results/flops.md (issue 14)
    w = numpy_helper.from_array(__import__("numpy").ones((2, 1, 3, 3, 3), "float32"), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1] * 6)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "D", "H",
                                                                                                  "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[w])
    path = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert bs.onnx_flops(path, (1, 1, 8, 8, 8)) == 2 * (2 * 8 * 8 * 8) * 27


def test_gpu_seconds_option():
    assert bs.parse_gpu_seconds(["0.5"], ["a", "b"]) == {"a": 0.5, "b": 0.5}
    assert bs.parse_gpu_seconds(["0.5", "b=0.1"], ["a", "b"]) == {"a": 0.5, "b": 0.1}
    with pytest.raises(InputError):
        bs.parse_gpu_seconds(["c=0.1"], ["a", "b"])
    with pytest.raises(InputError):
        bs.parse_gpu_seconds(["-1"], ["a"])


def test_run_profile_writes_table_and_plot(demo_manifest, tmp_path):
    manifest = load_manifest(demo_manifest)

    def measure(man, data_dir, work, **kw):
        assert sorted(p.name for p in data_dir.iterdir())  # synthetic tomograms were written
        return tuple(_measure(m.name, (60, 192, 186), 13.1, read=0.1, resample=0.2, engine=0.5, stitch=0.2,
                              decode=0.01, fusion=0.001) for m in man.members)

    res = bs.run_profile(demo_manifest, tmp_path / "profile", profile_tomograms=1, scale=0.1, measure=measure)
    assert res.png.stat().st_size > 1000 and res.png.read_bytes()[:4] == b"\x89PNG"
    assert "Projection: 900 tomograms on 2 device(s)" in res.markdown.read_text()
    data = json.loads(res.json.read_text())
    assert [m["name"] for m in data["members"]] == [m.name for m in manifest.members]
    for sc in data["scenarios"]:
        assert sc["hours"] == pytest.approx(sc["per_tomogram_s"] * 900 / 2 / 3600)


# ----------------------------------------------------------------------------------- CLI


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    rc = bs.main(["--manifest", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: ") and "manifest not found" in err[-1]
    assert "Traceback" not in "".join(err)


def test_help_documents_every_option():
    parser = bs.build_parser()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 10, action.option_strings
    text = parser.format_help()
    for opt in ("--dry-run", "--profile", "--wheels", "--engines", "--dataset-id", "--kernel-id", "--gpus",
                "--test-tomograms", "--profile-scale", "--gpu-seconds-per-window", "--demo"):
        assert opt in text


@pytest.mark.slow
def test_real_pip_download(tmp_path):
    bs.pip_download("mrcfile>=1.4", tmp_path)
    assert list(tmp_path.glob("mrcfile-*.whl"))
    with pytest.raises(InputError, match="no wheel of simplejpeg==0.0.1"):
        bs.pip_download("simplejpeg==0.0.1", tmp_path)


def _engine_cell_namespace(built, tmp_path, device="cuda"):
    import time as time_mod

    nb = nbformat.read(str(built.notebook), as_version=4)
    cell = nb.cells[2].source
    return cell, {"DATASET": built.dataset_dir, "WORKING": tmp_path / "working", "DEVICE": device,
                  "time": time_mod, "__name__": "cell"}


def test_engine_cell_builds_engines_and_falls_back(built, tmp_path, monkeypatch):
    """Cell 2 with a stand-in TensorRT: a derived manifest on success, the ONNX manifest on any failure."""
    import sys
    import types

    import export.tensorrt as trt_mod

    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setattr(trt_mod, "runtime_env", lambda device_id=0: trt_mod.RuntimeEnv("10.7.0", "Tesla T4", "7.5"))
    asked = []

    def ensure(onnx_path, engine_path, cache_dir, *, fp16, batch, **kw):
        asked.append((Path(onnx_path).name, engine_path, fp16, str(batch)))
        path = Path(cache_dir) / (Path(onnx_path).stem + "-k.engine")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"engine")
        return trt_mod.EnsureResult(path, True, "built: test")

    monkeypatch.setattr(trt_mod, "ensure_engine", ensure)
    cell, ns = _engine_cell_namespace(built, tmp_path)
    exec(compile(cell, "cell2", "exec"), ns)
    derived = ns["PREDICT_MANIFEST"]
    assert derived == tmp_path / "working" / "engines" / "weights_manifest.engines.yaml"
    m = load_manifest(derived)
    assert [x.model.name for x in m.members] == ["demo3d-k.engine", "demo2d-k.engine"]
    assert asked == [("demo3d.onnx", None, True, "1:2:2"), ("demo2d.onnx", None, True, "1:8:8")]

    def broken(*a, **k):
        raise RuntimeError("builder exploded")

    monkeypatch.setattr(trt_mod, "ensure_engine", broken)
    cell, ns = _engine_cell_namespace(built, tmp_path / "b")
    exec(compile(cell, "cell2", "exec"), ns)  # must not raise
    assert ns["PREDICT_MANIFEST"] == built.dataset_dir / bs.MANIFEST_NAME

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    cell, ns = _engine_cell_namespace(built, tmp_path / "c")
    exec(compile(cell, "cell2", "exec"), ns)
    assert ns["PREDICT_MANIFEST"] == built.dataset_dir / bs.MANIFEST_NAME
