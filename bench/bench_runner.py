"""Runner benchmark: overlap (wall vs engine time), 2 workers vs 1, end to end vs a straightforward
pipeline, and peak memory on the largest real tomogram shape.

    python bench/bench_runner.py [--n 6] [--scale 0.25] [--big] [--out FILE]

* A "heavy" member: an ONNX conv stack (3x3x3 convs, 8 channels, at full resolution, average-pooled
  to stride 16) whose engine time dominates; and the light demo detector.
* Ours: ``run_predict`` in-process (prefetch thread) and with 1 and 2 worker processes.
* Straightforward baseline on the same tomograms and the same ORT session: PIL decode (one
  thread), ``scipy.ndimage.zoom`` (order 1), z-score, MONAI ``sliding_window_inference`` (same
  patch, overlap, batch), argmax of the heatmap. No TTA on either side.
* ``--big``: peak RSS of one in-process run over a 800 x 1912 x 1847 uint8 ``.npy`` at 6.5 Å (the
  largest real shape), with the demo detector.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import emit, provenance

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper, numpy_helper


def heavy_model(channels: int = 8, depth: int = 3) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, "D", "H", "W"])
    out = helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["N", 1, "d", "h", "w"])
    nodes, inits, cur, cin = [], [], "input", 1
    for i in range(depth):
        w = (rng.standard_normal((channels, cin, 3, 3, 3)) / np.sqrt(27 * cin)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [helper.make_node("Conv", [cur, f"w{i}"], [f"c{i}"], pads=[1] * 6),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        cur, cin = f"r{i}", channels
    inits.append(numpy_helper.from_array((rng.standard_normal((1, channels, 1, 1, 1)) * 0.1).astype(np.float32), "wh"))
    nodes += [helper.make_node("AveragePool", [cur], ["pooled"], kernel_shape=[16] * 3, strides=[16] * 3),
              helper.make_node("Conv", ["pooled", "wh"], ["heatmap"])]
    model = helper.make_model(helper.make_graph(nodes, "heavy", [inp], [out], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 8)
    entry = model.metadata_props.add()
    entry.key, entry.value = "stride", "16"
    return model


def manifest_for(model_file: str, patch, overlap: float, tta) -> dict:
    return {"target_spacing": 16.0, "members": [{
        "name": "m", "kind": "3d", "model": model_file, "patch": list(patch), "stride": 16, "overlap": overlap,
        "normalize": "zscore", "activation": "sigmoid", "tta": list(tta), "batch_size": 2,
        "decode": {"nms_kernel": 3, "min_conf": 0.0, "top_k": 5}}], "threshold": {"fixed": 0.5}}


def baseline(sources, spacings, engine, patch, overlap) -> float:
    """PIL, scipy zoom, MONAI sliding window, argmax; returns wall seconds."""
    import torch
    from monai.inferers import sliding_window_inference
    from PIL import Image
    from scipy import ndimage

    t0 = time.perf_counter()
    for src in sources:
        files = sorted(src.glob("slice_*.jpg"), key=lambda p: int(p.stem.split("_")[1]))
        vol = np.stack([np.asarray(Image.open(f).convert("L")) for f in files])
        s = spacings[src.name]
        vol = ndimage.zoom(vol.astype(np.float32), s / 16.0, order=1)
        vol = (vol - vol.mean()) / (vol.std() or 1.0)
        x = torch.from_numpy(vol[None, None])
        with torch.no_grad():
            heat = sliding_window_inference(x, roi_size=patch, sw_batch_size=2, overlap=overlap, mode="constant",
                                            predictor=lambda b: torch.from_numpy(engine(b.numpy())))
        np.unravel_index(int(torch.argmax(heat)), heat.shape)
    return time.perf_counter() - t0


def ours(cfg_kw, manifest_path, data, workers) -> tuple[float, dict]:
    from inference.manifest import load_manifest
    from inference.runner import PredictConfig, run_predict

    out = Path(tempfile.mkdtemp()) / "sub.csv"
    t0 = time.perf_counter()
    res = run_predict(PredictConfig(manifest=load_manifest(manifest_path), input_dir=data / "test", output=out,
                                    spacing_csv=data / "test_labels.csv", progress=False, workers=workers, **cfg_kw))
    return time.perf_counter() - t0, dict(res.timer.totals)


def big_rss(tmp: Path) -> str:
    """Peak RSS (own process) of predicting one 800 x 1912 x 1847 tomogram, measured in a child."""
    code = f"""
import numpy as np, resource, time, sys
from pathlib import Path
from inference.demo_models import write_demo_models
from inference.manifest import load_manifest
from inference.runner import PredictConfig, run_predict
d = Path({str(tmp)!r})
(d / "in").mkdir(exist_ok=True)
v = np.lib.format.open_memmap(d / "in" / "tomo_big.npy", mode="w+", dtype=np.uint8, shape=(800, 1912, 1847))
for z in range(0, 800, 50):
    v[z:z + 50] = np.random.default_rng(z).integers(100, 160, (min(50, 800 - z), 1912, 1847), dtype=np.uint8)
v.flush(); del v
(d / "sp.csv").write_text("tomo_id,voxel_spacing\\ntomo_big,6.5\\n")
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
res = run_predict(PredictConfig(manifest=load_manifest(write_demo_models(d / "m")), input_dir=d / "in",
                  output=d / "s.csv", spacing_csv=d / "sp.csv", progress=False, workers=0))
print(f"{{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f}} {{time.perf_counter() - t0:.1f}} "
      f"{{res.timer.summary()}}")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return f"{out[0]} GiB peak RSS, {out[1]} s; stages: {' '.join(out[2:])}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=6, help="synthetic test tomograms")
    ap.add_argument("--scale", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=77)
    ap.add_argument("--big", action="store_true", help="also measure peak RSS on 800x1912x1847 at 6.5 Å")
    ap.add_argument("--out", type=Path, default=Path("bench/results/runner.md"))
    args = ap.parse_args(argv)

    import pandas as pd

    from inference.demo_models import detector_model
    from inference.engines import load_engine
    from inference.synth import generate

    tmp = Path(tempfile.mkdtemp())
    data = tmp / "data"
    generate(data, args.n, args.seed, split="test", scale=args.scale, progress=False)
    labels = pd.read_csv(data / "test_labels.csv")
    spacings = dict(zip(labels["tomo_id"], labels["Voxel spacing"]))
    sources = sorted((data / "test").iterdir())
    patch, overlap = (64, 128, 128), 0.25
    onnx.save(heavy_model(), tmp / "heavy.onnx")
    onnx.save(detector_model("3d"), tmp / "demo3d.onnx")
    lines = [
        "# Runner benchmark", "",
        *provenance(f"python bench/bench_runner.py --n {args.n} --scale {args.scale}{' --big' if args.big else ''}"),
        f"- data: {args.n} synthetic test tomograms (seed {args.seed}, scale {args.scale}), patch {patch}, "
        f"overlap {overlap}, batch 2, no TTA", "",
        "| model | run | wall s | engine s (summed) | wall / engine | tomograms/s | vs baseline |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name in ("heavy", "demo3d"):
        mpath = tmp / f"{name}.yaml"
        mpath.write_text(yaml.safe_dump(manifest_for(f"{name}.onnx", patch, overlap, ["zyx"])))
        base = baseline(sources, spacings, load_engine(tmp / f"{name}.onnx"), patch, overlap)
        rows = []
        for label, workers in (("ours, in-process", 0), ("ours, 1 worker", 1), ("ours, 2 workers", 2)):
            wall, totals = ours({}, mpath, data, workers)
            eng = totals.get("engine", 0.0)
            rows.append((label, wall, eng))
        for label, wall, eng in rows:
            lines.append(f"| {name} | {label} | {wall:.2f} | {eng:.2f} | {wall / eng:.2f} | {args.n / wall:.3f} "
                         f"| {base / wall:.2f}x |")
        lines.append(f"| {name} | baseline (PIL, scipy zoom, MONAI, argmax) | {base:.2f} | - | - | "
                     f"{args.n / base:.3f} | 1.00x |")
        w1 = next(w for lab, w, _ in rows if lab == "ours, 1 worker")
        w2 = next(w for lab, w, _ in rows if lab == "ours, 2 workers")
        lines.append(f"| {name} | 2 workers vs 1 worker | | | | | {w1 / w2:.2f}x |")
    if args.big:
        lines += ["", f"Largest real shape (800 x 1912 x 1847 uint8 .npy at 6.5 Å, demo 3d member, in-process): "
                  f"{big_rss(tmp)}"]
    lines.append("")
    emit(lines, args.out)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
