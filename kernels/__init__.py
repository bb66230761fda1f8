"""CuPy kernels with NumPy references of identical semantics.

Imports nothing of this project. Every kernel here has a NumPy twin used on the CPU path and as
the reference of its parity test; CuPy is imported only where a kernel runs.

* :mod:`kernels.resample`: ``resample_normalize`` (uint8 -> trilinear -> ``(v - mean) / std``), and the
  one definition of the sample positions (``axis_table``: corner and half-pixel taps).
* :mod:`kernels.accumulate`: ``accumulate`` (stitch a batch of window outputs, mean or max).
* :mod:`kernels.nms`: ``local_max_mask`` (max-pool NMS mask; CUDA for 3D) and ``box_max`` (the
  separable box maximum, any rank and array module).

Each public function dispatches on its input's array module (NumPy -> ``*_ref``, CuPy -> CUDA).
The submodules are the API (``from kernels.accumulate import accumulate``); :mod:`kernels.array_module`
says whether CuPy can run here.
"""
