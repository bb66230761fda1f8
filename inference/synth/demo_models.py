"""Demo detectors: small ONNX models built with ``onnx.helper`` (no torch), and their manifest.

They are the embedded default: real members are trained UNets exported by ``export/``; these are
hand-designed filters that find the motors of :mod:`inference.synth.generate` and exercise every code path
(engines, windows, TTA, peaks, fusion) exactly as a real member would.

* ``demo3d``: a 3d member, input ``(N, 1, D, H, W)`` z-scored at 16 Å. It clips extreme values (so
  a tiny, very dark gold bead cannot outshine a large motor), average-pools by 4 (64 Å cells),
  applies a separable difference of Gaussians tuned to a dark blob ~450 Å across, max-pools by 4
  (stride 16) and maps the response affinely to a logit.
* ``demo2d``: a 2d member, input ``(N, C, H, W)``: C neighbouring slices at ``slice_spacing`` Å,
  averaged, then the same filter in 2D.
* :func:`avgpool_model`: an average pool whose receptive field equals its stride: the test model
  for exact stitching.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


@dataclass(frozen=True)
class DetectorParams:
    """Filter design, in Å where physical: defaults tuned on the synthetic data (docs/SYNTH.md)."""

    target_spacing: float = 16.0
    pool: int = 4                 # first average pool (voxels): 64 Å cells at 16 Å
    motor_diameter_A: float = 450.0
    sigma_ratio: float = 1.6      # DoG: sigma2 = ratio * sigma1
    clip: float = 3.0             # z-score clip (|x| <= clip)
    gain: float = 8.0             # logit = gain * (response - bias)
    bias: float = 0.505           # response at conf 0.5 (best F2 on a synthetic train split, seed 7)


def gauss_taps(sigma: float) -> np.ndarray:
    """Normalised 1D Gaussian taps of ``sigma`` (samples), radius ``ceil(2.5 sigma)`` (at least 1)."""
    r = max(1, int(math.ceil(2.5 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).astype(np.float32)


def _io(ndim: int, channels: int, stride: int):
    dims = ["D", "H", "W"][-ndim:]
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, *dims])
    out = helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["N", 1, *[f"{d}_{stride}" for d in dims]])
    return inp, out


def make_model(nodes, inits, inp, out, name: str, metadata: dict[str, str]) -> onnx.ModelProto:
    """A checked ONNX model (opset :data:`OPSET`, IR <= 8) of one graph, ``metadata`` as metadata_props."""
    graph = helper.make_graph(nodes, name, [inp], [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="motorfinder")
    model.ir_version = min(model.ir_version, 8)
    for k, v in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, str(v)
    onnx.checker.check_model(model)
    return model


def avgpool_model(stride: int = 16, ndim: int = 3) -> onnx.ModelProto:
    """``(N,1,*S) -> (N,1,*S/stride)`` average pool: receptive field == stride."""
    inp, out = _io(ndim, 1, stride)
    node = helper.make_node("AveragePool", ["input"], ["heatmap"], kernel_shape=[stride] * ndim, strides=[stride] * ndim)
    return make_model([node], [], inp, out, "avgpool", {"arch": "avgpool", "stride": str(stride)})


def gaussian_blur_nodes(ndim: int, x: str, sigma: float, prefix: str):
    """A separable Gaussian blur (:func:`gauss_taps`) of tensor ``x`` (N,1,...): returns nodes, inits and
    the name of the blurred tensor (all names start with ``prefix``).

    Each 1D blur reflect-pads its axis first (a zero pad would make every window border look like
    the edge of a dark region and fire a detector there).
    """
    nodes, inits = [], []
    taps = gauss_taps(sigma)
    r = len(taps) // 2
    cur = x
    for axis in range(ndim):
        shape = [1, 1] + [1] * ndim
        shape[2 + axis] = len(taps)
        wname, pname = f"{prefix}w{axis}", f"{prefix}pads{axis}"
        inits.append(numpy_helper.from_array(taps.reshape(shape), wname))
        pads = np.zeros(2 * (ndim + 2), np.int64)
        pads[2 + axis] = pads[ndim + 2 + 2 + axis] = r
        inits.append(numpy_helper.from_array(pads, pname))
        padded, nxt = f"{prefix}p{axis}", f"{prefix}{axis}"
        nodes.append(helper.make_node("Pad", [cur, pname], [padded], mode="reflect"))
        nodes.append(helper.make_node("Conv", [padded, wname], [nxt]))
        cur = nxt
    return nodes, inits, cur


def _dog_nodes(ndim: int, x: str, sigmas_cells: tuple[float, float], prefix: str):
    """Gaussian blurs at two sigmas of tensor ``x`` (N,1,...): returns nodes, inits, name of G1-G2."""
    nodes, inits, outs = [], [], []
    for k, sigma in enumerate(sigmas_cells):
        n, i, out = gaussian_blur_nodes(ndim, x, sigma, f"{prefix}g{k}_")
        nodes += n
        inits += i
        outs.append(out)
    diff = f"{prefix}dog"
    nodes.append(helper.make_node("Sub", outs, [diff]))
    return nodes, inits, diff


# Per kind: the 2d filter's response runs lower, so its bias is lower (both fitted once on a
# synthetic train split, seed 7: best F2 at conf 0.5).
DEMO_PARAMS = {"3d": DetectorParams(), "2d": DetectorParams(bias=0.43)}


def detector_model(kind: str = "3d", params: DetectorParams | None = None, channels: int = 3,
                   stride: int = 16) -> onnx.ModelProto:
    """The demo detector (see the module docstring); raw logits out (activation: sigmoid)."""
    params = params or DEMO_PARAMS[kind]
    ndim = 3 if kind == "3d" else 2
    cin = 1 if kind == "3d" else channels
    if stride % params.pool:
        raise ValueError(f"stride {stride} must be a multiple of pool {params.pool}")
    inp, out = _io(ndim, cin, stride)
    cell_A = params.pool * params.target_spacing
    sigma1 = params.motor_diameter_A / 2.0 / math.sqrt(ndim) / cell_A
    consts = {
        "lo": np.array(-params.clip, np.float32), "hi": np.array(params.clip, np.float32),
        "neg": np.array(-1.0, np.float32), "gain": np.array(params.gain, np.float32),
        "bias": np.array(params.bias, np.float32),
    }
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items()]
    nodes = []
    x = "input"
    if cin > 1:
        nodes.append(helper.make_node("ReduceMean", ["input"], ["mean_c"], axes=[1], keepdims=1))
        x = "mean_c"
    nodes += [
        helper.make_node("Clip", [x, "lo", "hi"], ["clipped"]),
        helper.make_node("Mul", ["clipped", "neg"], ["dark"]),
        helper.make_node("AveragePool", ["dark"], ["pooled"], kernel_shape=[params.pool] * ndim,
                         strides=[params.pool] * ndim),
    ]
    dog_nodes, dog_inits, dog = _dog_nodes(ndim, "pooled", (sigma1, params.sigma_ratio * sigma1), "")
    nodes += dog_nodes
    inits += dog_inits
    rest = stride // params.pool
    nodes += [
        helper.make_node("MaxPool", [dog], ["peak"], kernel_shape=[rest] * ndim, strides=[rest] * ndim),
        helper.make_node("Sub", ["peak", "bias"], ["centred"]),
        helper.make_node("Mul", ["centred", "gain"], ["heatmap"]),
    ]
    meta = {"arch": f"demo_dog_{kind}", "kind": kind, "stride": str(stride), "spacing": str(params.target_spacing),
            "normalize": "zscore", "activation": "sigmoid", "producer": "inference.synth.demo_models"}
    return make_model(nodes, inits, inp, out, f"demo_{kind}", meta)


def demo_manifest_dict(with_2d: bool = False) -> dict:
    """The demo manifest (paths relative to the folder the models are written to)."""
    members = [{
        "name": "demo3d", "kind": "3d", "model": "demo3d.onnx", "patch": [64, 128, 128], "stride": 16,
        "overlap": 0.5, "normalize": "zscore", "activation": "sigmoid", "tta": ["zyx", "zyx_x"],
        "weight": 1.0, "stitch": "mean", "batch_size": 2,
        "decode": {"nms_kernel": 7, "min_conf": 0.1, "top_k": 20, "border_A": 250.0},
    }]
    if with_2d:
        members.append({
            "name": "demo2d", "kind": "2d", "model": "demo2d.onnx", "patch": [128, 128], "stride": 16,
            "overlap": 0.5, "normalize": "zscore", "activation": "sigmoid", "tta": ["yx"], "weight": 1.0,
            "stitch": "mean", "batch_size": 8, "channels": 3, "slice_spacing": 64.0,
            "decode": {"nms_kernel": 7, "min_conf": 0.1, "top_k": 20, "border_A": 250.0},
        })
    return {
        "target_spacing": 16.0,
        "default_spacing": 13.1,
        "members": members,
        # The demo detectors are calibrated, so a fixed threshold suits them: 0.5 for one member,
        # 0.55 for the fused pair (each the best F2 on a synthetic train split, seed 7).
        "threshold": {"fixed": 0.55 if with_2d else 0.5},
        "fusion": {"method": "wbf", "dist_A": 1000.0, "conf_type": "avg", "skip_conf": 0.0},
    }


def write_demo_models(out_dir: str | Path, *, with_2d: bool = False) -> Path:
    """Write the demo ONNX models and ``manifest.yaml`` to ``out_dir``; returns the manifest path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(detector_model("3d"), out / "demo3d.onnx")
    if with_2d:
        onnx.save(detector_model("2d"), out / "demo2d.onnx")
    manifest = out / "manifest.yaml"
    manifest.write_text("# Demo detectors written by `python -m inference demo-models`.\n"
                        + yaml.safe_dump(demo_manifest_dict(with_2d), sort_keys=False))
    return manifest
