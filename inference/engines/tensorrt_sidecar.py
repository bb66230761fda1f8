"""What a TensorRT engine was built from and for: the sidecar ``M.engine.json`` (pure Python).

TensorRT engines are not portable: one runs only on the TensorRT version and the GPU (compute
capability) it was built with, so every engine ``M.engine`` has a sidecar ``M.engine.json``.
This module holds its types (:class:`BatchProfile`, :class:`TensorInfo`, :class:`RuntimeEnv`,
:class:`EngineSidecar`), its writing, reading and validation, and whether an engine can be used here:
:func:`runtime_reasons` (this TensorRT and GPU; :func:`check_sidecar` for the engine loader),
:func:`mismatch_reasons` (also the ONNX, precision and batch profile; ``export.tensorrt_cache`` reuses or
rebuilds from it). ``export.tensorrt`` builds engines and writes the sidecar.

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
takes any batch in ``[min, max]`` and is tuned for ``opt``.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from inference.common.errors import EngineError, InputError
from inference.common.file_hash import sha256_file

SIDECAR_FORMAT = "motorfinder-tensorrt-sidecar"
SIDECAR_VERSION = 1
DEFAULT_WORKSPACE_GB = 4.0
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


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


def runtime_reasons(sidecar: EngineSidecar, env: RuntimeEnv, *, engine_sha256: str | None = None,
                    same_gpu_name: bool = False) -> list[str]:
    """Why the engine of ``sidecar`` cannot run on ``env`` ([] = it can): another TensorRT version or
    compute capability (with ``same_gpu_name``: another GPU model too), or an engine file (``engine_sha256``)
    that is not the one the sidecar describes."""
    reasons = []
    if sidecar.tensorrt_version != env.tensorrt_version:
        reasons.append(f"built with TensorRT {sidecar.tensorrt_version}, running {env.tensorrt_version}")
    if sidecar.compute_capability != env.compute_capability:
        reasons.append(f"built for compute capability {sidecar.compute_capability} ({sidecar.gpu_name}), "
                       f"this GPU is {env.compute_capability}")
    if same_gpu_name and sidecar.gpu_name != env.gpu_name:
        reasons.append(f"built on GPU {sidecar.gpu_name!r}, this is {env.gpu_name!r}")
    if engine_sha256 is not None and sidecar.engine_sha256 != engine_sha256:
        reasons.append("the engine file does not match its sidecar's sha256")
    return reasons


def mismatch_reasons(sidecar: EngineSidecar, *, onnx_sha256: str, env: RuntimeEnv, fp16: bool,
                     batch: BatchProfile, engine_sha256: str | None = None) -> list[str]:
    """Why an engine with ``sidecar`` must not stand for this ONNX, precision and batch profile on ``env``
    ([] = usable): :func:`runtime_reasons` (the same GPU model too) plus the ONNX, fp16 and batch profile."""
    reasons = []
    if sidecar.onnx_sha256 != onnx_sha256:
        reasons.append(f"built from another ONNX (sha256 {sidecar.onnx_sha256[:12]} != {onnx_sha256[:12]})")
    reasons += runtime_reasons(sidecar, env, engine_sha256=engine_sha256, same_gpu_name=True)
    if sidecar.fp16 != fp16:
        reasons.append(f"fp16={sidecar.fp16}, wanted fp16={fp16}")
    if sidecar.batch_profile != batch:
        reasons.append(f"batch profile {sidecar.batch_profile}, wanted {batch}")
    return reasons


def check_sidecar(engine_path: str | Path, *, trt_version: str, compute_capability: str,
                  verify_sha: bool = True) -> EngineSidecar:
    """The sidecar of ``engine_path`` when the engine runs on this TensorRT and GPU; else EngineError naming
    every reason and the command that rebuilds it (an engine loader's check, before deserializing)."""
    engine_path = Path(engine_path)
    fix = (f"rebuild it on this machine: python -m export tensorrt --onnx <member>.onnx --out {engine_path} "
           "(the notebook's engine cell does this)")
    try:
        sidecar = read_sidecar(engine_path)
    except InputError as exc:
        raise EngineError(f"{engine_path}: {exc.problem} ({sidecar_path(engine_path).name}). Fix: {fix}") from None
    here = RuntimeEnv(tensorrt_version=trt_version, gpu_name=sidecar.gpu_name, compute_capability=compute_capability)
    reasons = runtime_reasons(sidecar, here, engine_sha256=sha256_file(engine_path) if verify_sha else None)
    if reasons:
        raise EngineError(f"{engine_path}: {'; '.join(reasons)}. Fix: {fix}")
    return sidecar
