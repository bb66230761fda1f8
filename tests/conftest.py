"""Shared fixtures: small ONNX models written once per session; the shared data beside the repository;
the ``export`` marker's skip.

Tests marked ``export`` need the ``[export]`` extra (torch, torchvision and timm that load
together); where it is absent they skip with the reason, so the README's test command stays light.
``.ci/run`` runs them in a second environment with ``pytest -m export``.
"""

from __future__ import annotations

import functools
import importlib
import os
from pathlib import Path

import onnx
import pytest

from inference.synth.demo_models import avgpool_model, detector_model

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """``$MOTORFINDER_SHARED``, else ``shared/`` beside the repository's root (``<repo>/../shared``)."""
    return Path(os.environ.get("MOTORFINDER_SHARED") or REPO.parent / "shared")


@pytest.fixture(scope="session")
def shared():
    """The shared data folder; the test skips, saying where it looked, when it is absent."""
    path = shared_dir()
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set MOTORFINDER_SHARED, or put shared/ beside the repo)")
    return path


@pytest.fixture(scope="session")
def real_labels(shared):
    """The real BYU train_labels.csv."""
    path = shared / "data" / "byu_train_labels.csv"
    if not path.is_file():
        pytest.skip(f"{path} not found (the shared data has no BYU train labels)")
    return path


@pytest.fixture(scope="session")
def avgpool_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "avgpool16.onnx"
    onnx.save(avgpool_model(16), path)
    return path


@pytest.fixture(scope="session")
def demo3d_onnx(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "demo3d.onnx"
    onnx.save(detector_model("3d"), path)
    return path


@functools.lru_cache(maxsize=1)
def export_extra_missing() -> str | None:
    """Why the [export] extra is unusable here (None when torch, torchvision and timm all load)."""
    for name in ("torch", "torchvision", "timm"):
        try:
            importlib.import_module(name)
        except (ImportError, OSError, RuntimeError) as exc:  # RuntimeError: torchvision built for another torch
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return f"{name}: {first}"
    return None


def pytest_collection_modifyitems(config, items):
    marked = [item for item in items if item.get_closest_marker("export")]
    why = export_extra_missing() if marked else None
    if why:
        skip = pytest.mark.skip(reason=f"needs the [export] extra ({why}): its own venv, see the README's Export "
                                       "section (pip install -e '.[cpu,export]' pytest scipy; pytest -m export tests/test_export_*.py)")
        for item in marked:
            item.add_marker(skip)
