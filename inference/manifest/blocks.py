"""Parsing of the manifest's small blocks (normalize, decode, resample, windows, stitch, slices,
threshold, fusion) and :class:`Ctx`, which names the manifest and key in every error.

:mod:`inference.manifest.parse` parses members and the top level with these; the schema is documented there.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from inference.common.errors import InputError
from inference.manifest.types import Decode, Fusion, Intensity, Normalize, Resample, Slices, Stitch, Threshold, Windows


class Ctx:
    """Where we are in the manifest, for error messages."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, problem: str, fix: str | None = None) -> InputError:
        return InputError(self.path, f"key '{key}': {problem}", fix)

    def mapping(self, value: Any, key: str, fix: str | None = None) -> dict:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}", fix)
        return value

    def check_keys(self, data: dict, key: str, allowed: set[str], required: set[str] = frozenset()):
        unknown = sorted(set(map(str, data)) - allowed)
        if unknown:
            raise self.fail(
                f"{key}.{unknown[0]}" if key else unknown[0],
                "unknown key",
                f"remove it or use one of: {', '.join(sorted(allowed))}",
            )
        missing = sorted(required - set(data))
        if missing:
            raise self.fail(f"{key}.{missing[0]}" if key else missing[0], "missing required key", "add it")

    def number(self, value: Any, key: str, *, lo: float | None = None, hi: float | None = None,
               lo_open: bool = False, hi_open: bool = False) -> float:
        bounds = ([f"{'>' if lo_open else '>='} {lo}"] if lo is not None else []) + \
            ([f"{'<' if hi_open else '<='} {hi}"] if hi is not None else [])
        fix = "set it to a number" + (f" {' and '.join(bounds)}" if bounds else "")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, f"expected a finite number, got {value!r}", fix)
        v = float(value)
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise self.fail(key, f"{v} must be {bounds[0]}", fix)
        if hi is not None and (v > hi or (hi_open and v == hi)):
            raise self.fail(key, f"{v} must be {bounds[-1]}", fix)
        return v

    def integer(self, value: Any, key: str, *, lo: int = 1) -> int:
        fix = f"set it to a whole number >= {lo}"
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {value!r}", fix)
        if value < lo:
            raise self.fail(key, f"{value} must be >= {lo}", fix)
        return int(value)

    def choice(self, value: Any, key: str, options: tuple[str, ...]) -> str:
        if value not in options:
            raise self.fail(key, f"{value!r} is not one of {', '.join(options)}", "use one of those")
        return str(value)

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(key, f"expected true or false, got {value!r}", "write true or false")
        return value

    def block(self, value: Any, key: str, allowed: set[str]) -> dict:
        """An optional mapping (absent/null: empty) with only ``allowed`` keys."""
        data = self.mapping(value if value is not None else {}, key)
        self.check_keys(data, key, allowed)
        return data


def normalize(ctx: Ctx, value: Any, key: str) -> Normalize:
    if value == "zscore":
        return Normalize(mode="zscore", mean=0.0, std=1.0)
    data = ctx.mapping(value, key)
    ctx.check_keys(data, key, {"mean", "std"}, {"mean", "std"})
    return Normalize(
        mode="affine",
        mean=ctx.number(data["mean"], f"{key}.mean"),
        std=ctx.number(data["std"], f"{key}.std", lo=0.0, lo_open=True),
    )


INTENSITY_RULES = ("percentiles", "minmax", "raw")


def intensity(ctx: Ctx, value: Any, key: str) -> Intensity | None:
    """Absent: None (the member's default); a rule name; or ``{rule, low, high}`` (percentiles)."""
    if value is None:
        return None
    if isinstance(value, str):
        return Intensity(rule=ctx.choice(value, key, INTENSITY_RULES))
    data = ctx.block(value, key, {"rule", "low", "high"})
    rule = ctx.choice(data.get("rule", Intensity.rule), f"{key}.rule", INTENSITY_RULES)
    if rule != "percentiles" and ("low" in data or "high" in data):
        raise ctx.fail(key, f"low/high go with rule: percentiles, not {rule}", "drop them or use percentiles")
    low = ctx.number(data.get("low", Intensity.low), f"{key}.low", lo=0.0, hi=100.0)
    high = ctx.number(data.get("high", Intensity.high), f"{key}.high", lo=0.0, hi=100.0)
    if not low < high:
        raise ctx.fail(key, f"low {low:g} must be below high {high:g}", "e.g. {low: 0.5, high: 99.5}")
    return Intensity(rule=rule, low=low, high=high)


def decode(ctx: Ctx, value: Any, key: str) -> Decode:
    data = ctx.block(value, key, {"nms_kernel", "min_conf", "top_k", "border_A", "nms_radius_A"})
    k = ctx.integer(data.get("nms_kernel", Decode.nms_kernel), f"{key}.nms_kernel")
    if k % 2 == 0:
        raise ctx.fail(f"{key}.nms_kernel", f"{k} must be odd (the window is centred on a cell)",
                       f"use {k + 1} or {k - 1}" if k > 1 else "use 1 or 3")
    return Decode(
        nms_kernel=k,
        min_conf=ctx.number(data.get("min_conf", Decode.min_conf), f"{key}.min_conf", lo=0.0),
        top_k=ctx.integer(data.get("top_k", Decode.top_k), f"{key}.top_k"),
        border_A=ctx.number(data.get("border_A", Decode.border_A), f"{key}.border_A", lo=0.0),
        nms_radius_A=ctx.number(data.get("nms_radius_A", Decode.nms_radius_A), f"{key}.nms_radius_A", lo=0.0),
    )


def resample(ctx: Ctx, value: Any, key: str) -> Resample:
    data = ctx.block(value, key, {"grid", "quantize"})
    return Resample(grid=ctx.choice(data.get("grid", Resample.grid), f"{key}.grid", ("corner", "half_pixel")),
                    quantize=ctx.choice(data.get("quantize", Resample.quantize), f"{key}.quantize", ("none", "uint8")))


def windows(ctx: Ctx, value: Any, key: str) -> Windows:
    data = ctx.block(value, key, {"placement", "pad"})
    return Windows(placement=ctx.choice(data.get("placement", Windows.placement), f"{key}.placement",
                                        ("stride", "end")),
                   pad=ctx.choice(data.get("pad", Windows.pad), f"{key}.pad", ("mean", "zero")))


def stitch(ctx: Ctx, value: Any, key: str, stride: int, space: str = "prob") -> Stitch:
    """``mean``/``max`` (the original string form) or ``{mode, space, grid_stride}``; ``space``: the default
    space (``prob`` for motors, ``logit`` for particle members)."""
    if isinstance(value, str) or value is None:
        return Stitch(mode=ctx.choice(value if value is not None else "mean", key, ("mean", "max")), space=space)
    data = ctx.block(value, key, {"mode", "space", "grid_stride"})
    grid = data.get("grid_stride")
    if grid is not None:
        grid = ctx.integer(grid, f"{key}.grid_stride")
        if stride % grid:
            raise ctx.fail(f"{key}.grid_stride", f"{grid} does not divide the stride {stride}",
                           "the recipe upsamples stride-16 outputs x2: use 8 (or the stride itself)")
    return Stitch(mode=ctx.choice(data.get("mode", "mean"), f"{key}.mode", ("mean", "max")),
                  space=ctx.choice(data.get("space", space), f"{key}.space", ("prob", "logit")),
                  grid_stride=grid)


def slices(ctx: Ctx, value: Any, key: str) -> Slices:
    data = ctx.block(value, key, {"window", "step", "cell"})
    return Slices(window=ctx.integer(data.get("window", Slices.window), f"{key}.window"),
                  step=ctx.integer(data.get("step", Slices.step), f"{key}.step"),
                  cell=ctx.integer(data.get("cell", Slices.cell), f"{key}.cell"))


def threshold(ctx: Ctx, value: Any) -> Threshold:
    data = ctx.mapping(value, "threshold")
    ctx.check_keys(data, "threshold", {"quantile", "fixed", "keep_equal"})
    rules = [k for k in ("quantile", "fixed") if k in data]
    if len(rules) != 1:
        raise ctx.fail("threshold", "needs exactly one of 'quantile' or 'fixed'",
                       "give one, e.g. threshold: {quantile: 0.55}")
    keep_equal = ctx.boolean(data.get("keep_equal", False), "threshold.keep_equal")
    if "quantile" in data:
        return Threshold(quantile=ctx.number(data["quantile"], "threshold.quantile", lo=0.0, hi=1.0),
                         keep_equal=keep_equal)
    return Threshold(fixed=ctx.number(data["fixed"], "threshold.fixed"), keep_equal=keep_equal)


def fusion(ctx: Ctx, value: Any) -> Fusion:
    data = ctx.block(value, "fusion", {"method", "dist_A", "conf_type", "skip_conf", "box_A", "iou_thr", "rescale"})
    method = ctx.choice(data.get("method", "wbf"), "fusion.method", ("wbf", "wbf_iou"))
    rescale = ctx.choice(data.get("rescale", "members"), "fusion.rescale", ("members", "weights"))
    if method == "wbf_iou" and rescale != "members":
        raise ctx.fail("fusion.rescale", "wbf_iou (ensemble_boxes) rescales by the number of inputs only",
                       "use method wbf, or drop rescale")
    return Fusion(
        method=method,
        dist_A=ctx.number(data.get("dist_A", 1000.0), "fusion.dist_A", lo=0.0, lo_open=True),
        conf_type=ctx.choice(data.get("conf_type", "avg"), "fusion.conf_type", ("avg", "max")),
        skip_conf=ctx.number(data.get("skip_conf", 0.0), "fusion.skip_conf", lo=0.0),
        box_A=ctx.number(data.get("box_A", 1000.0), "fusion.box_A", lo=0.0, lo_open=True),
        iou_thr=ctx.number(data.get("iou_thr", 0.55), "fusion.iou_thr", lo=0.0, hi=1.0),
        rescale=rescale,
    )
