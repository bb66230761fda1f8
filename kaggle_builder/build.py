""":func:`build`: check everything, stage the dataset and the notebook, then replace the owned folders."""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from inference.common.errors import InputError
from kaggle_builder.config import BuildConfig, validate_config
from kaggle_builder.dataset import write_dataset
from kaggle_builder.image import KaggleImage, load_image
from kaggle_builder.members import EngineFile, find_engines, read_members
from kaggle_builder.notebook import kernel_metadata, notebook_cells, write_notebook
from kaggle_builder.ownership import check_parent, check_writable, ensure_parent, replace_with
from kaggle_builder.package_wheel import build_wheel, source_root
from kaggle_builder.target import BYU, MANIFEST_NAME, PLACEHOLDER_USER, Target
from kaggle_builder.wheels import PipWheelSource, ShippedWheel, WheelGroup, lacking_without_wheels, wheel_groups

logger = logging.getLogger(__name__)

WheelSource = Callable[[Path, Sequence[WheelGroup]], list[ShippedWheel]]


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file() and not p.is_symlink())


@dataclass(frozen=True)
class BuildResult:
    out: Path
    dataset_dir: Path
    notebook_dir: Path
    notebook: Path
    wheel: Path
    manifest: Path
    members: tuple[str, ...]
    engines: tuple[str, ...]
    wheels: tuple[str, ...]          # group/file of every shipped wheel
    notes: tuple[str, ...]
    size_bytes: int
    target: Target = BYU

    def render(self) -> str:
        lines = [
            "build",
            f"  dataset             : {self.dataset_dir.resolve()}  ({self.size_bytes / 2**20:,.0f} MiB; "
            f"kaggle datasets create -p {self.dataset_dir})",
            f"  notebook            : {self.notebook.resolve()}  (kaggle kernels push -p {self.notebook_dir})",
            f"  package wheel       : {self.wheel.name}",
            f"  members             : {', '.join(self.members)}",
            f"  engines             : {', '.join(self.engines) or 'none shipped'}",
            f"  offline wheels      : {', '.join(self.wheels) or 'none (--no-wheels)'}",
        ]
        lines += [f"  note                : {n}" for n in self.notes]
        return "\n".join(lines)


def _engine_notes(cfg: BuildConfig, members, engines: Sequence[EngineFile]) -> list[str]:
    notes = []
    if not engines:
        notes.append("no TensorRT engines next to the ONNX files: the notebook builds them at run time "
                     "(where TensorRT is importable; otherwise ONNX Runtime's CUDA provider runs the ONNX)")
    for e in engines:
        m = next(m for m in members if m.name == e.member)
        if e.fp16 != cfg.fp16_engines or e.batch != f"1:{m.batch}:{m.batch}":
            notes.append(f"engine {e.rel.name} is fp16={e.fp16}, batch {e.batch}; the notebook asks for "
                         f"fp16={cfg.fp16_engines}, batch 1:{m.batch}:{m.batch} and will rebuild it")
    return notes


def _checkout() -> Path | None:
    try:
        return source_root()
    except InputError:
        return None


def build(cfg: BuildConfig, *, wheel_source: WheelSource | None = None,
          wheel_builder: Callable[[Path], Path] = build_wheel, image: KaggleImage | None = None,
          cache_dir: Path | None = None) -> BuildResult:
    """Validate everything, stage under ``cfg.out``, then replace ``out/dataset`` and ``out/notebook``.

    Nothing in ``cfg.out`` changes when any check fails. ``wheel_source`` (offline wheels; default: pip
    and the cached wheelhouse) and ``wheel_builder`` (this package) are injectable for tests.
    """
    from inference.version import __version__

    validate_config(cfg)
    image = image or load_image()
    manifest, members = read_members(cfg.manifest, cfg.target)
    out = Path(cfg.out)
    check_parent(out)
    for name in ("dataset", "notebook"):
        check_writable(out / name)
    notes: list[str] = []
    engines: list[EngineFile] = []
    if cfg.engines:
        engines, skipped = find_engines(members)
        notes += skipped + _engine_notes(cfg, members, engines)
    if cfg.uses_placeholder_user:
        notes.append(f"ids use the placeholder user '{PLACEHOLDER_USER}': pass --dataset-id and --kernel-id with your "
                     "Kaggle user name before uploading")
    groups = wheel_groups(cfg.tensorrt_wheels, cfg.target.task)
    with tempfile.TemporaryDirectory(prefix="motorfinder-wheel-") as tmp:
        wheel = wheel_builder(Path(tmp))
        shipped: list[ShippedWheel] = []
        if cfg.wheels:
            source = wheel_source or PipWheelSource(image, cache_dir, cfg.index_urls)
            shipped = source(wheel, groups)
        else:
            lacking = lacking_without_wheels(wheel, image, groups)
            msg = (f"--no-wheels: the notebook's offline install will lack {', '.join(lacking)} (not on the Kaggle "
                   "image): it fails unless another attached dataset provides them")
            logger.warning(msg)
            notes.append(msg)
        ensure_parent(out)
        staging = Path(tempfile.mkdtemp(prefix=".motorfinder-staging-", dir=out))
        try:
            write_dataset(staging / "dataset", cfg, wheel=wheel, members=members, engines=engines, shipped=shipped,
                          groups=groups, image=image, version=__version__, source_root=_checkout(),
                          particle_types=manifest.particles.names if manifest.particles is not None else ())
            nbdir = staging / "notebook"
            nbdir.mkdir()
            code_file = f"{cfg.kernel_slug}.ipynb"
            write_notebook(nbdir / code_file, notebook_cells(cfg, wheel.name, [m.name for m in members],
                                                             [e.rel.name for e in engines],
                                                             [w.path.name for w in shipped]))
            (nbdir / "kernel-metadata.json").write_text(json.dumps(kernel_metadata(cfg, code_file), indent=2) + "\n")
            replace_with(out / "dataset", staging / "dataset")
            replace_with(out / "notebook", staging / "notebook")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    logger.info("built %s (%d member(s), %d engine(s), %d offline wheel(s))", out, len(members), len(engines),
                len(shipped))
    return BuildResult(out=out, dataset_dir=out / "dataset", notebook_dir=out / "notebook",
                       notebook=out / "notebook" / code_file, wheel=out / "dataset" / wheel.name,
                       manifest=out / "dataset" / MANIFEST_NAME, members=tuple(m.name for m in members),
                       engines=tuple(e.rel.name for e in engines),
                       wheels=tuple(f"{w.group}/{w.path.name}" for w in shipped), notes=tuple(notes),
                       size_bytes=folder_size(out / "dataset"), target=cfg.target)
