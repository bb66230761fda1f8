"""The dry run: the notebook executed as on Kaggle, installing into an environment that holds only the image.

The default tests run offline: the environment is seeded from this one (``local``) and the shipped wheel is
mrcfile repacked from this environment. The ``slow`` tests download the real bundle and the image's
packages (the README's demo does the same).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import subprocess
from pathlib import Path

import nbformat
import pytest

from kaggle_builder.build import build
from kaggle_builder.dry_run import DryRunError, dry_run
from kaggle_builder.image import ImagePackage, KaggleImage, load_image
from kaggle_builder.image_env import fresh_env, seed_from_environment
from kaggle_builder.target import STATUS_NAME
from kaggle_builder.wheels import ShippedWheel
from tests.kaggle_builder.kaggle_helpers import cfg, repack


def local_image(*extra: str) -> KaggleImage:
    """The image's seed, plus ``extra`` packages this environment stands in for (no wheels for them here)."""
    base = load_image()
    return KaggleImage(packages=base.packages + tuple(ImagePackage(n, None, "seed", "[T]") for n in extra))


def outputs(path: Path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def kernel_children() -> list[str]:
    """Command lines of this process's children that are Jupyter kernels."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if ppid == os.getpid() and "ipykernel" in cmd:
            found.append(cmd)
    return found


def test_the_notebook_installs_the_bundle_offline_and_predicts(demo_manifest, tmp_path, monkeypatch, caplog):
    mrcfile = repack("mrcfile", tmp_path / "repacked")

    def source(package_wheel, groups):
        return [ShippedWheel("motorfinder", "mrcfile", "x", mrcfile)]

    built = build(cfg(demo_manifest, tmp_path / "out"), wheel_source=source)
    monkeypatch.chdir(tmp_path)  # a relative root (like the default --out build/) must work too
    caplog.set_level(logging.DEBUG)
    res = dry_run(built, Path("out/dryrun"), n=2, seed=3, scale=0.15, env_seed="local",
                  image=local_image("simplejpeg", "onnxruntime"))
    gc.collect()
    assert res.n_tomograms == 2 and res.score is not None
    assert not kernel_children()  # the kernel was shut down, not left to the end of this process
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "zmq" in r.getMessage()]  # nor its channels
    text = outputs(res.executed)
    assert "wheels/motorfinder/mrcfile" in text and "Successfully installed" in text  # from the dataset, resolved
    assert "motorfinder-0.1.0-py3-none-any.whl/kaggle_builder/runtime.py" in text  # imported from the wheel file
    assert str(tmp_path / "out" / "dryrun" / "env" / "bin" / "python") in text  # installed into the fresh env
    assert "submission OK: 2 tomograms" in text
    status = json.loads((res.root / "working" / STATUS_NAME).read_text())
    assert all(s["ok"] for s in status["steps"].values())
    assert not (tmp_path / "out" / "dryrun" / "env").exists()  # removed after the run


def test_a_missing_wheel_fails_the_dry_run_naming_it(demo_manifest, tmp_path):
    built = build(cfg(demo_manifest, tmp_path / "out", wheels=False))
    with pytest.raises(DryRunError, match=r"install step failed .*no wheel of mrcfile>=1\.4 \(needed by motorfinder\)"):
        dry_run(built, tmp_path / "out" / "dryrun", n=1, scale=0.1, env_seed="local",
                image=local_image("simplejpeg", "onnxruntime"))


def test_a_fresh_env_sees_the_seed_and_installs_beside_it(tmp_path):
    import sys

    seed = seed_from_environment(["pyyaml"], tmp_path / "seed")
    assert (seed / "yaml").is_symlink() and (seed / "pip").exists()  # and pip, to install with
    assert not any(p.name.startswith("motorfinder") for p in seed.iterdir())
    py = fresh_env(tmp_path / "env", seed, Path(sys.executable))
    out = subprocess.run([str(py), "-c", "import yaml, sys; print(yaml.__file__); import numpy"],
                         capture_output=True, text=True)
    assert out.stdout.startswith(str(seed)) and "No module named 'numpy'" in out.stderr  # only the seed


# ------------------------------------------------------------------ slow: the real bundle, the image


@pytest.fixture(scope="module")
def real_bundle(demo_manifest, tmp_path_factory):
    """A default build (real wheels for CPython 3.11 manylinux, downloaded once into the cache)."""
    return build(cfg(demo_manifest, tmp_path_factory.mktemp("real") / "out"))


@pytest.mark.slow
def test_default_bundle_installs_on_the_image_with_dependencies_resolved(real_bundle, tmp_path):
    """Done when: the package wheel installs with --no-index and --find-links the dataset's wheel folders into
    a fresh environment holding only the image's packages, ``import inference.cli`` works; onnxruntime-gpu
    installs there from the dataset the same way."""
    from kaggle_builder.dry_run import image_seed
    from kaggle_builder.wheels import ONNXRUNTIME_GPU, isolated_pip_env

    image = load_image()
    site, python = image_seed("image", tmp_path, image=image)
    py = fresh_env(tmp_path / "env", site, python)
    listed = subprocess.run([str(py), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True,
                            env=isolated_pip_env(), check=True).stdout
    have = {p["name"].lower() for p in json.loads(listed)}
    assert {p.name.lower() for p in image.seed} <= have and not have & {"mrcfile", "simplejpeg", "onnxruntime-gpu"}
    links = [a for g in (real_bundle.dataset_dir / "wheels").iterdir() for a in ("--find-links", str(g))]
    pip = [str(py), "-m", "pip", "install", "--no-index", *links]
    subprocess.run([*pip, str(real_bundle.wheel)], env=isolated_pip_env(), check=True, capture_output=True)
    subprocess.run([str(py), "-c", "import inference.cli"], check=True)
    subprocess.run([*pip, ONNXRUNTIME_GPU], env=isolated_pip_env(), check=True, capture_output=True)
    out = subprocess.run([str(py), "-c", "import onnxruntime as o; print(o.get_available_providers())"],
                         capture_output=True, text=True, check=True).stdout
    assert "CUDAExecutionProvider" in out  # the GPU build (the CPU one lists only CPUExecutionProvider)


@pytest.mark.slow
def test_dry_run_of_the_default_bundle_on_the_image(real_bundle, tmp_path):
    res = dry_run(real_bundle, tmp_path / "dryrun", n=2, scale=0.15)
    text = outputs(res.executed)
    assert "onnxruntime_gpu-1.2" in text and "Successfully installed" in text
    assert res.n_tomograms == 2
