"""Which runtime loads a model: a suffix -> engine class map, and :func:`load_engine`.

``.onnx`` runs on ONNX Runtime (CPU, CUDA or TensorRT execution provider); ``.engine``/``.plan``
on native TensorRT 10. Each runtime lives in its own module and is imported only when a model of
its kind is loaded.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from inference.common.errors import EngineError
from inference.engines.base import Engine, EngineOptions

ENGINES: dict[str, str] = {
    ".onnx": "inference.engines.onnxruntime:OnnxRuntimeEngine",
    ".engine": "inference.engines.tensorrt:TensorRTEngine",
    ".plan": "inference.engines.tensorrt:TensorRTEngine",
}


def load_engine(path: str | Path, options: EngineOptions = EngineOptions()) -> Engine:
    """Load the model at ``path`` with the engine its suffix names."""
    path = Path(path)
    target = ENGINES.get(path.suffix.lower())
    if target is None:
        raise EngineError(f"{path}: no engine for suffix '{path.suffix}' (known: {', '.join(ENGINES)})")
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)(path, options)

