"""Our sliding window vs MONAI's ``sliding_window_inference`` on the same ONNX Runtime session.

Both run the same session (the demo 3d detector, CPU provider) over the same normalized volume with
the same patch, overlap and batch size: interleaved, ``--repeats`` rounds after a warm-up round.
Reported: wall and CPU seconds, median (min-max), and the speed ratio as the median of per-round
ratios; the engine alone on one batch, for scale.

    python bench/bench_sliding_window.py [--shape 128 256 256] [--repeats 15] [--out FILE]

Needs the bench extra (MONAI and torch, CPU build) besides the package.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _measure import measure
from _report import Report

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=[128, 256, 256], help="volume (Z Y X) at 16 Å")
    ap.add_argument("--patch", type=int, nargs=3, default=[64, 128, 128])
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "sliding_window.md")
    args = ap.parse_args(argv)

    import onnx
    import torch
    from monai.inferers import sliding_window_inference

    from inference.engines.registry import load_engine
    from inference.predict.window_placement import count_windows
    from inference.predict.windows import sliding_window
    from inference.synth.demo_models import detector_model

    torch.set_num_threads(1)  # ORT does the compute; torch only glues
    tmp = Path(tempfile.mkdtemp())
    onnx.save(detector_model("3d"), tmp / "demo3d.onnx")
    engine = load_engine(tmp / "demo3d.onnx")
    vol = np.random.default_rng(0).standard_normal((1, *args.shape)).astype(np.float32)
    patch, ov, b = tuple(args.patch), args.overlap, args.batch
    tvol = torch.from_numpy(vol[None])
    batch = np.stack([vol[:, :patch[0], :patch[1], :patch[2]]] * b)

    def monai():
        with torch.no_grad():
            out = sliding_window_inference(tvol, roi_size=patch, sw_batch_size=b, overlap=ov, mode="constant",
                                           predictor=lambda x: torch.from_numpy(engine(x.numpy())))
        return out.numpy()[0, 0]

    runs = measure({"ours": lambda: sliding_window(vol, engine, patch, 16, ov, batch_size=b), "MONAI": monai,
                    "engine, one batch": lambda: engine(batch)}, repeats=args.repeats)
    n_vox = int(np.prod(args.shape))
    windows = count_windows(args.shape, patch, 16, ov)
    rep = Report("bench_sliding_window.py", "Sliding window: ours vs MONAI sliding_window_inference", argv,
                 packages=["torch", "monai"])
    rep.record_loads(runs.loads())
    rep.add(f"- model: demo 3d detector (ONNX Runtime CPU), patch {' x '.join(map(str, patch))}, overlap {ov}, "
            f"batch {b}, volume {' x '.join(map(str, args.shape))} float32; {windows} windows on our grid",
            f"- measure: {args.repeats} interleaved rounds after a warm-up round; median (min-max); ratios: medians "
            "(min-max) of per-round ratios", "")
    rows = []
    for name, label in (("ours", "ours (`inference.predict.windows.sliding_window`)"),
                        ("MONAI", "MONAI `sliding_window_inference`")):
        wall, cpu = rep.metric(f"{name} wall s", runs.wall(name)), rep.metric(f"{name} CPU s", runs.cpu(name))
        vs_wall = rep.metric(f"{name} vs MONAI (wall)", runs.speedup("MONAI", name))
        vs_cpu = rep.metric(f"{name} vs MONAI (CPU)", runs.speedup("MONAI", name, "cpu"))
        rows.append([label, wall.fmt(3), f"{n_vox / wall.median / 1e6:.1f}", cpu.fmt(3), vs_wall.fmt(2, "x"),
                     vs_cpu.fmt(2, "x")])
    rep.table(["implementation", "wall s", "Mvoxels/s", "CPU s", "speed vs MONAI (wall)", "speed vs MONAI (CPU)"], rows)
    eng = rep.metric("engine ms per window", runs.wall("engine, one batch").scaled(1e3 / b))
    rep.add(f"Engine alone: {eng.median:.1f} ms per window ({eng.lo:.1f}-{eng.hi:.1f}); "
            f"{windows} windows: {eng.median / 1e3 * windows:.3f} s of our {runs.wall('ours').median:.3f} s wall.")
    rep.write(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
