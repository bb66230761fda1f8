"""The Kaggle dataset folder: the package wheel at its top, the manifest and member files at their
relative paths, engines, offline wheels in ``wheels/<group>/``, Kaggle's metadata and the build record
(``MOTORFINDER.json``, which the notebook reads)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Sequence

from kaggle_builder.config import BuildConfig
from kaggle_builder.image import KaggleImage
from kaggle_builder.members import EngineFile, MemberFiles, engine_members
from kaggle_builder.target import MANIFEST_NAME, RECORD_NAME, WHEELS_DIR
from kaggle_builder.wheels import ShippedWheel, WheelGroup


def dataset_metadata(cfg: BuildConfig) -> dict:
    """Kaggle's dataset-metadata.json (Kaggle API docs, datasets_metadata.md)."""
    return {
        "title": cfg.title,
        "id": cfg.dataset_id,
        "licenses": [{"name": cfg.license}],
        "description": f"Offline package for the Kaggle competition {cfg.target.title}: the motorfinder wheel (MIT), "
                       "the ensemble manifest and its ONNX members, optional TensorRT engines and offline wheels. "
                       "Built by build_submission.py; see docs/KAGGLE.md.",
    }


def git_commit(root: Path) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return None
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def _copy(src: Path, dest: Path) -> None:
    """Hard link when possible (same file system: instant, no space), else copy."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        dest.hardlink_to(src)
    except OSError:
        shutil.copy2(src, dest)


def write_dataset(ds: Path, cfg: BuildConfig, *, wheel: Path, members: Sequence[MemberFiles],
                  engines: Sequence[EngineFile], shipped: Sequence[ShippedWheel], groups: Sequence[WheelGroup],
                  image: KaggleImage, version: str, source_root: Path | None,
                  particle_types: Sequence[str] = ()) -> dict:
    """Fill the (new, empty) folder ``ds``; the build record written into it. ``particle_types``: the
    manifest's classes (task particles; the notebook's submission check accepts only these)."""
    ds.mkdir(parents=True, exist_ok=True)
    shutil.copy2(wheel, ds / wheel.name)
    shutil.copy2(cfg.manifest, ds / MANIFEST_NAME)
    root = Path(cfg.manifest).parent
    for m in members:
        for rel in (m.rel, *m.extra):
            (ds / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, ds / rel)
    if engines:
        from inference.engines.tensorrt_sidecar import sidecar_path

        for e in engines:
            (ds / e.rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(e.source, ds / e.rel)
            shutil.copy2(sidecar_path(e.source), sidecar_path(ds / e.rel))
    for w in shipped:
        _copy(w.path, ds / WHEELS_DIR / w.group / w.path.name)
    used = [g for g in groups if any(w.group == g.name for w in shipped)]  # ask only for what ships
    record = {
        "format": "motorfinder-dataset", "format_version": 2, "dataset_id": cfg.dataset_id, "version": version,
        "wheel": wheel.name, "manifest": MANIFEST_NAME, "task": cfg.target.task,
        "particle_types": list(particle_types),
        "members": {m.name: m.rel.as_posix() for m in members},
        "engines": [e.rel.as_posix() for e in engines],
        "engine_members": engine_members(members, engines),
        "wheel_groups": [g.name for g in used],
        "requirements": [r for g in used for r in g.requirements],
        "wheels": {g.name: sorted(w.path.name for w in shipped if w.group == g.name) for g in used},
        "python": image.python_version,
        "image": {p.name: p.version for p in image.packages},
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git_commit": git_commit(source_root) if source_root else None,
    }
    (ds / "dataset-metadata.json").write_text(json.dumps(dataset_metadata(cfg), indent=2) + "\n")
    (ds / RECORD_NAME).write_text(json.dumps(record, indent=2) + "\n")
    return record
