"""ONNX Runtime providers: the one asked for must be the one running, with the library that failed
named; CUDA arena, memory limit and stream options; TensorRT profile and caches. Driven with fake
onnxruntime / cupy modules (tests/fake_gpu_modules.py), plus the real CPU-only onnxruntime here."""

from __future__ import annotations

import onnx
import pytest

from inference.common.errors import EngineError
from inference.engines import cuda_stream, gpus
from inference.engines import ort_providers as prov
from inference.engines.base import EngineOptions, InputHint
from inference.engines.onnxruntime import OnnxRuntimeEngine
from inference.engines.registry import load_engine
from inference.synth.demo_models import avgpool_model
from tests.fake_gpu_modules import FakeCupy, FakeOrt, importer

GiB = 2**30


@pytest.fixture(autouse=True)
def fresh_process_state(monkeypatch):
    """Streams and shared arenas are per process; every test starts as a new process would."""
    monkeypatch.setattr(cuda_stream, "_STREAMS", {})
    monkeypatch.setattr(prov, "_SHARED_ARENAS", {})
    monkeypatch.setattr(prov, "tensorrt_version", lambda *a, **k: "10.16.1.11")


def engine(path, ort, options, cupy=None, events=None, **modules):
    return OnnxRuntimeEngine(path, options, import_module=importer({"onnxruntime": ort, "cupy": cupy, **modules},
                                                                    events))


# ------------------------------------------------------------------ the active provider is checked


def test_cpu_fallback_of_the_cuda_provider_raises_and_names_the_library(tmp_path, avgpool_onnx):
    ort = FakeOrt(tmp_path, provider_libs=["onnxruntime_providers_cuda"], active=["CPUExecutionProvider"])
    with pytest.raises(EngineError) as err:
        engine(avgpool_onnx, ort, EngineOptions(device="cuda"))
    msg = str(err.value)
    assert "asked for CUDAExecutionProvider but runs on CPUExecutionProvider" in msg
    # the loader's own words about the provider library, and a fix
    assert "libonnxruntime_providers_cuda.so does not load" in msg and "Fix:" in msg
    assert str(avgpool_onnx) in msg and "\n" not in msg


def test_missing_provider_library_means_the_cpu_wheel(tmp_path, avgpool_onnx):
    ort = FakeOrt(tmp_path, provider_libs=[], active=["CPUExecutionProvider"])
    with pytest.raises(EngineError, match=r"CPU-only 'onnxruntime' wheel.*Fix: pip uninstall -y onnxruntime"):
        engine(avgpool_onnx, ort, EngineOptions(device="cuda"))


def test_tensorrt_provider_falling_back_to_cuda_raises(tmp_path, avgpool_onnx):
    ort = FakeOrt(tmp_path, active=["CUDAExecutionProvider", "CPUExecutionProvider"])
    with pytest.raises(EngineError, match="asked for TensorrtExecutionProvider but runs on CUDAExecutionProvider"):
        engine(avgpool_onnx, ort, EngineOptions(device="cuda", ort_provider="tensorrt"))


def test_the_real_cpu_onnxruntime_refuses_cuda(avgpool_onnx):
    """This machine's onnxruntime is the CPU build: --device cuda must fail at load, with the fix."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    with pytest.raises(EngineError, match=r"has no CUDAExecutionProvider.*Fix: pip uninstall -y onnxruntime"):
        load_engine(avgpool_onnx, EngineOptions(device="cuda"))


def test_verify_passes_when_the_requested_provider_runs(tmp_path, avgpool_onnx):
    ort = FakeOrt(tmp_path, active=["CUDAExecutionProvider", "CPUExecutionProvider"])
    e = engine(avgpool_onnx, ort, EngineOptions(device="cuda"))
    assert e.providers[0] == "CUDAExecutionProvider"


def test_diagnose_names_the_missing_dependency(tmp_path):
    ort = FakeOrt(tmp_path, provider_libs=["onnxruntime_providers_cuda", "onnxruntime_providers_tensorrt"])

    def loader(message):
        def load(path):
            raise OSError(message)
        return load

    why, fix = prov.diagnose(ort, prov.CUDA, load=loader("libcublasLt.so.13: cannot open shared object file"))
    assert "libcublasLt.so.13" in why and "built for CUDA 13" in fix and "onnxruntime-gpu>=1.20,<1.27" in fix
    why, fix = prov.diagnose(ort, prov.TRT, load=loader("libnvinfer.so.10: cannot open shared object file"))
    assert "libnvinfer.so.10" in why and "tensorrt-cu12-libs" in fix
    why, fix = prov.diagnose(ort, prov.CUDA, load=loader("libcudnn.so.9: cannot open shared object file"))
    assert "cuDNN 9" in fix
    why, fix = prov.diagnose(ort, prov.CUDA, load=lambda path: None)  # loads: the driver or the GPU is the problem
    assert "loads but the provider did not start" in why and "nvidia-smi" in fix


# ------------------------------------------------------------------------- options and policies


def test_cuda_provider_options_stream_arena_and_memory_limit(tmp_path, avgpool_onnx):
    ort = FakeOrt(tmp_path, active=["CUDAExecutionProvider", "CPUExecutionProvider"])
    cp = FakeCupy(gpus=[("Tesla T4", 16 * GiB, (7, 5))])
    e = engine(avgpool_onnx, ort, EngineOptions(device="cuda"), cupy=cp)
    (session,) = ort.sessions
    (name, cuda), cpu = session["providers"]
    assert name == "CUDAExecutionProvider" and cpu == "CPUExecutionProvider"
    assert cuda["arena_extend_strategy"] == "kSameAsRequested"
    assert cuda["gpu_mem_limit"] == int(16 * GiB * prov.DEFAULT_MEM_FRACTION)
    assert cuda["user_compute_stream"] == str(e.stream.ptr) and cuda["has_user_compute_stream"] == "1"
    assert ("stream", e.stream.ptr, True) in cp.log  # a non-blocking stream of its own
    # one arena for the process, shared by the sessions, with the same limit and growth
    (arena,) = ort.arenas
    assert arena[0] == "CUDAExecutionProvider" and arena[3] == ("arena_cfg", {
        "arena_extend_strategy": 1, "max_mem": int(16 * GiB * prov.DEFAULT_MEM_FRACTION)})
    assert session["options"].config["session.use_env_allocators"] == "1"
    assert e._run_options.config == {"disable_synchronize_execution_providers": "1"}
    # a second member: same stream, same arena, registered once
    e2 = engine(avgpool_onnx, ort, EngineOptions(device="cuda"), cupy=cp)
    assert e2.stream is e.stream and len(ort.arenas) == 1


def test_explicit_memory_limit_and_no_cupy(tmp_path, avgpool_onnx):
    ort = FakeOrt(tmp_path, active=["CUDAExecutionProvider", "CPUExecutionProvider"])
    e = engine(avgpool_onnx, ort, EngineOptions(device="cuda", gpu_mem_limit_gb=6.5), cupy=None)
    (name, cuda), _ = ort.sessions[0]["providers"]
    assert cuda["gpu_mem_limit"] == int(6.5 * GiB) and "user_compute_stream" not in cuda
    assert e.stream is None and e._run_options is None
    with pytest.raises(EngineError, match="gpu_mem_limit_gb must be > 0"):
        prov.mem_limit_bytes(EngineOptions(device="cuda", gpu_mem_limit_gb=0), None)


def test_tensorrt_provider_profile_caches_and_libs_first(tmp_path, avgpool_onnx):
    events = []
    ort = FakeOrt(tmp_path, active=["TensorrtExecutionProvider", "CUDAExecutionProvider"], events=events)
    cp = FakeCupy(gpus=[("Tesla T4", 16 * GiB, (7, 5))])
    hint = InputHint(batch=4, sample=(1, 32, 32, 32))
    opts = EngineOptions(device="cuda", ort_provider="tensorrt", fp16=True, cache_dir=tmp_path / "trt",
                         input_hint=hint)
    engine(avgpool_onnx, ort, opts, cupy=cp, events=events, tensorrt_libs=object())
    # tensorrt_libs is imported before the session is created (ORT then finds libnvinfer.so.10)
    assert events.index("import tensorrt_libs") < events.index("InferenceSession")
    (trt_name, trt), (cuda_name, _), cpu = ort.sessions[0]["providers"]
    assert (trt_name, cuda_name, cpu) == ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    name = onnx.load(str(avgpool_onnx)).graph.input[0].name
    assert trt["trt_profile_min_shapes"] == f"{name}:1x1x32x32x32"
    assert trt["trt_profile_opt_shapes"] == trt["trt_profile_max_shapes"] == f"{name}:4x1x32x32x32"
    assert trt["trt_fp16_enable"] is True and trt["trt_engine_cache_enable"] and trt["trt_timing_cache_enable"]
    cache = tmp_path / "trt" / "Tesla-T4-cc7.5-trt10.16.1.11"
    assert trt["trt_engine_cache_path"] == trt["trt_timing_cache_path"] == str(cache) and cache.is_dir()


def test_tensorrt_cache_folder_is_keyed_by_gpu_and_version(tmp_path):
    a = prov.tensorrt_cache_dir(tmp_path, "Tesla T4", "7.5", "10.16.1.11")
    b = prov.tensorrt_cache_dir(tmp_path, "NVIDIA H200", "9.0", "10.16.1.11")
    c = prov.tensorrt_cache_dir(tmp_path, "Tesla T4", "7.5", "10.7.0")
    assert len({a, b, c}) == 3 and a.parent == tmp_path and a.name == "Tesla-T4-cc7.5-trt10.16.1.11"


def test_cpu_session_keeps_its_options(avgpool_onnx):
    e = load_engine(avgpool_onnx, EngineOptions(device="cpu", threads=1))
    assert e.providers == ["CPUExecutionProvider"] and e.stream is None


def test_input_hint_must_match_a_fixed_model_input(tmp_path):
    model = avgpool_model(16)
    for d, v in zip(model.graph.input[0].type.tensor_type.shape.dim[2:], (32, 32, 32)):
        d.dim_value = v
    path = tmp_path / "fixed.onnx"
    onnx.save(model, path)
    ok = InputHint(batch=2, sample=(1, 32, 32, 32))
    load_engine(path, EngineOptions(input_hint=ok))
    with pytest.raises(EngineError, match=r"member feeds windows \[None, 1, 64, 32, 32\].*Fix: export"):
        load_engine(path, EngineOptions(input_hint=InputHint(batch=2, sample=(1, 64, 32, 32))))
    assert ok.shapes() == ((1, 1, 32, 32, 32), (2, 1, 32, 32, 32), (2, 1, 32, 32, 32))


def test_unknown_device_and_provider():
    with pytest.raises(EngineError, match="unknown device"):
        prov.wanted_provider(EngineOptions(device="tpu"))
    with pytest.raises(EngineError, match="unknown ONNX Runtime provider"):
        prov.wanted_provider(EngineOptions(device="cuda", ort_provider="rocm"))


# ------------------------------------------------------------------------------------ GPUs


def test_probe_lists_gpus_and_versions():
    cp = FakeCupy(gpus=[("Tesla T4", 15 * GiB, (7, 5)), ("Tesla T4", 15 * GiB, (7, 5))])
    status = gpus.probe(importer({"cupy": cp}))
    assert status.ok and len(status.gpus) == 2 and status.runtime_version == "12.5" and status.driver_version == "12.8"
    assert status.gpus[1].describe() == "GPU 1: Tesla T4, 15.0 GiB, compute capability 7.5"


def test_probe_without_cupy_without_gpu_and_without_driver():
    status = gpus.probe(importer({}))
    assert not status.ok and "not installed" in status.problem and "cupy-cuda12x" in status.fix
    status = gpus.probe(importer({"cupy": FakeCupy(gpus=[])}))
    assert not status.ok and "no GPU is visible" in status.problem
    status = gpus.probe(importer({"cupy": FakeCupy(count_error=RuntimeError("cudaErrorNoDevice: no CUDA-capable"))}))
    assert not status.ok and "cudaErrorNoDevice" in status.problem and "nvidia-smi" in status.fix


def test_pin_value_follows_cuda_visible_devices():
    assert gpus.pin_value(1, {}) == "1"
    assert gpus.pin_value(1, {"CUDA_VISIBLE_DEVICES": "2,3"}) == "3"
    assert gpus.pin_value(0, {"CUDA_VISIBLE_DEVICES": "GPU-abc, GPU-def"}) == "GPU-abc"
    with pytest.raises(IndexError):
        gpus.pin_value(2, {"CUDA_VISIBLE_DEVICES": "2,3"})
    assert gpus.visible_indices({"CUDA_VISIBLE_DEVICES": ""}) == []
