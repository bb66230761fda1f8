"""bench/gpu_check.py's particle section: "not available here" without CuPy; its comparison and report run
on the fake CuPy / cupyx / cuCIM modules."""

from __future__ import annotations

import numpy as np

from tests.bench.test_gpu_check import gpu_check
from tests.fake_gpu_arrays import FakeGpu

S = gpu_check.S
P = gpu_check.P


def caps(cupy_problem=None):
    return S.Capabilities(cupy=cupy_problem, ort_cuda="cpu build", ort_trt="cpu build", tensorrt="absent",
                          torch_cuda="absent", gpu_name="NVIDIA H100")


def test_without_cupy_it_is_not_available_and_runs_nothing(tmp_path):
    sec = P.particles_section(caps("no CUDA device"), tmp_path, gpu_check.Budget(240.0))
    assert sec.status == S.NA and sec.summary == "cupy: no CUDA device" and not sec.details


def test_cupy_missing_at_import_is_not_available(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "cupyx.scipy.ndimage", None)
    sec = P.particles_section(caps(), tmp_path, gpu_check.Budget(240.0))
    assert sec.status == S.NA and "needs CuPy" in sec.summary


def test_on_the_fake_gpu_the_picks_are_equal_and_timed(tmp_path, monkeypatch):
    FakeGpu().install(monkeypatch)
    sec = P.particles_section(caps(), tmp_path, gpu_check.Budget(240.0), shape=(24, 80, 80), blobs=6, rounds=1)
    assert sec.status == "ok" and sec.summary == "picks equal for 3 of 3 methods (cucim)"
    assert set(sec.data["methods"]) == {"peaks", "components", "watershed"}
    assert all(m["picks"] > 0 and m["differences"] == [] for m in sec.data["methods"].values())
    assert any(line.startswith("| watershed |") and line.endswith("| equal |") for line in sec.details)


def test_a_spent_budget_measures_nothing(tmp_path, monkeypatch):
    FakeGpu().install(monkeypatch)
    sec = P.particles_section(caps(), tmp_path, gpu_check.Budget(5.0), shape=(8, 16, 16), blobs=1, rounds=1)
    assert sec.status == "skipped" and "0 of 3" in sec.summary


def test_compare_picks():
    z = np.array([[1.0, 2.0, 3.0]])
    c = np.array([0.5])
    assert P.compare_picks({"a": (z, c)}, {"a": (z + 1e-5, c)}) == []
    assert P.compare_picks({"a": (z, c)}, {"a": (z[:0], c[:0])}) == ["a: 1 picks on the CPU, 0 on the GPU"]
    assert "max |dz, dy, dx| 0.01" in P.compare_picks({"a": (z, c)}, {"a": (z + 0.01, c)})[0]
    assert P.compare_picks({"a": (z, c)}, {}) == ["a: missing on the GPU"]
