"""The particles demo detector: a small multi-class ONNX model built with ``onnx.helper`` (no torch), and its manifest.

It stands in for the 1st place's 7-channel segmentation UNets and finds the particles of
:mod:`inference.synth.particle_project` by size and shape. Input ``(N, 1, D, H, W)``, the z-scored
volume at 10.012 Å, each side at least 28 voxels (the widest blur reflect-pads 13 cells); output
``(N, 7, D/2, H/2, W/2)`` logits at stride 2, channels ``[background, the six CZII classes in order]``
(activation: softmax). The graph:

1. clip to ``[-clip, clip]`` and negate (particles are dark; a very dark speck cannot outshine a particle),
   average-pool 2 x 2 x 2 (the output grid);
2. a Gaussian scale space: separable blurs of the pooled volume at :attr:`ParticleHead.sigmas` (cells),
   reflect-padded per axis (:func:`inference.synth.demo_models.gaussian_blur_nodes`): linear combinations
   of them are matched filters for any radial profile (solid balls, hollow shells, their surroundings);
3. a linear discriminant head (a 1 x 1 x 1 convolution): one score per group of a Gaussian model with a
   shared covariance: the background, each class's centre, and three shells around each class's centre
   (``near`` groups: being inside or beside a particle is not being at its centre);
4. background = log-sum-exp of the background and near groups; class ``c``'s logit is its score minus
   that, divided by a temperature ``T_c`` (big particles get larger ones so their probabilities do not
   saturate into plateaus, which a peak decoder would split into many peaks); the background logit is 0.

The head's numbers (:class:`ParticleHead`, ``inference/data/particle_demo_head.json``) are measured on
synthetic runs by :func:`inference.synth.particle_demo_fit.fit_head`; the class thresholds of the manifest
come from the same fit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

from inference.manifest.particle_classes import CZII_CLASSES, CZII_SPACING_A
from inference.synth.demo_models import gaussian_blur_nodes, make_model

STRIDE = 2
MODEL_FILE = "seg.onnx"
#: The member's window: the default synthetic run (92, 158, 158) in one window; bigger runs are tiled.
PATCH = (96, 160, 160)
OUTPUTS = ("background",) + tuple(c.name for c in CZII_CLASSES)


@dataclass(frozen=True)
class ParticleHead:
    """The detector's numbers: ``sigmas`` (cells of the stride-2 grid), ``clip`` (z-score units); per
    group ``g``: ``groups[g]`` (class index 0..5, or -1 for background and near groups), ``weights[g]``
    (one per sigma) and ``bias[g]``; per class: ``temperature`` and the manifest's ``threshold``."""

    sigmas: tuple[float, ...]
    clip: float
    groups: tuple[int, ...]
    weights: tuple[tuple[float, ...], ...]
    bias: tuple[float, ...]
    temperature: tuple[float, ...]
    threshold: tuple[float, ...]

    def as_json(self) -> dict:
        return {"sigmas": list(self.sigmas), "clip": self.clip, "groups": list(self.groups),
                "weights": [list(w) for w in self.weights], "bias": list(self.bias),
                "temperature": list(self.temperature), "threshold": list(self.threshold)}


def default_head_path() -> Path:
    """The packaged head: ``inference/data/particle_demo_head.json``."""
    return Path(__file__).resolve().parents[1] / "data" / "particle_demo_head.json"


def load_head(path: str | Path | None = None) -> ParticleHead:
    """Read a head written by :func:`inference.synth.particle_demo_fit.write_head` (default: the packaged one)."""
    doc = json.loads(Path(path or default_head_path()).read_text())
    return ParticleHead(sigmas=tuple(doc["sigmas"]), clip=float(doc["clip"]), groups=tuple(doc["groups"]),
                        weights=tuple(tuple(w) for w in doc["weights"]), bias=tuple(doc["bias"]),
                        temperature=tuple(doc["temperature"]), threshold=tuple(doc["threshold"]))


def _io(channels: int, name: str):
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, "D", "H", "W"])
    out = helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", channels, "D_2", "H_2", "W_2"])
    return inp, out


def _feature_nodes(sigmas, clip: float, out: str):
    """Clip, negate, pool by 2, blur at each sigma, concatenate: ``out`` is (N, len(sigmas), D/2, H/2, W/2)."""
    inits = [numpy_helper.from_array(np.array(-clip, np.float32), "lo"),
             numpy_helper.from_array(np.array(clip, np.float32), "hi")]
    nodes = [
        helper.make_node("Clip", ["input", "lo", "hi"], ["clipped"]),
        helper.make_node("Neg", ["clipped"], ["dark"]),
        helper.make_node("AveragePool", ["dark"], ["pooled"], kernel_shape=[STRIDE] * 3, strides=[STRIDE] * 3),
    ]
    bands = []
    for k, sigma in enumerate(sigmas):
        n, i, band = gaussian_blur_nodes(3, "pooled", float(sigma), f"s{k}_")
        nodes += n
        inits += i
        bands.append(band)
    nodes.append(helper.make_node("Concat", bands, [out], axis=1))
    return nodes, inits


def _meta(arch: str) -> dict[str, str]:
    return {"arch": arch, "kind": "3d", "stride": str(STRIDE), "spacing": str(CZII_SPACING_A), "normalize": "zscore",
            "outputs": ",".join(OUTPUTS), "producer": "inference.synth.particle_demo_model"}


def feature_model(sigmas, clip: float) -> onnx.ModelProto:
    """Steps 1-2 alone: ``(N,1,D,H,W) -> (N, len(sigmas), D/2, H/2, W/2)`` (what the head is fitted on)."""
    nodes, inits = _feature_nodes(sigmas, clip, "features")
    inp, out = _io(len(sigmas), "features")
    return make_model(nodes, inits, inp, out, "particle_features", _meta("particle_features"))


def particle_detector_model(head: ParticleHead | None = None) -> onnx.ModelProto:
    """The demo detector (module docstring): raw logits out, ``(N, 7, D/2, H/2, W/2)``."""
    head = head or load_head()
    nodes, inits = _feature_nodes(head.sigmas, head.clip, "features")
    w = np.asarray(head.weights, np.float32)
    groups = np.asarray(head.groups, np.int64)
    n_cls = len(head.temperature)
    bg_idx = np.flatnonzero(groups < 0)
    cls_idx = np.array([int(np.flatnonzero(groups == c)[0]) for c in range(n_cls)], np.int64)
    inits += [
        numpy_helper.from_array(w.reshape(len(w), -1, 1, 1, 1), "head_w"),
        numpy_helper.from_array(np.asarray(head.bias, np.float32), "head_b"),
        numpy_helper.from_array(bg_idx.astype(np.int64), "bg_idx"),
        numpy_helper.from_array(cls_idx, "cls_idx"),
        numpy_helper.from_array((1.0 / np.asarray(head.temperature, np.float32)).reshape(1, n_cls, 1, 1, 1), "inv_t"),
    ]
    nodes += [
        helper.make_node("Conv", ["features", "head_w", "head_b"], ["scores"]),
        helper.make_node("Gather", ["scores", "bg_idx"], ["bg_scores"], axis=1),
        helper.make_node("ReduceLogSumExp", ["bg_scores"], ["bg"], axes=[1], keepdims=1),
        helper.make_node("Gather", ["scores", "cls_idx"], ["cls_scores"], axis=1),
        helper.make_node("Sub", ["cls_scores", "bg"], ["cls_rel"]),
        helper.make_node("Mul", ["cls_rel", "inv_t"], ["cls_logits"]),
        helper.make_node("Sub", ["bg", "bg"], ["zero"]),
        helper.make_node("Concat", ["zero", "cls_logits"], ["logits"], axis=1),
    ]
    inp, out = _io(1 + n_cls, "logits")
    meta = {**_meta("demo_particles_lda"), "activation": "softmax"}
    return make_model(nodes, inits, inp, out, "demo_particles", meta)


#: The demo's decoders; each gets its manifest (``manifest.yaml`` is peaks'). Its class blobs are narrow (the
#: per-class temperatures keep peaks sharp), so blobs down to 1 % of a particle's ball count (the default 5 %
#: would drop most).
DECODERS = {"peaks": "manifest.yaml", "components": "manifest-components.yaml",
            "watershed": "manifest-watershed.yaml"}
MIN_BLOB_FRACTION = 0.01


def particles_manifest_dict(head: ParticleHead | None = None, method: str = "peaks") -> dict:
    """The demo's ``task: particles`` manifest for decoder ``method`` (the model path relative to the folder
    it is written to)."""
    head = head or load_head()
    classes = [{"name": c.name, "radius_A": c.radius_A, "weight": c.weight, "threshold": float(t)}
               for c, t in zip(CZII_CLASSES, head.threshold)]
    member = {"name": "seg", "kind": "3d", "model": MODEL_FILE, "patch": list(PATCH), "stride": STRIDE,
              "overlap": 0.21, "normalize": "zscore", "outputs": list(OUTPUTS), "activation": "softmax",
              "tta": ["zyx"]}
    return {"task": "particles", "target_spacing": CZII_SPACING_A, "default_spacing": CZII_SPACING_A,
            "classes": classes, "decode": {"method": method, "fractions": {"min_blob": MIN_BLOB_FRACTION}},
            "ensemble": "heatmap", "members": [member]}


def write_particle_demo_models(out_dir: str | Path) -> Path:
    """Write ``seg.onnx`` and a ``task: particles`` manifest per decoder (:data:`DECODERS`) to ``out_dir``;
    returns ``manifest.yaml``'s path (the peaks decoder's)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    head = load_head()
    onnx.save(particle_detector_model(head), out / MODEL_FILE)
    for method, name in DECODERS.items():
        (out / name).write_text(
            f"# Particles demo detector written by `python -m inference demo-models --task particles`; decoder "
            f"{method}\n# (the others: {', '.join(n for m, n in DECODERS.items() if m != method)}).\n"
            + yaml.safe_dump(particles_manifest_dict(head, method), sort_keys=False))
    return out / DECODERS["peaks"]
