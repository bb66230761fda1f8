"""Tests of the particles demo detector (inference.synth.particle_demo_model) and how its head is fitted."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from scipy import ndimage

from inference.cli.main import main
from inference.manifest.particle_classes import CZII_CLASSES, CZII_SPACING_A
from inference.synth.particle_demo_fit import calibration_runs, fit_head
from inference.synth.particle_demo_model import (
    DECODERS,
    OUTPUTS,
    default_head_path,
    feature_model,
    load_head,
    particle_detector_model,
    particles_manifest_dict,
    write_particle_demo_models,
)


@pytest.fixture(scope="module")
def session():
    return ort.InferenceSession(particle_detector_model().SerializeToString(), providers=["CPUExecutionProvider"])


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(0))
    return e / e.sum(0)


def test_written_model_and_manifest(tmp_path):
    path = write_particle_demo_models(tmp_path)
    assert path == tmp_path / "manifest.yaml"
    onnx.checker.check_model(onnx.load(tmp_path / "seg.onnx"))
    doc = yaml.safe_load(path.read_text())
    assert doc == particles_manifest_dict()
    assert doc["task"] == "particles"
    assert doc["target_spacing"] == doc["default_spacing"] == CZII_SPACING_A
    assert doc["decode"] == {"method": "peaks", "fractions": {"min_blob": 0.01}} and doc["ensemble"] == "heatmap"
    assert [(c["name"], c["radius_A"], c["weight"]) for c in doc["classes"]] == [
        (c.name, c.radius_A, c.weight) for c in CZII_CLASSES]
    assert all(0 < c["threshold"] < 1 for c in doc["classes"])
    (member,) = doc["members"]
    assert member["model"] == "seg.onnx" and (tmp_path / member["model"]).is_file()
    assert member["kind"] == "3d" and member["stride"] == 2 and member["activation"] == "softmax"
    assert member["normalize"] == "zscore" and member["overlap"] == 0.21 and member["tta"] == ["zyx"]
    assert member["outputs"] == ["background"] + [c.name for c in CZII_CLASSES] == list(OUTPUTS)
    assert all(p % member["stride"] == 0 for p in member["patch"])
    for method, name in DECODERS.items():  # one manifest per decoder, the same but for the method
        other = yaml.safe_load((tmp_path / name).read_text())
        assert other["decode"]["method"] == method and {**other, "decode": doc["decode"]} == doc


def test_output_is_seven_logits_at_stride_2(session):
    x = np.random.default_rng(0).standard_normal((2, 1, 32, 48, 40)).astype(np.float32)
    (out,) = session.run(None, {"input": x})
    assert out.shape == (2, 7, 16, 24, 20) and out.dtype == np.float32
    assert np.isfinite(out).all()
    assert np.array_equal(out[:, 0], np.zeros_like(out[:, 0]))  # background logit is the reference 0


def test_an_empty_volume_is_background(session):
    (out,) = session.run(None, {"input": np.zeros((1, 1, 32, 32, 32), np.float32)})
    assert (_softmax(out[0])[0] > 0.9).all()


def test_feature_graph_is_a_gaussian_scale_space():
    """A dark point (pooled: one cell of -1/8 x -1) blurs into the separable Gaussian of each sigma."""
    sigmas = (1.0, 2.0)
    x = np.zeros((1, 1, 40, 40, 40), np.float32)
    x[0, 0, 20, 20, 20] = -8.0  # one dark voxel; the pooled cell (10, 10, 10) holds +1 after negation
    sess = ort.InferenceSession(feature_model(sigmas, 10.0).SerializeToString(), providers=["CPUExecutionProvider"])
    (f,) = sess.run(None, {"input": x})
    assert f.shape == (1, 2, 20, 20, 20)
    for k, s in enumerate(sigmas):
        r = int(np.ceil(2.5 * s))
        g = np.exp(-0.5 * (np.arange(-r, r + 1) / s) ** 2)
        g /= g.sum()
        line = f[0, k, 10, 10, 10 - r: 10 + r + 1]
        assert np.allclose(line, g * g[r] ** 2, atol=1e-6)
        assert f[0, k].sum() == pytest.approx(1.0, abs=1e-4)


def test_head_file_has_one_group_per_class_and_background_groups():
    head = load_head()
    assert len(head.temperature) == len(head.threshold) == len(CZII_CLASSES)
    assert [head.groups.count(c) for c in range(len(CZII_CLASSES))] == [1] * len(CZII_CLASSES)
    assert head.groups.count(-1) >= 1 + len(CZII_CLASSES)
    assert len(head.weights) == len(head.bias) == len(head.groups)
    assert all(len(w) == len(head.sigmas) for w in head.weights)


def test_the_detector_finds_the_synthetic_particles(session):
    """Peaks of the softmax probabilities (a few lines of NumPy: class threshold from the manifest, local
    maxima in a window of 2 int(radius / 20 Å) + 1 cells) land within half a radius of the particles."""
    thresholds = [c["threshold"] for c in particles_manifest_dict()["classes"]]
    hits = preds = truth = 0
    per_class = np.zeros((len(CZII_CLASSES), 3), int)  # hits, predictions, particles
    for z, centres, classes in calibration_runs(seed=11, n=2, scale=0.2):  # the runs of synth --seed 11
        prob = _softmax(session.run(None, {"input": z[None, None]})[0][0])
        for k, cls in enumerate(CZII_CLASSES):
            p = prob[k + 1]
            peaks = np.argwhere((p == ndimage.maximum_filter(p, size=2 * int(cls.radius_A / 20) + 1))
                                & (p >= thresholds[k])) * 2 + 0.5  # cell j is centred at voxel 2 j + 0.5
            gt = centres[classes == k]
            found = (np.linalg.norm(gt[:, None] - peaks[None], axis=-1) <= 0.5 * cls.radius_A / CZII_SPACING_A)
            per_class[k] += (int(found.any(axis=1).sum()), len(peaks), len(gt))
    hits, preds, truth = per_class.sum(axis=0)
    assert truth >= 20
    assert hits / truth >= 0.85  # recall
    assert hits / preds >= 0.25  # precision: beta-amylase (unscored) and near misses make most false picks
    big = [3, 5]  # ribosome, virus-like particle: every one found, almost nothing else
    assert (per_class[big, 0] == per_class[big, 2]).all() and (per_class[big, 0] >= 0.75 * per_class[big, 1]).all()


def test_cli_demo_models_particles(tmp_path, capsys):
    assert main(["demo-models", "--task", "particles", "--out", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "seg.onnx").is_file()
    assert "manifest.yaml" in capsys.readouterr().out
    assert main(["-q", "demo-models", "--task", "particles", "--with-2d", "--out", str(tmp_path / "n")]) != 0


@pytest.mark.slow
def test_refitting_reproduces_the_packaged_head():
    head, report = fit_head()
    packaged = load_head()
    assert head.temperature == packaged.temperature and head.threshold == packaged.threshold
    assert np.allclose(head.weights, packaged.weights, rtol=1e-4, atol=1e-5)
    assert np.allclose(head.bias, packaged.bias, rtol=1e-4, atol=1e-4)
    stored = json.loads(default_head_path().read_text())["fit"]["calibration_fbeta"]
    assert report == pytest.approx(stored, abs=1e-3)
