"""ONNX -> TensorRT 10 engine (:func:`build_engine`) and the running TensorRT and GPU (:func:`runtime_env`).

TensorRT engines are not portable: one runs only on the TensorRT version and the GPU (compute
capability) it was built with. Every engine ``M.engine`` therefore has a sidecar ``M.engine.json``
recording what it was built from and for (:mod:`inference.engines.tensorrt_sidecar`); a loader compares that
with the running machine and rebuilds from the ONNX when anything differs (``ensure_engine`` in
:mod:`export.tensorrt_cache`). Only :func:`build_engine` and :func:`runtime_env` need TensorRT / a
GPU (the CUDA driver through ctypes, no toolkit); the sidecar and the decision are pure Python.

TensorRT 11 removed ``BuilderFlag.FP16`` (strongly typed networks only): ``--fp16`` then fails with
a clear error; stay on TensorRT 10.x (``motorfinder[gpu]`` pins ``tensorrt>=10,<11``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from pathlib import Path

from export.errors import ExportError
from inference.common.errors import InputError
from inference.common.file_hash import sha256_file
from inference.engines.tensorrt_sidecar import (
    DEFAULT_WORKSPACE_GB,
    BatchProfile,
    EngineSidecar,
    RuntimeEnv,
    TensorInfo,
    write_sidecar,
)

logger = logging.getLogger(__name__)


def onnx_io(onnx_path: str | Path) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...], dict[str, str]]:
    """Inputs, outputs (symbolic dims -> -1) and metadata of an ONNX file, without its weights."""
    import onnx

    proto = onnx.load(str(onnx_path), load_external_data=False)
    init = {i.name for i in proto.graph.initializer}

    def info(vi):
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim)
        elem = vi.type.tensor_type.elem_type
        dtype = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16"}.get(elem, str(elem))
        return TensorInfo(vi.name, dims, dtype)

    inputs = tuple(info(v) for v in proto.graph.input if v.name not in init)
    outputs = tuple(info(v) for v in proto.graph.output)
    return inputs, outputs, {p.key: p.value for p in proto.metadata_props}


def check_profile_input(inputs: tuple[TensorInfo, ...], onnx_path: str | Path) -> TensorInfo:
    """The one input must have a dynamic batch axis and fixed other axes (the patch)."""
    if len(inputs) != 1:
        raise InputError(onnx_path, f"expected one input, found {len(inputs)}", "export with python -m export onnx")
    inp = inputs[0]
    if len(inp.shape) < 3 or inp.shape[0] != -1 or any(d <= 0 for d in inp.shape[1:]):
        raise InputError(onnx_path, f"input {inp.name} has shape {list(inp.shape)}; the engine needs a dynamic "
                         "batch axis and fixed channel/spatial axes", "export with python -m export onnx --patch ...")
    return inp


# --------------------------------------------------------------------------- needs a GPU / TensorRT


def _driver(device_id: int):
    """(libcuda, check) -- the CUDA driver API, no toolkit needed; ``check`` raises on an error code."""
    try:
        lib = ctypes.CDLL("libcuda.so.1" if os.name != "nt" else "nvcuda.dll")
    except OSError as exc:
        raise ExportError(f"no CUDA driver found ({exc}): TensorRT engines need an NVIDIA GPU and its driver") from None

    def check(rc, what):
        if rc != 0:
            raise ExportError(f"CUDA driver call {what} failed with error {rc} (device {device_id})")

    check(lib.cuInit(0), "cuInit")
    return lib, check


def gpu_info(device_id: int = 0) -> tuple[str, str]:
    """(name, "major.minor") of CUDA device ``device_id`` via the driver API (libcuda), no toolkit needed."""
    lib, check = _driver(device_id)
    dev = ctypes.c_int()
    check(lib.cuDeviceGet(ctypes.byref(dev), int(device_id)), "cuDeviceGet")
    name = ctypes.create_string_buffer(256)
    check(lib.cuDeviceGetName(name, 256, dev), "cuDeviceGetName")
    major, minor = ctypes.c_int(), ctypes.c_int()
    check(lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev), "cuDeviceGetAttribute(CC major)")
    check(lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev), "cuDeviceGetAttribute(CC minor)")
    return name.value.decode(errors="replace"), f"{major.value}.{minor.value}"


def use_device(device_id: int) -> None:
    """Make GPU ``device_id`` current for this thread: TensorRT's builder works on the current CUDA
    device. Its primary context is made current through the driver API, which the CUDA runtime (and
    so TensorRT) adopts."""
    lib, check = _driver(device_id)
    dev = ctypes.c_int()
    check(lib.cuDeviceGet(ctypes.byref(dev), int(device_id)), "cuDeviceGet")
    ctx = ctypes.c_void_p()
    check(lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), "cuDevicePrimaryCtxRetain")
    check(lib.cuCtxSetCurrent(ctx), "cuCtxSetCurrent")


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ExportError(f"TensorRT is not importable ({exc}). Fix: pip install 'tensorrt>=10,<11' on a machine "
                          "with an NVIDIA GPU (or use ONNX Runtime: predict --device cuda)") from None
    return trt


def runtime_env(device_id: int = 0) -> RuntimeEnv:
    """The running TensorRT version and GPU."""
    trt = import_tensorrt()
    name, cc = gpu_info(device_id)
    return RuntimeEnv(tensorrt_version=str(trt.__version__), gpu_name=name, compute_capability=cc)


def _parser_error(err) -> str:
    def call(attr):
        f = getattr(err, attr, None)
        try:
            return f() if callable(f) else None
        except (RuntimeError, TypeError):
            return None

    node, name, op = call("node"), call("node_name"), call("node_operator")
    where = f"node {node}" + (f" '{name}'" if name else "") + (f" ({op})" if op else "")
    return f"{where}: {call('desc')} [{call('code')}]"


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, fp16: bool = False,
                 batch: BatchProfile = BatchProfile(1, 2, 4), workspace_gb: float = DEFAULT_WORKSPACE_GB,
                 timing_cache: str | Path | None = None, device_id: int = 0) -> EngineSidecar:
    """Build ``engine_path`` (and its sidecar) from ``onnx_path`` with the TensorRT 10 Python API."""
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise InputError(onnx_path, "ONNX file not found", "pass --onnx with an exported model")
    if not workspace_gb > 0:
        raise InputError(None, f"--workspace-gb must be > 0, got {workspace_gb}", "pass e.g. --workspace-gb 4")
    inputs, outputs, meta = onnx_io(onnx_path)
    inp = check_profile_input(inputs, onnx_path)
    trt = import_tensorrt()
    env = runtime_env(device_id)
    if not env.tensorrt_version.startswith("10."):
        logger.warning("TensorRT %s: this builder targets TensorRT 10.x", env.tensorrt_version)
    if fp16 and not hasattr(trt.BuilderFlag, "FP16"):
        raise ExportError(f"TensorRT {env.tensorrt_version} has no BuilderFlag.FP16 (removed in TensorRT 11). "
                          "Fix: install tensorrt>=10,<11, or build fp32")
    onnx_sha = sha256_file(onnx_path)

    t0 = time.perf_counter()
    use_device(device_id)
    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    flags = 0
    explicit = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    if explicit is not None:  # the default (and deprecated) in TensorRT 10; required before
        flags |= 1 << int(explicit)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError(f"{onnx_path}: TensorRT's ONNX parser failed ({len(errors)} error(s)): "
                          + "; ".join(errors[:5]))
    if network.num_inputs != 1:
        raise ExportError(f"{onnx_path}: TensorRT sees {network.num_inputs} inputs, expected 1")
    net_in = network.get_input(0)
    fixed = tuple(int(d) for d in net_in.shape)[1:]
    if fixed != inp.shape[1:]:
        raise ExportError(f"{onnx_path}: TensorRT input shape {list(net_in.shape)} != ONNX {list(inp.shape)}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    profile.set_shape(net_in.name, *batch.shapes(fixed))
    config.add_optimization_profile(profile)
    cache_file = Path(timing_cache) if timing_cache else None
    cache_bytes = cache_file.read_bytes() if cache_file and cache_file.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        if not cache_bytes:
            raise ExportError(f"{onnx_path}: TensorRT refused a new timing cache. Fix: build without --timing-cache")
        logger.warning("%s: timing cache of another TensorRT version or GPU (or damaged); starting a new one",
                       cache_file)
        cache = config.create_timing_cache(b"")
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
            raise ExportError(f"{onnx_path}: TensorRT refused a new timing cache. Fix: build without --timing-cache")

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"{onnx_path}: TensorRT could not build the engine (see the TensorRT log above). Fix: "
                          "raise --workspace-gb or lower the batch profile's max")
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = engine_path.with_name(f".{engine_path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(memoryview(serialized))
    os.replace(tmp, engine_path)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_bytes(memoryview(config.get_timing_cache().serialize()))

    out_infos = []
    for i in range(network.num_outputs):
        t = network.get_output(i)
        out_infos.append(TensorInfo(t.name, tuple(int(d) for d in t.shape)))
    sidecar = EngineSidecar(
        tensorrt_version=env.tensorrt_version, gpu_name=env.gpu_name, compute_capability=env.compute_capability,
        onnx_file=onnx_path.name, onnx_sha256=onnx_sha, engine_sha256=sha256_file(engine_path), fp16=fp16,
        batch_profile=batch, workspace_gb=float(workspace_gb), inputs=(TensorInfo(inp.name, inp.shape, inp.dtype),),
        outputs=tuple(out_infos) or outputs, built_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        metadata=meta)
    write_sidecar(engine_path, sidecar)
    logger.info("built %s in %.0fs (TensorRT %s, %s, fp16=%s, batch %s)", engine_path, time.perf_counter() - t0,
                env.tensorrt_version, env.gpu_name, fp16, batch)
    return sidecar
