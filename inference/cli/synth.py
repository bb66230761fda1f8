"""``python -m inference synth``: synthetic BYU-style tomograms and labels (:mod:`inference.synth.generate`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from inference.synth.generate import DEFAULT_SCALE, SPLITS, generate


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Register ``synth`` on the main CLI's subparsers; ``func=run_cli``."""
    p = subparsers.add_parser(
        "synth",
        help="write synthetic BYU-style tomograms (JPEG slices + labels) for tests and demos",
        description=(
            "Write N synthetic cryo-ET tomograms in the Kaggle BYU layout: OUT/<split>/<tomo_id>/"
            "slice_0000.jpg..., OUT/<split>_labels.csv and OUT/sample_submission.csv. "
            "Deterministic per seed. See docs/SYNTH.md."
        ),
    )
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--n", type=int, default=8, metavar="N", help="number of tomograms (default: 8)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed, >= 0 (default: 0)")
    p.add_argument("--split", choices=SPLITS, default="train",
                   help="train: motor counts as in the reference; test: 0 or 1 motor (default: train)")
    p.add_argument("--scale", type=float, default=DEFAULT_SCALE, metavar="F",
                   help=f"shape factor on the real tomogram shapes, in (0, 1]; voxel spacing is kept "
                        f"(default: {DEFAULT_SCALE})")
    p.add_argument("--reference", type=Path, default=None, metavar="CSV",
                   help="reference table of real shapes/spacings/motor counts "
                        "(default: the packaged byu_tomograms_gt_v3.csv; a Kaggle train_labels.csv also works)")
    p.add_argument("--quality", type=int, default=90, metavar="Q", help="JPEG quality 1-100 (default: 90)")
    p.add_argument("--format", choices=("jpeg", "zarr"), default="jpeg", help="jpeg: a folder of slice_NNNN.jpg per "
                   "tomogram (Kaggle's layout, default); zarr: <tomo_id>.zarr OME-Zarr pyramids (the CryoET Data "
                   "Portal's format; needs zarr >= 3)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow a non-empty OUT/<split> folder (its tomo_* folders are replaced)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (also off with -q)")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    """Run ``synth`` from parsed arguments; prints a one-line summary; returns the exit code."""
    labels = generate(
        args.out,
        args.n,
        args.seed,
        split=args.split,
        scale=args.scale,
        reference_csv=args.reference,
        jpeg_quality=args.quality,
        progress=not (args.no_progress or args.quiet),
        overwrite=args.overwrite,
        fmt=args.format,
    )
    n_motors = int((labels["Number of motors"] > 0).sum())
    print(  # the command's result line (stdout), not a diagnostic
        f"synth: {labels['tomo_id'].nunique()} {args.split} tomograms, {n_motors} motors -> "
        f"{Path(args.out) / args.split} (labels {Path(args.out) / f'{args.split}_labels.csv'})"
    )
    return 0
