"""What the checks before and around a run cost (issue 15), as ratios to reading the tomograms.

Builds ``--n`` BYU-like slice folders (``--slices`` JPEG slices of ``--size`` px, the same image in each: the
file-system work is what is measured, not the decode) and times, side by side in one run:

* the input listing (:func:`inference.io.sources.scan_sources`: every entry classified);
* the checks before any work (:func:`inference.run.preflight.check_inputs`: a header peek per source);
* the source stamps of the run key (:func:`inference.run.workdir.source_stamp`: size and mtime of every slice);
* the model hash of the run key (:func:`inference.run.workdir.file_digest` over a ``--model-mb`` file);
* reading every tomogram (:func:`inference.io.readers.read_volume`), the reference the others are divided by.

    python bench/bench_run_checks.py [--n 100] [--slices 300] [--size 512] [--repeats 9] [--out FILE]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
from pathlib import Path

import numpy as np
from _measure import measure
from _report import Report

ROOT = Path(__file__).resolve().parents[1]
READING = "reading every tomogram (the reference)"


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
    parser.add_argument("--repeats", type=int, default=9, help="interleaved rounds (default 9)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "run_checks.md")
    args = parser.parse_args(argv)

    from inference.io import readers
    from inference.io.sources import scan_sources
    from inference.manifest.parse import load_manifest
    from inference.run import preflight, workdir
    from inference.synth.demo_models import write_demo_models

    with tempfile.TemporaryDirectory(prefix="bench-checks-") as tmp:
        root = Path(tmp)
        inp = _make(root, args.n, args.slices, args.size)
        manifest = load_manifest(write_demo_models(root / "models", with_2d=True))
        model = root / "model.bin"
        model.write_bytes(os.urandom(args.model_mb * 2**20))
        found = scan_sources(inp, report=False)
        steps = {
            "listing (every entry classified)": lambda: scan_sources(inp, report=False),
            "checks before any work (a header peek per source)":
                lambda: preflight.check_inputs(found.sources, manifest, None, 13.1),
            "source stamps of the run key (size and mtime of every slice)":
                lambda: [workdir.source_stamp(s) for s in found.sources],
            f"hash of a {args.model_mb} MB model (once per run and model)": lambda: workdir.file_digest(model),
            READING: lambda: [readers.read_volume(s) for s in found.sources],
        }
        runs = measure(steps, repeats=args.repeats)
    rep = Report("bench_run_checks.py", "What the checks before and around a run cost", argv)
    rep.record_loads(runs.loads())
    rep.add(f"- data: {args.n} slice folders x {args.slices} JPEG slices of {args.size} px (the same image in each: the "
            f"file-system work is measured, not the decode); a {args.model_mb} MB file for the model hash; page cache "
            "warm (after the warm-up round)",
            f"- measure: {args.repeats} interleaved rounds after a warm-up round; median (min-max); `/ reading`: the "
            "median (min-max) of per-round ratios of CPU time (every thread) to reading every tomogram: what each "
            "step costs the machine, steadier than wall time when other jobs share the cores", "")
    rows = []
    for name in steps:
        wall = rep.metric(f"{name} s", runs.wall(name))
        share = rep.metric(f"{name} / reading (CPU)", runs.speedup(name, READING, "cpu"))
        rows.append([name, wall.fmt(3), wall.scaled(1e3 / args.n).fmt(2), share.fmt(4)])
    rep.table(["step", "wall s", "per tomogram ms", "/ reading (CPU time)"], rows)
    total = sum(rep.metrics[f"{n} / reading (CPU)"].median for n in steps if n != READING)
    rep.add(f"All the checks together: {100 * total:.2f} % of reading the tomograms once, in CPU time (sum of the "
            "medians). The model "
            "check at load runs one window of zeros per member through its engine (a batch of 1): the cost of one "
            "window, once per worker.")
    rep.write(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
