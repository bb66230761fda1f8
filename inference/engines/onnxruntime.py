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
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if options.threads:
            so.intra_op_num_threads = int(options.threads)
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
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.providers = self.session.get_providers()
        logger.debug("loaded %s with %s", self.describe(), self.providers)

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=self.dtype)
        (out,) = self.session.run([self.output_name], {self.input_name: batch})
        return np.asarray(out, dtype=np.float32)
