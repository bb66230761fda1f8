"""Fusion time: 1000 tomograms x 5 members x 50 candidates, point WBF (and optionally wbf_iou).

    python bench/bench_fusion.py [--tomograms 1000] [--members 5] [--candidates 50] [--iou]

Candidates are random points in a 300 x 960 x 928 tomogram at 13.1 Å, a quarter of them clustered
around one "motor" per tomogram so the clusters are not all singletons.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _report import emit, provenance

import numpy as np
import pandas as pd


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
    ap.add_argument("--iou", action="store_true", help="also time method wbf_iou (ensemble_boxes)")
    ap.add_argument("--out", type=Path, default=Path("bench/results/fusion.md"))
    args = ap.parse_args(argv)

    from inference.fusion import fuse_tables
    from inference.fusion_iou import fuse_tables_iou

    tables = make_tables(args.tomograms, args.members, args.candidates)
    w = [1.0] * args.members
    t0 = time.perf_counter()
    fused = fuse_tables(tables, w, dist_A=1000.0)
    t_wbf = time.perf_counter() - t0
    rows = [("wbf (inference.fusion)", t_wbf, len(fused))]
    if args.iou:
        t0 = time.perf_counter()
        fused_iou = fuse_tables_iou(tables, w, box_A=1000.0)
        rows.append(("wbf_iou (ensemble_boxes)", time.perf_counter() - t0, len(fused_iou)))
    n = args.tomograms * args.members * args.candidates
    lines = [
        "# Fusion time",
        "",
        *provenance(f"python bench/bench_fusion.py --tomograms {args.tomograms} --members {args.members} "
                    f"--candidates {args.candidates}{' --iou' if args.iou else ''}"),
        f"- input: {n} candidates ({args.tomograms} tomograms x {args.members} members x {args.candidates})",
        "",
        "| method | seconds | ms per tomogram | fused points |",
        "|---|---:|---:|---:|",
    ] + [f"| {name} | {t:.2f} | {1e3 * t / args.tomograms:.2f} | {k} |" for name, t, k in rows] + [""]
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
