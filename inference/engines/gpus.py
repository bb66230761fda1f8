"""The GPUs this process can see, read from CuPy's CUDA runtime at run time.

Indices follow ``CUDA_VISIBLE_DEVICES`` as the CUDA runtime applies it: GPU ``i`` here is the
``i``-th entry of that list (all GPUs when it is unset). :func:`pin_value` turns such an index into
the value a child process needs in its own ``CUDA_VISIBLE_DEVICES`` to see exactly that GPU as its
device 0, so ``--devices 0,1`` means "the first two GPUs this process sees" whatever the parent's
mask. Nothing here imports CuPy or initialises CUDA at import time; :func:`probe` does, when called
(the CuPy module is injectable, for tests).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from typing import Callable

from inference.common.errors import InputError


@dataclass(frozen=True)
class Gpu:
    index: int                # visible index (CUDA_VISIBLE_DEVICES semantics)
    name: str
    total_bytes: int
    compute_capability: str   # "7.5"

    def describe(self) -> str:
        return (f"GPU {self.index}: {self.name}, {self.total_bytes / 2**30:.1f} GiB, "
                f"compute capability {self.compute_capability}")


@dataclass(frozen=True)
class CudaStatus:
    """What CuPy reports: versions and the visible GPUs, or why it cannot (``problem`` and ``fix``)."""

    cupy_version: str | None = None
    runtime_version: str | None = None   # "12.5"
    driver_version: str | None = None    # the newest CUDA the driver supports, "12.8"
    gpus: tuple[Gpu, ...] = field(default_factory=tuple)
    problem: str | None = None
    fix: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None and len(self.gpus) > 0

    def describe(self) -> str:
        if self.cupy_version is None:
            return f"cupy: {self.problem}"
        head = f"cupy {self.cupy_version}: CUDA runtime {self.runtime_version or '?'}, driver {self.driver_version or '?'}"
        if self.problem:
            return f"{head}; {self.problem}"
        return f"{head}, {len(self.gpus)} GPU(s) visible"


def cuda_version(value: int | None) -> str | None:
    """CUDA's integer version (12050) as text ("12.5"); 0/None -> None."""
    if not value:
        return None
    return f"{int(value) // 1000}.{int(value) % 1000 // 10}"


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def probe(import_module: Callable = importlib.import_module) -> CudaStatus:
    """CuPy's view of CUDA: versions and every visible GPU. Never raises for a missing GPU or driver."""
    try:
        cp = import_module("cupy")
    except ImportError as exc:
        return CudaStatus(problem=f"not installed ({exc})",
                          fix="pip install cupy-cuda12x (Kaggle's GPU image has it), or run with --device cpu")
    rt = cp.cuda.runtime
    version = str(getattr(cp, "__version__", "?"))
    runtime = driver = None
    try:
        runtime = cuda_version(rt.runtimeGetVersion())
        driver = cuda_version(rt.driverGetVersion())
        count = int(rt.getDeviceCount())
    except RuntimeError as exc:  # CUDARuntimeError / CUDADriverError: no driver, no device, driver too old
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return CudaStatus(version, runtime, driver, problem=f"CUDA is not usable ({first})",
                          fix="check `nvidia-smi` sees a GPU and that the driver supports the CUDA version of "
                              "this cupy wheel (cupy-cuda12x for CUDA 12), or run with --device cpu")
    if count < 1:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        return CudaStatus(version, runtime, driver, problem="no GPU is visible"
                          + (f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""),
                          fix="run on a machine with an NVIDIA GPU (Kaggle: Accelerator GPU), or --device cpu")
    gpus = []
    for i in range(count):
        p = rt.getDeviceProperties(i)
        gpus.append(Gpu(i, _text(p["name"]), int(p["totalGlobalMem"]), f"{int(p['major'])}.{int(p['minor'])}"))
    return CudaStatus(version, runtime, driver, tuple(gpus))


def visible_indices(environ: dict | None = None, count: int | None = None) -> list[str]:
    """The entries of ``CUDA_VISIBLE_DEVICES`` (ids or UUIDs), or ``0..count-1`` when it is unset."""
    env = os.environ if environ is None else environ
    mask = env.get("CUDA_VISIBLE_DEVICES")
    if mask is None:
        return [str(i) for i in range(count or 0)]
    # the CUDA runtime stops at the first invalid entry; empty means no GPU
    return [e.strip() for e in mask.split(",") if e.strip()]


def pin_value(index: int, environ: dict | None = None) -> str:
    """What a child's ``CUDA_VISIBLE_DEVICES`` must be so that visible GPU ``index`` of this process
    is its device 0: the ``index``-th entry of this process's mask (or ``index`` when unset)."""
    env = os.environ if environ is None else environ
    if env.get("CUDA_VISIBLE_DEVICES") is None:
        return str(index)
    entries = visible_indices(env)
    if not 0 <= index < len(entries):
        raise IndexError(f"GPU {index} is not in CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']!r}")
    return entries[index]


def resolve_devices(devices: tuple[int, ...] | str, probe_fn: Callable | None = None) -> tuple[int, ...]:
    """``--devices``: ``'all'`` -> every visible GPU; ids are checked against the visible count.
    InputError (with the fix) when no GPU is usable or an id is not visible."""
    status = (probe_fn or probe)()
    what = "--devices " + (devices if isinstance(devices, str) else ",".join(map(str, devices)))
    if not status.ok:
        raise InputError(None, f"{what}: {status.describe()}", status.fix)
    if isinstance(devices, str):
        if devices not in ("all", "auto"):
            raise InputError(None, f"{what}: expected GPU ids like 0,1 or 'all'", "pass e.g. --devices all")
        return tuple(g.index for g in status.gpus)
    bad = [d for d in devices if not 0 <= d < len(status.gpus)]
    if bad:
        raise InputError(None, f"{what}: GPU {', '.join(map(str, bad))} is not visible; this process sees "
                         f"{len(status.gpus)}: " + "; ".join(g.describe() for g in status.gpus),
                         f"pass ids below {len(status.gpus)}, or --devices all")
    return tuple(dict.fromkeys(devices))
