"""What the checks before and around a run cost (issue 15), as ratios to reading the tomograms.

Builds ``--n`` BYU-like slice folders (``--slices`` JPEG slices of ``--size`` px, the same image in each: the
file-system work is what is measured, not the decode) and times, side by side in one run:

* the input listing (:func:`inference.sources.scan_sources`: every entry classified);
* the checks before any work (:func:`inference.preflight.check_inputs`: a header peek per source);
* the source stamps of the run key (:func:`inference.workdir.source_stamp`: size and mtime of every slice);
* the model hash of the run key (:func:`inference.workdir.file_digest` over a ``--model-mb`` file);
* reading every tomogram (:func:`inference.readers.read_volume`), the reference the others are divided by.

    python bench/bench_run_checks.py --n 100 --slices 300 --size 512
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _make(root: Path, n: int, slices: int, size: int) -> Path:
    from PIL import Image

    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    for i in range(n):
        folder = root / "in" / f"tomo_{i:04d}"
        folder.mkdir(parents=True)
        for z in range(slices):
            (folder / f"slice_{z:04d}.jpg").write_bytes(data)
    return root / "in"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="slice folders (default 100)")
    parser.add_argument("--slices", type=int, default=300, help="slices per folder (default 300)")
    parser.add_argument("--size", type=int, default=512, help="slice side in pixels (default 512)")
    parser.add_argument("--model-mb", type=int, default=200, help="size of the model file hashed (default 200)")
    args = parser.parse_args(argv)

    from inference import preflight, readers, workdir
    from inference.demo_models import write_demo_models
    from inference.manifest import load_manifest

    with tempfile.TemporaryDirectory(prefix="bench-checks-") as tmp:
        root = Path(tmp)
        inp = _make(root, args.n, args.slices, args.size)
        manifest = load_manifest(write_demo_models(root / "models", with_2d=True))
        model = root / "model.bin"
        model.write_bytes(os.urandom(args.model_mb * 2**20))
        times = {}
        t = time.perf_counter()
        found = readers.scan_sources(inp, report=False)
        times["listing"] = time.perf_counter() - t
        t = time.perf_counter()
        preflight.check_inputs(found.sources, manifest, None, 13.1)
        times["checks before any work"] = time.perf_counter() - t
        t = time.perf_counter()
        for s in found.sources:
            workdir.source_stamp(s)
        times["source stamps"] = time.perf_counter() - t
        t = time.perf_counter()
        workdir.file_digest(model)
        times[f"hash of a {args.model_mb} MB model"] = time.perf_counter() - t
        t = time.perf_counter()
        for s in found.sources:
            readers.read_volume(s)
        times["reading every tomogram"] = time.perf_counter() - t
    ref = times["reading every tomogram"]
    print(f"{args.n} folders x {args.slices} slices of {args.size} px")
    print("| step | seconds | per tomogram ms | / reading |")
    print("|---|---:|---:|---:|")
    for k, v in times.items():
        print(f"| {k} | {v:.3f} | {1000 * v / args.n:.2f} | {v / ref:.4f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
