"""Fusion time: 1000 tomograms x 5 members x 50 candidates, point WBF (and optionally wbf_iou).

    python bench/bench_fusion.py [--tomograms 1000] [--members 5] [--candidates 50] [--repeats 9] [--iou]

Candidates are random points in a 300 x 960 x 928 tomogram at 13.1 Å, a quarter of them clustered
around one "motor" per tomogram so the clusters are not all singletons.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from _measure import measure
from _report import Report

ROOT = Path(__file__).resolve().parents[1]


def make_tables(n_tomo: int, n_members: int, n_cand: int, seed: int = 0) -> list[pd.DataFrame]:
    rng = np.random.default_rng(seed)
    shape = np.array([300, 960, 928])
    motors = rng.uniform(0, shape, size=(n_tomo, 3))
    tables = []
    for _ in range(n_members):
        ids = np.repeat([f"tomo_{i:05d}" for i in range(n_tomo)], n_cand)
        pts = rng.uniform(0, shape, size=(n_tomo * n_cand, 3))
        near = rng.random(n_tomo * n_cand) < 0.25
        pts[near] = np.repeat(motors, n_cand, axis=0)[near] + rng.normal(0, 15, size=(int(near.sum()), 3))
        tables.append(pd.DataFrame({"tomo_id": ids, "z": pts[:, 0], "y": pts[:, 1], "x": pts[:, 2],
                                    "conf": rng.random(len(ids)), "voxel_spacing": 13.1}))
    return tables


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tomograms", type=int, default=1000)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--candidates", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--iou", action="store_true", help="also time method wbf_iou (ensemble_boxes)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "fusion.md")
    args = ap.parse_args(argv)

    from inference.ensemble.fusion import fuse_tables
    from inference.ensemble.fusion_iou import fuse_tables_iou

    tables = make_tables(args.tomograms, args.members, args.candidates)
    w = [1.0] * args.members
    variants = {"point WBF (`inference.ensemble.fusion`, the default)": lambda: len(fuse_tables(tables, w, dist_A=1000.0))}
    if args.iou:
        variants["`wbf_iou` (ensemble_boxes `weighted_boxes_fusion_3d`)"] = \
            lambda: len(fuse_tables_iou(tables, w, box_A=1000.0))
    runs = measure(variants, repeats=args.repeats)
    first = next(iter(variants))
    n = args.tomograms * args.members * args.candidates
    rep = Report("bench_fusion.py", "Fusion time", argv, packages=["pandas", "ensemble-boxes"])
    rep.record_loads(runs.loads())
    rep.add(f"- input: {n} candidates ({args.tomograms} tomograms x {args.members} members x {args.candidates}; a "
            "quarter clustered around one point per tomogram)",
            f"- measure: {args.repeats} interleaved rounds after a warm-up round; median (min-max); the speed is the "
            "median (min-max) of per-round ratios of CPU time (both run in one thread; CPU time is steadier than wall "
            "time on a shared machine)", "")
    rows = []
    for name in variants:
        wall = rep.metric(f"{name} s", runs.wall(name))
        per = rep.metric(f"{name} ms per tomogram", wall.scaled(1e3 / args.tomograms))
        speed = rep.metric(f"{first} vs {name} (CPU)", runs.speedup(name, first, "cpu"))
        rows.append([name, wall.fmt(2), per.fmt(2), runs.samples[name][0].value,
                     "1.00x" if name == first else f"{speed.fmt(1, 'x')} faster"])
    rep.table(["method", "seconds", "ms per tomogram", "fused points", "point WBF's speed (CPU time)"], rows)
    per = rep.metrics[f"{first} ms per tomogram"].median
    rep.add(f"Against the ~36 s per tomogram the recipe had on Kaggle (9 h for ~900 tomograms on 2 GPUs), point WBF "
            f"is {100 * per / 1e3 / 36:.3f} % of the time.")
    rep.write(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
