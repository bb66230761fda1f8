"""The runtime profile: scaling, windows, FLOPs, measured vs projected rows, the table and the plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper

from inference.common.errors import InputError
from inference.manifest.parse import load_manifest, parse_manifest
from kaggle_builder.cost import T4_PEAK_FLOPS, flops_bound_seconds, onnx_flops, parse_flops_md, reference_windows
from kaggle_builder.profile import HOST_SEGMENT, MemberMeasure, TomoMeasure, parse_gpu_seconds, profile_report
from kaggle_builder.profile_render import Y_TOP, markdown
from kaggle_builder.profile_run import run_profile
from kaggle_builder.target import BYU

REPO = Path(__file__).resolve().parents[2]
MEDIAN_SHAPE, MEDIAN_SPACING_A = BYU.median_shape, BYU.median_spacing_A
STAGES = dict(read=2.0, resample=3.0, engine=10.0, stitch=5.0, decode=1.0, fusion=0.5)



def _measure(name, shape, spacing, **seconds):
    return MemberMeasure(name=name, tomograms=(TomoMeasure("tomo_x", shape, spacing, seconds),))


def test_measured_and_projected_rows(demo_manifest):
    manifest = load_manifest(demo_manifest)
    measured = [_measure(m.name, MEDIAN_SHAPE, MEDIAN_SPACING_A, **STAGES) for m in manifest.members]
    table = {"demo3d": ((1, 64, 128, 128), 2e12)}
    rep = profile_report(manifest, measured, n_tomograms=900, gpus=2, flops_table=table,
                         gpu_seconds={"demo3d": 0.01}, machine="test")
    m3, m2 = rep.members
    assert m3.stage_s == pytest.approx(STAGES)  # measured at the reference shape: no scaling
    assert m3.member_s == pytest.approx(3 + 10 + 5 + 1) and m3.host_s == pytest.approx(3 + 5 + 1)
    assert rep.shared_s == pytest.approx({"read": 2.0, "fusion": 0.5})
    assert rep.host_s == pytest.approx(2 * 9 + 2.5)
    cpu, fp16, fp32, given = rep.scenarios()
    assert [s.kind for s in rep.scenarios()] == ["measured", "projected", "projected", "projected"]
    # the CPU row: one machine unless asked, not the GPU count
    assert cpu.workers == 1 and cpu.per_tomogram_s == pytest.approx(2 * 19 + 2.5)
    assert rep.hours(cpu) == pytest.approx(cpu.per_tomogram_s * 900 / 1 / 3600)
    # T4 rows = host stages measured here + the engine at the peak
    assert m3.flops_source == "flops.md" and m2.flops_source == "ONNX count"
    assert m3.windows == reference_windows(manifest.member("demo3d"), 16.0, MEDIAN_SHAPE, MEDIAN_SPACING_A)
    assert fp16.segments["demo3d"] == pytest.approx(flops_bound_seconds(m3.windows, 2e12, T4_PEAK_FLOPS["fp16"]))
    assert fp16.segments[HOST_SEGMENT] == pytest.approx(rep.host_s) and fp16.workers == 2
    assert rep.hours(fp32) == pytest.approx(fp32.per_tomogram_s * 900 / 2 / 3600)
    assert given.segments["demo3d"] == pytest.approx(m3.windows * 0.01) and "demo2d (fp16 bound)" in given.segments
    md = markdown(rep)
    assert "~900 tomograms in the hidden test set" in md and "| measured |" in md and "| projected |" in md
    two = profile_report(manifest, measured, cpu_machines=2, machine="test")
    assert two.hours(two.scenarios()[0]) == pytest.approx(rep.hours(cpu) / 2)
    assert two.scenarios()[0].name == "CPU here, 2 machines"


def test_a_host_bound_projection_says_why_fp16_and_fp32_are_alike(demo_manifest):
    manifest = load_manifest(demo_manifest)
    measured = [_measure(m.name, MEDIAN_SHAPE, MEDIAN_SPACING_A, **STAGES) for m in manifest.members]
    tiny = profile_report(manifest, measured, machine="test")  # the demo models: a few MFLOPs per window
    engine = sum(m.bound_s(T4_PEAK_FLOPS["fp32"]) for m in tiny.members)
    assert engine < 0.05 * (engine + tiny.host_s)
    note = tiny.host_bound_note()
    assert note.startswith("host-bound") and f"{tiny.host_s:.3g} s of host stages" in note
    assert f"Note: {note}." in markdown(tiny)
    # an engine of 20 % of the fp32 total: fp16 and fp32 differ, no note
    host = tiny.host_s
    big = {m.name: ((1, *m.patch) if m.kind == "3d" else (m.channels, *m.patch),
                    0.25 * host * T4_PEAK_FLOPS["fp32"] / len(manifest.members)
                    / reference_windows(m, 16.0, MEDIAN_SHAPE, MEDIAN_SPACING_A)) for m in manifest.members}
    heavy = profile_report(manifest, measured, flops_table=big, machine="test")
    assert heavy.host_bound_note() is None and "Note: host-bound" not in markdown(heavy)


def test_a_small_tomogram_is_scaled_up(demo_manifest):
    manifest = load_manifest(demo_manifest)
    small, spacing = (100, 320, 310), 13.1
    measured = [_measure(m.name, small, spacing, **{k: 1.0 for k in STAGES}) for m in manifest.members]
    m3 = profile_report(manifest, measured, machine="test").members[0]
    m = manifest.member("demo3d")
    w_ratio = reference_windows(m, 16.0, MEDIAN_SHAPE, MEDIAN_SPACING_A) / reference_windows(m, 16.0, small, spacing)
    v_ratio = math.prod(MEDIAN_SHAPE) / math.prod(small)
    assert m3.stage_s["engine"] == pytest.approx(w_ratio) and m3.stage_s["stitch"] == pytest.approx(w_ratio)
    assert m3.stage_s["read"] == pytest.approx(v_ratio)
    assert m3.stage_s["resample"] == pytest.approx(v_ratio)  # same spacing: resampled voxels scale alike
    assert w_ratio > 1


def test_reference_windows_of_the_shipped_members():
    shipped = REPO / "weights_manifest.yaml"
    m = parse_manifest(yaml.safe_load(shipped.read_text()), shipped, check_files=False)
    # 300x960x928 at 13.1 Å -> floor(n*13.1/16) = 245x786x759 (half-pixel): end-placed 224x448x448 windows at
    # overlap 0 start at 0 and m-p on each axis: 2x2x2, x 2 TTA
    assert reference_windows(m.member("x3d_m"), 16.0, MEDIAN_SHAPE, MEDIAN_SPACING_A) == 2 * 2 * 2 * 2
    # 2d: floor(300*13.1/32) = 122 slices, 3-slice windows every 3 (the last at 119): 41 windows of 896x896, x 2 TTA
    assert reference_windows(m.member("maxvit_tiny"), 16.0, MEDIAN_SHAPE, MEDIAN_SPACING_A) == 41 * 2


def test_flops_table_and_onnx_count(tmp_path):
    table = parse_flops_md(REPO / "bench" / "results" / "flops.md")
    assert table["x3d_m"] == ((1, 224, 448, 448), pytest.approx(1006.9e9))  # bench/results/flops.md (issue 14)
    w = numpy_helper.from_array(__import__("numpy").ones((2, 1, 3, 3, 3), "float32"), "w")
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[1] * 6)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "D", "H", "W"])
    graph = helper.make_graph([node], "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[w])
    path = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert onnx_flops(path, (1, 1, 8, 8, 8)) == 2 * (2 * 8 * 8 * 8) * 27


def test_gpu_seconds_option():
    assert parse_gpu_seconds(["0.5"], ["a", "b"]) == {"a": 0.5, "b": 0.5}
    assert parse_gpu_seconds(["0.5", "b=0.1"], ["a", "b"]) == {"a": 0.5, "b": 0.1}
    with pytest.raises(InputError):
        parse_gpu_seconds(["c=0.1"], ["a", "b"])
    with pytest.raises(InputError):
        parse_gpu_seconds(["-1"], ["a"])


def test_run_profile_writes_table_json_and_a_linear_plot(demo_manifest, tmp_path, monkeypatch):
    import matplotlib.axes

    manifest = load_manifest(demo_manifest)
    seen = {}
    original = matplotlib.axes.Axes.set_ylim

    def spy(self, *a, **k):
        seen["ylim"] = a
        return original(self, *a, **k)

    monkeypatch.setattr(matplotlib.axes.Axes, "set_ylim", spy)
    monkeypatch.setattr(matplotlib.axes.Axes, "set_yscale", lambda *a, **k: pytest.fail("not a linear axis"))

    def measure(man, data_dir, work, **kw):
        assert sorted(p.name for p in data_dir.iterdir())  # synthetic tomograms were written
        return tuple(_measure(m.name, (60, 192, 186), 13.1, read=0.1, resample=0.2, engine=5.0, stitch=0.2,
                              decode=0.01, fusion=0.001) for m in man.members)

    res = run_profile(demo_manifest, tmp_path / "profile", profile_tomograms=1, scale=0.1, measure=measure)
    assert res.png.read_bytes()[:4] == b"\x89PNG" and seen["ylim"] == (0, Y_TOP * 9.0)
    assert "Projection: 900 tomograms" in res.markdown.read_text()
    data = json.loads(res.json.read_text())
    assert [m["name"] for m in data["members"]] == [m.name for m in manifest.members]
    for sc in data["scenarios"]:
        assert sc["hours"] == pytest.approx(sc["per_tomogram_s"] * 900 / sc["workers"] / 3600)
    assert data["scenarios"][0]["hours"] > Y_TOP * 9.0  # off the chart: drawn cut, labelled
    assert "CPU here, 1 machine" in res.render() and "measured" in res.render()
