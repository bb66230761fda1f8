"""Packaging: every subpackage in the wheel; the [cpu] extra alone runs the commands; no CUDA packages on CPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from kaggle_builder.package_wheel import build_wheel, package_tops, wheel_packages

REPO = Path(__file__).resolve().parents[2]


def test_every_package_and_its_data_are_in_the_wheel(tmp_path):
    wheel = build_wheel(tmp_path)
    want = {p.parent.relative_to(REPO).as_posix().replace("/", ".")
            for top in package_tops(REPO) for p in (REPO / top).rglob("__init__.py")}
    assert {"inference", "inference.engines", "export", "kaggle_builder", "kernels"} <= want
    assert wheel_packages(wheel) == want
    names = zipfile.ZipFile(wheel).namelist()
    assert "kaggle_builder/kaggle_image_packages.txt" in names and "inference/data/byu_tomograms_gt_v3.csv" in names
    assert not any("__pycache__" in n or n.startswith(("tests/", "bench/")) for n in names)


def _registry_env() -> dict:
    """pip with the public registry's defaults: no local wheels, no configuration files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") or k == "PIP_CERT"}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def _resolved(extras: str, tmp_path: Path) -> set[str]:
    """The packages (lowercase names) that installing this checkout with ``extras`` resolves to on the registry."""
    report = tmp_path / "r.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                    "--report", str(report), f"{REPO}[{extras}]"], env=_registry_env(), check=True)
    return {i["metadata"]["name"].lower() for i in json.loads(report.read_text())["install"]}


@pytest.mark.slow
def test_cpu_dev_resolves_without_cuda_packages(tmp_path):
    names = _resolved("cpu,dev", tmp_path)
    assert "onnxruntime" in names and "nbclient" in names
    assert not {n for n in names if n.startswith("nvidia-") or n in ("triton", "torch", "monai")}


@pytest.mark.slow
def test_the_cpu_extra_alone_runs_every_command(tmp_path):
    """pip install '.[cpu]' (not editable: every subpackage must be in the wheel), then the commands."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = str(venv / "bin" / "python")
    subprocess.run([py, "-m", "pip", "install", "--quiet", f"{REPO}[cpu]"], check=True)

    def run(*args, ok=True):
        proc = subprocess.run([py, "-m", "inference", *args], cwd=tmp_path, capture_output=True, text=True)
        assert (proc.returncode == 0) == ok, proc.stderr
        return proc

    run("--help")
    run("synth", "--out", "data", "--n", "3", "--seed", "1", "--split", "test", "--scale", "0.12", "--no-progress")
    run("demo-models", "--out", "models", "--with-2d")
    run("predict", "--manifest", "models/manifest.yaml", "--input", "data/test", "--output", "sub.csv",
        "--spacing-csv", "data/test_labels.csv", "--candidates-dir", "cands",
        "--sample-submission", "data/sample_submission.csv", "--no-progress")
    assert "F2" in run("score", "--labels", "data/test_labels.csv", "--submission", "sub.csv").stdout
    run("fuse", "--candidates", "cands/demo3d.csv", "cands/demo2d.csv", "--output", "fused.csv")
    run("submit", "--candidates", "fused.csv", "--quantile", "0.55", "--sample-submission",
        "data/sample_submission.csv", "--output", "sub2.csv")
    tomo = sorted((tmp_path / "data" / "test").iterdir())[0]
    err = run("show", "--tomogram", str(tomo), "--candidates", "cands/fused.csv", "--out", "v.png", ok=False).stderr
    assert err.strip().splitlines() == ["error: `show` needs matplotlib. Fix: pip install matplotlib"]
    err = run("fuse", "--candidates", "cands/demo3d.csv", "--method", "wbf_iou", "--output", "f.csv", ok=False).stderr
    assert len(err.strip().splitlines()) == 1 and "pip install ensemble-boxes" in err


@pytest.mark.slow
def test_ray_and_zarr_extras_resolve_without_cuda_packages(tmp_path):
    names = _resolved("cpu,ray,zarr", tmp_path)
    assert {"ray", "zarr", "fsspec"} <= names
    assert not {n for n in names if n.startswith("nvidia-") or n in ("triton", "torch")}
