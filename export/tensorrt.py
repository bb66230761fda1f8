"""ONNX -> TensorRT 10 engine, its JSON sidecar, and :func:`ensure_engine` (rebuild on any mismatch).

TensorRT engines are not portable: one runs only on the TensorRT version and the GPU (compute
capability) it was built with. Every engine ``M.engine`` therefore has a sidecar ``M.engine.json``
recording what it was built from and for; a loader compares that with the running machine and
rebuilds from the ONNX when anything differs. Only :func:`build_engine` and :func:`runtime_env`
need TensorRT / a GPU; everything else here is pure Python.

Sidecar format (``format_version`` 1; JSON object, keys in this order, all required)::

    {
      "format": "motorfinder-tensorrt-sidecar",
      "format_version": 1,
      "tensorrt_version": "10.7.0",             # trt.__version__ at build time
      "gpu_name": "NVIDIA H100 80GB HBM3",      # cuDeviceGetName of the build GPU
      "compute_capability": "9.0",              # "major.minor"
      "onnx_file": "x3d_m.onnx",                # file name only (informative)
      "onnx_sha256": "<64 hex>",                # sha256 of the ONNX bytes the engine was built from
      "engine_sha256": "<64 hex>",              # sha256 of the engine file (detects a swapped file)
      "fp16": false,                            # BuilderFlag.FP16 was set
      "batch_profile": {"min": 1, "opt": 2, "max": 4},   # the one optimization profile (batch axis)
      "workspace_gb": 4.0,
      "inputs":  [{"name": "input",   "shape": [-1, 1, 224, 448, 448], "dtype": "float32"}],
      "outputs": [{"name": "heatmap", "shape": [-1, 1, 14, 28, 28],    "dtype": "float32"}],
      "built_at": "2025-01-01T00:00:00Z",       # UTC, ISO 8601
      "metadata": {"arch": "x3d_m", ...}        # the ONNX file's metadata_props, copied verbatim
    }

Shapes use -1 for the dynamic batch axis; the spatial axes are fixed to the ONNX patch. The engine
takes any batch in ``[min, max]`` and is tuned for ``opt``. An inference-side loader needs
:func:`read_sidecar` and :func:`mismatch_reasons` (or :func:`ensure_engine`), nothing else.

TensorRT 11 removed ``BuilderFlag.FP16`` (strongly typed networks only): ``--fp16`` then fails with
a clear error; stay on TensorRT 10.x (``motorfinder[gpu]`` pins ``tensorrt>=10,<11``).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from export.errors import ExportError
from inference.errors import InputError

logger = logging.getLogger(__name__)

SIDECAR_FORMAT = "motorfinder-tensorrt-sidecar"
SIDECAR_VERSION = 1
DEFAULT_BATCH = "1:2:4"
DEFAULT_WORKSPACE_GB = 4.0
TIMING_CACHE_NAME = "tensorrt.timing-cache"  # ensure_engine's default timing cache, in the cache dir
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class BatchProfile:
    """The optimization profile of the batch axis: ``min <= opt <= max``, all >= 1."""

    min: int
    opt: int
    max: int

    @classmethod
    def parse(cls, text: str | int) -> BatchProfile:
        """``"MIN:OPT:MAX"`` (``"1:2:4"``) or one number ``"N"`` (fixed batch N)."""
        parts = str(text).strip().split(":")
        try:
            nums = [int(p) for p in parts]
        except ValueError:
            nums = []
        if len(nums) == 1:
            nums = nums * 3
        if len(nums) != 3 or not 1 <= nums[0] <= nums[1] <= nums[2]:
            raise InputError(None, f"batch profile {text!r} is not MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX",
                             "pass e.g. --batch 1:2:4")
        return cls(*nums)

    def __str__(self) -> str:
        return f"{self.min}:{self.opt}:{self.max}"

    def shapes(self, fixed: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) input shapes for the non-batch dims ``fixed``."""
        return (self.min, *fixed), (self.opt, *fixed), (self.max, *fixed)


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # -1: dynamic
    dtype: str = "float32"


@dataclass(frozen=True)
class RuntimeEnv:
    """What an engine is bound to: the TensorRT version and the GPU."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str


@dataclass(frozen=True)
class EngineSidecar:
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    onnx_file: str
    onnx_sha256: str
    engine_sha256: str
    fp16: bool
    batch_profile: BatchProfile
    workspace_gb: float
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    built_at: str
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> RuntimeEnv:
        return RuntimeEnv(self.tensorrt_version, self.gpu_name, self.compute_capability)

    def to_dict(self) -> dict:
        return {
            "format": SIDECAR_FORMAT,
            "format_version": SIDECAR_VERSION,
            "tensorrt_version": self.tensorrt_version,
            "gpu_name": self.gpu_name,
            "compute_capability": self.compute_capability,
            "onnx_file": self.onnx_file,
            "onnx_sha256": self.onnx_sha256,
            "engine_sha256": self.engine_sha256,
            "fp16": self.fp16,
            "batch_profile": asdict(self.batch_profile),
            "workspace_gb": self.workspace_gb,
            "inputs": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in self.inputs],
            "outputs": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in self.outputs],
            "built_at": self.built_at,
            "metadata": dict(self.metadata),
        }


def sidecar_path(engine_path: str | Path) -> Path:
    """``M.engine`` -> ``M.engine.json``."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def write_sidecar(engine_path: str | Path, sidecar: EngineSidecar) -> Path:
    path = sidecar_path(engine_path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(sidecar.to_dict(), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def _tensors(value, path: Path, key: str) -> tuple[TensorInfo, ...]:
    if not isinstance(value, list) or not value:
        raise InputError(path, f"sidecar key '{key}' must be a non-empty list", "rebuild the engine")
    out = []
    for i, t in enumerate(value):
        if (not isinstance(t, dict) or not isinstance(t.get("name"), str) or not isinstance(t.get("shape"), list)
                or not all(isinstance(d, int) and not isinstance(d, bool) and (d == -1 or d > 0) for d in t["shape"])):
            raise InputError(path, f"sidecar key '{key}[{i}]' must be {{name, shape: [ints >0 or -1], dtype}}",
                             "rebuild the engine")
        out.append(TensorInfo(t["name"], tuple(t["shape"]), str(t.get("dtype", "float32"))))
    return tuple(out)


def parse_sidecar(data, path: str | Path) -> EngineSidecar:
    """Validate a loaded sidecar dict; every problem is an InputError naming ``path`` and the key."""
    path = Path(path)
    if not isinstance(data, dict):
        raise InputError(path, "sidecar is not a JSON object", "rebuild the engine (python -m export tensorrt)")
    if data.get("format") != SIDECAR_FORMAT:
        raise InputError(path, f"not a {SIDECAR_FORMAT} file (format {data.get('format')!r})", "rebuild the engine")
    if data.get("format_version") != SIDECAR_VERSION:
        raise InputError(path, f"sidecar format_version {data.get('format_version')!r}, this code reads "
                         f"{SIDECAR_VERSION}", "rebuild the engine with this version of export")
    str_keys = ("tensorrt_version", "gpu_name", "compute_capability", "onnx_file", "onnx_sha256", "engine_sha256",
                "built_at")
    for k in str_keys:
        if not isinstance(data.get(k), str) or not data[k]:
            raise InputError(path, f"sidecar key '{k}' missing or not a non-empty string", "rebuild the engine")
    for k in ("onnx_sha256", "engine_sha256"):
        if not _HEX64.match(data[k]):
            raise InputError(path, f"sidecar key '{k}' is not a sha256 hex digest", "rebuild the engine")
    if not isinstance(data.get("fp16"), bool):
        raise InputError(path, "sidecar key 'fp16' must be true or false", "rebuild the engine")
    bp = data.get("batch_profile")
    if not isinstance(bp, dict) or set(bp) != {"min", "opt", "max"}:
        raise InputError(path, "sidecar key 'batch_profile' must be {min, opt, max}", "rebuild the engine")
    try:
        batch = BatchProfile.parse(f"{bp['min']}:{bp['opt']}:{bp['max']}")
    except InputError as exc:
        raise InputError(path, f"sidecar key 'batch_profile': {exc.problem}", "rebuild the engine") from None
    ws = data.get("workspace_gb")
    if isinstance(ws, bool) or not isinstance(ws, (int, float)) or ws <= 0:
        raise InputError(path, "sidecar key 'workspace_gb' must be a positive number", "rebuild the engine")
    meta = data.get("metadata", {})
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise InputError(path, "sidecar key 'metadata' must map strings to strings", "rebuild the engine")
    return EngineSidecar(
        tensorrt_version=data["tensorrt_version"], gpu_name=data["gpu_name"],
        compute_capability=data["compute_capability"], onnx_file=data["onnx_file"],
        onnx_sha256=data["onnx_sha256"], engine_sha256=data["engine_sha256"], fp16=data["fp16"],
        batch_profile=batch, workspace_gb=float(ws), inputs=_tensors(data.get("inputs"), path, "inputs"),
        outputs=_tensors(data.get("outputs"), path, "outputs"), built_at=data["built_at"], metadata=dict(meta))


def read_sidecar(engine_path: str | Path) -> EngineSidecar:
    """The sidecar of ``engine_path`` (``M.engine.json``)."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise InputError(path, "engine sidecar not found", "rebuild the engine (python -m export tensorrt)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"sidecar is not valid JSON ({exc})", "rebuild the engine") from None
    return parse_sidecar(data, path)


def cache_key(onnx_sha256: str, env: RuntimeEnv, fp16: bool, batch: BatchProfile) -> str:
    """16 hex digits naming the engine for this ONNX, TensorRT, GPU, precision and batch profile."""
    text = "|".join([onnx_sha256, env.tensorrt_version, env.gpu_name, env.compute_capability,
                     "fp16" if fp16 else "fp32", str(batch)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_engine_path(cache_dir: str | Path, onnx_path: str | Path, key: str) -> Path:
    return Path(cache_dir) / f"{Path(onnx_path).stem}-{key}.engine"


def mismatch_reasons(sidecar: EngineSidecar, *, onnx_sha256: str, env: RuntimeEnv, fp16: bool,
                     batch: BatchProfile, engine_sha256: str | None = None) -> list[str]:
    """Why an engine with ``sidecar`` must not be used here ([] = usable). ``engine_sha256``: of the file."""
    reasons = []
    if sidecar.onnx_sha256 != onnx_sha256:
        reasons.append(f"built from another ONNX (sha256 {sidecar.onnx_sha256[:12]} != {onnx_sha256[:12]})")
    if sidecar.tensorrt_version != env.tensorrt_version:
        reasons.append(f"TensorRT {sidecar.tensorrt_version} != running {env.tensorrt_version}")
    if sidecar.compute_capability != env.compute_capability:
        reasons.append(f"compute capability {sidecar.compute_capability} != this GPU's {env.compute_capability}")
    if sidecar.gpu_name != env.gpu_name:
        reasons.append(f"GPU {sidecar.gpu_name!r} != this {env.gpu_name!r}")
    if sidecar.fp16 != fp16:
        reasons.append(f"fp16={sidecar.fp16}, wanted fp16={fp16}")
    if sidecar.batch_profile != batch:
        reasons.append(f"batch profile {sidecar.batch_profile}, wanted {batch}")
    if engine_sha256 is not None and sidecar.engine_sha256 != engine_sha256:
        reasons.append("engine file does not match its sidecar (sha256)")
    return reasons


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


# --------------------------------------------------------------------------- the loader's decision


@dataclass(frozen=True)
class EnsureResult:
    path: Path      # the engine to load
    built: bool     # True: built now
    reason: str     # why this path (and why not the given one)


def ensure_engine(onnx_path: str | Path, engine_path: str | Path | None, cache_dir: str | Path, *,
                  fp16: bool = False, batch: BatchProfile = BatchProfile(1, 2, 4),
                  workspace_gb: float = DEFAULT_WORKSPACE_GB, timing_cache: str | Path | None = None,
                  device_id: int = 0, env: RuntimeEnv | None = None,
                  builder: Callable[..., EngineSidecar] | None = None) -> EnsureResult:
    """An engine for ``onnx_path`` usable on this machine: ``engine_path`` if its sidecar matches the
    running TensorRT / GPU / ONNX sha256 / fp16 / batch profile, else a matching engine already in
    ``cache_dir``, else one built now into ``cache_dir`` (named by :func:`cache_key`).

    The timing cache defaults to ``<cache_dir>/tensorrt.timing-cache``. ``env`` (default:
    :func:`runtime_env`) and ``builder`` (default: :func:`build_engine`) are injectable so the
    decision is testable without TensorRT.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise InputError(onnx_path, "ONNX file not found", "export the member first (python -m export onnx)")
    env = env or runtime_env(device_id)
    build = builder or build_engine
    onnx_sha = sha256_file(onnx_path)

    def verdict(path: Path) -> list[str]:
        if not path.is_file():
            return ["no engine file"]
        try:
            sc = read_sidecar(path)
        except InputError as exc:
            return [f"unreadable sidecar ({exc.problem})"]
        return mismatch_reasons(sc, onnx_sha256=onnx_sha, env=env, fp16=fp16, batch=batch,
                                engine_sha256=sha256_file(path))

    why_not = ""
    if engine_path is not None:
        reasons = verdict(Path(engine_path))
        if not reasons:
            return EnsureResult(Path(engine_path), False, "sidecar matches this TensorRT, GPU and ONNX")
        why_not = f"{Path(engine_path).name}: " + "; ".join(reasons)
    cached = cached_engine_path(cache_dir, onnx_path, cache_key(onnx_sha, env, fp16, batch))
    reasons = verdict(cached)
    if not reasons:
        return EnsureResult(cached, False, "matching engine in the cache" + (f" ({why_not})" if why_not else ""))
    reason = why_not or f"no usable engine given; cache: {'; '.join(reasons)}"
    logger.info("building a TensorRT engine for %s into %s: %s", onnx_path.name, cached, reason)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    if timing_cache is None:
        timing_cache = Path(cache_dir) / TIMING_CACHE_NAME
    build(onnx_path, cached, fp16=fp16, batch=batch, workspace_gb=workspace_gb, timing_cache=timing_cache,
          device_id=device_id)
    return EnsureResult(cached, True, f"built: {reason}")
