"""Scaling on one machine: the local runner vs the Ray backend with 1 and 2 CPU actors, same tomograms.

    python bench/bench_scale.py [--n 6] [--scale 0.2] [--repeats 5] [--out bench/results/scale.md]

* The tomograms: ``--n`` synthetic test tomograms; the member: the runner benchmark's "heavy" conv
  stack (bench/_e2e.py; engine-bound like a real UNet), patch 64 x 128 x 128, no TTA.
* Variants, run interleaved (round r runs every variant once, in a rotated order) ``--repeats`` times
  after a warm-up round: local runner with 1 and 2 worker processes, Ray with 1 and 2 CPU actors.
  Each run starts from an empty work folder. Ray runs on a local cluster started once in this process
  (2 CPUs, 200 MB object store, no dashboard): the Ray rows include starting the actors and building
  their engines, not starting the cluster, which is timed on its own (``ray.init`` to ready, 3 times).
* Every run's submission must be byte-identical to the first one's (checked).
* Also: reading the median portal tomogram (256 x 646 x 650 float32, 3 levels, 128^3 chunks) from a
  local OME-Zarr store, level 0, with ``inference.io.omezarr.read_omezarr``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import yaml
from _e2e import heavy_model, manifest_for
from _measure import measure, spread
from _report import Report

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = (("local runner, 1 worker", "local", 1), ("local runner, 2 workers", "local", 2),
            ("Ray, 1 CPU actor", "ray", 1), ("Ray, 2 CPU actors", "ray", 2))


def one_run(manifest, data: Path, backend: str, workers: int) -> dict:
    from inference.run.runner import PredictConfig, run_predict

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        out = Path(tmp) / "sub.csv"
        res = run_predict(PredictConfig(manifest=manifest, input_dir=data / "test", output=out, progress=False,
                                        spacing_csv=data / "test_labels.csv", workers=workers, backend=backend))
        return {"submission": out.read_bytes(), "engine": res.timer.totals.get("engine", 0.0)}


def ray_start(ray) -> None:
    ray.init(address="local", num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False,
             logging_level=logging.WARNING)
    ray.get(ray.remote(lambda: 1).remote())


def zarr_store(tmp: Path) -> Path:
    from inference.synth.omezarr_write import write_omezarr

    vol = np.random.default_rng(0).standard_normal((256, 646, 650), dtype=np.float32)
    write_omezarr(tmp / "median.zarr", vol, 16.0, levels=3, chunks=(128, 128, 128))
    return tmp / "median.zarr"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=6, help="synthetic test tomograms")
    ap.add_argument("--scale", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=77)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale.md")
    args = ap.parse_args(argv)

    import ray

    from inference.io.omezarr import read_omezarr
    from inference.manifest.parse import load_manifest
    from inference.synth.generate import generate

    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp())
    data = tmp / "data"
    generate(data, args.n, args.seed, split="test", scale=args.scale, progress=False)
    onnx.save(heavy_model(), tmp / "heavy.onnx")
    (tmp / "heavy.yaml").write_text(yaml.safe_dump(manifest_for("heavy.onnx")))
    manifest = load_manifest(tmp / "heavy.yaml")

    starts = measure({"cluster start": lambda: (ray_start(ray), ray.shutdown())}, repeats=3, warmup=0)
    ray_start(ray)
    try:
        runs = measure({label: (lambda b=backend, w=workers: one_run(manifest, data, b, w))
                        for label, backend, workers in VARIANTS}, repeats=args.repeats,
                       progress=lambda m: print(m, flush=True))
    finally:
        ray.shutdown()
    bodies = {s.value["submission"] for label, _, _ in VARIANTS for s in runs.samples[label]}
    if len(bodies) != 1:
        raise SystemExit("the submissions differ between runs: the backends disagree")
    store = zarr_store(tmp)
    reads = measure({"read": lambda: read_omezarr(store)[0].shape}, repeats=args.repeats)

    first = VARIANTS[0][0]
    rep = Report("bench_scale.py", "Scaling on one machine: local runner vs Ray", argv, packages=["ray", "zarr"])
    rep.record_loads(runs.loads())
    rep.add(f"- data: {args.n} synthetic test tomograms (seed {args.seed}, scale {args.scale}); member: the heavy conv "
            "stack of bench/_e2e.py, patch 64 x 128 x 128, overlap 0.25, batch 2, no TTA",
            f"- measure: {args.repeats} interleaved rounds after a warm-up round, each run from an empty work folder; "
            "median (min-max); speed: median (min-max) of per-round ratios; every run's submission byte-identical",
            "- Ray: one local cluster (2 CPUs, 200 MB object store, no dashboard) for all rounds; its rows include "
            "starting the actors and building their engines, not starting the cluster (timed on its own below)", "")
    rows = []
    for label, _, _ in VARIANTS:
        wall = rep.metric(f"{label} wall s", runs.wall(label))
        speed = rep.metric(f"{label} vs {first}", runs.speedup(first, label))
        eng = spread(runs.values(label, lambda s: s.value["engine"]))
        rows.append([label, wall.fmt(2), f"{args.n / wall.median:.3f}", speed.fmt(2, "x"), eng.fmt(2)])
    rep.table(["variant", "wall s", "tomograms/s", f"speed vs {first}", "engine s summed"], rows)
    start = rep.metric("Ray cluster start s", starts.wall("cluster start"))
    read = rep.metric("OME-Zarr read s", reads.wall("read"))
    rep.add(f"- local Ray cluster start (`ray.init` until a first task returns, 3 runs): {start.fmt(2)} s",
            f"- OME-Zarr read, the median portal tomogram (256 x 646 x 650 float32, 128^3 chunks, blosc-lz4), level 0: "
            f"{read.fmt(2)} s ({256 * 646 * 650 * 4 / 2**20 / read.median:.0f} MiB/s)")
    rep.write(args.out)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
