"""``python -m export all``: every member of a manifest -> ``<out>/<member's model path>``.

The manifest is validated exactly as inference does (:func:`inference.manifest.parse.parse_manifest`)
except that the model files need not exist yet. Each member's arch is its name (or the longest
registry arch ``A`` it starts with as ``A_``/``A-``/``A.``), and must agree with the manifest on
kind, stride and (2d) channels, and its ``normalize`` must be ``{mean: 0, std: 1}`` (the registry
members take raw 0..255 and normalise inside the net). The member's patch, target spacing, normalization and activation
go into the ONNX metadata. Checkpoints are ``<checkpoints>/<name>.pt|.pth|.ckpt``.

``patch_scale`` (tests, quick checks) exports every patch side scaled and rounded to the arch's
patch multiple (32). Whenever the shipped manifest would not describe the files written -- a
scaled patch, a subset (``only``), or ``out`` not the manifest's folder -- a derived manifest
``<out>/<stem>.exported.yaml`` is written (same content, exported patches and members; model paths
still relative, now to ``out``). Either way the manifest that describes the export is loaded with
:func:`inference.manifest.parse.load_manifest` at the end, so ``all`` fails if it does not validate.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from export.checkpoints import find_checkpoint
from export.models.registry import REGISTRY, arch_for_member
from export.onnx_export import DEFAULT_OPSET, DEFAULT_TOL, ExportReport, export_onnx
from inference.common.errors import InputError
from inference.manifest.parse import load_manifest, parse_manifest, read_manifest_yaml
from inference.manifest.types import Manifest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AllResult:
    reports: tuple[ExportReport, ...]
    manifest: Path  # the manifest that describes the exported files (validated)


def read_manifest(path: str | Path) -> tuple[Manifest, dict]:
    """Parse and validate ``path`` without requiring its model files; returns it and the raw YAML."""
    raw = read_manifest_yaml(path)
    return parse_manifest(raw, Path(path), check_files=False), raw


def scale_patch(patch: tuple[int, ...], scale: float, multiple: int) -> tuple[int, ...]:
    """Each side times ``scale``, rounded to the nearest positive multiple of ``multiple``."""
    return tuple(max(multiple, int(round(p * scale / multiple)) * multiple) for p in patch)


def export_all(
    manifest_path: str | Path,
    out_dir: str | Path | None = None,
    *,
    checkpoints: str | Path | None = None,
    random_init: bool = False,
    patch_scale: float | None = None,
    only: list[str] | None = None,
    weights: str = "auto",
    trust_checkpoint: bool = False,
    opset: int = DEFAULT_OPSET,
    seed: int = 0,
    tol: float = DEFAULT_TOL,
    threads: int | None = None,
    ema_decay: float | None = None,
    parity_batch: int | None = None,
) -> AllResult:
    """Export the manifest's members (see the module docstring)."""
    manifest_path = Path(manifest_path)
    manifest, raw = read_manifest(manifest_path)
    out = Path(out_dir) if out_dir is not None else manifest_path.parent
    if (checkpoints is None) == (not random_init):
        raise InputError(None, "give exactly one of --checkpoints DIR or --random-init",
                         "pass --checkpoints with the folder of <member>.pt files, or --random-init")
    if patch_scale is not None and not (isinstance(patch_scale, (int, float)) and 0 < patch_scale <= 1):
        raise InputError(None, f"--patch-scale must be in (0, 1], got {patch_scale}", "pass e.g. --patch-scale 0.15")
    names = [m.name for m in manifest.members]
    if only:
        unknown = [n for n in only if n not in names]
        if unknown:
            raise InputError(manifest_path, f"--only names {', '.join(unknown)}, not members of the manifest",
                             f"use some of: {', '.join(names)}")
    members = [(i, m) for i, m in enumerate(manifest.members) if not only or m.name in only]

    plan = []
    for i, m in members:
        key = f"members[{i}] ({m.name})"
        arch = arch_for_member(m.name)
        if arch is None:
            raise InputError(manifest_path, f"{key}: no arch for member name {m.name!r}",
                             f"name members after an arch ({', '.join(REGISTRY)}, optionally with a _suffix) or "
                             "export it alone with python -m export onnx --arch module:function")
        spec = REGISTRY[arch]
        if m.kind != spec.kind or m.stride != spec.stride:
            raise InputError(manifest_path, f"{key}: kind {m.kind}, stride {m.stride} but arch {arch} is "
                             f"{spec.kind}, stride {spec.stride}", f"set kind: {spec.kind} and stride: {spec.stride}")
        if m.kind == "2d" and m.channels != spec.in_channels:
            raise InputError(manifest_path, f"{key}: channels {m.channels} but arch {arch} takes {spec.in_channels}",
                             f"set channels: {spec.in_channels}")
        n = m.normalize
        if (n.mode, n.mean, n.std) != ("affine", 0.0, 1.0):
            shown = "zscore" if n.mode == "zscore" else f"{{mean: {n.mean}, std: {n.std}}}"
            raise InputError(manifest_path, f"{key}.normalize: {shown}, but arch {arch} takes raw 0..255 intensities "
                             "and normalises inside the net", "set normalize: {mean: 0.0, std: 1.0}")
        model_rel = raw["members"][i]["model"]
        if Path(model_rel).is_absolute():
            raise InputError(manifest_path, f"{key}.model: {model_rel} is absolute",
                             "use a path relative to the manifest")
        if Path(model_rel).suffix.lower() != ".onnx":
            raise InputError(manifest_path, f"{key}.model: {model_rel} is not a .onnx file",
                             "export writes ONNX: name the member's model <name>.onnx")
        multiple = math.lcm(spec.patch_multiple, m.stride)
        patch = scale_patch(m.patch, patch_scale, multiple) if patch_scale is not None else m.patch
        ckpt = find_checkpoint(checkpoints, m.name) if checkpoints is not None else None
        plan.append((i, m, arch, patch, ckpt, out / model_rel))

    reports = []
    for i, m, arch, patch, ckpt, target in plan:
        logger.info("exporting %s (%s) at patch %s -> %s", m.name, arch, list(patch), target)
        extra = {"member": m.name}
        if m.slice_spacing is not None:
            extra.update(slice_spacing=str(m.slice_spacing), channels=str(m.channels))
        reports.append(export_onnx(
            arch, patch, target, checkpoint=ckpt, random_init=random_init, weights=weights,
            trust_checkpoint=trust_checkpoint, opset=opset, seed=seed, tol=tol, spacing=manifest.target_spacing,
            normalize=m.normalize, activation=m.activation, extra_metadata=extra, threads=threads,
            ema_decay=ema_decay, parity_batch=parity_batch))

    scaled = any(tuple(p) != m.patch for _, m, _, p, _, _ in plan)
    same_dir = out.resolve() == manifest_path.parent.resolve()
    if scaled or only or not same_dir:
        derived = dict(raw)
        derived["members"] = []
        for i, m, _, patch, _, _ in plan:
            entry = dict(raw["members"][i])
            entry["patch"] = list(patch)
            derived["members"].append(entry)
        out.mkdir(parents=True, exist_ok=True)
        described = out / f"{manifest_path.stem}.exported.yaml"
        header = (f"# Derived from {manifest_path.name} by `python -m export all`"
                  + (f" (patch scale {patch_scale})" if scaled else "") + ". Paths relative to this file.\n")
        described.write_text(header + yaml.safe_dump(derived, sort_keys=False))
    else:
        described = manifest_path
    load_manifest(described)  # the export is only done if the manifest describing it validates
    logger.info("%d member(s) exported; %s validates", len(reports), described)
    return AllResult(reports=tuple(reports), manifest=described)
