"""``weights_manifest.yaml``: parsed once into frozen dataclasses (:mod:`inference.manifest.types`).

Config flows one way: this file -> :class:`Manifest` -> function arguments. Nothing else reads
the YAML. Every problem (unknown key, missing file, bad value) is an :class:`InputError` naming
the key and the manifest path. Paths inside the manifest are relative to the manifest file.

Schema (keys not listed here are errors; defaults in brackets)::

    target_spacing: 16.0          # Å (1-100); every member sees volumes resampled to it
    default_spacing: 13.1         # [13.1] Å (1-100), for tomograms with no spacing in a CSV or header
    members:                      # one or more
      - name: x3d_m               # unique, [A-Za-z0-9_.-]
        kind: 3d                  # 3d: (N,1,D,H,W) -> (N,1,D/s,H/s,W/s); 2d: (N,C,H,W) -> (N,1,H/s,W/s)
        model: members/x3d_m.onnx # a suffix with an engine: inference.engines.registry.ENGINES
        patch: [64, 128, 128]     # input window in voxels at target_spacing (2d: [H, W])
        stride: 16                # output stride s; every patch side a multiple of it
        overlap: 0.25             # [0.25] fraction in [0, 1), scalar or one per axis
        normalize: {mean: 0.0, std: 255.0}   # x = (v - mean) / std; or the string `zscore`
        activation: sigmoid       # [sigmoid] sigmoid | none, applied to the raw output
        tta: [zyx]                # [[zyx]] (2d: [[yx]]); see inference/tta.py
        weight: 1.0               # [1.0] > 0, used by fusion
        stitch: mean              # [mean] mean | max over overlapping windows, or the mapping
                                  # {mode: [mean] | max, space: [prob] | logit, grid_stride: [none] | g}
        batch_size: 2             # [2] windows per engine call
        decode: {nms_kernel: 3, min_conf: 0.02, top_k: 50, border_A: 0.0, nms_radius_A: 0.0}
                                  # nms_kernel: odd, in cells of the coarsest axis (a 2d member's
                                  # thin z cells get the same extent in Å); border_A: ignore cells
                                  # centred closer than this to the tomogram's border;
                                  # nms_radius_A > 0: greedy L2 NMS in Å (keep >= R), then top_k
        channels: 3               # 2d only [3]: neighbouring slices fed as channels
        slice_spacing: 32.0       # 2d only: Å between the slices of the 2d member's volume
        resample: {grid: corner, quantize: none}   # [corner] | half_pixel; [none] | uint8
        windows: {placement: stride, pad: mean}    # [stride] | end; [mean] | zero (raw 0)
        tta_scope: volume         # [volume] | window: transform each window, invert its output
        tta_merge: mean           # [mean] | separate: one heatmap, decode and fusion input per TTA
        slices: {window: 3, step: 3, cell: 4}      # 2d only [absent]: the recipe's slice windows
        intensity: {rule: percentiles, low: 0.5, high: 99.5}
                                  # how a volume that is NOT 8-bit (16-bit, float MRC/npy/TIFF) reaches
                                  # the 0..255 range that a fixed mean/std and quantize: uint8 assume:
                                  # percentiles (low -> 0, high -> 255, clipped) | minmax | raw (as it
                                  # is: mean/std are for the data's own units). Also the string form
                                  # `intensity: raw`. [percentiles 0.5/99.5 with a fixed mean/std or
                                  # quantize: uint8; raw for zscore]. 8-bit data is never mapped.
        fp16: false               # [absent: the run's --fp16] whether TensorRT (ONNX Runtime's TensorRT
                                  # provider, engines the Kaggle notebook builds) may run this member in
                                  # fp16; the CPU and the CUDA provider run the ONNX file as exported
    threshold: {quantile: 0.55}   # or {fixed: 0.5}; plus keep_equal: [false] | true; a tomogram is
                                  # "no motor" when its best conf is <= it (< it with keep_equal)
    fusion: {method: wbf, dist_A: 1000.0, conf_type: avg, skip_conf: 0.0, rescale: members}
                                  # rescale: [members] | weights (avg conf); method wbf_iou
                                  # (ensemble_boxes, for comparison) adds box_A, iou_thr

``task: particles`` (multi-class picking; the default task is ``motors``, the schema above) adds
``classes``, a top-level ``decode``, ``ensemble`` and the members' ``outputs``: :mod:`inference.manifest.particles`
(docs/PARTICLES.md).

The recipe keys (resample ... slices, stitch as a mapping, nms_radius_A, rescale, keep_equal) are
documented key by key against the 3rd-place code in docs/RECIPE.md. ``windows.placement: end`` and
``slices`` put windows off the output grid, so their outputs always go through the resized grid:
``stitch.grid_stride`` if given, else the stride itself. With ``slices``, ``channels`` equals
``slices.window``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from inference.common.errors import InputError
from inference.engines.registry import ENGINES
from inference.io.spacing import SPACING_RANGE_A
from inference.manifest import blocks
from inference.manifest import particles as particle_blocks
from inference.manifest.blocks import Ctx
from inference.manifest.types import (
    Decode,
    Fusion,
    Intensity,
    Manifest,
    Member,
    Normalize,
    Resample,
    Slices,
    Stitch,
    Threshold,
    Windows,
    parse_tta,
)

__all__ = ["Decode", "Fusion", "Intensity", "Manifest", "Member", "Normalize", "Resample", "Slices", "Stitch",
           "Threshold", "Windows", "load_manifest", "parse_manifest", "read_manifest_yaml"]

MODEL_SUFFIXES = tuple(ENGINES)
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


_MEMBER_KEYS = {
    "name", "kind", "model", "patch", "stride", "overlap", "normalize", "activation", "tta",
    "weight", "stitch", "batch_size", "decode", "channels", "slice_spacing",
    "resample", "windows", "tta_scope", "tta_merge", "slices", "intensity", "fp16",
}


def _member(ctx: Ctx, value: Any, i: int, check_files: bool = True, classes=None) -> Member:
    """One member; ``classes`` (task particles): the manifest's classes."""
    key = f"members[{i}]"
    data = ctx.mapping(value, key)
    particles = classes is not None
    allowed = _MEMBER_KEYS | (particle_blocks.MEMBER_KEYS if particles else set())
    ctx.check_keys(data, key, allowed, {"name", "kind", "model", "patch", "stride", "normalize"}
                   | ({"outputs"} if particles else set()))
    name = data["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ctx.fail(f"{key}.name", f"{name!r} must be letters, digits, '_', '.', '-'",
                       "it names the candidate file <name>.csv")
    key = f"members[{i}] ({name})"
    kind = ctx.choice(data["kind"], f"{key}.kind", ("3d", "2d"))
    ndim = 3 if kind == "3d" else 2

    model_rel = data["model"]
    if not isinstance(model_rel, str):
        raise ctx.fail(f"{key}.model", f"expected a path, got {model_rel!r}",
                       "give the model file's path, relative to the manifest")
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
        raise ctx.fail(f"{key}.patch", f"expected {ndim} integers for a {kind} member, got {patch_raw!r}",
                       "give the window the model takes, e.g. [64, 256, 256] (3d) or [512, 512] (2d)")
    patch = tuple(ctx.integer(p, f"{key}.patch") for p in patch_raw)
    for p in patch:
        if p % stride:
            raise ctx.fail(f"{key}.patch", f"{p} is not a multiple of stride {stride}",
                           "windows start on the output grid: make every patch side a multiple of the stride")

    overlap_raw = data.get("overlap", 0.25)
    overlaps = overlap_raw if isinstance(overlap_raw, (list, tuple)) else [overlap_raw] * ndim
    if len(overlaps) != ndim:
        raise ctx.fail(f"{key}.overlap", f"expected a number or {ndim} numbers, got {overlap_raw!r}",
                       "give a fraction in [0, 1), e.g. overlap: 0.25")
    overlap = tuple(ctx.number(o, f"{key}.overlap", lo=0.0, hi=1.0, hi_open=True) for o in overlaps)

    tta_raw = data.get("tta", ["zyx" if kind == "3d" else "yx"])
    if not isinstance(tta_raw, (list, tuple)) or not tta_raw:
        raise ctx.fail(f"{key}.tta", f"expected a non-empty list of names, got {tta_raw!r}",
                       "list the transforms, e.g. tta: [zyx]")
    for t in tta_raw:
        try:
            parse_tta(str(t), "zyx" if kind == "3d" else "yx")
        except ValueError as exc:
            raise ctx.fail(f"{key}.tta", str(exc),
                           "name a transform <axis order>[_<axes to flip>], e.g. zyx or zyx_x") from None

    channels = 1
    slice_spacing = None
    slices = None
    if kind == "2d":
        channels = ctx.integer(data.get("channels", 3), f"{key}.channels")
        if "slice_spacing" not in data:
            raise ctx.fail(f"{key}.slice_spacing", "missing (required for 2d members)",
                           "add the Å between the slices the model was trained on, e.g. slice_spacing: 32")
        slice_spacing = ctx.number(data["slice_spacing"], f"{key}.slice_spacing", lo=0.0, lo_open=True)
        if data.get("slices") is not None:
            slices = blocks.slices(ctx, data["slices"], f"{key}.slices")
            if channels != slices.window:
                raise ctx.fail(f"{key}.channels", f"{channels} but slices.window is {slices.window}",
                               "the window's slices are the engine's channels: make them equal")
    else:
        for k2 in ("channels", "slice_spacing", "slices"):
            if k2 in data:
                raise ctx.fail(f"{key}.{k2}", "only 2d members take this key", "remove it")

    stitch = blocks.stitch(ctx, data.get("stitch"), f"{key}.stitch", stride, space="logit" if particles else "prob")
    if particles and stitch.space != "logit":
        raise ctx.fail(f"{key}.stitch.space", "particle members are stitched and averaged as logits",
                       "drop stitch.space, or set it to logit")
    windows = blocks.windows(ctx, data.get("windows"), f"{key}.windows")
    tta_merge = ctx.choice(data.get("tta_merge", "mean"), f"{key}.tta_merge", ("mean", "separate"))
    if tta_merge == "separate" and len(set(map(str, tta_raw))) != len(tta_raw):
        raise ctx.fail(f"{key}.tta", f"{list(tta_raw)} repeats a name, but tta_merge: separate makes one "
                       "fusion input <member>@<tta> per name", "list each transform once")

    return Member(
        name=name,
        kind=kind,
        model=model,
        patch=patch,
        stride=stride,
        overlap=overlap,
        normalize=blocks.normalize(ctx, data["normalize"], f"{key}.normalize"),
        activation=ctx.choice(data.get("activation", "softmax" if particles else "sigmoid"), f"{key}.activation",
                              particle_blocks.ACTIVATIONS if particles else ("sigmoid", "none")),
        tta=tuple(str(t) for t in tta_raw),
        weight=ctx.number(data.get("weight", 1.0), f"{key}.weight", lo=0.0, lo_open=True),
        stitch=stitch,
        batch_size=ctx.integer(data.get("batch_size", 2), f"{key}.batch_size"),
        decode=blocks.decode(ctx, None if particles else data.get("decode"), f"{key}.decode"),
        channels=channels,
        slice_spacing=slice_spacing,
        resample=blocks.resample(ctx, data.get("resample"), f"{key}.resample"),
        windows=windows,
        tta_scope=ctx.choice(data.get("tta_scope", "volume"), f"{key}.tta_scope", ("volume", "window")),
        tta_merge=tta_merge,
        slices=slices,
        intensity=blocks.intensity(ctx, data.get("intensity"), f"{key}.intensity"),
        fp16=None if data.get("fp16") is None else ctx.boolean(data["fp16"], f"{key}.fp16"),
        outputs=particle_blocks.outputs(ctx, data["outputs"], f"{key}.outputs", classes) if particles else (),
        class_decode=(particle_blocks.decode(ctx, data["decode"], f"{key}.decode", classes)
                      if particles and "decode" in data else ()),
    )


def parse_manifest(data: Any, path: Path, *, check_files: bool = True) -> Manifest:
    """Validate already-loaded YAML ``data``; ``path`` locates relative model paths and errors.

    ``check_files=False`` skips the model-file existence check (``python -m export all`` reads the
    manifest before the files exist); everything else is validated the same.
    """
    ctx = Ctx(Path(path))
    if not isinstance(data, dict) and _looks_like_csv(Path(path)):
        raise InputError(path, "is a CSV table, not a manifest", "pass --manifest with a weights_manifest.yaml (keys "
                         "target_spacing, members, threshold); a voxel-spacing table goes to --spacing-csv")
    data = ctx.mapping(data, "(top level)", "pass --manifest with a weights_manifest.yaml (keys target_spacing, "
                                            "members, threshold)")
    task = ctx.choice(data.get("task", "motors"), "task", ("motors", "particles"))
    if task == "particles":
        ctx.check_keys(data, "", particle_blocks.TOP_KEYS, {"target_spacing", "members", "classes"})
        classes = particle_blocks.classes(ctx, data["classes"])
    else:
        ctx.check_keys(data, "", {"task", "target_spacing", "default_spacing", "members", "threshold", "fusion"},
                       {"target_spacing", "members", "threshold"})
        classes = None
    members_raw = data["members"]
    if not isinstance(members_raw, list) or not members_raw:
        raise ctx.fail("members", "expected a non-empty list of members", "list at least one member")
    members = tuple(_member(ctx, m, i, check_files, classes) for i, m in enumerate(members_raw))
    names = [m.name for m in members]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ctx.fail("members", f"duplicate member name(s): {', '.join(dupes)}", "give each member its own name")
    particles = particle_blocks.particles(ctx, data, classes, members) if classes is not None else None
    return Manifest(
        path=Path(path).resolve(),
        target_spacing=ctx.number(data["target_spacing"], "target_spacing", lo=SPACING_RANGE_A[0],
                                  hi=SPACING_RANGE_A[1]),
        members=members,
        threshold=blocks.threshold(ctx, data["threshold"]) if particles is None else None,
        default_spacing=ctx.number(data.get("default_spacing", 13.1), "default_spacing", lo=SPACING_RANGE_A[0],
                                   hi=SPACING_RANGE_A[1]),
        fusion=blocks.fusion(ctx, data.get("fusion")) if particles is None else particle_blocks.fusion(ctx, data),
        task=task,
        particles=particles,
    )


def _looks_like_csv(path: Path) -> bool:
    """A ``.csv`` name, or a first line of comma-separated names (a table's header)."""
    if path.suffix.lower() in (".csv", ".tsv"):
        return True
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            first = fh.readline()
    except OSError:
        return False
    return first.count(",") >= 1 and ":" not in first


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
