"""``weights_manifest.yaml``: parsed once into frozen dataclasses.

Config flows one way: this file -> :class:`Manifest` -> function arguments. Nothing else reads
the YAML. Every problem (unknown key, missing file, bad value) is an :class:`InputError` naming
the key and the manifest path. Paths inside the manifest are relative to the manifest file.

Schema (keys not listed here are errors; defaults in brackets)::

    target_spacing: 16.0          # Å; every member sees volumes resampled to it
    default_spacing: 13.1         # [13.1] Å, for tomograms with no spacing in a CSV or header
    members:                      # one or more
      - name: x3d_m               # unique, [A-Za-z0-9_.-]
        kind: 3d                  # 3d: (N,1,D,H,W) -> (N,1,D/s,H/s,W/s); 2d: (N,C,H,W) -> (N,1,H/s,W/s)
        model: members/x3d_m.onnx # a suffix with an engine: inference.engines.ENGINES
        patch: [64, 128, 128]     # input window in voxels at target_spacing (2d: [H, W])
        stride: 16                # output stride s; every patch side a multiple of it
        overlap: 0.25             # [0.25] fraction in [0, 1), scalar or one per axis
        normalize: {mean: 0.0, std: 255.0}   # x = (v - mean) / std; or the string `zscore`
        activation: sigmoid       # [sigmoid] sigmoid | none, applied to the raw output
        tta: [zyx]                # [[zyx]] (2d: [[yx]]); see inference/tta.py
        weight: 1.0               # [1.0] > 0, used by fusion
        stitch: mean              # [mean] mean | max over overlapping windows
        batch_size: 2             # [2] windows per engine call
        decode: {nms_kernel: 3, min_conf: 0.02, top_k: 50, border_A: 0.0}
                                  # nms_kernel: odd, in cells of the coarsest axis (a 2d member's
                                  # thin z cells get the same extent in Å); border_A: ignore cells
                                  # centred closer than this to the tomogram's border
        channels: 3               # 2d only [3]: neighbouring slices fed as channels
        slice_spacing: 32.0       # 2d only: Å between the slices of the 2d member's volume
    threshold: {quantile: 0.55}   # or {fixed: 0.5}; a tomogram is "no motor" when its best conf <= it
    fusion: {method: wbf, dist_A: 1000.0, conf_type: avg, skip_conf: 0.0}
                                  # method wbf_iou (ensemble_boxes, for comparison) adds box_A, iou_thr
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from inference.engines import ENGINES
from inference.errors import InputError
from inference.tta import parse_tta

MODEL_SUFFIXES = tuple(ENGINES)
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Normalize:
    """``x = (v - mean) / std`` (``mode='affine'``) or per-tomogram z-score (``mode='zscore'``)."""

    mode: str = "affine"
    mean: float = 0.0
    std: float = 255.0


@dataclass(frozen=True)
class Decode:
    nms_kernel: int = 3
    min_conf: float = 0.02
    top_k: int = 50
    border_A: float = 0.0  # drop cells whose centre is closer than this to the tomogram's border


@dataclass(frozen=True)
class Member:
    name: str
    kind: str
    model: Path
    patch: tuple[int, ...]
    stride: int
    overlap: tuple[float, ...]
    normalize: Normalize
    activation: str
    tta: tuple[str, ...]
    weight: float
    stitch: str
    batch_size: int
    decode: Decode
    channels: int = 1
    slice_spacing: float | None = None

    @property
    def spatial_axes(self) -> str:
        return "zyx" if self.kind == "3d" else "yx"


@dataclass(frozen=True)
class Threshold:
    """Exactly one of ``quantile`` (of the per-tomogram best confs) or ``fixed`` is set."""

    quantile: float | None = None
    fixed: float | None = None

    def describe(self) -> str:
        return f"quantile {self.quantile}" if self.quantile is not None else f"fixed {self.fixed}"


@dataclass(frozen=True)
class Fusion:
    method: str = "wbf"
    dist_A: float = 1000.0
    conf_type: str = "avg"
    skip_conf: float = 0.0
    box_A: float = 1000.0   # wbf_iou: cube side around each point
    iou_thr: float = 0.55   # wbf_iou: IoU to join a cluster


@dataclass(frozen=True)
class Manifest:
    path: Path
    target_spacing: float
    members: tuple[Member, ...]
    threshold: Threshold
    default_spacing: float = 13.1
    fusion: Fusion = field(default_factory=Fusion)

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(name)


# --------------------------------------------------------------------------- parsing helpers


class _Ctx:
    """Where we are in the manifest, for error messages."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key: str, problem: str, fix: str | None = None) -> InputError:
        return InputError(self.path, f"key '{key}': {problem}", fix)

    def mapping(self, value: Any, key: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a mapping, got {type(value).__name__}")
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
            raise self.fail(f"{key}.{missing[0]}" if key else missing[0], "missing required key")

    def number(self, value: Any, key: str, *, lo: float | None = None, hi: float | None = None,
               lo_open: bool = False, hi_open: bool = False) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise self.fail(key, f"expected a finite number, got {value!r}")
        v = float(value)
        if lo is not None and (v < lo or (lo_open and v == lo)):
            raise self.fail(key, f"{v} must be {'>' if lo_open else '>='} {lo}")
        if hi is not None and (v > hi or (hi_open and v == hi)):
            raise self.fail(key, f"{v} must be {'<' if hi_open else '<='} {hi}")
        return v

    def integer(self, value: Any, key: str, *, lo: int = 1) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"expected an integer, got {value!r}")
        if value < lo:
            raise self.fail(key, f"{value} must be >= {lo}")
        return int(value)

    def choice(self, value: Any, key: str, options: tuple[str, ...]) -> str:
        if value not in options:
            raise self.fail(key, f"{value!r} is not one of {', '.join(options)}")
        return str(value)


def _normalize(ctx: _Ctx, value: Any, key: str) -> Normalize:
    if value == "zscore":
        return Normalize(mode="zscore", mean=0.0, std=1.0)
    data = ctx.mapping(value, key)
    ctx.check_keys(data, key, {"mean", "std"}, {"mean", "std"})
    return Normalize(
        mode="affine",
        mean=ctx.number(data["mean"], f"{key}.mean"),
        std=ctx.number(data["std"], f"{key}.std", lo=0.0, lo_open=True),
    )


def _decode(ctx: _Ctx, value: Any, key: str) -> Decode:
    data = ctx.mapping(value if value is not None else {}, key)
    ctx.check_keys(data, key, {"nms_kernel", "min_conf", "top_k", "border_A"})
    k = ctx.integer(data.get("nms_kernel", Decode.nms_kernel), f"{key}.nms_kernel")
    if k % 2 == 0:
        raise ctx.fail(f"{key}.nms_kernel", f"{k} must be odd (the window is centred on a cell)")
    return Decode(
        nms_kernel=k,
        min_conf=ctx.number(data.get("min_conf", Decode.min_conf), f"{key}.min_conf", lo=0.0),
        top_k=ctx.integer(data.get("top_k", Decode.top_k), f"{key}.top_k"),
        border_A=ctx.number(data.get("border_A", Decode.border_A), f"{key}.border_A", lo=0.0),
    )


_MEMBER_KEYS = {
    "name", "kind", "model", "patch", "stride", "overlap", "normalize", "activation", "tta",
    "weight", "stitch", "batch_size", "decode", "channels", "slice_spacing",
}


def _member(ctx: _Ctx, value: Any, i: int, check_files: bool = True) -> Member:
    key = f"members[{i}]"
    data = ctx.mapping(value, key)
    ctx.check_keys(data, key, _MEMBER_KEYS, {"name", "kind", "model", "patch", "stride", "normalize"})
    name = data["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ctx.fail(f"{key}.name", f"{name!r} must be letters, digits, '_', '.', '-'",
                       "it names the candidate file <name>.csv")
    key = f"members[{i}] ({name})"
    kind = ctx.choice(data["kind"], f"{key}.kind", ("3d", "2d"))
    ndim = 3 if kind == "3d" else 2

    model_rel = data["model"]
    if not isinstance(model_rel, str):
        raise ctx.fail(f"{key}.model", f"expected a path, got {model_rel!r}")
    model = (ctx.path.parent / model_rel).resolve()
    if model.suffix.lower() not in MODEL_SUFFIXES:
        raise ctx.fail(f"{key}.model", f"'{model_rel}' has suffix '{model.suffix}'",
                       f"use one of {', '.join(MODEL_SUFFIXES)}")
    if check_files and not model.is_file():
        raise ctx.fail(f"{key}.model", f"file not found: {model}",
                       "paths are relative to the manifest; export the member first")

    stride = ctx.integer(data["stride"], f"{key}.stride")
    patch_raw = data["patch"]
    if not isinstance(patch_raw, (list, tuple)) or len(patch_raw) != ndim:
        raise ctx.fail(f"{key}.patch", f"expected {ndim} integers for a {kind} member, got {patch_raw!r}")
    patch = tuple(ctx.integer(p, f"{key}.patch") for p in patch_raw)
    for p in patch:
        if p % stride:
            raise ctx.fail(f"{key}.patch", f"{p} is not a multiple of stride {stride}",
                           "windows start on the output grid: make every patch side a multiple of the stride")

    overlap_raw = data.get("overlap", 0.25)
    overlaps = overlap_raw if isinstance(overlap_raw, (list, tuple)) else [overlap_raw] * ndim
    if len(overlaps) != ndim:
        raise ctx.fail(f"{key}.overlap", f"expected a number or {ndim} numbers, got {overlap_raw!r}")
    overlap = tuple(ctx.number(o, f"{key}.overlap", lo=0.0, hi=1.0, hi_open=True) for o in overlaps)

    tta_raw = data.get("tta", ["zyx" if kind == "3d" else "yx"])
    if not isinstance(tta_raw, (list, tuple)) or not tta_raw:
        raise ctx.fail(f"{key}.tta", f"expected a non-empty list of names, got {tta_raw!r}")
    for t in tta_raw:
        try:
            parse_tta(str(t), "zyx" if kind == "3d" else "yx")
        except ValueError as exc:
            raise ctx.fail(f"{key}.tta", str(exc)) from None

    channels = 1
    slice_spacing = None
    if kind == "2d":
        channels = ctx.integer(data.get("channels", 3), f"{key}.channels")
        if "slice_spacing" not in data:
            raise ctx.fail(f"{key}.slice_spacing", "missing (required for 2d members)")
        slice_spacing = ctx.number(data["slice_spacing"], f"{key}.slice_spacing", lo=0.0, lo_open=True)
    else:
        for k2 in ("channels", "slice_spacing"):
            if k2 in data:
                raise ctx.fail(f"{key}.{k2}", "only 2d members take this key")

    return Member(
        name=name,
        kind=kind,
        model=model,
        patch=patch,
        stride=stride,
        overlap=overlap,
        normalize=_normalize(ctx, data["normalize"], f"{key}.normalize"),
        activation=ctx.choice(data.get("activation", "sigmoid"), f"{key}.activation", ("sigmoid", "none")),
        tta=tuple(str(t) for t in tta_raw),
        weight=ctx.number(data.get("weight", 1.0), f"{key}.weight", lo=0.0, lo_open=True),
        stitch=ctx.choice(data.get("stitch", "mean"), f"{key}.stitch", ("mean", "max")),
        batch_size=ctx.integer(data.get("batch_size", 2), f"{key}.batch_size"),
        decode=_decode(ctx, data.get("decode"), f"{key}.decode"),
        channels=channels,
        slice_spacing=slice_spacing,
    )


def _threshold(ctx: _Ctx, value: Any) -> Threshold:
    data = ctx.mapping(value, "threshold")
    ctx.check_keys(data, "threshold", {"quantile", "fixed"})
    if len(data) != 1:
        raise ctx.fail("threshold", "give exactly one of 'quantile' or 'fixed'")
    if "quantile" in data:
        return Threshold(quantile=ctx.number(data["quantile"], "threshold.quantile", lo=0.0, hi=1.0))
    return Threshold(fixed=ctx.number(data["fixed"], "threshold.fixed"))


def _fusion(ctx: _Ctx, value: Any) -> Fusion:
    data = ctx.mapping(value if value is not None else {}, "fusion")
    ctx.check_keys(data, "fusion", {"method", "dist_A", "conf_type", "skip_conf", "box_A", "iou_thr"})
    return Fusion(
        method=ctx.choice(data.get("method", "wbf"), "fusion.method", ("wbf", "wbf_iou")),
        dist_A=ctx.number(data.get("dist_A", 1000.0), "fusion.dist_A", lo=0.0, lo_open=True),
        conf_type=ctx.choice(data.get("conf_type", "avg"), "fusion.conf_type", ("avg", "max")),
        skip_conf=ctx.number(data.get("skip_conf", 0.0), "fusion.skip_conf", lo=0.0),
        box_A=ctx.number(data.get("box_A", 1000.0), "fusion.box_A", lo=0.0, lo_open=True),
        iou_thr=ctx.number(data.get("iou_thr", 0.55), "fusion.iou_thr", lo=0.0, hi=1.0),
    )


def parse_manifest(data: Any, path: Path, *, check_files: bool = True) -> Manifest:
    """Validate already-loaded YAML ``data``; ``path`` locates relative model paths and errors.

    ``check_files=False`` skips the model-file existence check (``python -m export all`` reads the
    manifest before the files exist); everything else is validated the same.
    """
    ctx = _Ctx(Path(path))
    data = ctx.mapping(data, "(top level)")
    ctx.check_keys(data, "", {"target_spacing", "default_spacing", "members", "threshold", "fusion"},
                   {"target_spacing", "members", "threshold"})
    members_raw = data["members"]
    if not isinstance(members_raw, list) or not members_raw:
        raise ctx.fail("members", "expected a non-empty list of members")
    members = tuple(_member(ctx, m, i, check_files) for i, m in enumerate(members_raw))
    names = [m.name for m in members]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ctx.fail("members", f"duplicate member name(s): {', '.join(dupes)}")
    return Manifest(
        path=Path(path).resolve(),
        target_spacing=ctx.number(data["target_spacing"], "target_spacing", lo=0.0, lo_open=True),
        members=members,
        threshold=_threshold(ctx, data["threshold"]),
        default_spacing=ctx.number(data.get("default_spacing", 13.1), "default_spacing", lo=0.0, lo_open=True),
        fusion=_fusion(ctx, data.get("fusion")),
    )


def read_manifest_yaml(path: str | Path) -> Any:
    """The manifest file's YAML, or an InputError naming the file (missing, not YAML)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "manifest not found", "pass --manifest with the path of weights_manifest.yaml")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(path, f"not valid YAML ({exc})", "fix the syntax at the line shown") from None


def load_manifest(path: str | Path, *, check_files: bool = True) -> Manifest:
    """Read and validate a manifest file (``check_files=False``: model files need not exist yet)."""
    return parse_manifest(read_manifest_yaml(path), Path(path), check_files=check_files)
