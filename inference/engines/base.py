"""The engine interface: one small base class; one file per runtime."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class EngineOptions:
    """How to run a model; flows from the CLI into every engine the run builds.

    ``device``: ``cpu`` or ``cuda``. ``ort_provider`` picks ONNX Runtime's GPU provider when
    ``device='cuda'``: ``cuda`` or ``tensorrt``. ``fp16`` and ``cache_dir`` pass through to
    TensorRT (ORT's provider or the native engine). ``threads``: intra-op threads on CPU.
    """

    device: str = "cpu"
    device_id: int = 0
    ort_provider: str = "cuda"
    fp16: bool = False
    cache_dir: Path | None = None
    threads: int | None = None


class Engine(ABC):
    """A loaded model: ``run(batch) -> output`` on NumPy arrays (or device arrays, per runtime).

    Subclasses set the attributes below in ``__init__``. Shapes use ``None`` for dynamic axes.
    """

    path: Path
    input_name: str
    output_name: str
    input_shape: tuple[int | None, ...]
    output_shape: tuple[int | None, ...]
    dtype: np.dtype  # the input dtype the model wants; run() casts to it
    metadata: dict[str, str]

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch (N, C, *patch) and return float32 (N, 1, *patch/stride)."""

    def __call__(self, batch):
        return self.run(batch)

    def describe(self) -> str:
        return (f"{type(self).__name__}({self.path.name}: {self.input_name}{list(self.input_shape)} -> "
                f"{self.output_name}{list(self.output_shape)}, {np.dtype(self.dtype).name})")
