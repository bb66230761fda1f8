"""CuPy kernels with NumPy references of identical semantics.

Imports nothing of this project. Every kernel here has a NumPy twin used on the CPU path and as
the reference of its parity test; CuPy is imported only where a kernel runs.
"""
