"""The portal projection, on paper: the shipped recipe over CryoET Data Portal tomograms.

    python bench/project_portal.py [--portal ../shared/realdata/byu/external_portal_tomograms.csv]
        [--manifest weights_manifest.yaml] [--flops bench/results/flops.md] [--out bench/results/portal.md]

Nothing runs on a GPU here. Per tomogram (its shape and spacing from the portal table), the shipped
manifest's engine windows per member and TTA (``kaggle_builder.cost.reference_windows``: the member's
resample grid and window rule) times FLOPs per window (bench/results/flops.md) give its FLOPs. Two
bounds on device time follow:

* lower: every FLOP at the GPU's datasheet fp16 tensor peak (dense), no overhead at all;
* upper: the recipe's Kaggle run. Its five members ran over the ~900 hidden tomograms on 2 T4s within
  the 9-hour limit, at most 72 T4-seconds per hidden tomogram; the hidden tomograms average about
  400 x 1400 x 1050 voxels, read at 13.1 Å (the 3rd place's writeup). Scaled by FLOPs to each portal
  tomogram: an upper bound in T4-seconds, and so on any GPU at least as fast as a T4 in every respect.

The cluster size for a 24-hour turnaround divides the GPU-hours by 24.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from _measure import exact
from _report import Report

REPO = Path(__file__).resolve().parents[1]
# datasheet fp16 tensor-core peaks, dense (no sparsity), TFLOP/s
PEAKS = {"T4": 65.0, "L4": 121.0, "A100": 312.0, "H100 SXM": 989.0}
KAGGLE_HIDDEN = {"tomograms": 900, "hours": 9.0, "gpus": 2, "shape": (400, 1400, 1050), "spacing": 13.1}


def tomogram_flops(manifest, flops_table, shape, spacing) -> tuple[float, dict[str, int]]:
    from kaggle_builder.cost import member_flops, reference_windows

    total, windows = 0.0, {}
    for m in manifest.members:
        w = reference_windows(m, manifest.target_spacing, shape, spacing)
        f, _ = member_flops(m, flops_table)
        if f is None:
            raise SystemExit(f"no FLOPs per window for member {m.name}: run bench/bench_flops.py")
        windows[m.name] = w
        total += w * f
    return total, windows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--portal", type=Path, default=REPO.parent / "shared/realdata/byu/external_portal_tomograms.csv")
    ap.add_argument("--manifest", type=Path, default=REPO / "weights_manifest.yaml")
    ap.add_argument("--flops", type=Path, default=REPO / "bench/results/flops.md")
    ap.add_argument("--hours", type=float, default=24.0, help="turnaround to size the cluster for")
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/portal.md")
    args = ap.parse_args(argv)

    import numpy as np
    import pandas as pd

    from inference.manifest.parse import load_manifest
    from kaggle_builder.cost import parse_flops_md

    manifest = load_manifest(args.manifest, check_files=False)
    table = parse_flops_md(args.flops)
    portal = pd.read_csv(args.portal)
    rows = [tomogram_flops(manifest, table, (r.Z, r.Y, r.X), r.voxel_spacing) for r in portal.itertuples()]
    flops = np.array([f for f, _ in rows])
    windows = pd.DataFrame([w for _, w in rows])
    voxels = (portal.Z * portal.Y * portal.X).to_numpy(float)
    hidden_flops, hidden_windows = tomogram_flops(manifest, table, KAGGLE_HIDDEN["shape"], KAGGLE_HIDDEN["spacing"])
    t4_s_per_hidden = KAGGLE_HIDDEN["hours"] * 3600 * KAGGLE_HIDDEN["gpus"] / KAGGLE_HIDDEN["tomograms"]
    upper_t4_h = float((flops / hidden_flops).sum() * t4_s_per_hidden / 3600)

    from kaggle_builder.cost import T4_PEAK_FLOPS
    from kaggle_builder.profile import projection_hours
    from kaggle_builder.target import BYU

    HIDDEN_TEST_TOMOGRAMS, MEDIAN_SHAPE, MEDIAN_SPACING_A = (BYU.hidden_test_tomograms, BYU.median_shape,
                                                             BYU.median_spacing_A)

    n = len(portal)
    rep = Report("project_portal.py", "Projections on paper: the shipped recipe on Kaggle and on the portal", argv)
    med_flops, med_windows = tomogram_flops(manifest, table, MEDIAN_SHAPE, MEDIAN_SPACING_A)
    bound = {p: med_flops / peak for p, peak in T4_PEAK_FLOPS.items()}
    for key, value in (("median BYU tomogram TFLOP", med_flops / 1e12), ("portal PFLOP", flops.sum() / 1e15),
                       ("upper T4-hours", upper_t4_h), ("Kaggle hidden average TFLOP", hidden_flops / 1e12),
                       *((f"T4 {p} s per median tomogram", v) for p, v in bound.items())):
        rep.metric(key, exact(value))
    shape = " x ".join(map(str, MEDIAN_SHAPE))
    lines = [
        f"- manifest: {args.manifest.name} ({len(manifest.members)} members, {len(manifest.inputs)} fusion inputs); "
        f"FLOPs per window: {args.flops.name} (`bench/bench_flops.py`); arithmetic, nothing runs on a GPU", "",
        f"## Kaggle: the median BYU tomogram ({shape} at {MEDIAN_SPACING_A:g} Å)", "",
        "| | " + " | ".join(med_windows) + " | TFLOP |", "|---|" + "---:|" * (len(med_windows) + 1),
        "| engine windows (all TTAs) | " + " | ".join(str(w) for w in med_windows.values())
        + f" | {med_flops / 1e12:.1f} |", "",
        "T4 lower bound (every FLOP at the datasheet peak: "
        + ", ".join(f"{p} {peak / 1e12:g} TFLOP/s" for p, peak in T4_PEAK_FLOPS.items()) + "): "
        + "; ".join(f"{p} {v:.1f} s per tomogram -> {projection_hours(v, HIDDEN_TEST_TOMOGRAMS, 2):.2f} h for "
                    f"{HIDDEN_TEST_TOMOGRAMS} tomograms on 2 T4s" for p, v in bound.items()) + ". Engines only; a bound, not a prediction.", "",
        "## The portal", "",
        f"- portal table: {args.portal.name}, {n} tomograms; manifest: {args.manifest.name} "
        f"({len(manifest.members)} members, {len(manifest.inputs)} fusion inputs)", "",
        f"- voxel spacing: {', '.join(f'{s:g} Å x {c}' for s, c in portal.voxel_spacing.value_counts().items())}",
        f"- voxels per tomogram: median {np.median(voxels) / 1e6:.0f} M, mean {voxels.mean() / 1e6:.0f} M, "
        f"max {voxels.max() / 1e6:.0f} M (median shape {int(portal.Z.median())} x {int(portal.Y.median())} x "
        f"{int(portal.X.median())}); all: {voxels.sum() / 1e9:.1f} G voxels = {voxels.sum() * 4 / 1e12:.2f} TB "
        "as float32 (the portal's type), read once", "",
        "Work per tomogram (the shipped recipe, all TTAs):", "",
        "| | " + " | ".join(windows.columns) + " | TFLOP |", "|---|" + "---:|" * (len(windows.columns) + 1),
        "| windows, portal median | " + " | ".join(f"{windows[c].median():.0f}" for c in windows.columns)
        + f" | {np.median(flops) / 1e12:.1f} |",
        "| windows, portal max | " + " | ".join(f"{windows[c].max():.0f}" for c in windows.columns)
        + f" | {flops.max() / 1e12:.1f} |",
        "| windows, Kaggle hidden average (400 x 1400 x 1050 at 13.1 Å) | "
        + " | ".join(f"{hidden_windows[c]}" for c in windows.columns) + f" | {hidden_flops / 1e12:.1f} |",
        "", f"All {n} portal tomograms: {flops.sum() / 1e15:.2f} PFLOP (mean {flops.mean() / 1e12:.1f} TFLOP).", "",
        f"GPU-hours and the cluster for {args.hours:g} h:", "",
        "| bound | GPU | GPU-hours | GPUs for " + f"{args.hours:g} h |", "|---|---|---:|---:|",
    ]
    for gpu, peak in PEAKS.items():
        h = flops.sum() / (peak * 1e12) / 3600
        lines.append(f"| lower: fp16 peak, no overhead | {gpu} ({peak:g} TFLOP/s) | {h:.1f} | "
                     f"{max(1, math.ceil(h / args.hours))} |")
    lines.append(f"| upper: the Kaggle run's pace ({t4_s_per_hidden:.0f} T4-s per hidden tomogram), scaled by FLOPs | "
                 f"T4 (or any faster GPU) | {upper_t4_h:.0f} | {math.ceil(upper_t4_h / args.hours)} |")
    per = 10_000 / n
    lines += ["", f"Upper bound per portal tomogram: median {np.median(flops / hidden_flops) * t4_s_per_hidden:.0f} "
              f"T4-s, max {(flops / hidden_flops).max() * t4_s_per_hidden:.0f} T4-s. Per 10,000 tomograms of this size "
              f"distribution: {upper_t4_h * per:.0f} T4-hours at most, {math.ceil(upper_t4_h * per / args.hours)} "
              f"T4s for {args.hours:g} h; at least {flops.sum() * per / (PEAKS['A100'] * 1e12) / 3600:.1f} A100-hours.",
              ""]
    rep.add(*lines)
    rep.write(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
