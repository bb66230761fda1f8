"""The manifest's member files (with ONNX external data) and TensorRT engines found beside them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from inference.common.errors import InputError
from kaggle_builder.config import check_task
from kaggle_builder.target import Target

ENGINE_SUFFIXES = (".engine", ".plan")


@dataclass(frozen=True)
class MemberFiles:
    name: str
    kind: str
    rel: Path                   # model path relative to the manifest (kept in the dataset)
    source: Path                # absolute path of the file
    extra: tuple[Path, ...]     # ONNX external-data files, relative to the manifest
    batch: int


@dataclass(frozen=True)
class EngineFile:
    member: str
    source: Path
    rel: Path                   # in the dataset: engines/<stem>.<gpu>-sm<cc>.trt<version><suffix>
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    fp16: bool
    batch: str


def _export_fix(manifest: Path) -> str:
    return (f"export the members first: python -m export all --manifest {manifest} --checkpoints DIR "
            "(or --random-init for runnable stand-ins); or use the demo members: python -m inference "
            "demo-models --out models --with-2d, then --manifest models/manifest.yaml (python build_submission.py "
            "--demo does all of it)")


def read_members(manifest_path: Path, target: Target):
    """Validate the manifest (for ``target``'s task) and list its member files; every problem is an InputError
    naming the file: the manifest's own, then a task that is not the target's, then missing member files.

    Returns ``(manifest, [MemberFiles])``.
    """
    from inference.manifest.parse import parse_manifest, read_manifest_yaml

    manifest_path = Path(manifest_path)
    raw = read_manifest_yaml(manifest_path)
    task = parse_manifest(raw, manifest_path, check_files=False).task  # all but the files, the manifest's message
    check_task(manifest_path, task, target)
    missing = []
    for i, m in enumerate(raw["members"]):
        rel = Path(m["model"])
        if rel.is_absolute() or ".." in rel.parts:
            raise InputError(manifest_path, f"key 'members[{i}] ({m['name']}).model': {m['model']} is not inside the "
                             "manifest's folder", "use a path relative to the manifest, below its folder")
        if not (manifest_path.parent / rel).is_file():
            missing.append(f"{m['name']}: {manifest_path.parent / rel}")
    if missing:
        raise InputError(manifest_path, f"{len(missing)} member file(s) not found ({'; '.join(missing)})",
                         _export_fix(manifest_path))
    manifest = parse_manifest(raw, manifest_path)
    members = []
    root = manifest_path.parent.resolve()
    for i, m in enumerate(manifest.members):
        rel = Path(raw["members"][i]["model"])
        extra = tuple(p.relative_to(root) for p in external_data(m.model) if p.is_relative_to(root))
        members.append(MemberFiles(name=m.name, kind=m.kind, rel=rel, source=m.model, extra=extra,
                                   batch=m.batch_size))
    return manifest, members


def external_data(model: Path) -> list[Path]:
    """Files an ONNX model keeps its weights in (external data), absolute; [] for others."""
    if model.suffix.lower() != ".onnx":
        return []
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load(str(model), load_external_data=False)
    except (OSError, ValueError, DecodeError) as exc:
        raise InputError(model, f"not a readable ONNX file ({exc})", "re-export the member") from None
    files = set()
    for init in proto.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            for entry in init.external_data:
                if entry.key == "location":
                    files.add((model.parent / entry.value).resolve())
    for f in sorted(files):
        if not f.is_file():
            raise InputError(model, f"external data file {f} not found", "copy it next to the ONNX file")
    return sorted(files)


def _tag(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def engine_name(stem: str, gpu_name: str, compute_capability: str, tensorrt_version: str, suffix: str) -> str:
    """``<stem>.<gpu>-sm<cc>.trt<version><suffix>``: an engine runs only where both match."""
    return f"{stem}.{_tag(gpu_name)}-sm{compute_capability.replace('.', '')}.trt{tensorrt_version}{suffix}"


def find_engines(members: Sequence[MemberFiles]) -> tuple[list[EngineFile], list[str]]:
    """Engines (with a sidecar built from the member's current ONNX) next to each member's ONNX; and notes
    about the ones skipped."""
    from inference.common.file_hash import sha256_file
    from inference.engines.tensorrt_sidecar import read_sidecar

    found, notes = [], []
    for m in members:
        if m.source.suffix.lower() != ".onnx":
            continue
        onnx_sha = None
        for path in sorted(m.source.parent.iterdir()):
            if path.suffix.lower() not in ENGINE_SUFFIXES or not path.name.startswith(m.source.stem):
                continue
            try:
                sc = read_sidecar(path)
            except InputError as exc:
                notes.append(f"skipped engine {path.name}: {exc.problem}")
                continue
            onnx_sha = onnx_sha or sha256_file(m.source)
            if sc.onnx_sha256 != onnx_sha:
                notes.append(f"skipped engine {path.name}: built from another ONNX than {m.source.name}")
                continue
            name = engine_name(m.source.stem, sc.gpu_name, sc.compute_capability, sc.tensorrt_version, path.suffix)
            found.append(EngineFile(member=m.name, source=path, rel=Path("engines") / name,
                                    tensorrt_version=sc.tensorrt_version, gpu_name=sc.gpu_name,
                                    compute_capability=sc.compute_capability, fp16=sc.fp16,
                                    batch=str(sc.batch_profile)))
    return found, notes


def engine_members(members: Sequence[MemberFiles], engines: Sequence[EngineFile]) -> dict:
    """What the notebook's engine step needs per member (only when every member is an ONNX file):
    ``name -> {"onnx": rel, "batch": [1, B, B], "engines": [rel, ...]}``."""
    if not members or not all(m.source.suffix.lower() == ".onnx" for m in members):
        return {}
    return {m.name: {"onnx": m.rel.as_posix(), "batch": [1, m.batch, m.batch],
                     "engines": [e.rel.as_posix() for e in engines if e.member == m.name]} for m in members}
