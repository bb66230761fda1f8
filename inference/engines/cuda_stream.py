"""The non-default CUDA stream on which a worker's engines run: one per process and device.

The pipeline's own device work (resample, window batches, stitching, NMS) runs on CuPy's current
stream, the *caller's* stream. An engine joins the two with events, never with a host wait:

* :func:`join` before the engine's work: the engine stream waits (on the device) for everything
  queued so far on the caller's stream, i.e. for the kernel that wrote the input batch;
* :func:`release` after it: the caller's stream waits for the engine's work, so whatever reads the
  output (stitching) and whatever reuses the input's memory (CuPy's pool hands freed blocks to the
  next allocation on the caller's stream) is ordered after it.

The host synchronises only where results are read (the candidates' copy to the host). One stream
shared by every engine of a process also keeps ONNX Runtime's shared arena (reused blocks) ordered.
"""

from __future__ import annotations

_STREAMS: dict[int, object] = {}  # device id -> cupy.cuda.Stream, created on first use in this process


def engine_stream(cp, device_id: int):
    """This process's engine stream on ``device_id`` (``non_blocking``: it does not serialise with
    the legacy default stream)."""
    stream = _STREAMS.get(device_id)
    if stream is None:
        with cp.cuda.Device(device_id):
            stream = cp.cuda.Stream(non_blocking=True)
        _STREAMS[device_id] = stream
    return stream


def join(cp, stream):
    """Make ``stream`` wait for the work queued on the caller's (current) stream; returns the caller's."""
    caller = cp.cuda.get_current_stream()
    stream.wait_event(caller.record())
    return caller


def release(caller, stream) -> None:
    """Make the caller's stream wait for the work queued on ``stream``."""
    caller.wait_event(stream.record())
