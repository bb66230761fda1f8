"""Is an ONNX graph its torch model? The export's parity verdict, and the float64 run that settles
doubtful cases.

Both torch and ONNX Runtime compute in fp32 and round differently; a deep net with poorly conditioned
weights (random ones with BatchNorm gamma ~1, say) amplifies that rounding. A ResNeXt50 checkpoint
in the 3rd-place layout gave, at 64 x 96 x 128, torch fp32 1.9e-4 and ORT 1.2e-4 of the output's
scale from the float64 result -- 2.2e-4 between them, above the export's 1e-4 -- with a correct graph.
So when ``max |ORT - torch|`` exceeds the tolerance, the model runs once more in float64 and
:func:`parity_verdict` asks whether ORT is further from that exact answer than torch's own rounding
explains. A wrong graph (an approximated op, a lost permute) is far from float64 while torch fp32 is
not, and still fails.

The float64 run is a copy of the model; CPU float64 convolutions run as im2col, whose column buffer
(``C_in/groups x prod(kernel) x output positions`` doubles) dwarfs the activations for a 7x7x7 stem
on a large window (~16 GB for ResNeXt50 at 128 x 256 x 256). :func:`fp64_output` estimates that on
the ``meta`` device first and does not start when it exceeds what the machine has available.
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

FP64_MARGIN = 2.0  # ORT may be this many times further from the float64 result than torch fp32 is
FP32_ROUNDING_CAP = 1e-3  # ... and never more than this x the output's scale from it
MEMORY_SHARE = 0.7  # the float64 run starts only if its estimate is below this share of the available memory


def parity_verdict(y_torch: np.ndarray, y_ort: np.ndarray, tol: float,
                   y_fp64: np.ndarray | None = None) -> tuple[bool, str]:
    """``(ok, why)``: ``max |ORT - torch| <= tol * s`` (``s`` = max |torch|) passes. Otherwise, given
    the float64 result ``y_fp64`` of the same model and input, ORT passes when ``max |ORT - fp64| <=
    max(tol * s, FP64_MARGIN * max |torch - fp64|)`` and ``<= FP32_ROUNDING_CAP * s``; ``why`` then
    gives both distances (``float64: max |ORT - fp64| ..., max |torch fp32 - fp64| ...``)."""
    t = y_torch.astype(np.float64)
    o = y_ort.astype(np.float64)
    diff = float(np.max(np.abs(o - t)))
    scale = float(np.max(np.abs(t)))
    if np.isfinite(diff) and diff <= tol * scale:
        return True, ""
    if y_fp64 is None or not np.isfinite(diff):
        return False, ""
    ort_err = float(np.max(np.abs(o - y_fp64)))
    torch_err = float(np.max(np.abs(t - y_fp64)))
    ok = ort_err <= max(tol * scale, FP64_MARGIN * torch_err) and ort_err <= FP32_ROUNDING_CAP * scale
    return ok, f"float64: max |ORT - fp64| {ort_err:.3e}, max |torch fp32 - fp64| {torch_err:.3e}"


def fp64_peak_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """What the float64 forward of ``model`` on ``x`` needs at once, roughly: its weights, the largest
    convolution's column buffer and three times the largest activation, in doubles. Shapes come from a
    run on the ``meta`` device (no memory, no compute). (ResNeXt50 at 128 x 256 x 256: 16.2 GB
    estimated, 16.5 GB measured over the fp32 export; the largest buffer is the neck's 3x3x3 conv on
    the stride-2 map.)"""
    meta = copy.deepcopy(model).to("meta")
    largest = {"cols": 0, "act": 0}

    def hook(module, inputs, output):
        outs = output if isinstance(output, (list, tuple)) else [output]
        for o in outs:
            if isinstance(o, torch.Tensor):
                largest["act"] = max(largest["act"], o.numel())
        if isinstance(module, nn.modules.conv._ConvNd) and isinstance(output, torch.Tensor):
            positions = output.numel() // module.out_channels
            cols = module.in_channels // module.groups * math.prod(module.kernel_size) * positions
            largest["cols"] = max(largest["cols"], cols)

    handles = [m.register_forward_hook(hook) for m in meta.modules()]
    try:
        with torch.no_grad():
            meta(x.to("meta"))
    finally:
        for h in handles:
            h.remove()
    params = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    return 8 * (params + largest["cols"] + 3 * largest["act"])


def available_bytes() -> int | None:
    """Memory this process can still take: ``MemAvailable``, or the cgroup's headroom when lower."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit.isdigit() and (avail is None or int(limit) - used < avail):
            avail = int(limit) - used
    except (OSError, ValueError):
        pass
    return avail


def fp64_output(model: nn.Module, x: torch.Tensor) -> tuple[np.ndarray | None, str]:
    """``(the model's float64 output on x, "")`` from a copy of the model, or ``(None, why not)`` when
    it would not fit in memory or does not run (an op without a float64 kernel)."""
    try:
        need = fp64_peak_bytes(model, x)
    except (RuntimeError, NotImplementedError, TypeError) as exc:  # an op without a meta kernel
        logger.debug("parity: no float64 memory estimate (%s)", exc)
        need = None
    have = available_bytes()
    if need is not None and have is not None and need > MEMORY_SHARE * have:
        return None, (f"the float64 check would need ~{need / 2**30:.1f} GB, {have / 2**30:.1f} GB available: "
                      "rerun at a smaller --patch to let it decide")
    try:
        m64 = copy.deepcopy(model).double()
        with torch.no_grad():
            return m64(x.double()).numpy(), ""
    except (RuntimeError, MemoryError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        return None, f"the float64 check did not run ({type(exc).__name__}: {first})"
