"""GPU memory and streams between the loading thread and the engines (no-ops on NumPy).

* :func:`free_pool`: CuPy keeps freed device blocks in its memory pool for reuse; ONNX Runtime and
  TensorRT allocate outside that pool, so a block CuPy keeps is memory the engines cannot have. The
  pipeline frees the pool's unused blocks after each tomogram's load (the uploaded raw volume and the
  intermediates are gone; the resampled volumes stay) and after each member (its heatmaps are gone).
* :class:`DeviceHandoff`: the prefetch thread loads a tomogram (upload, intensity mapping, resample)
  on its own non-blocking stream and records an event; the consuming thread's stream waits for that
  event before it reads the volume. No host synchronisation, and the load overlaps the engines (CuPy's
  current stream is per thread, so the ``with stream`` in the loading thread leaves the consumer's alone).

Ordering of reuse: an array allocated on the loading stream returns its block to that stream's pool
when it is dropped. The consumer drops a tomogram's volumes only after its candidates were copied to
the host (``.get()`` synchronises the consumer's stream), so no queued kernel still reads a block the
loading stream may reuse.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def free_pool(xp) -> None:
    """Return the CuPy memory pool's unused blocks to the device (nothing on NumPy)."""
    if xp is not np:
        xp.get_default_memory_pool().free_all_blocks()


class DeviceHandoff:
    """Loads on a side stream, hands over with an event (see the module docstring). On NumPy both
    calls are plain: :meth:`produce` returns ``(fn(item), None)``, :meth:`consume` does nothing."""

    def __init__(self, xp):
        self.cp = None if xp is np else xp
        self._stream = None

    def produce(self, fn: Callable, item) -> tuple[object, object]:
        """``(fn(item), event)``; ``fn``'s device work runs on this hand-off's stream."""
        if self.cp is None:
            return fn(item), None
        if self._stream is None:
            self._stream = self.cp.cuda.Stream(non_blocking=True)
        with self._stream:
            value = fn(item)
            return value, self._stream.record()

    def consume(self, event) -> None:
        """Make the calling thread's current stream wait (on the device) for ``event``."""
        if event is not None:
            self.cp.cuda.get_current_stream().wait_event(event)
