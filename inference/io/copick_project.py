"""A copick project as input: its runs (the experiments), each run's tomogram, its picks files.

``--input`` (and a metric's ``--labels``) may name

* a static root: a folder holding ``ExperimentRuns/``;
* the ``ExperimentRuns/`` folder itself (its parent is the root);
* a copick config file (:mod:`inference.io.copick_config`): its ``static_root`` and ``overlay_root``;
  without ``static_root`` the overlay root holds everything.

The runs are the folders of ``<root>/ExperimentRuns/`` of both roots (hidden ones left out), sorted;
the experiment (the submission's ``experiment``) is the run folder's name. A run's tomogram is
``ExperimentRuns/<run>/VoxelSpacing<s>/<tomo_type>.zarr`` (copick's ``CopickTomogramFSSpec`` layout;
``*features*`` stores are not tomograms), the static root's before the overlay's. Of the spacing
folders holding that type, the one whose number is closest to ``target_A`` (the members' spacing) is
taken, the finest when no target is given, the first listed on a tie. The folder's number is only a
name: Kaggle's ``VoxelSpacing10.000`` holds a zarr whose level-0 scale says 10.012 Å, and the zarr's
scale is the truth (:mod:`inference.io.omezarr` reads it).

A run without the tomogram type is not an error of the project: :func:`run_tomograms` reports it in
its :class:`RunTomogram` (``problem``, ``error()``), and the caller fails that run alone.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from inference.common.errors import InputError
from inference.common.names import name_list
from inference.io.copick_config import CopickConfig, looks_like_config, read_config
from inference.io.copick_picks import Picks, read_picks, run_picks_files

RUNS = "ExperimentRuns"
DEFAULT_TOMO_TYPE = "denoised"
_SPACING = re.compile(r"^VoxelSpacing(.+)$")
_FIX_INPUT = ("pass a copick static root (the folder holding ExperimentRuns/), the ExperimentRuns/ folder, "
              "or a copick config JSON")


@dataclass(frozen=True)
class CopickProject:
    """Where a project's runs lie: ``static_root`` and ``overlay_root`` (the same folder when there is one);
    ``config`` when it was opened from a config file; ``source``: what the user named."""

    source: Path
    static_root: Path
    overlay_root: Path
    config: CopickConfig | None = None

    @property
    def roots(self) -> tuple[Path, ...]:
        """The roots to search, static first, each once."""
        return (self.static_root,) if self.static_root == self.overlay_root else (self.static_root, self.overlay_root)


@dataclass(frozen=True)
class RunTomogram:
    """One run: its experiment name and its tomogram (``path``), or why it has none (``problem``)."""

    experiment: str
    path: Path | None
    folder_spacing_A: float | None = None  # the VoxelSpacing folder's number (a name, not the zarr's scale)
    problem: str | None = None
    fix: str | None = None
    run_dir: Path | None = None

    def error(self) -> InputError:
        """The run's problem as the one-line error (call only when ``path`` is None)."""
        return InputError(self.run_dir, self.problem or "no tomogram", self.fix)


def is_copick_input(path: str | Path) -> bool:
    """A folder holding ``ExperimentRuns/``, an ``ExperimentRuns`` folder, or a JSON-object file (a config)."""
    path = Path(path)
    if path.is_dir():
        return path.name == RUNS or (path / RUNS).is_dir()
    return looks_like_config(path)


def open_project(source: str | Path) -> CopickProject:
    """The project named by ``source`` (see the module's docstring); InputError when it is none."""
    source = Path(source)
    if not source.exists():
        raise InputError(source, "does not exist", _FIX_INPUT)
    if source.is_dir():
        if source.name == RUNS:
            root = source.resolve().parent
        elif (source / RUNS).is_dir():
            root = source.resolve()
        else:
            raise InputError(source, f"no {RUNS}/ folder here: not a copick project", _FIX_INPUT)
        return CopickProject(source=source, static_root=root, overlay_root=root)
    config = read_config(source)
    overlay = config.overlay_root
    static = config.static_root or overlay
    project = CopickProject(source=source, static_root=static, overlay_root=overlay, config=config)
    if not any((root / RUNS).is_dir() for root in project.roots):
        roots = " nor ".join(str(root) for root in project.roots)
        raise InputError(source, f"neither {roots} holds an {RUNS}/ folder",
                         "point static_root/overlay_root at the project's folders (a relative root is relative "
                         "to the current folder, as in copick; write an absolute local:// URL)")
    return project


def _visible_dirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def run_dirs(project: CopickProject) -> dict[str, list[Path]]:
    """Every run's folders (static root's first), by run name, sorted by name."""
    runs: dict[str, list[Path]] = {}
    for root in project.roots:
        for folder in _visible_dirs(root / RUNS):
            runs.setdefault(folder.name, []).append(folder)
    return dict(sorted(runs.items()))


def run_names(project: CopickProject) -> list[str]:
    """The experiments of the project: its run folders' names, sorted."""
    return list(run_dirs(project))


def spacing_folders(folders: list[Path]) -> list[tuple[float, Path]]:
    """The ``VoxelSpacing<s>`` folders of a run's folders as (s, folder), in the order found; a folder whose
    number does not parse is left out (copick would fail on it)."""
    out = []
    for run in folders:
        for folder in _visible_dirs(run):
            match = _SPACING.match(folder.name)
            if not match:
                continue
            try:
                value = float(match.group(1))
            except ValueError:
                continue
            if math.isfinite(value) and value > 0:
                out.append((value, folder))
    return out


def tomogram_types(folder: Path) -> list[str]:
    """The tomogram types of a spacing folder: its ``*.zarr`` folders' names without ``.zarr``, as copick lists
    them (no ``features`` stores, no hidden ones), sorted."""
    return sorted(p.name[: -len(".zarr")] for p in _visible_dirs(folder)
                  if p.name.endswith(".zarr") and "features" not in p.name)


def choose_tomogram(experiment: str, folders: list[Path], tomo_type: str = DEFAULT_TOMO_TYPE,
                    target_A: float | None = None) -> RunTomogram:
    """The run's ``<tomo_type>.zarr`` in the spacing folder closest to ``target_A``, or why there is none."""
    spacings = spacing_folders(folders)
    holding = [(s, f) for s, f in spacings if (f / f"{tomo_type}.zarr").is_dir()]
    run_dir = folders[0]
    if holding:
        if target_A is None:
            s, folder = min(holding, key=lambda sf: sf[0])
        else:
            s, folder = min(holding, key=lambda sf: abs(sf[0] - float(target_A)))
        return RunTomogram(experiment, folder / f"{tomo_type}.zarr", s, run_dir=run_dir)
    if not spacings:
        return RunTomogram(experiment, None, problem=f"run {experiment!r} has no VoxelSpacing<s>/ folder",
                           fix="put the tomogram at ExperimentRuns/<run>/VoxelSpacing<s>/<tomo_type>.zarr",
                           run_dir=run_dir)
    found = [f"{f.name}: {', '.join(tomogram_types(f)) or 'none'}" for _, f in spacings]
    return RunTomogram(experiment, None, problem=f"run {experiment!r} has no {tomo_type}.zarr "
                       f"(tomogram types found: {'; '.join(found)})",
                       fix="pass --tomo-type with one of the types found, or add the tomogram", run_dir=run_dir)


def run_tomograms(project: CopickProject, tomo_type: str = DEFAULT_TOMO_TYPE,
                  target_A: float | None = None) -> list[RunTomogram]:
    """Every run of the project with its tomogram (or its problem), sorted by experiment.

    InputError when the project has no run at all.
    """
    runs = run_dirs(project)
    if not runs:
        raise InputError(project.source, f"no run folders in {RUNS}/", "put one folder per run in ExperimentRuns/")
    return [choose_tomogram(name, folders, tomo_type, target_A) for name, folders in runs.items()]


def project_picks(project: CopickProject, user_id: str | None = None,
                  session_id: str | None = None) -> list[tuple[str, Picks]]:
    """Every picks file of every run as (experiment, picks), optionally only one user's or session's
    (by the file's content); the run folder's name is the experiment whatever the file's ``run_name``."""
    out = []
    for name, folders in run_dirs(project).items():
        for folder in folders:
            for path in run_picks_files(folder):
                picks = read_picks(path)
                if user_id is not None and picks.user_id != user_id:
                    continue
                if session_id is not None and picks.session_id != session_id:
                    continue
                out.append((name, picks))
    return out


def describe(project: CopickProject) -> str:
    """One line for the log: the roots and the number of runs."""
    roots = " + ".join(str(root) for root in project.roots)
    names = run_names(project)
    return f"copick project {roots}: {len(names)} run(s) ({name_list(names)})"
