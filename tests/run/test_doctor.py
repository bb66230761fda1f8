"""``python -m inference doctor``: the real CPU machine, and the GPU logic with fake modules."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import types

import pytest

from inference.cli.main import main
from inference.engines import ort_providers as prov
from inference.engines.tensorrt_sidecar import BatchProfile, EngineSidecar, TensorInfo, write_sidecar
from inference.run import doctor
from kernels.array_module import cupy_available
from tests.fake_gpu_modules import FakeCupy, FakeOrt, importer

GiB = 2**30


def test_doctor_cpu_exits_0_and_lists_loadable_providers(capsys):
    assert main(["doctor", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("onnxruntime "))
    assert "providers that load:" in line and "CPUExecutionProvider" in line
    assert out.splitlines()[0].startswith("python ") and "numpy " in out and "--device cpu: usable" in out


@pytest.mark.skipif(cupy_available(), reason="this machine has a usable GPU")
def test_doctor_cuda_without_gpu_is_one_line_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "inference", "doctor", "--device", "cuda"], capture_output=True,
                          text=True)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --device cuda cannot be used: ") and "Fix: " in err[0]
    assert "Traceback" not in proc.stderr + proc.stdout


def gpu_machine(tmp_path, *, active=("requested",), provider_libs=("onnxruntime_providers_cuda",), trt=None):
    ort = FakeOrt(tmp_path, active=list(active), provider_libs=provider_libs,
                  available=("CUDAExecutionProvider", "CPUExecutionProvider"))
    mods = {"onnxruntime": ort, "cupy": FakeCupy(gpus=[("Tesla T4", 16 * GiB, (7, 5))]), "tensorrt": trt}
    return importer(mods)


def test_a_listed_provider_that_does_not_load_fails_cuda(tmp_path):
    imp = gpu_machine(tmp_path, active=["CPUExecutionProvider"])
    report = doctor.collect(import_module=imp)
    text = "\n".join(report.lines())
    assert "onnxruntime 1.26.0: providers that load: CPUExecutionProvider" in text
    assert "CUDAExecutionProvider is listed but does not load: libonnxruntime_providers_cuda.so does not load" in text
    assert "GPU 0: Tesla T4, 16.0 GiB, compute capability 7.5" in text
    why, fix = doctor.verdict(report, "cuda")
    assert why.startswith("CUDAExecutionProvider does not load") and fix
    assert doctor.verdict(report, "cpu") is None


def test_everything_loads(tmp_path):
    report = doctor.collect(import_module=gpu_machine(tmp_path, trt=types.SimpleNamespace(__version__="10.16.1.11")))
    text = "\n".join(report.lines())
    assert "providers that load: CUDAExecutionProvider, CPUExecutionProvider" in text
    assert "cupy 13.3.0: CUDA runtime 12.5, driver 12.8, 1 GPU(s) visible" in text
    assert "tensorrt 10.16.1.11" in text
    assert doctor.verdict(report, "cuda") is None
    json.dumps(report.to_dict())  # serialisable (gpu_check embeds it)
    # asking for the TensorRT provider, which this onnxruntime does not list
    why, fix = doctor.verdict(report, "cuda", "tensorrt")
    assert "no TensorrtExecutionProvider" in why and "onnxruntime-gpu" in fix


def test_no_cupy_fails_cuda_with_the_install_fix(tmp_path):
    ort = FakeOrt(tmp_path, active=["requested"], available=("CUDAExecutionProvider", "CPUExecutionProvider"))
    report = doctor.collect(import_module=importer({"onnxruntime": ort}))
    why, fix = doctor.verdict(report, "cuda")
    assert why.startswith("cupy: not installed") and "cupy-cuda12x" in fix


def test_no_cupy_and_no_cuda_provider_names_the_gpu_extra(tmp_path):
    """Both halves of the GPU path missing (the CPU onnxruntime, no CuPy): the fix is the extra that brings both."""
    ort = FakeOrt(tmp_path, active=["requested"], available=("CPUExecutionProvider",))
    report = doctor.collect(import_module=importer({"onnxruntime": ort}))
    why, fix = doctor.verdict(report, "cuda")
    assert why.startswith("cupy: not installed") and "has no CUDAExecutionProvider" in why
    assert "motorfinder[gpu]" in fix and "pip uninstall -y onnxruntime" in fix


def manifest_with_engine(tmp_path, cc="9.0"):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"serialized engine")
    write_sidecar(engine, EngineSidecar(
        tensorrt_version="10.16.1.11", gpu_name="NVIDIA H100", compute_capability=cc, onnx_file="m.onnx",
        onnx_sha256="0" * 64, engine_sha256=hashlib.sha256(engine.read_bytes()).hexdigest(), fp16=False,
        batch_profile=BatchProfile(1, 1, 1), workspace_gb=4.0, inputs=(TensorInfo("input", (-1, 1, 32, 32, 32)),),
        outputs=(TensorInfo("heatmap", (-1, 1, 2, 2, 2)),), built_at="2026-01-01T00:00:00Z"))
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text("target_spacing: 16.0\nmembers:\n  - {name: m, kind: 3d, model: m.engine, patch: [32, 32, 32], "
                        "stride: 16, normalize: {mean: 0.0, std: 255.0}}\nthreshold: {quantile: 0.5}\n")
    return manifest


@pytest.mark.parametrize("cc, fits", [("9.0", False), ("7.5", True)])
def test_manifest_engines_are_checked_against_this_gpu(tmp_path, cc, fits):
    imp = gpu_machine(tmp_path, trt=types.SimpleNamespace(__version__="10.16.1.11"))
    report = doctor.collect(manifest_with_engine(tmp_path, cc), import_module=imp)
    (member,) = report.members
    assert member.ok is fits
    verdict = doctor.verdict(report, "cuda")
    if fits:
        assert verdict is None and "fits this TensorRT 10.16.1.11" in member.detail
    else:
        assert "built for compute capability 9.0" in verdict[0] and "rebuild the engine" in verdict[1]
    why, fix = doctor.verdict(report, "cpu")
    assert "TensorRT engine, which runs on a GPU only" in why


def test_tensorrt_provider_cache_is_reported(tmp_path):
    from inference.synth.demo_models import write_demo_models

    manifest = write_demo_models(tmp_path / "models")
    imp = gpu_machine(tmp_path, trt=types.SimpleNamespace(__version__="10.16.1.11"))
    cache = tmp_path / "cache"
    report = doctor.collect(manifest, "tensorrt", cache, import_module=imp)
    assert all(m.ok for m in report.members)
    assert "0 cached engine(s)" in report.members[0].detail and "the first run builds them" in report.members[0].detail
    folder = prov.tensorrt_cache_dir(cache, "Tesla T4", "7.5", report.tensorrt.libs_version or "10.16.1.11")
    folder.mkdir(parents=True)
    (folder / "a.engine").write_bytes(b"x")
    report = doctor.collect(manifest, "tensorrt", cache, import_module=imp)
    assert "1 cached engine(s)" in report.members[0].detail


def test_missing_member_file_fails_any_device(tmp_path):
    from inference.synth.demo_models import write_demo_models

    manifest = write_demo_models(tmp_path / "models")
    (tmp_path / "models" / "demo3d.onnx").unlink()
    report = doctor.collect(manifest)
    why, fix = doctor.verdict(report, "cpu")
    assert "demo3d.onnx not found" in why and "python -m export all" in fix


def test_no_onnxruntime_fails_both_devices():
    report = doctor.collect(import_module=importer({"cupy": FakeCupy()}))
    assert report.onnxruntime.describe().startswith("onnxruntime: not installed")
    why, fix = doctor.verdict(report, "cpu")
    assert why.startswith("onnxruntime is not installed") and "motorfinder[cpu]" in fix
    why, fix = doctor.verdict(report, "cuda")
    assert why.startswith("onnxruntime is not installed") and "onnxruntime-gpu>=1.20,<1.27" in fix


def test_engines_are_checked_once_per_compute_capability_and_reported_per_gpu(tmp_path, monkeypatch):
    ort = FakeOrt(tmp_path, active=["requested"], provider_libs=("onnxruntime_providers_cuda",),
                  available=("CUDAExecutionProvider", "CPUExecutionProvider"))
    three = FakeCupy(gpus=[("Tesla T4", 16 * GiB, (7, 5)), ("Tesla T4", 16 * GiB, (7, 5)),
                           ("NVIDIA H100", 80 * GiB, (9, 0))])
    imp = importer({"onnxruntime": ort, "cupy": three, "tensorrt": types.SimpleNamespace(__version__="10.16.1.11")})
    checked = []
    from inference.engines import tensorrt_sidecar as trt_engine
    real = trt_engine.check_sidecar
    monkeypatch.setattr(trt_engine, "check_sidecar",
                        lambda *a, **k: checked.append(k["compute_capability"]) or real(*a, **k))
    (member,) = doctor.collect(manifest_with_engine(tmp_path, "9.0"), import_module=imp).members
    assert checked == ["7.5", "9.0"]  # two T4s, one check
    assert not member.ok and member.detail.count("built for compute capability 9.0") == 2
    assert member.detail.startswith("GPU 0: ") and "; GPU 1: " in member.detail and "GPU 2" not in member.detail
