"""Fixtures of the run tests: the demo detector's manifest for the fault suite (tests/run/test_faults_*.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from inference.synth.demo_models import write_demo_models


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    """The demo 3d detector and its manifest (one TTA: fast)."""
    root = tmp_path_factory.mktemp("models")
    manifest = write_demo_models(root)
    data = yaml.safe_load(manifest.read_text())
    data["members"][0]["tta"] = ["zyx"]
    manifest.write_text(yaml.safe_dump(data, sort_keys=False))
    return manifest
