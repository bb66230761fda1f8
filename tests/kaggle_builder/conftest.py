"""Fixtures shared by the builder's tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.synth.demo_models import write_demo_models


@pytest.fixture(scope="session")
def demo_manifest(tmp_path_factory) -> Path:
    """The demo pair of motor detectors (3d + 2d) and their manifest, written once; tests that change the
    files copy them first (test_build.copy_models)."""
    return write_demo_models(tmp_path_factory.mktemp("models"), with_2d=True)
