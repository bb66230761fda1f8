"""ONNX Runtime engine: CPU provider by default; CUDA or TensorRT execution providers on a GPU.

Provider options, the memory policy and the check that the requested provider is the active one
live in :mod:`inference.engines.ort_providers`. On a GPU with CuPy, the session runs on the
process's engine stream (``user_compute_stream``, :mod:`inference.engines.cuda_stream`), CuPy
batches are bound in place (IOBinding) and the output stays on the device.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from inference.common.errors import EngineError
from inference.engines import cuda_stream, gpus
from inference.engines import ort_providers as prov
from inference.engines.base import Engine, EngineOptions

logger = logging.getLogger(__name__)

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def import_onnxruntime(import_module: Callable = importlib.import_module):
    try:
        return import_module("onnxruntime")
    except ImportError as exc:
        raise EngineError("onnxruntime is not installed. Fix: pip install 'motorfinder[cpu]' "
                          "(or onnxruntime-gpu for CUDA)") from exc


class OnnxRuntimeEngine(Engine):
    """An ``.onnx`` member on ONNX Runtime: the CPU provider, or CUDA / TensorRT with IOBinding on device arrays.

    The provider asked for (``options``) must be the active one after the session is built, else an
    EngineError names the library that failed and the fix (:mod:`inference.engines.ort_providers`).
    ``run(batch)`` takes NumPy or CuPy (N, C, *patch) and returns the first output, on the input's device.
    """

    def __init__(self, path: str | Path, options: EngineOptions = EngineOptions(), *,
                 import_module: Callable = importlib.import_module):
        ort = import_onnxruntime(import_module)
        self.path = Path(path)
        wanted = prov.wanted_provider(options)
        available = list(ort.get_available_providers())
        if wanted not in available:
            why, fix = prov.diagnose(ort, wanted)
            raise EngineError(f"{self.path}: onnxruntime {getattr(ort, '__version__', '?')} has no {wanted} "
                              f"(it has {', '.join(available)}): {why}. Fix: {fix}")
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if options.threads:
            so.intra_op_num_threads = int(options.threads)
        so.log_severity_level = 3
        self._cp = self.stream = None
        self._run_options = None
        setup = {}
        if options.device == "cpu":
            so.enable_cpu_mem_arena = False  # the arena keeps each session's peak: five big members would not fit
        else:
            setup = self._gpu_setup(ort, so, options, wanted, import_module)
        providers = prov.provider_list(options, **setup)
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=so, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types; report them with the file
            raise EngineError(f"{self.path}: ONNX Runtime cannot load the model ({exc}). "
                              "Fix: re-export it (python -m export onnx) or check the file is complete") from exc
        self.providers = prov.verify(self.session, wanted, ort, self.path)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise EngineError(f"{self.path}: expected one input and at least one output, "
                              f"got {len(inputs)} inputs and {len(outputs)} outputs")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inputs[0].shape)
        self.output_shape = tuple(d if isinstance(d, int) else None for d in outputs[0].shape)
        if inputs[0].type not in _ORT_TYPES:
            raise EngineError(f"{self.path}: input type {inputs[0].type} is not supported (float or float16)")
        self.dtype = np.dtype(_ORT_TYPES[inputs[0].type])
        self._out_dtype = np.dtype(_ORT_TYPES.get(outputs[0].type, np.float32))
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.check_input(options.input_hint)
        logger.debug("loaded %s with %s", self.describe(), self.providers)

    def _gpu_setup(self, ort, so, options: EngineOptions, wanted: str, import_module: Callable) -> dict:
        """Stream, memory limit, shared arena and TensorRT caches; the keyword arguments of provider_list."""
        if hasattr(ort, "preload_dlls"):
            # onnxruntime >= 1.21: find CUDA / cuDNN in the nvidia-* wheels (as on Kaggle)
            ort.preload_dlls()
        gpu = None
        try:
            cp = import_module("cupy")
        except ImportError:
            cp = None  # NumPy batches only (host copies per batch); no user stream, no automatic memory limit
        if cp is not None:
            self._cp = cp
            self.stream = cuda_stream.engine_stream(cp, options.device_id)
            status = gpus.probe(import_module)
            gpu = next((g for g in status.gpus if g.index == options.device_id), None)
            run_options = ort.RunOptions()
            # no host wait at the end of a run: the caller's stream waits for the engine stream instead
            run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")
            self._run_options = run_options
        mem_limit = prov.mem_limit_bytes(options, gpu.total_bytes if gpu else None)
        if prov.share_cuda_arena(ort, options.device_id, mem_limit):
            so.add_session_config_entry("session.use_env_allocators", "1")
        setup = {"stream_ptr": int(self.stream.ptr) if self.stream is not None else None, "mem_limit": mem_limit}
        if wanted == prov.TRT:
            problem = prov.preload_tensorrt_libs(import_module)
            if problem:
                logger.info("%s; ONNX Runtime looks for libnvinfer.so.10 on the library path", problem)
            setup["input_name"] = prov.onnx_input_name(self.path)
            if options.cache_dir is not None:
                cache = prov.tensorrt_cache_dir(options.cache_dir, gpu.name if gpu else None,
                                                gpu.compute_capability if gpu else None,
                                                prov.tensorrt_version(import_module))
                cache.mkdir(parents=True, exist_ok=True)
                setup["cache_dir"] = cache
        return setup

    def run(self, batch):
        """NumPy in -> NumPy out; a CuPy batch on a CUDA/TensorRT provider stays on the device
        (IOBinding to CuPy pointers, CuPy out)."""
        if type(batch).__module__.startswith("cupy"):
            return self._run_device(batch)
        batch = np.ascontiguousarray(batch, dtype=self.dtype)
        (out,) = self.session.run([self.output_name], {self.input_name: batch})
        return np.asarray(out, dtype=np.float32)

    def _run_device(self, batch):
        import cupy as cp

        if self.providers[0] == prov.CPU:
            return cp.asarray(self.run(cp.asnumpy(batch)))
        x = cp.ascontiguousarray(batch, dtype=self.dtype)
        out_shape = self._output_shape_for(tuple(x.shape))
        out = cp.empty(out_shape, dtype=self._out_dtype)
        device_id = x.device.id
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, "cuda", device_id, self.dtype, list(x.shape), int(x.data.ptr))
        binding.bind_output(self.output_name, "cuda", device_id, self._out_dtype, list(out_shape), int(out.data.ptr))
        if self.stream is None:
            cp.cuda.get_current_stream().synchronize()  # ORT runs on its own stream: x must be ready
            self.session.run_with_iobinding(binding)
        else:
            caller = cuda_stream.join(cp, self.stream)  # ORT's kernels start after x is written
            self.session.run_with_iobinding(binding, self._run_options)
            cuda_stream.release(caller, self.stream)    # readers of out wait for ORT, not the host
        return out.astype(cp.float32, copy=False)

    def _output_shape_for(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(N, 1, *spatial/stride) from the model's declared output shape and the input's."""
        declared = self.output_shape
        if all(d is not None for d in declared[1:]):
            return (in_shape[0],) + tuple(declared[1:])
        stride = int(self.metadata.get("stride", 0)) or None
        if stride is None:
            raise EngineError(f"{self.path}: dynamic output shape and no 'stride' in the model metadata; "
                              "re-export with python -m export onnx (it records the stride)")
        return (in_shape[0], 1) + tuple(d // stride for d in in_shape[2:])
