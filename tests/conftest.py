"""Shared fixtures: small ONNX models written once per session."""

from __future__ import annotations

import onnx
import pytest

from inference.demo_models import avgpool_model, detector_model


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
