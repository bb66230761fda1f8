"""The engine interface: one small base class; one file per runtime."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.common.errors import EngineError


@dataclass(frozen=True)
class InputHint:
    """The batches a member will feed its engine: 1 to ``batch`` windows of shape ``sample``
    (``(C, *patch)``). TensorRT builds its optimization profile from it; ONNX Runtime's CPU and
    CUDA providers do not need it."""

    batch: int
    sample: tuple[int, ...]

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) input shapes: batch 1 (the last, partial batch), ``batch``, ``batch``."""
        return (1, *self.sample), (self.batch, *self.sample), (self.batch, *self.sample)


@dataclass(frozen=True)
class EngineOptions:
    """How to run a model; flows from the CLI into every engine the run builds.

    ``device``: ``cpu`` or ``cuda``. ``ort_provider`` picks ONNX Runtime's GPU provider when
    ``device='cuda'``: ``cuda`` or ``tensorrt``. ``fp16`` and ``cache_dir`` pass through to
    TensorRT (ORT's provider or the native engine); TensorRT caches go to a sub-folder of
    ``cache_dir`` named after the GPU and the TensorRT version. ``threads``: intra-op threads on
    CPU. ``gpu_mem_limit_gb``: the most device memory ONNX Runtime's CUDA arena of one worker
    may hold (None: 75% of the GPU's memory, the rest is left to the volumes on CuPy's side).
    ``input_hint``: the member's batch and window (set per member by the pipeline), for
    TensorRT's optimization profile.
    """

    device: str = "cpu"
    device_id: int = 0
    ort_provider: str = "cuda"
    fp16: bool = False
    cache_dir: Path | None = None
    threads: int | None = None
    gpu_mem_limit_gb: float | None = None
    input_hint: InputHint | None = None


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

    def check_input(self, hint: InputHint | None) -> None:
        """EngineError when the model's fixed input axes contradict the windows the member feeds it."""
        if hint is None:
            return
        want = (None, *hint.sample)
        have = tuple(self.input_shape)
        if len(have) != len(want) or any(h is not None and h != w for h, w in zip(have[1:], want[1:])):
            raise EngineError(f"{self.path}: the model takes input {list(have)} but the member feeds windows "
                              f"{list(want)}. Fix: export the model for this patch (python -m export onnx --patch ...) "
                              "or correct the member's patch/channels in the manifest")

    def describe(self) -> str:
        return (f"{type(self).__name__}({self.path.name}: {self.input_name}{list(self.input_shape)} -> "
                f"{self.output_name}{list(self.output_shape)}, {np.dtype(self.dtype).name})")
