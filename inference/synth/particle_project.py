"""Synthetic CZII-style runs written as a copick project: the data of the particles task's tests and demo.

Layout (the competition's, with one root for the static and the overlay data)::

    out_dir/copick_config.json                                       filesystem config, six pickable objects
    out_dir/ExperimentRuns/<run>/VoxelSpacing10.000/denoised.zarr    OME-Zarr, 3 levels, level 0 at 10.012 Å
    out_dir/ExperimentRuns/<run>/Picks/curation_0_<particle>.json    the truth (user "curation", session "0")
    out_dir/labels.csv                                               experiment,particle_type,x,y,z (Å)
    out_dir/sample_submission.csv                                    id,experiment,particle_type,x,y,z (header)

The folder says ``VoxelSpacing10.000`` while the zarr's level-0 scale says 10.012 Å, as in the real
data. Pick locations are in Å, ``x, y, z = (i_x, i_y, i_z) * 10.012`` for a particle centred at level-0
voxel ``(i_z, i_y, i_x)`` (voxel i's centre at i x spacing), as copick stores them. Run names look like
Kaggle's (``TS_<k>_<m>``). What a run holds: :mod:`inference.synth.particle_scene`,
:mod:`inference.synth.particle_shapes`, :mod:`inference.synth.particle_render`; docs/SYNTH.md.

Deterministic per seed: run ``i`` draws from ``SeedSequence(seed, spawn_key=(PARTICLES_KEY, i))`` and
does not depend on ``n``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from inference.common.errors import InputError
from inference.common.progress import progress_bar
from inference.io.copick_config import PickableObject, write_config
from inference.io.copick_picks import write_picks
from inference.manifest.particle_classes import CZII_CLASSES, CZII_SPACING_A
from inference.synth.omezarr_write import write_omezarr
from inference.synth.particle_render import draw_run
from inference.synth.particle_scene import DEFAULT_SCALE, run_shape

log = logging.getLogger(__name__)

PARTICLES_KEY = 7  # first spawn key of the particles task's streams (the motors use 0 and 1)
SPACING_FOLDER = "VoxelSpacing10.000"
TOMO_TYPE = "denoised"
USER_ID, SESSION_ID = "curation", "0"
CONFIG_NAME = "copick_config.json"
LABEL_COLUMNS = ["experiment", "particle_type", "x", "y", "z"]
SUBMISSION_COLUMNS = ["id", "experiment", "particle_type", "x", "y", "z"]

#: The competition's pickable objects (label, PDB id and map_threshold from its copick config; the six
#: CZII classes in order); colours are ours.
PICKABLE_OBJECTS = (
    PickableObject("apo-ferritin", True, 1, (0, 117, 220, 128), pdb_id="4V1W", map_threshold=0.0418, radius=60.0),
    PickableObject("beta-amylase", True, 2, (153, 63, 0, 128), pdb_id="1FA2", map_threshold=0.035, radius=65.0),
    PickableObject("beta-galactosidase", True, 3, (76, 0, 92, 128), pdb_id="6X1Q", map_threshold=0.0578,
                   radius=90.0),
    PickableObject("ribosome", True, 4, (0, 92, 49, 128), pdb_id="6EK0", map_threshold=0.0374, radius=150.0),
    PickableObject("thyroglobulin", True, 5, (43, 206, 72, 128), pdb_id="6SCJ", map_threshold=0.0278, radius=130.0),
    PickableObject("virus-like-particle", True, 6, (255, 204, 153, 128), pdb_id="6N4V", map_threshold=0.201,
                   radius=135.0),
)


def run_rng(seed: int, i: int) -> np.random.Generator:
    """The random stream of run ``i`` of a project drawn with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(PARTICLES_KEY, i)))


def run_streams(seed: int, i: int) -> tuple[np.random.Generator, np.random.Generator]:
    """``(name stream, run stream)`` of run ``i``: the run's name, and its particles and volume
    (:func:`inference.synth.particle_render.draw_run`), drawn apart so either can change alone."""
    r_name, r_run = (np.random.default_rng(s) for s in run_rng(seed, i).integers(0, 2**63 - 1, size=2))
    return r_name, r_run


def _run_name(rng: np.random.Generator, used: set[str]) -> str:
    while True:
        name = f"TS_{int(rng.integers(1, 100))}_{int(rng.integers(1, 10))}"
        if name not in used:
            used.add(name)
            return name


def _prepare_out(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "output path exists and is not a folder", "pass a folder for --out")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not overwrite:
            raise InputError(out_dir, "output folder is not empty",
                             "choose another --out, remove the folder, or pass --overwrite (overwrite=True)")
        shutil.rmtree(out_dir / "ExperimentRuns", ignore_errors=True)
        for name in (CONFIG_NAME, "labels.csv", "sample_submission.csv"):
            (out_dir / name).unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)


def _check_counts(n, seed) -> tuple[int, int]:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(None, f"number of runs must be a positive integer, got {n!r}", "pass --n 1 or more")
    if n > 99 * 9:
        raise InputError(None, f"at most {99 * 9} runs have distinct TS_<k>_<m> names, got {n}", "pass a smaller --n")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(None, f"seed must be a non-negative integer, got {seed!r}", "pass e.g. --seed 0")
    return int(n), int(seed)


def generate_particles(out_dir: str | Path, n: int, seed: int, *, scale: float = DEFAULT_SCALE,
                       overwrite: bool = False, progress: bool = True) -> pd.DataFrame:
    """Write ``n`` synthetic runs as a copick project under ``out_dir`` (layout in the module docstring).

    Returns the labels frame (also ``out_dir/labels.csv``): one row per particle, x, y, z in Å, rows by
    run name then class order. ``scale`` shrinks the field of view (:func:`run_shape`), never the
    resolution. Same arguments give the same files. ``overwrite`` allows a non-empty ``out_dir`` (its
    ``ExperimentRuns`` and the files above are replaced; other files stay).
    """
    n, seed = _check_counts(n, seed)
    shape = run_shape(scale)
    out = Path(out_dir)
    _prepare_out(out, overwrite)
    classes = CZII_CLASSES
    write_config(out / CONFIG_NAME, PICKABLE_OBJECTS, overlay_root=out, name="motorfinder-synthetic-czii",
                 description=f"synthetic CZII-style runs (inference.synth.particle_project, seed {seed}, "
                             f"scale {scale}, shape {shape})")
    bar = progress_bar(n, 0, progress, desc="synth", unit="run")
    rows: list[dict] = []
    used: set[str] = set()
    try:
        for i in range(n):
            r_name, r_run = run_streams(seed, i)
            run = _run_name(r_name, used)
            particles, vol = draw_run(r_run, shape, CZII_SPACING_A, classes)
            run_dir = out / "ExperimentRuns" / run
            write_omezarr(run_dir / SPACING_FOLDER / f"{TOMO_TYPE}.zarr", vol, CZII_SPACING_A, levels=3)
            for k, cls in enumerate(classes):
                zyx = np.array([p.zyx for p in particles if p.cls == k], dtype=np.float64).reshape(-1, 3)
                xyz_A = np.round(zyx[:, ::-1] * CZII_SPACING_A, 3)
                write_picks(out, run, cls.name, xyz_A, np.ones(len(xyz_A)), user_id=USER_ID, session_id=SESSION_ID)
                rows += [{"experiment": run, "particle_type": cls.name, "x": x, "y": y, "z": z} for x, y, z in xyz_A]
            log.debug("%s: %s, %d particles", run, shape, len(particles))
            bar.update(1)
    finally:
        bar.close()
    labels = pd.DataFrame(rows, columns=LABEL_COLUMNS)
    rank = labels["particle_type"].map({c.name: k for k, c in enumerate(classes)})
    labels = labels.assign(_rank=rank).sort_values(["experiment", "_rank"], kind="stable")
    labels = labels.drop(columns="_rank").reset_index(drop=True)
    labels.to_csv(out / "labels.csv", index=False)
    pd.DataFrame(columns=SUBMISSION_COLUMNS).to_csv(out / "sample_submission.csv", index=False)
    log.info("wrote %d runs (%d particles) to %s", n, len(labels), out)
    return labels
