"""PyTorch members -> verified ONNX -> TensorRT engines. The only package that imports torch.

Depends on :mod:`inference` (engine interface, manifest); :mod:`inference` never imports it.
"""
