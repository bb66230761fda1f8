"""Synthetic tomograms and labels for tests and demos, and the demo ONNX detectors."""
