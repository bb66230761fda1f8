"""Offline inference for 3D point detection in cryo-electron tomograms.

The package never imports torch: models arrive as ONNX (or TensorRT engines) and run through
the engines in :mod:`inference.engines`. Subpackages follow the data flow (docs/ARCHITECTURE.md).
"""
