import copy

import pytest
import yaml

from inference.common.errors import InputError
from inference.manifest.parse import load_manifest, parse_manifest
from inference.synth.demo_models import write_demo_models

BASE = {
    "target_spacing": 16.0,
    "members": [{
        "name": "x3d_m", "kind": "3d", "model": "m.onnx", "patch": [64, 128, 128], "stride": 16,
        "overlap": 0.25, "normalize": {"mean": 0.0, "std": 255.0}, "activation": "sigmoid",
        "tta": ["zyx"], "weight": 1.0, "decode": {"nms_kernel": 3, "min_conf": 0.02, "top_k": 50},
    }],
    "threshold": {"quantile": 0.55},
}


@pytest.fixture
def mdir(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x")
    return tmp_path


def write(mdir, data):
    p = mdir / "weights_manifest.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_issue_schema_parses(mdir):
    m = load_manifest(write(mdir, BASE))
    (mem,) = m.members
    assert mem.patch == (64, 128, 128) and mem.overlap == (0.25,) * 3 and mem.model == (mdir / "m.onnx").resolve()
    assert mem.normalize.mode == "affine" and mem.normalize.std == 255.0
    assert m.threshold.quantile == 0.55 and m.default_spacing == 13.1
    assert mem.stitch.mode == "mean" and mem.decode.top_k == 50


def test_later_keys_do_not_break(mdir):
    data = copy.deepcopy(BASE)
    data["fusion"] = {"method": "wbf", "dist_A": 1000, "conf_type": "avg"}
    data["members"].append({"name": "maxvit", "kind": "2d", "model": "m.onnx", "patch": [896, 896], "stride": 16,
                            "normalize": "zscore", "channels": 3, "slice_spacing": 32.0, "tta": ["yx", "xy"]})
    m = load_manifest(write(mdir, data))
    assert m.members[1].slice_spacing == 32.0 and m.fusion.dist_A == 1000.0


@pytest.mark.parametrize("mutate,match", [
    (lambda d: d.update(colour="red"), "key 'colour': unknown key"),
    (lambda d: d["members"][0].update(pach=[1, 2, 3]), r"members\[0\].pach': unknown key"),
    (lambda d: d["members"][0].update(model="missing.onnx"), "file not found"),
    (lambda d: d["members"][0].update(model="m.pt"), "suffix"),
    (lambda d: d["members"][0].update(patch=[64, 128]), "expected 3 integers"),
    (lambda d: d["members"][0].update(patch=[64, 100, 128]), "not a multiple of stride"),
    (lambda d: d["members"][0].update(overlap=1.0), "must be < 1"),
    (lambda d: d["members"][0].update(tta=["zyq"]), "TTA"),
    (lambda d: d["members"][0].update(activation="relu"), "not one of"),
    (lambda d: d["members"][0].update(weight=0), "must be > 0"),
    (lambda d: d["members"][0].update(normalize={"mean": 0, "std": 0}), "std"),
    (lambda d: d["members"][0]["decode"].update(nms_kernel=4), "odd"),
    (lambda d: d["members"].append(dict(d["members"][0])), "duplicate"),
    (lambda d: d.update(threshold={"quantile": 0.5, "fixed": 0.3}), "exactly one"),
    (lambda d: d.update(threshold={"quantile": 1.5}), "<= 1"),
    (lambda d: d.pop("members"), "missing required key"),
    (lambda d: d.update(target_spacing="16A"), "finite number"),
    (lambda d: d["members"][0].update(slice_spacing=32.0), "only 2d"),
])
def test_errors_name_key_and_file(mdir, mutate, match):
    data = copy.deepcopy(BASE)
    mutate(data)
    path = write(mdir, data)
    with pytest.raises(InputError, match=match) as info:
        load_manifest(path)
    assert str(path) in str(info.value) and " Fix: " in str(info.value)  # the file, and what to do


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(InputError, match="manifest not found"):
        load_manifest(tmp_path / "nope.yaml")
    p = tmp_path / "bad.yaml"
    p.write_text("members: [\n")
    with pytest.raises(InputError, match="not valid YAML"):
        load_manifest(p)
    csv = tmp_path / "labels.csv"  # a CSV passed as the manifest is valid YAML: one string
    csv.write_text("tomo_id,z,y,x\ntomo_a,1,2,3\n")
    with pytest.raises(InputError, match=r"labels\.csv: is a CSV table, not a manifest\. "
                                         r"Fix: pass --manifest with a weights_manifest\.yaml"):
        load_manifest(csv)
    other = tmp_path / "list.yaml"  # any other YAML that is not a mapping
    other.write_text("- a\n- b\n")
    with pytest.raises(InputError, match=r"key '\(top level\)': expected a mapping, got list"):
        load_manifest(other)


def test_frozen(mdir):
    m = parse_manifest(BASE, write(mdir, BASE))
    with pytest.raises(Exception):
        m.target_spacing = 1.0


RECIPE_3D = {"resample": {"grid": "half_pixel", "quantize": "uint8"}, "windows": {"placement": "end", "pad": "zero"},
             "tta_scope": "window", "tta_merge": "separate", "tta": ["zyx", "zxy_x"],
             "stitch": {"mode": "mean", "space": "logit", "grid_stride": 8},
             "decode": {"nms_kernel": 3, "min_conf": 0.02, "top_k": 100, "nms_radius_A": 1000.0}}


def test_recipe_keys_parse_and_default_to_the_old_behaviour(mdir):
    from inference.manifest.types import Resample, Stitch, Windows

    plain = load_manifest(write(mdir, BASE)).members[0]
    assert plain.resample == Resample() == Resample("corner", "none")
    assert plain.windows == Windows("stride", "mean") and plain.stitch == Stitch("mean", "prob", None)
    assert (plain.tta_scope, plain.tta_merge, plain.slices, plain.decode.nms_radius_A) == ("volume", "mean", None, 0.0)
    assert plain.input_names == ("x3d_m",)
    data = copy.deepcopy(BASE)
    data["members"][0].update(copy.deepcopy(RECIPE_3D))
    data["members"].append({"name": "coat", "kind": "2d", "model": "m.onnx", "patch": [896, 896], "stride": 16,
                            "normalize": {"mean": 0, "std": 1}, "slice_spacing": 32.0, "tta": ["yx"],
                            "slices": {"window": 3, "step": 3, "cell": 4}, "stitch": {"grid_stride": 8}})
    data["fusion"] = {"skip_conf": 0.2, "rescale": "weights"}
    data["threshold"] = {"quantile": 0.55, "keep_equal": True}
    m = load_manifest(write(mdir, data))
    x3d, coat = m.members
    assert x3d.resample == Resample("half_pixel", "uint8") and x3d.windows == Windows("end", "zero")
    assert x3d.stitch == Stitch("mean", "logit", 8) and x3d.decode.nms_radius_A == 1000.0
    assert x3d.input_names == ("x3d_m@zyx", "x3d_m@zxy_x") and coat.input_names == ("coat",)
    assert [n for n, _ in m.inputs] == ["x3d_m@zyx", "x3d_m@zxy_x", "coat"]
    assert coat.slices.cell == 4 and coat.channels == 3
    assert m.fusion.rescale == "weights" and m.threshold.keep_equal is True


@pytest.mark.parametrize("mutate,match", [
    (lambda m: m.update(stitch={"grid_stride": 5}), "does not divide the stride"),
    (lambda m: m.update(stitch={"space": "logits"}), "stitch.space"),
    (lambda m: m.update(resample={"grid": "center"}), "resample.grid"),
    (lambda m: m.update(tta_scope="tile"), "tta_scope"),
    (lambda m: m.update(tta_merge="separate", tta=["zyx", "zyx"]), "repeats a name"),
    (lambda m: m.update(slices={"window": 3}), "only 2d members"),
    (lambda m: m.update(decode={"nms_radius_A": -1}), "nms_radius_A"),
    (lambda m: m.update(fp16="yes"), "fp16"),
])
def test_recipe_key_errors(mdir, mutate, match):
    data = copy.deepcopy(BASE)
    mutate(data["members"][0])
    with pytest.raises(InputError, match=match) as info:
        load_manifest(write(mdir, data))
    assert " Fix: " in str(info.value)


def test_end_placement_without_grid_stride_uses_the_stride(mdir):
    from inference.predict.geometry import member_geometry

    data = copy.deepcopy(BASE)
    data["members"][0].update(windows={"placement": "end"})
    m = load_manifest(write(mdir, data))
    assert m.members[0].stitch.grid_stride is None
    assert member_geometry(m.members[0], 16.0).grid == (16, 16, 16)
    assert member_geometry(load_manifest(write(mdir, BASE)).members[0], 16.0).grid is None


def test_recipe_top_level_errors(mdir):
    data = copy.deepcopy(BASE)
    data["fusion"] = {"method": "wbf_iou", "rescale": "weights"}
    with pytest.raises(InputError, match="wbf_iou"):
        load_manifest(write(mdir, data))
    data = copy.deepcopy(BASE)
    data["threshold"] = {"quantile": 0.5, "keep_equal": "yes"}
    with pytest.raises(InputError, match="keep_equal"):
        load_manifest(write(mdir, data))
    data = copy.deepcopy(BASE)
    data["members"][0].update(kind="2d", patch=[128, 128], slice_spacing=32.0, channels=5, tta=["yx"],
                              slices={"window": 3}, stitch={"grid_stride": 8})
    with pytest.raises(InputError, match="slices.window"):
        load_manifest(write(mdir, data))


def test_member_fp16_key_over_the_runs_option(tmp_path):
    """``fp16`` per member: absent -> the run's --fp16 decides; true/false -> the member's own."""
    from dataclasses import replace

    from inference.engines.base import EngineOptions
    from inference.manifest.parse import load_manifest
    from inference.run.tomogram import member_engine_options

    manifest = load_manifest(write_demo_models(tmp_path, with_2d=True))
    m3, m2 = manifest.members
    assert m3.fp16 is None
    data = yaml.safe_load(manifest.path.read_text())
    data["members"][0]["fp16"] = True
    assert load_manifest(write(manifest.path.parent, data)).members[0].fp16 is True
    run_fp16, run_fp32 = EngineOptions(fp16=True), EngineOptions(fp16=False)
    assert member_engine_options(run_fp16, m3).fp16 is True and member_engine_options(run_fp32, m3).fp16 is False
    assert member_engine_options(run_fp16, replace(m3, fp16=False)).fp16 is False
    assert member_engine_options(run_fp32, replace(m3, fp16=True)).fp16 is True
    hint = member_engine_options(run_fp32, m2).input_hint
    assert hint.batch == m2.batch_size and hint.sample == (m2.channels, *m2.patch)
