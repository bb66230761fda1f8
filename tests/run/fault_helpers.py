"""What the fault suite's files share (issue 15; docs/RELIABILITY.md): tiny tomograms, the submission's
validity check, one-line log checks, a demo-manifest variant, a run's settings and the command line."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from inference.ensemble.submission import SUBMISSION_COLUMNS
from inference.manifest.parse import load_manifest
from inference.run.runner import PredictConfig

REPO = Path(__file__).resolve().parents[2]
COORDS = SUBMISSION_COLUMNS[1:]


def volume(shape=(24, 48, 48), seed=0, blob=None) -> np.ndarray:
    """uint8 noise around 128 (std ~10), optionally with a dark blob (a motor-like spot) at ``blob``."""
    rng = np.random.default_rng(seed)
    vol = rng.normal(128, 10, shape)
    if blob is not None:
        z, y, x = np.indices(shape)
        vol -= 60 * np.exp(-((z - blob[0]) ** 2 + (y - blob[1]) ** 2 + (x - blob[2]) ** 2) / (2 * 8.0 ** 2))
    return np.clip(np.rint(vol), 0, 255).astype(np.uint8)


def tomograms(folder: Path, n: int = 3, prefix: str = "tomo_") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    ids = [f"{prefix}{i}" for i in range(n)]
    for i, t in enumerate(ids):
        np.save(folder / f"{t}.npy", volume(seed=i))
    return ids


def write_mrc(path: Path, data: np.ndarray, voxel=16.0) -> Path:
    """An MRC file of ``data`` with ``voxel`` Å voxels (the test skips where mrcfile is missing)."""
    mrcfile = pytest.importorskip("mrcfile")
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel
    return path


def assert_valid(path: Path, ids: list[str]) -> pd.DataFrame:
    """The submission has the columns, every id once (in this order), each row all -1 or finite >= 0."""
    df = pd.read_csv(path)
    assert list(df.columns) == SUBMISSION_COLUMNS
    assert df.tomo_id.astype(str).tolist() == ids
    xyz = df[COORDS].to_numpy(float)
    assert np.isfinite(xyz).all()
    assert all((r == -1).all() or (r >= 0).all() for r in xyz)
    return df.set_index("tomo_id")


def lines(caplog, level: int, *needles: str) -> list[str]:
    """Messages at ``level`` or above containing every needle; each one line and without a traceback."""
    found = []
    for r in caplog.records:
        msg = r.getMessage()
        if r.levelno >= level and all(n in msg for n in needles):
            assert "\n" not in msg and r.exc_info is None, msg
            found.append(msg)
    return found


def no_traceback(caplog) -> None:
    assert not [r for r in caplog.records if r.exc_info and r.levelno >= logging.INFO]


def variant(models: Path, folder: Path, **member) -> Path:
    """The demo manifest with ``member`` keys changed (None removes a key), beside copies of the models."""
    folder.mkdir(parents=True, exist_ok=True)
    for p in models.parent.glob("*.onnx"):
        shutil.copy2(p, folder / p.name)
    data = yaml.safe_load(models.read_text())
    for k, v in member.items():
        if v is None:
            data["members"][0].pop(k, None)
        else:
            data["members"][0][k] = v
    out = folder / "manifest.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def cfg(manifest: Path, inp: Path, out: Path, **kw) -> PredictConfig:
    kw.setdefault("workers", 0)
    return PredictConfig(manifest=load_manifest(manifest), input_dir=inp, output=out, progress=False,
                         write_every_s=0.0, **kw)


def run_cli(*args: str, timeout: float = 120) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "inference", *args, "--no-progress"] if args[0] == "predict" else
                          [sys.executable, "-m", "inference", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
    return proc.returncode, proc.stderr


def error_line(stderr: str, *needles: str) -> str:
    """The one ``error:`` line of a failed command (no traceback), containing every needle."""
    assert "Traceback" not in stderr, stderr
    errs = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert len(errs) == 1, stderr
    assert all(n in errs[0] for n in needles), errs[0]
    return errs[0]


def stored_results(tmp_path) -> Path:
    """The per-tomogram results of a run whose output is ``tmp_path/sub.csv``."""
    return tmp_path / "sub.csv.work" / "tomograms"
