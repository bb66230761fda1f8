"""Native TensorRT 10 engine (``.engine`` / ``.plan``): device-resident I/O on a CuPy stream.

The engine file comes with the JSON sidecar ``<engine>.json`` that ``python -m export tensorrt``
writes (format in :mod:`inference.engines.tensorrt_sidecar`). Engines are not portable across TensorRT
versions or GPUs: :func:`~inference.engines.tensorrt_sidecar.check_sidecar` compares the sidecar with the
running TensorRT and GPU and refuses a
mismatch with the command that rebuilds it (the Kaggle notebook builds or reuses engines before
``predict``). Inputs may be NumPy or CuPy arrays; outputs are CuPy arrays on the device, so the
sliding window, stitching and peak decoding stay on the GPU (``xp = cupy``).

Uses the TensorRT 10 API: ``deserialize_cuda_engine``, named I/O tensors (``num_io_tensors``,
``get_tensor_name/mode/dtype/shape``), ``set_input_shape`` for the dynamic batch,
``set_tensor_address`` and ``execute_async_v3`` on the process's engine stream, a non-default
CuPy stream (:mod:`inference.engines.cuda_stream`) joined with the caller's stream by events:
the host never waits here (on the legacy default stream TensorRT adds synchronisations and
serialises all GPU work).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from inference.common.errors import EngineError
from inference.engines import cuda_stream
from inference.engines.base import Engine, EngineOptions
from inference.engines.tensorrt_sidecar import check_sidecar

logger = logging.getLogger(__name__)

class TensorRTEngine(Engine):
    """A native TensorRT 10 engine (``.engine``/``.plan``) on a GPU, checked against its sidecar before it is
    deserialized; ``run(batch)`` returns a CuPy float32 array on the device (see the module docstring)."""

    def __init__(self, path: str | Path, options: EngineOptions = EngineOptions()):
        self.path = Path(path)
        if options.device != "cuda":
            raise EngineError(f"{self.path}: a TensorRT engine runs on a GPU only. Fix: pass --device cuda "
                              "(or --devices 0,1), or point the manifest at the member's .onnx for the CPU")
        try:
            import cupy as cp
            import tensorrt as trt
        except ImportError as exc:
            raise EngineError(f"{self.path}: TensorRT engines need tensorrt 10.x and cupy "
                              "(pip install 'motorfinder[gpu]', offline wheels on Kaggle)") from exc
        self._cp, self._trt = cp, trt
        dev = cp.cuda.Device(options.device_id)
        dev.use()
        cc = "{}.{}".format(*divmod(int(dev.compute_capability), 10))
        self.sidecar = check_sidecar(self.path, trt_version=trt.__version__, compute_capability=cc)
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        self.engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise EngineError(f"{self.path}: TensorRT could not deserialize the engine. Fix: rebuild it")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        ins = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(ins) != 1 or not outs:
            raise EngineError(f"{self.path}: expected one input and at least one output, got {ins} -> {outs}")
        self.input_name, self.output_name = ins[0], outs[0]
        self._extra_outputs = outs[1:]
        self.input_shape = tuple(None if d < 0 else int(d) for d in self.engine.get_tensor_shape(self.input_name))
        self.output_shape = tuple(None if d < 0 else int(d) for d in self.engine.get_tensor_shape(self.output_name))
        self.dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self._out_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name)))
        lo, _, hi = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.max_batch = int(hi[0])
        self.min_batch = int(lo[0])
        self.metadata = dict(self.sidecar.metadata)
        self._scratch: dict[str, object] = {}
        self.stream = cuda_stream.engine_stream(cp, options.device_id)
        self.check_input(options.input_hint)
        logger.debug("loaded %s (batch %d..%d)", self.describe(), self.min_batch, self.max_batch)

    def run(self, batch):
        """``batch`` (N, C, *patch), NumPy or CuPy -> CuPy float32 (N, 1, *patch/stride).

        Batches larger than the profile's max run in chunks; smaller than its min are padded.
        """
        cp = self._cp
        x = cp.ascontiguousarray(cp.asarray(batch, dtype=self.dtype))
        n = x.shape[0]
        outs = []
        for lo in range(0, n, self.max_batch):
            chunk = x[lo:lo + self.max_batch]
            real = chunk.shape[0]
            if real < self.min_batch:
                pad = cp.zeros((self.min_batch - real,) + chunk.shape[1:], dtype=chunk.dtype)
                chunk = cp.ascontiguousarray(cp.concatenate([chunk, pad]))
            outs.append(self._execute(chunk)[:real])
        out = outs[0] if len(outs) == 1 else cp.concatenate(outs)
        return out.astype(cp.float32, copy=False)

    def _execute(self, x):
        cp = self._cp
        ctx = self.context
        if not ctx.set_input_shape(self.input_name, tuple(x.shape)):
            raise EngineError(f"{self.path}: input shape {tuple(x.shape)} is outside the engine's profile "
                              f"(batch {self.min_batch}..{self.max_batch}, input {self.input_shape})")
        ctx.set_tensor_address(self.input_name, int(x.data.ptr))
        out = cp.empty(tuple(ctx.get_tensor_shape(self.output_name)), dtype=self._out_dtype)
        ctx.set_tensor_address(self.output_name, int(out.data.ptr))
        for name in self._extra_outputs:  # bound, ignored
            buf = cp.empty(tuple(ctx.get_tensor_shape(name)),
                           dtype=np.dtype(self._trt.nptype(self.engine.get_tensor_dtype(name))))
            self._scratch[name] = buf
            ctx.set_tensor_address(name, int(buf.data.ptr))
        # on the engine stream, after whatever produced x (caller's stream), before whatever reads out
        caller = cuda_stream.join(cp, self.stream)
        ok = ctx.execute_async_v3(self.stream.ptr)
        cuda_stream.release(caller, self.stream)
        if not ok:
            raise EngineError(f"{self.path}: TensorRT execution failed (see the TensorRT log above)")
        return out
