"""FLOPs of a member per window, counted by ``torch.utils.flop_counter.FlopCounterMode``.

The model is built on the ``meta`` device (no memory, no compute: only shapes flow), so any patch
is counted exactly, including attention whose cost is not linear in the window. The counter
covers convolutions, matrix products and attention, at 2 FLOPs per multiply-add; element-wise ops
(norms, activations, additions, upsampling) are not counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from export.models.registry import MemberSpec, build_model, check_patch


@dataclass(frozen=True)
class FlopCount:
    arch: str
    patch: tuple[int, ...]
    flops: int          # per window (batch 1)
    params: int
    output_shape: tuple[int, ...]
    by_op: dict[str, int]


def count_flops(spec: MemberSpec, patch: tuple[int, ...]) -> FlopCount:
    """FLOPs of one window ``(1, C, *patch)`` through ``spec``'s member (see the module docstring)."""
    patch = check_patch(spec, patch) if not spec.custom else tuple(patch)
    with torch.device("meta"):
        model, spec = build_model(spec, patch, random_init=False)
    x = torch.empty((1, spec.in_channels, *patch), device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        y = model(x)
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return FlopCount(arch=spec.name, patch=patch, flops=int(counter.get_total_flops()),
                     params=sum(p.numel() for p in model.parameters()), output_shape=tuple(y.shape), by_op=by_op)
