"""Model runtimes behind one interface (ONNX Runtime, TensorRT), the GPUs they run on, the TensorRT sidecar."""
