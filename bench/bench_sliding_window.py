"""Throughput of our sliding window vs MONAI's ``sliding_window_inference`` on the same ORT model.

Both run the same ONNX Runtime session (the demo 3d detector, CPU provider) over the same
normalized volume with the same patch, overlap and batch size, interleaved, median of repeats.
The result is a ratio within one run (this machine is shared and noisy).

    python bench/bench_sliding_window.py [--shape 128 256 256] [--repeats 5] [--out FILE]

Needs the dev extra (MONAI and torch, CPU build) besides the package.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _report import emit, provenance

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=[128, 256, 256], help="volume (Z Y X) at 16 Å")
    ap.add_argument("--patch", type=int, nargs=3, default=[64, 128, 128])
    ap.add_argument("--overlap", type=float, default=0.25)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("bench/results/sliding_window.md"))
    args = ap.parse_args(argv)

    import onnx
    import torch
    from monai.inferers import sliding_window_inference

    from inference.demo_models import detector_model
    from inference.engines import load_engine
    from inference.windows import count_windows, sliding_window

    torch.set_num_threads(1)  # ORT does the compute; torch only glues
    tmp = Path(tempfile.mkdtemp())
    onnx.save(detector_model("3d"), tmp / "demo3d.onnx")
    engine = load_engine(tmp / "demo3d.onnx")
    vol = np.random.default_rng(0).standard_normal((1, *args.shape)).astype(np.float32)
    patch, ov, b = tuple(args.patch), args.overlap, args.batch

    def ours():
        return sliding_window(vol, engine, patch, 16, ov, batch_size=b)

    tvol = torch.from_numpy(vol[None])

    def monai():
        with torch.no_grad():
            out = sliding_window_inference(
                tvol, roi_size=patch, sw_batch_size=b, overlap=ov, mode="constant",
                predictor=lambda x: torch.from_numpy(engine(x.numpy())))
        return out.numpy()[0, 0]

    ours(), monai()  # warm-up
    t_ours, t_monai = [], []
    for _ in range(args.repeats):
        for fn, acc in ((ours, t_ours), (monai, t_monai)):
            t0 = time.perf_counter()
            fn()
            acc.append(time.perf_counter() - t0)
    engine_t = []
    batch = np.stack([vol[:, :patch[0], :patch[1], :patch[2]]] * b)
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        engine(batch)
        engine_t.append(time.perf_counter() - t0)

    n_vox = int(np.prod(args.shape))
    mo, mm = statistics.median(t_ours), statistics.median(t_monai)
    ours_windows = count_windows(args.shape, patch, 16, ov)
    lines = [
        "# Sliding window: ours vs MONAI sliding_window_inference",
        "",
        *provenance(f"python bench/bench_sliding_window.py --shape {' '.join(map(str, args.shape))} "
                    f"--repeats {args.repeats}"),
        f"- model: demo 3d detector (ONNX Runtime CPU), patch {patch}, overlap {ov}, batch {b}, "
        f"volume {tuple(args.shape)} float32",
        "",
        "| implementation | windows | median s | Mvoxels/s | vs MONAI |",
        "|---|---:|---:|---:|---:|",
        f"| ours (`inference.windows.sliding_window`) | {ours_windows} | {mo:.3f} | {n_vox / mo / 1e6:.2f} "
        f"| {mm / mo:.2f}x |",
        f"| MONAI `sliding_window_inference` | (its own grid) | {mm:.3f} | {n_vox / mm / 1e6:.2f} | 1.00x |",
        "",
        f"Engine alone: {statistics.median(engine_t) / b * 1e3:.1f} ms per window "
        f"({ours_windows} windows -> {statistics.median(engine_t) / b * ours_windows:.3f} s of our wall time).",
        "",
    ]
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
