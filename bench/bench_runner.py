"""Runner benchmark: our runner vs the straightforward pipeline end to end, the overlap (wall vs engine
time), 2 workers vs 1, the share of each stage, and (``--big``) peak memory on the largest real shape.

    python bench/bench_runner.py [--n 6] [--scale 0.25] [--repeats 5] [--workers 0 1 2] [--big] [--out FILE]

* Two members: an engine-bound ONNX conv stack ("heavy": 3x3x3 convs, 8 channels, at full resolution,
  average-pooled to stride 16; ``bench/_e2e.py``) and the light demo 3d detector.
* Ours: ``run_predict`` in-process (prefetch thread) and, for the heavy member, with ``--workers``
  worker processes (the light member's worker rows would only show the workers' start); the
  straightforward pipeline on the same tomograms, the same model and engine options
  (``bench/_e2e.py``). All interleaved, ``--repeats`` rounds after a warm-up round; no TTA on either
  side; every run builds its engines from the model file.
* On a CPU the engine and the host stages share the same cores: an engine-bound member can gain at most
  its non-engine share end to end. The GPU form of this comparison, where decode and resample overlap
  the engine, is ``bench/_e2e.py``'s ``gpu_section`` (a section of ``bench/gpu_check.py``).
* ``--big``: peak RSS of one in-process run over a 800 x 1912 x 1847 uint8 ``.npy`` at 6.5 Å (the
  largest real shape), with the demo detector (memory: one run, not a timing comparison).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _e2e import HEADER, OVERLAP, PATCH, compare, findings, heavy_model, make_data, ours_label, rows, window_loop
from _measure import spread
from _report import Report

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("read", "resample", "engine", "stitch", "decode", "fusion", "write")


def big_rss(tmp: Path) -> tuple[float, float, str]:
    """Peak RSS (GiB, own process) and seconds of predicting one 800 x 1912 x 1847 tomogram, in a child."""
    code = f"""
import numpy as np, resource, time, sys
from pathlib import Path
from inference.synth.demo_models import write_demo_models
from inference.manifest import load_manifest
from inference.run.runner import PredictConfig, run_predict
d = Path({str(tmp)!r})
(d / "in").mkdir(exist_ok=True)
v = np.lib.format.open_memmap(d / "in" / "tomo_big.npy", mode="w+", dtype=np.uint8, shape=(800, 1912, 1847))
for z in range(0, 800, 50):
    v[z:z + 50] = np.random.default_rng(z).integers(100, 160, (min(50, 800 - z), 1912, 1847), dtype=np.uint8)
v.flush(); del v
(d / "sp.csv").write_text("tomo_id,voxel_spacing\\ntomo_big,6.5\\n")
t0 = time.perf_counter()
res = run_predict(PredictConfig(manifest=load_manifest(write_demo_models(d / "m")), input_dir=d / "in",
                  output=d / "s.csv", spacing_csv=d / "sp.csv", progress=False, workers=0))
print(f"{{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f}} {{time.perf_counter() - t0:.1f}} "
      f"{{res.timer.summary()}}")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
    return float(out[0]), float(out[1]), " ".join(out[2:])


def stage_rows(runs, name: str) -> list[str]:
    """Median seconds (and share of the summed stages) per stage of one variant's rounds."""
    per = {k: statistics.median(s.value.get(k, 0.0) for s in runs.samples[name]) for k in STAGES}
    total = sum(per.values()) or 1.0
    return [f"{per[k]:.2f} s ({100 * per[k] / total:.0f} %)" for k in STAGES]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=6, help="synthetic test tomograms")
    ap.add_argument("--scale", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=77)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2],
                    help="the heavy member's runs: 0 in-process, k: k worker processes (the demo member: in-process)")
    ap.add_argument("--big", action="store_true", help="also measure peak RSS on 800x1912x1847 at 6.5 Å")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "runner.md")
    args = ap.parse_args(argv)
    if 0 not in args.workers:
        ap.error("--workers must include 0 (in-process: the end-to-end comparison's row)")

    from inference.synth.demo_models import detector_model

    tmp = Path(tempfile.mkdtemp())
    data, sources, spacings = make_data(tmp, args.n, args.seed, args.scale)
    rep = Report("bench_runner.py", "Runner: ours vs the straightforward pipeline", argv, packages=["torch", "monai"])
    rep.add(f"- data: {args.n} synthetic test tomograms (seed {args.seed}, scale {args.scale}); patch "
            f"{' x '.join(map(str, PATCH))}, overlap {OVERLAP}, batch 2, no TTA; the same ONNX Runtime (CPU) model and "
            "options on both sides",
            f"- straightforward: PIL decode, `scipy.ndimage.zoom`, z-score, {window_loop()}, argmax",
            f"- measure: {args.repeats} interleaved rounds after a warm-up round, each run from an empty work folder; "
            "median (min-max); ratios: medians (min-max) of per-round ratios. Engine s: time inside engine calls, "
            "summed over workers; outside the engine: wall - engine (one engine at a time only); CPU s: this process "
            "and its finished worker processes (every thread). Wall-time gains need free cores, so they move with "
            "the other jobs' load (the load line above); CPU-time ratios do not", "")
    stages = []
    for name, model in (("heavy conv stack", heavy_model()), ("demo 3d detector", detector_model("3d"))):
        key = "heavy" if name.startswith("heavy") else "demo3d"
        workers = args.workers if key == "heavy" else [0]
        runs = compare(tmp, model, key, data, sources, spacings, workers=workers, repeats=args.repeats,
                       progress=lambda m, k=key: print(f"{k}: {m}", flush=True))
        rep.record_loads(runs.loads())
        rep.add(f"**{name}**", "")
        rep.table(HEADER, rows(runs, args.n, rep, f"{key}: "))
        notes = findings(runs, rep, f"{key}: ")
        if 1 in workers and 2 in workers:
            two = rep.metric(f"{key}: 2 workers vs 1", runs.speedup(ours_label(1), ours_label(2)))
            notes.append(f"2 worker processes vs 1: {two.fmt(2, 'x')} (two processes split the same "
                         f"{__import__('os').cpu_count()} cores; on a GPU machine each worker owns a GPU)")
        rep.add(*(f"- {n}" for n in notes), "")
        stages.append([name, *stage_rows(runs, ours_label(0))])
    rep.add("Share of each stage, ours in-process (median seconds over the rounds; stages exclusive, summed over "
            "tomograms):", "")
    rep.table(["member", *STAGES], stages)
    if args.big:
        gib, secs, summary = big_rss(tmp)
        rep.metric("big: peak RSS GiB", spread([gib]))
        rep.add(f"Largest real shape (800 x 1912 x 1847 uint8 `.npy` at 6.5 Å, demo 3d member, in-process, one run): "
                f"**{gib:.2f} GiB peak RSS**, {secs:.0f} s; stages: {summary}")
    rep.write(args.out)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
