"""Scaling on one machine: the local runner vs the Ray backend with 1 and 2 CPU actors, same tomograms.

    python bench/bench_scale.py [--n 6] [--scale 0.2] [--repeats 3] [--out bench/results/scale.md]

* The tomograms: ``--n`` synthetic test tomograms; the member: the runner benchmark's "heavy" conv
  stack (bench/bench_runner.py; engine-bound like a real UNet), patch 64 x 128 x 128, no TTA.
* Variants, run interleaved (round r runs every variant once, in a rotated order) ``--repeats`` times:
  local runner with 1 and 2 worker processes, Ray with 1 and 2 CPU actors. Each run starts from an
  empty work folder. Ray runs on a local cluster started once in this process (2 CPUs, 200 MB object
  store, no dashboard): the Ray rows include starting the actors and building their engines, not
  starting the cluster, which is timed on its own (``ray.init`` to ready, then ``ray.shutdown``).
* Every run's submission must be byte-identical to the first one's (checked).
* Also: reading the median portal tomogram (256 x 646 x 650 float32, 3 levels, 128^3 chunks) from a
  local OME-Zarr store, level 0, with ``inference.omezarr.read_omezarr``.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _report import emit, provenance

import numpy as np
import onnx
import yaml

from bench_runner import heavy_model, manifest_for

VARIANTS = (("local runner, 1 worker", "local", 1), ("local runner, 2 workers", "local", 2),
            ("Ray, 1 CPU actor", "ray", 1), ("Ray, 2 CPU actors", "ray", 2))


def one_run(manifest, data: Path, backend: str, workers: int) -> tuple[float, bytes, float]:
    from inference.runner import PredictConfig, run_predict

    out = Path(tempfile.mkdtemp()) / "sub.csv"
    t0 = time.perf_counter()
    res = run_predict(PredictConfig(manifest=manifest, input_dir=data / "test", output=out, progress=False,
                                    spacing_csv=data / "test_labels.csv", workers=workers, backend=backend))
    wall = time.perf_counter() - t0
    body = out.read_bytes()
    shutil.rmtree(out.parent, ignore_errors=True)
    return wall, body, res.timer.totals.get("engine", 0.0)


def ray_start_seconds(ray) -> float:
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False,
             logging_level=logging.WARNING)
    ray.get(ray.remote(lambda: 1).remote())
    return time.perf_counter() - t0


def zarr_read_seconds(tmp: Path, repeats: int) -> list[float]:
    from inference.omezarr import read_omezarr
    from inference.omezarr_write import write_omezarr

    vol = np.random.default_rng(0).standard_normal((256, 646, 650), dtype=np.float32)
    write_omezarr(tmp / "median.zarr", vol, 16.0, levels=3, chunks=(128, 128, 128))
    del vol
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        data, _, _ = read_omezarr(tmp / "median.zarr")
        times.append(time.perf_counter() - t0)
        del data
    return times


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f}"


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} s, min {min(values):.2f} s, max {max(values):.2f} s"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=6, help="synthetic test tomograms")
    ap.add_argument("--scale", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=77)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench/results/scale.md"))
    args = ap.parse_args(argv)

    import ray

    from inference.manifest import load_manifest
    from inference.synth import generate

    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp())
    data = tmp / "data"
    generate(data, args.n, args.seed, split="test", scale=args.scale, progress=False)
    onnx.save(heavy_model(), tmp / "heavy.onnx")
    (tmp / "heavy.yaml").write_text(yaml.safe_dump(manifest_for("heavy.onnx", (64, 128, 128), 0.25, ["zyx"])))
    manifest = load_manifest(tmp / "heavy.yaml")

    starts = []
    walls: dict[str, list[float]] = {v[0]: [] for v in VARIANTS}
    engines: dict[str, list[float]] = {v[0]: [] for v in VARIANTS}
    loads: list[float] = []
    reference = None
    for r in range(args.repeats):
        starts.append(ray_start_seconds(ray))
        order = VARIANTS[r % len(VARIANTS):] + VARIANTS[:r % len(VARIANTS)]
        for label, backend, workers in order:
            loads.append(os.getloadavg()[0])
            wall, body, engine = one_run(manifest, data, backend, workers)
            reference = reference or body
            if body != reference:
                raise SystemExit(f"{label}: the submission differs from the first run's")
            walls[label].append(wall)
            engines[label].append(engine)
            print(f"round {r + 1}: {label}: {wall:.2f} s", flush=True)
        ray.shutdown()
    reads = zarr_read_seconds(tmp, args.repeats)

    base = statistics.median(walls[VARIANTS[0][0]])
    lines = [
        "# Scaling on one machine: local runner vs Ray", "",
        *provenance(f"python bench/bench_scale.py --n {args.n} --scale {args.scale} --repeats {args.repeats}"),
        f"- data: {args.n} synthetic test tomograms (seed {args.seed}, scale {args.scale}); member: the heavy conv "
        "stack of bench/bench_runner.py, patch 64 x 128 x 128, overlap 0.25, batch 2, no TTA",
        f"- {args.repeats} interleaved rounds (each round runs every variant once, rotated order); every run's "
        "submission byte-identical to the first",
        "- Ray: a local cluster (2 CPUs, 200 MB object store, no dashboard) started once per round; its rows "
        "include starting the actors and building their engines, not starting the cluster", "",
        f"- 1-minute load average when each run started: median {statistics.median(loads):.1f}, min {min(loads):.1f}, "
        f"max {max(loads):.1f} (2 cores; other users' jobs included)", "",
        "| variant | median wall s | min | max | tomograms/s (median) | speed vs local 1 worker: ratio of medians | "
        "same, median of per-round ratios (min-max) | engine s summed (median) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    first = walls[VARIANTS[0][0]]
    for label, _, _ in VARIANTS:
        med = statistics.median(walls[label])
        paired = [a / b for a, b in zip(first, walls[label])]
        lines.append(f"| {label} | {fmt(walls[label])} | {args.n / med:.3f} | {base / med:.2f}x | "
                     f"{statistics.median(paired):.2f}x ({min(paired):.2f}-{max(paired):.2f}) | "
                     f"{statistics.median(engines[label]):.2f} |")
    lines += [
        "", f"- local Ray cluster start (`ray.init` until a first task returns): {spread(starts)}",
        f"- OME-Zarr read, the median portal tomogram (256 x 646 x 650 float32, 128^3 chunks, blosc-lz4), level 0: "
        f"{spread(reads)} ({256 * 646 * 650 * 4 / 2**20 / statistics.median(reads):.0f} MiB/s)", "",
    ]
    emit(lines, args.out)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
