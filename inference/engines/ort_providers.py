"""ONNX Runtime's execution providers: their options, the memory policy, and the check that the
provider asked for is the one that runs.

ONNX Runtime quietly builds a CPU session when a GPU provider's library does not load (cuDNN or
cuBLAS missing or of another CUDA major version, ``libnvinfer.so.10`` not found): the session
works, many times slower, and only ``session.get_providers()`` tells (``get_available_providers()``
lists what the wheel was built with, loadable or not). :func:`verify` compares the active provider
with the request and raises :class:`EngineError` naming the library that failed -- found by loading
the provider's shared library with ``ctypes``, whose loader names the first dependency it cannot
find -- and the fix.

Memory (CUDA provider): the arena grows by what is requested (``kSameAsRequested``, not to the
next power of two) up to ``gpu_mem_limit``. One arena per device is shared by every session of the
process (registered once with ``create_and_register_allocator_v2``; sessions opt in with
``session.use_env_allocators``), so a worker's five members hold the largest member's peak, not
the sum of five peaks, and the limit is per worker. Where that registration fails (an older
onnxruntime), each session gets its own arena with the same options, and the limit is per session.

TensorRT provider: ``tensorrt_libs`` is imported first (it loads ``libnvinfer.so.10`` from the
``tensorrt-cu12-libs`` wheel, where ONNX Runtime then finds it); the optimization profile comes
from the member's batch and window (:class:`~inference.engines.base.InputHint`), so the partial
last batch reuses the engine instead of building another; engine and timing caches live in
``<cache_dir>/<gpu>-cc<major.minor>-trt<version>/`` (:func:`tensorrt_cache_dir`).
"""

from __future__ import annotations

import ctypes
import importlib
import importlib.metadata
import logging
import re
from pathlib import Path
from typing import Callable

from inference.common.errors import EngineError
from inference.engines.base import EngineOptions, InputHint

logger = logging.getLogger(__name__)

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
PROVIDERS = {"cuda": CUDA, "tensorrt": TRT}
DEFAULT_MEM_FRACTION = 0.75  # of the GPU's memory, for ONNX Runtime's arena; the rest is CuPy's (volumes)
_LIBRARY = {CUDA: "onnxruntime_providers_cuda", TRT: "onnxruntime_providers_tensorrt"}
_TRT_DISTRIBUTIONS = ("tensorrt-cu12-libs", "tensorrt-cu13-libs", "tensorrt-libs", "tensorrt-cu12", "tensorrt")
_ORT_GPU_PIN = "'onnxruntime-gpu>=1.20,<1.27'"  # 1.26.0 is the last CUDA 12 build
# devices whose shared CUDA arena is registered in this process (ONNX Runtime's environment is per process)
_SHARED_ARENAS: dict[int, int | None] = {}


def wanted_provider(options: EngineOptions) -> str:
    """The provider ``options`` ask for; EngineError for an unknown device or provider."""
    if options.device == "cpu":
        return CPU
    if options.device != "cuda":
        raise EngineError(f"unknown device {options.device!r}: use 'cpu' or 'cuda'")
    if options.ort_provider not in PROVIDERS:
        raise EngineError(f"unknown ONNX Runtime provider {options.ort_provider!r}: use 'cuda' or 'tensorrt'")
    return PROVIDERS[options.ort_provider]


def mem_limit_bytes(options: EngineOptions, total_bytes: int | None) -> int | None:
    """``gpu_mem_limit_gb`` in bytes, else :data:`DEFAULT_MEM_FRACTION` of ``total_bytes`` (None: no limit)."""
    if options.gpu_mem_limit_gb is not None:
        if not options.gpu_mem_limit_gb > 0:
            raise EngineError(f"gpu_mem_limit_gb must be > 0, got {options.gpu_mem_limit_gb}")
        return int(options.gpu_mem_limit_gb * 2**30)
    return int(total_bytes * DEFAULT_MEM_FRACTION) if total_bytes else None


def _stream_options(stream_ptr: int | None) -> dict:
    if not stream_ptr:
        return {}
    return {"has_user_compute_stream": "1", "user_compute_stream": str(int(stream_ptr))}


def cuda_options(options: EngineOptions, *, stream_ptr: int | None = None, mem_limit: int | None = None) -> dict:
    opts = {"device_id": options.device_id, "arena_extend_strategy": "kSameAsRequested"}
    if mem_limit:
        opts["gpu_mem_limit"] = int(mem_limit)
    opts.update(_stream_options(stream_ptr))
    return opts


def profile_options(input_name: str, hint: InputHint) -> dict:
    """``trt_profile_{min,opt,max}_shapes`` as ONNX Runtime writes them: ``name:1x1x64x128x128``."""
    lo, opt, hi = hint.shapes()
    text = lambda shape: f"{input_name}:" + "x".join(str(int(d)) for d in shape)  # noqa: E731
    return {"trt_profile_min_shapes": text(lo), "trt_profile_opt_shapes": text(opt),
            "trt_profile_max_shapes": text(hi)}


def tensorrt_options(options: EngineOptions, *, input_name: str | None = None, stream_ptr: int | None = None,
                     cache_dir: Path | None = None) -> dict:
    opts = {"device_id": options.device_id, "trt_fp16_enable": bool(options.fp16)}
    if cache_dir is not None:
        opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(cache_dir),
                    trt_timing_cache_enable=True, trt_timing_cache_path=str(cache_dir))
    if options.input_hint is not None and input_name:
        opts.update(profile_options(input_name, options.input_hint))
    opts.update(_stream_options(stream_ptr))
    return opts


def provider_list(options: EngineOptions, *, input_name: str | None = None, stream_ptr: int | None = None,
                  mem_limit: int | None = None, cache_dir: Path | None = None) -> list:
    """The providers (with options) for ``options``, most preferred first."""
    wanted = wanted_provider(options)
    if wanted == CPU:
        return [CPU]
    cuda = (CUDA, cuda_options(options, stream_ptr=stream_ptr, mem_limit=mem_limit))
    if wanted == CUDA:
        return [cuda, CPU]
    trt = (TRT, tensorrt_options(options, input_name=input_name, stream_ptr=stream_ptr, cache_dir=cache_dir))
    return [trt, cuda, CPU]


def share_cuda_arena(ort, device_id: int, mem_limit: int | None) -> bool:
    """Register this process's one CUDA arena on ``device_id`` (once); True when sessions can opt in."""
    if device_id in _SHARED_ARENAS:
        if _SHARED_ARENAS[device_id] != mem_limit:
            logger.debug("shared CUDA arena of device %d keeps its first limit %s", device_id, _SHARED_ARENAS[device_id])
        return True
    try:
        info = ort.OrtMemoryInfo("Cuda", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, device_id, ort.OrtMemType.DEFAULT)
        cfg = {"arena_extend_strategy": 1}  # kSameAsRequested
        if mem_limit:
            cfg["max_mem"] = int(mem_limit)
        ort.create_and_register_allocator_v2(CUDA, info, {"device_id": str(device_id)}, ort.OrtArenaCfg(cfg))
    except (AttributeError, TypeError, RuntimeError) as exc:  # older onnxruntime, or the provider does not load
        logger.info("no shared CUDA arena (%s: %s); each session gets its own", type(exc).__name__, exc)
        return False
    _SHARED_ARENAS[device_id] = mem_limit
    return True


# ----------------------------------------------------------------------------------- TensorRT


def preload_tensorrt_libs(import_module: Callable = importlib.import_module) -> str | None:
    """Import ``tensorrt_libs`` so ``libnvinfer.so.10`` is in the process before ONNX Runtime looks
    for it. None when done, else why not (TensorRT may still come from the system's library path)."""
    try:
        import_module("tensorrt_libs")
    except ImportError as exc:
        return f"tensorrt_libs is not importable ({exc})"
    return None


def tensorrt_version(import_module: Callable = importlib.import_module,
                     dist_version: Callable = importlib.metadata.version) -> str | None:
    """The TensorRT version of the libraries this process uses: the wheel's, else the module's."""
    for dist in _TRT_DISTRIBUTIONS:
        try:
            return str(dist_version(dist))
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        return str(import_module("tensorrt").__version__)
    except (ImportError, AttributeError):
        return None


def tensorrt_cache_dir(root: Path, gpu_name: str | None, compute_capability: str | None,
                       trt_version: str | None) -> Path:
    """``root/<gpu>-cc<cc>-trt<version>``: engines and timing caches are valid for one GPU and TensorRT."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", gpu_name or "unknown-gpu").strip("-")
    return Path(root) / f"{slug}-cc{compute_capability or 'unknown'}-trt{trt_version or 'unknown'}"


def onnx_input_name(path: Path) -> str:
    """The first graph input that is not an initializer, read without the external weights."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    init = {i.name for i in proto.graph.initializer}
    names = [v.name for v in proto.graph.input if v.name not in init]
    if not names:
        raise EngineError(f"{path}: the model has no input")
    return names[0]


# ------------------------------------------------------------------------------- verification


def provider_library(ort, provider: str) -> Path | None:
    """The provider's shared library inside the onnxruntime package, or None if the wheel has none."""
    capi = Path(ort.__file__).parent / "capi"
    stem = _LIBRARY[provider]
    for name in (f"lib{stem}.so", f"{stem}.dll", f"lib{stem}.dylib"):
        if (capi / name).is_file():
            return capi / name
    return None


def _fix_for(missing: str, provider: str) -> str:
    """What to install for the library the loader could not find."""
    if "nvinfer" in missing:
        return ("install TensorRT 10 for CUDA 12 (pip install tensorrt-cu12-libs==10.*; motorfinder imports "
                "tensorrt_libs before the session), or use --ort-provider cuda")
    if "cudnn" in missing:
        return "install cuDNN 9 (pip install nvidia-cudnn-cu12), or run with --device cpu"
    major = re.search(r"\.so\.(\d+)", missing)
    if major and any(k in missing for k in ("cublas", "cudart", "cufft", "curand", "nvrtc")):
        cuda = major.group(1)
        return (f"this onnxruntime-gpu is built for CUDA {cuda} and its CUDA {cuda} libraries are missing: install "
                f"the onnxruntime-gpu of your CUDA (CUDA 12: pip install {_ORT_GPU_PIN}) or the CUDA {cuda} "
                f"runtime (pip install nvidia-cublas-cu{cuda} nvidia-cuda-runtime-cu{cuda}), or run with --device cpu")
    return f"install the library named above, or run with --device cpu ({provider})"


def diagnose(ort, provider: str, load: Callable = ctypes.CDLL) -> tuple[str, str]:
    """Why ``provider`` is not running -- the library that failed -- and the fix."""
    version = getattr(ort, "__version__", "?")
    if provider not in _LIBRARY:
        return f"onnxruntime {version} did not start {provider}", "run with --device cpu"
    lib = provider_library(ort, provider)
    if lib is None:
        return (f"onnxruntime {version} has no {provider} library (this is the CPU-only 'onnxruntime' wheel)",
                f"pip uninstall -y onnxruntime && pip install {_ORT_GPU_PIN}, or run with --device cpu")
    try:
        load(str(lib))
    except OSError as exc:
        missing = (str(exc).splitlines() or [type(exc).__name__])[0]
        return f"{lib.name} does not load: {missing}", _fix_for(missing, provider)
    return (f"{lib.name} loads but the provider did not start (see ONNX Runtime's error above: usually a driver "
            "older than this onnxruntime-gpu's CUDA, or no visible GPU)",
            f"check nvidia-smi; on a CUDA 12 driver pip install {_ORT_GPU_PIN}; or run with --device cpu")


def verify(session, wanted: str, ort, path: Path, diagnose_fn: Callable = diagnose) -> list[str]:
    """``session.get_providers()`` if ``wanted`` is the active (first) provider, else EngineError."""
    active = list(session.get_providers())
    if active and active[0] == wanted:
        return active
    why, fix = diagnose_fn(ort, wanted)
    raise EngineError(f"{path}: ONNX Runtime was asked for {wanted} but runs on {', '.join(active) or 'nothing'}: "
                      f"{why}. Fix: {fix}")
