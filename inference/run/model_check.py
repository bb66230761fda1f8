"""Each member's engine checked once, when it is loaded, before any tomogram.

One window of zeros of the shape the member feeds its engine (a batch of 1: ``(1, 1, D, H, W)`` for a
3d member, ``(1, C, H, W)`` for a 2d one, C its channels or ``slices.window``) goes through the
engine; the model must accept it and answer ``(1, K, *patch/stride)``: rank, batch, its output
channels (one heatmap; task particles: one per name in the member's ``outputs``) and the manifest's stride. Anything else is an :class:`~inference.common.errors.EngineError`
naming the model file, what the manifest says and what the model did, so a run stops with one line
instead of failing on every tomogram. A model whose output on zeros is not finite is reported in a
WARNING (tomograms where it is not finite fail, naming the member: :mod:`inference.predict.predictor`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from inference.common.errors import EngineError, one_line

logger = logging.getLogger(__name__)


def _fix(member) -> str:
    if member.outputs:
        return ("list the model's output channels in the member's outputs, in the model's order, or export the "
                "model for this window (python -m export onnx --patch ...)")
    what = "patch and channels" if member.kind == "2d" else "patch"
    return (f"export the model for this window (python -m export onnx --patch ...), or correct the member's "
            f"{what}/stride in the manifest to the model's")


def check_engine(member, engine, sample: tuple[int, ...], xp=np) -> None:
    """EngineError unless ``engine`` maps one window ``(1, *sample)`` to ``(1, K, *patch/stride)``, K the
    member's output channels."""
    path = Path(getattr(engine, "path", None) or member.model)
    window = (1, *sample)
    who = f"{path}: member {member.name}"
    try:
        out = engine(xp.zeros(window, dtype=xp.float32))
        out = xp.asarray(out)
    except EngineError:
        raise
    except Exception as exc:  # noqa: BLE001 - any runtime's refusal, reported with the window it got
        raise EngineError(f"{who}: the model does not accept the window the manifest describes, {list(window)} "
                          f"({one_line(exc)}). Fix: {_fix(member)}") from exc
    shape = tuple(int(n) for n in out.shape)
    cells = tuple(p // member.stride for p in member.patch)
    k = member.out_channels
    want = (1, k, *cells)
    if shape == want:
        if not bool(xp.isfinite(out).all()):
            logger.warning("%s: the model's output on a window of zeros is not finite; tomograms where it is not "
                           "finite will fail", who)
        return
    if len(shape) != len(want):
        problem = (f"answers a window {list(window)} with an output of rank {len(shape)} {list(shape)}; "
                   f"a {member.kind} member's output is (N, {k}, {', '.join(f'{a}/stride' for a in ('D', 'H', 'W')[-len(cells):])}) "
                   f"= {list(want)}")
    elif shape[0] != 1:
        problem = f"answers a batch of 1 window with {shape[0]} outputs {list(shape)}"
    elif shape[1] != k and member.outputs:
        problem = (f"gives {shape[1]} output channels {list(shape)}, but the manifest's outputs name {k}: "
                   f"{', '.join(member.outputs)}")
    elif shape[1] != k:
        problem = f"gives {shape[1]} output channels {list(shape)}; a heatmap has 1"
    else:
        ratios = [p / n if n else float("inf") for p, n in zip(member.patch, shape[2:])]
        seen = ", ".join(f"{r:g}" for r in ratios)
        problem = (f"answers a {list(member.patch)} window with {list(shape[2:])} cells, a stride of {seen}, "
                   f"but the manifest says stride {member.stride} ({list(cells)} cells)")
    raise EngineError(f"{who}: the model {problem}. Fix: {_fix(member)}")
