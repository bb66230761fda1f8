"""The Kaggle build: metadata, dataset layout, the notebook, offline wheels, build errors, owned folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
import yaml

from inference.common.errors import InputError
from inference.manifest.parse import load_manifest, parse_manifest
from kaggle_builder import ownership
from kaggle_builder.build import build
from kaggle_builder.config import BuildConfig, slug_of_title
from kaggle_builder.target import BYU, KAGGLE_LICENSES, MANIFEST_NAME, RECORD_NAME
from kaggle_builder.wheels import ONNXRUNTIME_GPU
from tests.kaggle_builder.kaggle_helpers import DATASET_ID, KERNEL_ID, cfg, fake_source, fake_wheel

REPO = Path(__file__).resolve().parents[2]



@pytest.fixture(scope="module")
def built(demo_manifest, tmp_path_factory):
    """A real build (real package wheel) of the demo members, with stand-in offline wheels."""
    tmp = tmp_path_factory.mktemp("build")
    return build(cfg(demo_manifest, tmp / "out"), wheel_source=fake_source(tmp / "wheels"))


def copy_models(src_manifest: Path, dest: Path) -> Path:
    shutil.copytree(src_manifest.parent, dest)
    return dest / src_manifest.name


# ------------------------------------------------------------------------------ metadata


def test_dataset_metadata_has_kaggles_fields(built):
    meta = json.loads((built.dataset_dir / "dataset-metadata.json").read_text())
    assert set(meta) == {"title", "id", "licenses", "description"}
    assert meta["id"] == DATASET_ID and 6 <= len(meta["title"]) <= 50
    assert meta["licenses"] == [{"name": "other"}] and meta["licenses"][0]["name"] in KAGGLE_LICENSES


def test_kernel_metadata_has_kaggles_fields(built):
    meta = json.loads((built.notebook_dir / "kernel-metadata.json").read_text())
    assert set(meta) == {"id", "title", "code_file", "language", "kernel_type", "is_private", "enable_gpu",
                         "enable_tpu", "enable_internet", "dataset_sources", "competition_sources", "kernel_sources",
                         "model_sources", "machine_shape"}
    assert meta["id"] == KERNEL_ID and slug_of_title(meta["title"]) == KERNEL_ID.split("/")[1]
    assert (built.notebook_dir / meta["code_file"]).is_file()
    assert meta["enable_gpu"] is True and meta["enable_internet"] is False and meta["is_private"] is True
    assert meta["dataset_sources"] == [DATASET_ID] and meta["competition_sources"] == [BYU.competition]
    assert meta["machine_shape"] == "NvidiaTeslaT4"


def test_dataset_layout_record_and_manifest(built, demo_manifest):
    ds = built.dataset_dir
    assert built.wheel.parent == ds and built.wheel.suffix == ".whl"
    for name in ("demo3d.onnx", "demo2d.onnx"):
        assert (ds / name).read_bytes() == (demo_manifest.parent / name).read_bytes()
    m = load_manifest(ds / MANIFEST_NAME)  # relative member paths resolve inside the dataset
    assert [x.name for x in m.members] == ["demo3d", "demo2d"] and all(x.model.parent == ds.resolve()
                                                                         for x in m.members)
    record = json.loads((ds / RECORD_NAME).read_text())
    assert record["wheel"] == built.wheel.name and record["dataset_id"] == DATASET_ID
    # wheels in one folder per group; the notebook asks for the group's requirement
    assert sorted(p.name for p in (ds / "wheels" / "motorfinder").iterdir()) == ["mrcfile-1.0-py3-none-any.whl",
                                                                                   "simplejpeg-1.0-py3-none-any.whl"]
    assert (ds / "wheels" / "onnxruntime-gpu" / "onnxruntime_gpu-1.0-py3-none-any.whl").is_file()
    assert record["wheel_groups"] == ["motorfinder", "onnxruntime-gpu"]
    assert record["requirements"] == [ONNXRUNTIME_GPU]
    assert record["image"]["onnx"] == "1.18.0"
    assert record["engine_members"]["demo3d"] == {"onnx": "demo3d.onnx", "batch": [1, 2, 2], "engines": []}
    assert not (ds / "engines").exists()


# ------------------------------------------------------------------------------ notebook


def test_notebook_cells_are_short_calls_into_the_runtime(built):
    nb = nbformat.read(str(built.notebook), as_version=4)
    nbformat.validate(nb)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert len(code) == 7
    for i, src in enumerate(code):
        compile(src, f"cell{i + 1}", "exec")
        assert len(src.splitlines()) <= 14, f"cell {i + 1} is not a few lines"
    find, settings, install, doctor, engines, predict, check = code
    assert 'os.environ.get("KAGGLE_ROOT", "/kaggle")' in find and repr(built.wheel.name) in find
    assert "'motor-offline'" in find and "from kaggle_builder import runtime" in find
    assert f"'competition': {BYU.competition!r}" in settings and "'devices': 'all'" in settings
    assert "RUN.install()" in install and "RUN.print_environment()" in install
    assert "RUN.check_device()" in doctor
    assert "RUN.build_engines()" in engines and "RUN.predict()" in predict and "RUN.check_submission()" in check
    assert sum(src.count("/kaggle") for src in code) == 1  # everything hangs off KAGGLE_ROOT
    assert nb.metadata["kaggle"]["isInternetEnabled"] is False


def test_values_are_serialized_not_pasted(demo_manifest, tmp_path):
    """A manifest folder or title with quotes and newlines cannot inject code into the notebook."""
    from kaggle_builder.notebook import notebook_cells

    evil = "x'\n__import__('os').system('echo pwned')\n'"
    c = BuildConfig(manifest=demo_manifest, out=tmp_path, dataset_id=DATASET_ID, kernel_id=KERNEL_ID, title=evil)
    cells = notebook_cells(c, "motorfinder-0.1.0-py3-none-any.whl", [evil, 'a"b'], [evil], [evil])
    for kind, src in cells:
        if kind == "code":
            compile(src, "cell", "exec")
            assert "system(" not in src
    intro = cells[0][1]
    assert "\n__import__" not in intro  # shown quoted on one line


def test_first_cell_finds_the_wheel_and_imports_the_runtime_from_it(built, tmp_path, monkeypatch):
    import sys

    root = tmp_path / "kaggle"
    (root / "input" / "other" / "nested").mkdir(parents=True)
    shutil.copytree(built.dataset_dir, root / "input" / "other" / "nested" / "ds")  # not at input/<slug>
    cell = nbformat.read(str(built.notebook), as_version=4).cells[1].source
    monkeypatch.setenv("KAGGLE_ROOT", str(root))
    monkeypatch.setattr(sys, "path", list(sys.path))
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] == "kaggle_builder"}
    for k in saved:
        monkeypatch.delitem(sys.modules, k)
    ns = {}
    exec(compile(cell, "cell1", "exec"), ns)
    assert ns["FOUND"][0] == root / "input" / "other" / "nested" / "ds" / built.wheel.name
    assert ns["runtime"].__file__.startswith(str(ns["FOUND"][0]))  # imported from the wheel file itself

    empty = tmp_path / "empty"
    (empty / "input").mkdir(parents=True)
    monkeypatch.setenv("KAGGLE_ROOT", str(empty))
    with pytest.raises(FileNotFoundError, match="attach the dataset motor-offline"):
        exec(compile(cell, "cell1", "exec"), {})
    for k in [k for k in sys.modules if k.split(".")[0] == "kaggle_builder"]:
        del sys.modules[k]
    sys.modules.update(saved)


# --------------------------------------------------------------------------- offline wheels


def test_the_wheel_source_gets_the_package_wheel_and_the_groups(demo_manifest, tmp_path):
    source = fake_source(tmp_path / "w")
    build(cfg(demo_manifest, tmp_path / "out"), wheel_source=source, wheel_builder=fake_wheel)
    assert source.calls == [("motorfinder-0.1.0-py3-none-any.whl", ["motorfinder", "onnxruntime-gpu"])]
    source = fake_source(tmp_path / "w2")
    build(cfg(demo_manifest, tmp_path / "out2", tensorrt_wheels=True, extra_index_urls=("https://pypi.nvidia.com",)),
          wheel_source=source, wheel_builder=fake_wheel)
    assert source.calls[0][1] == ["motorfinder", "onnxruntime-gpu", "tensorrt"]


def test_no_wheels_warns_what_the_notebook_lacks(built, demo_manifest, tmp_path, caplog):
    def real_wheel(dest):  # the package wheel's real dependencies say what is lacking
        return Path(shutil.copy2(built.wheel, Path(dest) / built.wheel.name))

    res = build(cfg(demo_manifest, tmp_path / "out", wheels=False), wheel_builder=real_wheel)
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "mrcfile>=1.4" in warning and "simplejpeg" in warning and ONNXRUNTIME_GPU in warning
    assert "numpy" not in warning  # on the image
    assert not (res.dataset_dir / "wheels").exists() and res.wheels == ()
    record = json.loads((res.dataset_dir / RECORD_NAME).read_text())
    assert record["requirements"] == [] and record["wheel_groups"] == []


def test_tensorrt_wheels_ship_in_their_own_group(demo_manifest, tmp_path):
    groups = {"motorfinder": ["mrcfile"], "onnxruntime-gpu": ["onnxruntime-gpu"],
              "tensorrt": ["tensorrt-cu12", "tensorrt-cu12-bindings", "tensorrt-cu12-libs"]}
    res = build(cfg(demo_manifest, tmp_path / "out", tensorrt_wheels=True),
                wheel_source=fake_source(tmp_path / "w", groups), wheel_builder=fake_wheel)
    record = json.loads((res.dataset_dir / RECORD_NAME).read_text())
    assert record["wheel_groups"] == ["motorfinder", "onnxruntime-gpu", "tensorrt"]
    assert sorted(r.split("==")[0] for r in record["requirements"] if r.startswith("tensorrt")) == groups["tensorrt"]
    assert len(record["wheels"]["tensorrt"]) == 3


# --------------------------------------------------------------------------- build errors


def test_missing_member_file_is_an_error_before_writing(demo_manifest, tmp_path):
    manifest = copy_models(demo_manifest, tmp_path / "models")
    (manifest.parent / "demo2d.onnx").unlink()
    with pytest.raises(InputError) as err:
        build(cfg(manifest, tmp_path / "out"), wheel_builder=fake_wheel, wheel_source=fake_source(tmp_path))
    assert "demo2d" in str(err.value) and "python -m export all" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_bad_manifest_is_an_error_before_writing(demo_manifest, tmp_path):
    manifest = copy_models(demo_manifest, tmp_path / "models")
    raw = yaml.safe_load(manifest.read_text())
    raw["members"][0]["stride"] = 0
    manifest.write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError, match="stride"):
        build(cfg(manifest, tmp_path / "out"), wheel_builder=fake_wheel, wheel_source=fake_source(tmp_path))
    assert not (tmp_path / "out").exists()


def test_shipped_manifest_without_members_says_how_to_export(tmp_path):
    shipped = REPO / "weights_manifest.yaml"
    m = parse_manifest(yaml.safe_load(shipped.read_text()), shipped, check_files=False)
    if all(x.model.is_file() for x in m.members):
        pytest.skip("the members are exported here")
    with pytest.raises(InputError, match="--random-init"):
        build(cfg(shipped, tmp_path / "out"), wheel_builder=fake_wheel, wheel_source=fake_source(tmp_path))
    assert not (tmp_path / "out").exists()


def test_a_wheel_that_cannot_be_had_is_an_error_before_writing(demo_manifest, tmp_path):
    def source(package_wheel, groups):
        raise InputError(None, "no wheels for CPython 3.11 on manylinux x86_64: no wheel of onnxruntime-gpu<1.27",
                         "check the range")

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError, match="onnxruntime-gpu"):
        build(cfg(demo_manifest, out), wheel_source=source, wheel_builder=fake_wheel)
    assert list(out.iterdir()) == []  # no staging folder left behind


@pytest.mark.parametrize("field,value,match", [
    ("dataset_id", "no-slash", "--dataset-id"),
    ("kernel_id", "alice/Bad_Slug", "--kernel-id"),
    ("title", "short", "--title"),
    ("kernel_title", "Another Title", "--kernel-title"),
    ("license", "MIT", "--license"),
    ("budget_h", 9.5, "--budget-h"),
])
def test_config_errors(demo_manifest, tmp_path, field, value, match):
    c = BuildConfig(manifest=demo_manifest, out=tmp_path / "out", **{field: value})
    with pytest.raises(InputError, match=match):
        build(c, wheel_builder=fake_wheel, wheel_source=fake_source(tmp_path))
    assert not (tmp_path / "out").exists()


def test_engines_next_to_the_onnx_are_shipped_with_gpu_tags(demo_manifest, tmp_path):
    from inference.common.file_hash import sha256_file
    from inference.engines.tensorrt_sidecar import BatchProfile, EngineSidecar, TensorInfo, write_sidecar

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
    (manifest.parent / "demo2d-old.engine").write_bytes(b"x")
    res = build(cfg(manifest, tmp_path / "out", engines=True), wheel_builder=fake_wheel,
                wheel_source=fake_source(tmp_path / "w"))
    name = "demo3d.tesla-t4-sm75.trt10.7.0.engine"
    assert res.engines == (name,)
    assert (res.dataset_dir / "engines" / name).read_bytes() == b"serialized engine"
    assert json.loads((res.dataset_dir / "engines" / (name + ".json")).read_text())["gpu_name"] == "Tesla T4"
    assert any("demo2d-old.engine" in n for n in res.notes)  # no sidecar: skipped, said so
    record = json.loads((res.dataset_dir / RECORD_NAME).read_text())
    assert record["engine_members"]["demo3d"]["engines"] == [f"engines/{name}"]


# ---------------------------------------------------------------------------- owned folders


def test_a_build_keeps_every_user_file(demo_manifest, tmp_path):
    out = tmp_path / "out"
    (out / "dataset").mkdir(parents=True)
    (out / "dataset" / "my_weights.onnx").write_bytes(b"precious")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError) as err:
        build(cfg(demo_manifest, out), wheel_builder=fake_wheel, wheel_source=fake_source(tmp_path / "w"))
    assert str(err.value).startswith(f"{out / 'dataset'} exists and is not empty") and "Fix:" in str(err.value)
    assert (out / "dataset" / "my_weights.onnx").read_bytes() == b"precious"
    assert sorted(p.name for p in out.iterdir()) == ["dataset", "notes.txt"]  # no notebook/, no staging


def test_a_rebuild_replaces_its_own_folders_and_keeps_the_rest(demo_manifest, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    first = build(cfg(demo_manifest, out), wheel_builder=fake_wheel, wheel_source=fake_source(tmp_path / "w"))
    assert ownership.read_mark(first.dataset_dir)["files"]  # marked, with what was written
    again = build(cfg(demo_manifest, out), wheel_builder=fake_wheel, wheel_source=fake_source(tmp_path / "w"))
    assert again.wheel.is_file() and (out / "notes.txt").read_text() == "mine"
    (out / "dataset" / "added_later.onnx").write_bytes(b"mine too")  # a user file inside an owned folder
    with pytest.raises(InputError, match="added_later.onnx"):
        build(cfg(demo_manifest, out), wheel_builder=fake_wheel, wheel_source=fake_source(tmp_path / "w"))
    assert (out / "dataset" / "added_later.onnx").read_bytes() == b"mine too"


def test_a_symlinked_output_folder_is_refused_not_followed(demo_manifest, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / "notebook").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(InputError, match="symbolic link"):
        build(cfg(demo_manifest, out), wheel_builder=fake_wheel, wheel_source=fake_source(tmp_path / "w"))
    assert (elsewhere / "keep.txt").read_text() == "keep" and (out / "notebook").is_symlink()


def test_owned_folder_links_inside_are_removed_not_followed(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    with ownership.owned_dir(tmp_path / "owned") as d:
        (d / "link").symlink_to(target, target_is_directory=True)
    ownership.remove_owned(tmp_path / "owned")
    assert not (tmp_path / "owned").exists() and (target / "keep.txt").read_text() == "keep"


def test_an_interrupted_owned_folder_stays_owned(tmp_path):
    with pytest.raises(RuntimeError):
        with ownership.owned_dir(tmp_path / "owned") as d:
            (d / "half.bin").write_bytes(b"x")
            raise RuntimeError("killed")
    assert ownership.read_mark(tmp_path / "owned")["files"] is None
    ownership.check_writable(tmp_path / "owned")  # the next run may replace it


def test_an_out_that_is_a_file_is_refused_before_any_work(demo_manifest, tmp_path):
    out = tmp_path / "out"
    out.write_text("a file")
    source = fake_source(tmp_path / "w")
    with pytest.raises(InputError, match="is not a folder"):
        build(cfg(demo_manifest, out), wheel_source=source, wheel_builder=fake_wheel)
    assert source.calls == [] and out.read_text() == "a file"
