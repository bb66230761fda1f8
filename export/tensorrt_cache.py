"""Which TensorRT engine to load: reuse the given one, reuse a cached one, or build one (:func:`ensure_engine`).

An engine is usable when its sidecar (:mod:`inference.engines.tensorrt_sidecar`) matches the running TensorRT,
GPU, ONNX file (sha256), precision and batch profile (``mismatch_reasons`` there, [] = usable); a cache
folder holds engines named by :func:`cache_key`. Only a build needs TensorRT and a GPU
(:mod:`export.tensorrt`); the decision itself is pure Python.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from export.tensorrt import build_engine, runtime_env
from inference.common.errors import InputError
from inference.common.file_hash import sha256_file
from inference.engines.tensorrt_sidecar import (
    DEFAULT_WORKSPACE_GB,
    BatchProfile,
    EngineSidecar,
    RuntimeEnv,
    mismatch_reasons,
    read_sidecar,
)

logger = logging.getLogger(__name__)

TIMING_CACHE_NAME = "tensorrt.timing-cache"  # ensure_engine's default timing cache, in the cache dir


def cache_key(onnx_sha256: str, env: RuntimeEnv, fp16: bool, batch: BatchProfile) -> str:
    """16 hex digits naming the engine for this ONNX, TensorRT, GPU, precision and batch profile."""
    text = "|".join([onnx_sha256, env.tensorrt_version, env.gpu_name, env.compute_capability,
                     "fp16" if fp16 else "fp32", str(batch)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_engine_path(cache_dir: str | Path, onnx_path: str | Path, key: str) -> Path:
    return Path(cache_dir) / f"{Path(onnx_path).stem}-{key}.engine"


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
    :func:`export.tensorrt.runtime_env`) and ``builder`` (default: :func:`export.tensorrt.build_engine`)
    are injectable so the decision is testable without TensorRT.
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
