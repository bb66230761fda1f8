"""bench/gpu_check.py on a machine without a GPU: it refuses in one line; its logic (what is not
available here, comparisons, the projection, the report) runs with fakes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from kernels.array_module import cupy_available
from tests.bench.bench_modules import load
from tests.fake_gpu_modules import FakeCupy, FakeOrt, importer

ROOT = Path(__file__).resolve().parents[2]


gpu_check = load("gpu_check")
S = gpu_check.S


@pytest.mark.skipif(cupy_available(), reason="this machine has a GPU")
def test_without_a_gpu_it_refuses_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True)
    if "no GPU here" not in proc.stderr:
        pytest.skip("torch sees a CUDA device here")
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: no GPU here (cupy: ") and "Fix:" in lines[0]
    assert not (tmp_path / "r" / "report.md").exists()


def doctor_without_gpu_runtimes(tmp_path):
    """A GPU and CuPy, but the CPU build of onnxruntime and no TensorRT (the lent dev machine)."""
    from inference.run import doctor

    ort = FakeOrt(tmp_path, available=("CPUExecutionProvider",), active=["requested"])
    cp = FakeCupy(gpus=[("NVIDIA H200", 139 * 2**30, (9, 0))])
    return lambda: doctor.collect(import_module=importer({"onnxruntime": ort, "cupy": cp}))


def test_missing_runtimes_are_reported_as_not_available(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "torch_cuda_problem", lambda: "torch 2.13.0+cpu sees no CUDA device")
    ran = []
    sections = {"kernel parity on the device": lambda c, o, b: ran.append("kernels") or S.Section("k", "ok", "stub"),
                "broken": lambda c, o, b: 1 / 0}
    rc = gpu_check.main(["--out", str(tmp_path / "r")], find=lambda: None, sections=sections,
                        collect=doctor_without_gpu_runtimes(tmp_path))
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    status = {s["name"]: (s["status"], s["summary"]) for s in report["sections"]}
    assert report["gpu"] == "NVIDIA H200" and ran == ["kernels"]
    assert status["doctor"][0] == "failed" and "CUDAExecutionProvider" in status["doctor"][1]
    na = {n: s for n, (st, s) in status.items() if st == S.NA}
    assert any("CUDA provider" in n and "has no CUDAExecutionProvider" in s for n, s in na.items())
    assert any("TensorRT provider" in n for n in na) and any("native TensorRT" in n for n in na)
    assert status["broken"] == ("failed", "ZeroDivisionError: division by zero")  # reported, the run went on
    thr = status["throughput and peak memory per member (shipped recipe, its patch)"]
    assert thr[0] == S.NA and "0 of 10" in thr[1]
    md = (tmp_path / "r" / "report.md").read_text()
    assert "not available here" in md and "- command: `python bench/gpu_check.py --out" in md
    assert rc == 1


def test_throughput_rows_and_projection(tmp_path, monkeypatch):
    caps = S.Capabilities(cupy=None, ort_cuda="cpu build", ort_trt="cpu build", tensorrt="absent", torch_cuda=None,
                          gpu_name="NVIDIA H200")
    rates = {"fp32": 2.0, "fp16": 8.0}
    monkeypatch.setattr(S, "torch_throughput", lambda m, seconds: {
        p: {"windows_per_s": rates[p], "peak_gib": 3.0, "backend": "torch (stub)"} for p in rates})
    budget = gpu_check.Budget(240.0)
    sec, proj = gpu_check.throughput_section(caps, tmp_path, budget, ROOT / "weights_manifest.yaml")
    rows = sec.data["rows"]
    assert sec.status == "ok" and len(rows) == 10 and all(r["windows_per_s"] == rates[r["precision"]] for r in rows)
    windows = {r["member"]: r["windows_per_tomogram"] for r in rows if r["precision"] == "fp32"}
    for p, (ratio, rate) in {"fp32": (67.0 / 8.1, 2.0), "fp16": (989.0 / 65.0, 8.0)}.items():
        want = sum(w / rate * ratio for w in windows.values()) * 900 / 2 / 3600
        assert proj.data[p]["hours"] == pytest.approx(want)
    assert proj.status == "ok" and "PROJECTION" in "\n".join(proj.details)


def test_projection_needs_a_known_gpu_and_every_member():
    rows = [{"member": "a", "precision": "fp32", "windows_per_tomogram": 100, "windows_per_s": 10.0},
            {"member": "b", "precision": "fp32", "windows_per_tomogram": 10, "error": "out of memory"}]
    assert "unknown" in S.projected_hours(rows, "Some GPU")["error"]
    assert S.projected_hours(rows, "Tesla T4") == {}  # b not measured: no total
    rows[1]["windows_per_s"] = 5.0
    got = S.projected_hours(rows, "Tesla T4")["fp32"]
    assert got["flops_ratio"] == 1.0 and got["hours"] == pytest.approx((100 / 10 + 10 / 5) * 900 / 2 / 3600)


def test_windows_per_tomogram_counts_the_pipeline_windows():
    from inference.manifest.parse import load_manifest

    m = load_manifest(ROOT / "weights_manifest.yaml", check_files=False)
    x3d, maxvit = m.member("x3d_m"), m.member("maxvit_tiny")
    shape = (300, 959, 928)
    # half-pixel resample: floor(n * 13.1 / 16) = 245 x 785 x 759; end-placed 224 x 448 x 448 windows at overlap 0
    # start at 0 and m - p: 2 per axis; x 2 TTA
    assert S.windows_per_tomogram(x3d, shapes=[shape]) == 2 * 2 * 2 * 2
    # 2d: floor(300 * 13.1 / 32) = 122 slices in 3-slice windows every 3, the last at 119: 41; one 896 x 896
    # window in-plane (785, 759 < 896); x 2 TTA
    assert S.windows_per_tomogram(maxvit, shapes=[shape]) == (len(range(0, 122 - 3, 3)) + 1) * 2
    # z 700 -> 573: starts 0, 224 and 573 - 224 = 349: 3 x 2 x 2 x 2 TTA; the mean over the two shapes
    assert S.windows_per_tomogram(x3d, shapes=[shape, (700, 959, 928)]) == (16 + 3 * 2 * 2 * 2) / 2


class Run:
    def __init__(self, fused, members=None):
        self.fused = pd.DataFrame(fused, columns=["tomo_id", "z", "y", "x", "conf", "voxel_spacing"])
        self.member_candidates = members or {}


def test_compare_candidates():
    ref = Run([("t1", 10.0, 20.0, 30.0, 0.9, 13.1), ("t1", 50.0, 5.0, 5.0, 0.05, 13.1)])
    assert S.compare_candidates(ref, Run(ref.fused.values.tolist()), 1e-3) == []
    moved = Run([("t1", 10.0, 20.0, 31.0, 0.9, 13.1)])
    assert any("no match" in p for p in S.compare_candidates(ref, moved, 1e-3))
    drift = Run([("t1", 10.0, 20.0, 30.0, 0.898, 13.1)])
    assert S.compare_candidates(ref, drift, 1e-3) == ["fused t1: (10.0, 20.0, 30.0) conf 0.90000 (reference) vs 0.89800"]
    assert S.compare_candidates(ref, drift, 1e-2) == []  # the 0.05 point is below the compared conf


def test_junit_counts(tmp_path):
    xml = tmp_path / "j.xml"
    xml.write_text('<testsuites><testsuite tests="7" failures="1" errors="0" skipped="2"/></testsuites>')
    assert S.junit_counts(xml) == {"tests": 7, "failures": 1, "errors": 0, "skipped": 2}
    assert S.junit_counts(tmp_path / "none.xml")["tests"] == 0
