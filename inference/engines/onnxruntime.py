"""ONNX Runtime engine: CPU provider by default; CUDA or TensorRT execution providers on a GPU."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from inference.engines.base import Engine, EngineOptions
from inference.errors import EngineError

logger = logging.getLogger(__name__)

_ORT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def provider_list(options: EngineOptions) -> list:
    """The ONNX Runtime providers (with options) for ``options``, most preferred first."""
    if options.device == "cpu":
        return ["CPUExecutionProvider"]
    if options.device != "cuda":
        raise EngineError(f"unknown device {options.device!r}: use 'cpu' or 'cuda'")
    cuda = ("CUDAExecutionProvider", {"device_id": options.device_id})
    if options.ort_provider == "cuda":
        return [cuda, "CPUExecutionProvider"]
    if options.ort_provider == "tensorrt":
        trt = {
            "device_id": options.device_id,
            "trt_fp16_enable": bool(options.fp16),
            "trt_engine_cache_enable": options.cache_dir is not None,
            "trt_timing_cache_enable": options.cache_dir is not None,
        }
        if options.cache_dir is not None:
            Path(options.cache_dir).mkdir(parents=True, exist_ok=True)
            trt["trt_engine_cache_path"] = str(options.cache_dir)
            trt["trt_timing_cache_path"] = str(options.cache_dir)
        return [("TensorrtExecutionProvider", trt), cuda, "CPUExecutionProvider"]
    raise EngineError(f"unknown ONNX Runtime provider {options.ort_provider!r}: use 'cuda' or 'tensorrt'")


class OnnxRuntimeEngine(Engine):
    def __init__(self, path: str | Path, options: EngineOptions = EngineOptions()):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise EngineError("onnxruntime is not installed: pip install 'motorfinder[cpu]' "
                              "(or onnxruntime-gpu for CUDA)") from exc
        self.path = Path(path)
        providers = provider_list(options)
        wanted = providers[0] if isinstance(providers[0], str) else providers[0][0]
        available = ort.get_available_providers()
        if wanted not in available:
            raise EngineError(
                f"{self.path}: ONNX Runtime provider {wanted} is not available (have {', '.join(available)}). "
                "Fix: install onnxruntime-gpu matching your CUDA (and uninstall the CPU onnxruntime), "
                "or run with --device cpu")
        if options.device == "cuda" and hasattr(ort, "preload_dlls"):
            # onnxruntime >= 1.21: find CUDA 12 / cuDNN 9 from the nvidia-* wheels (as on Kaggle)
            ort.preload_dlls()
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if options.threads:
            so.intra_op_num_threads = int(options.threads)
        if options.device == "cpu":
            so.enable_cpu_mem_arena = False  # the arena keeps each session's peak: five big members would not fit
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=so, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph types; report them with the file
            raise EngineError(f"{self.path}: ONNX Runtime cannot load the model ({exc}). "
                              "Fix: re-export it (python -m export onnx) or check the file is complete") from exc
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
        self.providers = self.session.get_providers()
        logger.debug("loaded %s with %s", self.describe(), self.providers)

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

        if self.providers[0] == "CPUExecutionProvider":
            return cp.asarray(self.run(cp.asnumpy(batch)))
        x = cp.ascontiguousarray(batch, dtype=self.dtype)
        out_shape = self._output_shape_for(tuple(x.shape))
        out = cp.empty(out_shape, dtype=self._out_dtype)
        device_id = x.device.id
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, "cuda", device_id, self.dtype, list(x.shape), int(x.data.ptr))
        binding.bind_output(self.output_name, "cuda", device_id, self._out_dtype, list(out_shape), int(out.data.ptr))
        cp.cuda.get_current_stream().synchronize()  # ORT runs on its own stream: x must be ready
        self.session.run_with_iobinding(binding)
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
