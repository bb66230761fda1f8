"""Synthetic BYU-style tomograms: the data of every test and of the demo.

Real Kaggle tomograms are not shipped, so this module draws plausible stand-ins and writes
them in the Kaggle layout::

    out_dir/<split>/<tomo_id>/slice_0000.jpg ...   one 8-bit grayscale JPEG per z
    out_dir/<split>_labels.csv                     train_labels format, one row per motor
    out_dir/sample_submission.csv                  one row per tomogram, all -1

Shapes, voxel spacings and motor counts are drawn from the real ground-truth table
(``inference/data/byu_tomograms_gt_v3.csv``). The shape is scaled by ``scale`` but the voxel
spacing stays the real one, so a volume is a *crop* of a real field of view at real resolution
and a motor always spans ~450 Å / spacing voxels. What is modelled and what is not is written
up in docs/SYNTH.md.

Everything is deterministic per seed: tomogram ``i`` of a split draws from its own child seed
``SeedSequence(seed, spawn_key=(split, 1, i))`` and does not depend on ``n``.

This module holds :func:`generate` (the dataset: labels and files). The parts it draws with: the
reference table (:mod:`inference.synth.reference`), the physical sizes, cells and motor places
(:mod:`inference.synth.scene`) and the rendering (:mod:`inference.synth.render`); the command is
:mod:`inference.cli.synth`.
"""

from __future__ import annotations

import logging
import numbers
import shutil
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from inference.common.errors import InputError
from inference.common.progress import progress_bar
from inference.synth.reference import DEFAULT_SCALE, load_reference, scaled_shape, weighted_group_order
from inference.synth.render import render_tomogram
from inference.synth.scene import draw_cells, place_motors

log = logging.getLogger(__name__)

TEST_MOTOR_PROBABILITY = 0.45  # Kaggle rerun test: 0 or 1 motor; the recipe's 55% "no motor" quantile

SPLITS = ("train", "test")
LABEL_COLUMNS = [
    "row_id",
    "tomo_id",
    "Motor axis 0",
    "Motor axis 1",
    "Motor axis 2",
    "Array shape (axis 0)",
    "Array shape (axis 1)",
    "Array shape (axis 2)",
    "Voxel spacing",
    "Number of motors",
]
SUBMISSION_COLUMNS = ["tomo_id", "Motor axis 0", "Motor axis 1", "Motor axis 2"]

_SPLIT_CODE = {"train": 0, "test": 1}


# --------------------------------------------------------------------------------------------
# Dataset generation
# --------------------------------------------------------------------------------------------
def _tomo_streams(seed: int, split: str, i: int) -> list[np.random.Generator]:
    ss = np.random.SeedSequence(seed, spawn_key=(_SPLIT_CODE[split], 1, i))
    return [np.random.default_rng(s) for s in ss.spawn(4)]  # id, reference row, motor count, scene


def _write_jpegs(folder: Path, vol: np.ndarray, quality: int, pool: ThreadPoolExecutor) -> list[Future]:
    folder.mkdir(parents=True, exist_ok=True)
    return [pool.submit(_write_jpeg, folder / f"slice_{z:04d}.jpg", vol[z], quality) for z in range(vol.shape[0])]


def _write_jpeg(path: Path, img: np.ndarray, quality: int) -> None:
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        if not cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
            raise InputError(path, "could not write the JPEG", "choose a writable output folder")
        return
    from PIL import Image

    try:
        Image.fromarray(img, mode="L").save(path, format="JPEG", quality=int(quality))
    except OSError as exc:
        raise InputError(path, f"could not write the JPEG ({exc})", "choose a writable output folder") from exc


def _write_zarr(path: Path, vol: np.ndarray, spacing: float) -> None:
    from inference.synth.omezarr_write import write_omezarr

    levels = min(3, int(np.log2(min(vol.shape))) + 1)  # every level at least one voxel thick
    write_omezarr(path, vol, spacing, levels=levels)


def _prepare_out(out_dir: Path, split: str, overwrite: bool) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "output path exists and is not a folder", "pass a folder for --out")
    split_dir = out_dir / split
    if split_dir.exists() and not split_dir.is_dir():
        raise InputError(split_dir, "exists and is not a folder", "remove it or choose another --out")
    if split_dir.is_dir() and any(split_dir.iterdir()):
        if not overwrite:
            raise InputError(
                split_dir,
                "output folder is not empty",
                "choose another --out, remove the folder, or pass --overwrite (overwrite=True)",
            )
        for child in split_dir.glob("tomo_*"):
            if child.is_dir():
                shutil.rmtree(child)
    split_dir.mkdir(parents=True, exist_ok=True)
    return split_dir


def generate(
    out_dir: str | Path,
    n: int,
    seed: int,
    *,
    split: str = "train",
    scale: float = DEFAULT_SCALE,
    reference_csv: str | Path | None = None,
    jpeg_quality: int = 90,
    progress: bool = True,
    overwrite: bool = False,
    fmt: str = "jpeg",
) -> pd.DataFrame:
    """Write ``n`` synthetic tomograms of ``split`` under ``out_dir`` in the Kaggle layout.

    Returns the labels frame (also written to ``out_dir/<split>_labels.csv``). Same arguments
    give byte-identical files. ``overwrite`` allows an existing non-empty ``out_dir/<split>``
    (its ``tomo_*`` folders are removed first). ``fmt="zarr"`` writes each tomogram as an OME-Zarr
    pyramid ``<tomo_id>.zarr`` (up to 3 levels, scale in Å; :mod:`inference.synth.omezarr_write`) instead
    of JPEG slices: the rendered volume itself, without JPEG's loss.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(None, f"number of tomograms must be a positive integer, got {n!r}", "pass --n 1 or more")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(None, f"seed must be a non-negative integer, got {seed!r}", "pass e.g. --seed 0")
    if split not in SPLITS:
        raise InputError(None, f"unknown split {split!r}", f"use one of {', '.join(SPLITS)}")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not 0 < scale <= 1:
        raise InputError(None, f"scale must be in (0, 1], got {scale!r}", f"pass e.g. --scale {DEFAULT_SCALE}")
    if isinstance(jpeg_quality, bool) or not isinstance(jpeg_quality, (int, np.integer)) or not 1 <= jpeg_quality <= 100:
        raise InputError(None, f"JPEG quality must be an integer 1-100, got {jpeg_quality!r}", "pass e.g. --quality 90")
    if fmt not in ("jpeg", "zarr"):
        raise InputError(None, f"unknown format {fmt!r}", "pass --format jpeg or zarr")
    n, seed, scale = int(n), int(seed), float(scale)
    ref = load_reference(reference_csv)
    out_dir = Path(out_dir)
    split_dir = _prepare_out(out_dir, split, overwrite)

    spacings = ref["voxel_spacing"].to_numpy()
    groups, counts = np.unique(spacings, return_counts=True)
    plan_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_SPLIT_CODE[split], 0, 0)))
    group_order = weighted_group_order(plan_rng, groups, counts / counts.sum())

    rows: list[dict] = []
    used_ids: set[str] = set()
    bar = progress_bar(n, 0, progress, desc="synth", unit="tomo")
    pending: list[Future] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        try:
            for i in range(n):
                r_id, r_ref, r_count, r_scene = _tomo_streams(seed, split, i)
                tomo_id = f"tomo_{int(r_id.integers(0, 16**6)):06x}"
                while tomo_id in used_ids:
                    tomo_id = f"tomo_{int(r_id.integers(0, 16**6)):06x}"
                used_ids.add(tomo_id)
                if i < len(group_order):  # first G tomograms: one per spacing group
                    candidates = np.flatnonzero(spacings == group_order[i])
                    row = ref.iloc[int(r_ref.choice(candidates))]
                else:
                    row = ref.iloc[int(r_ref.integers(0, len(ref)))]
                shape = scaled_shape((row["Z"], row["Y"], row["X"]), scale)
                spacing = float(row["voxel_spacing"])
                if split == "train":
                    want = int(row["num_motors"])
                else:
                    want = int(r_count.random() < TEST_MOTOR_PROBABILITY)
                r_cells, r_place, r_render = (np.random.default_rng(s) for s in r_scene.integers(0, 2**63 - 1, size=3))
                cells = draw_cells(r_cells, shape, spacing)
                motors = place_motors(r_place, shape, spacing, want, cells)
                vol = render_tomogram(r_render, shape, spacing, motors, cells=cells)
                for fut in pending:  # keep at most one tomogram in flight on the writers
                    fut.result()
                if fmt == "zarr":
                    pending = [pool.submit(_write_zarr, split_dir / f"{tomo_id}.zarr", vol, spacing)]
                else:
                    pending = _write_jpegs(split_dir / tomo_id, vol, jpeg_quality, pool)
                common = {
                    "tomo_id": tomo_id,
                    "Array shape (axis 0)": shape[0],
                    "Array shape (axis 1)": shape[1],
                    "Array shape (axis 2)": shape[2],
                    "Voxel spacing": spacing,
                    "Number of motors": len(motors),
                }
                if len(motors) == 0:
                    rows.append({"Motor axis 0": -1.0, "Motor axis 1": -1.0, "Motor axis 2": -1.0, **common})
                for m in motors:
                    rows.append({"Motor axis 0": round(float(m[0]), 3), "Motor axis 1": round(float(m[1]), 3),
                                 "Motor axis 2": round(float(m[2]), 3), **common})
                log.debug("%s: shape %s, %.1f Å, %d motor(s) (asked %d)", tomo_id, shape, spacing, len(motors), want)
                bar.update(1)
            for fut in pending:
                fut.result()
        finally:
            bar.close()

    labels = pd.DataFrame(rows)
    labels = labels.sort_values("tomo_id", kind="stable").reset_index(drop=True)
    labels.insert(0, "row_id", np.arange(len(labels)))
    labels = labels[LABEL_COLUMNS]
    labels.to_csv(out_dir / f"{split}_labels.csv", index=False)
    ids = sorted(used_ids)
    sub = pd.DataFrame({"tomo_id": ids, "Motor axis 0": -1, "Motor axis 1": -1, "Motor axis 2": -1})
    sub.to_csv(out_dir / "sample_submission.csv", index=False)
    n_motors = int((labels["Number of motors"] > 0).sum())
    log.info("wrote %d %s tomograms (%d motors) to %s", n, split, n_motors, split_dir)
    return labels
