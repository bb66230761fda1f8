"""``python -m inference synth``: synthetic BYU-style tomograms and labels (:mod:`inference.synth.generate`), or with
``--task particles`` a synthetic CZII-style copick project (:mod:`inference.synth.particle_project`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from inference.common.errors import InputError
from inference.common.names import escaped
from inference.synth.generate import DEFAULT_SCALE, SPLITS, generate


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Register ``synth`` on the main CLI's subparsers; ``func=run_cli``."""
    p = subparsers.add_parser(
        "synth",
        help="write synthetic BYU-style tomograms (JPEG slices + labels) for tests and demos",
        description=(
            "Write N synthetic cryo-ET tomograms in the Kaggle BYU layout: OUT/<split>/<tomo_id>/"
            "slice_0000.jpg..., OUT/<split>_labels.csv and OUT/sample_submission.csv. "
            "Deterministic per seed. With --task particles: N CZII-style runs as a copick project, OUT/"
            "copick_config.json, OUT/ExperimentRuns/<run>/VoxelSpacing10.000/denoised.zarr (OME-Zarr, 10.012 Å), "
            "OUT/ExperimentRuns/<run>/Picks/curation_0_<particle>.json, OUT/labels.csv and OUT/sample_submission.csv. "
            "See docs/SYNTH.md."
        ),
    )
    p.add_argument("--task", choices=("motors", "particles"), default="motors",
                   help="motors: BYU flagellar motors (default); particles: the six CZII particle classes")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--n", type=int, default=8, metavar="N", help="number of tomograms or runs (default: 8)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed, >= 0 (default: 0)")
    p.add_argument("--split", choices=SPLITS, default=None,
                   help="motors: train: motor counts as in the reference; test: 0 or 1 motor (default: train)")
    p.add_argument("--scale", type=float, default=DEFAULT_SCALE, metavar="F",
                   help=f"shape factor on the real tomogram shapes, in (0, 1]; voxel spacing is kept "
                        f"(default: {DEFAULT_SCALE}; particles: a (92, 158, 158) crop of the real (184, 630, 630), "
                        f"z kept at least half)")
    p.add_argument("--reference", type=Path, default=None, metavar="CSV",
                   help="motors: reference table of real shapes/spacings/motor counts "
                        "(default: the packaged byu_tomograms_gt_v3.csv; a Kaggle train_labels.csv also works)")
    p.add_argument("--quality", type=int, default=None, metavar="Q", help="motors: JPEG quality 1-100 (default: 90)")
    p.add_argument("--format", choices=("jpeg", "zarr"), default=None, help="motors: jpeg: a folder of slice_NNNN.jpg per "
                   "tomogram (Kaggle's layout, default); zarr: <tomo_id>.zarr OME-Zarr pyramids (the CryoET Data "
                   "Portal's format; needs zarr >= 3)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow a non-empty OUT/<split> folder (its tomo_* folders are replaced); particles: a non-empty "
                        "OUT (its ExperimentRuns and the files written are replaced)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (also off with -q)")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    """Run ``synth`` from parsed arguments; prints a one-line summary; returns the exit code."""
    if args.task == "particles":
        return _run_particles(args)
    split = args.split or "train"
    labels = generate(
        args.out,
        args.n,
        args.seed,
        split=split,
        scale=args.scale,
        reference_csv=args.reference,
        jpeg_quality=90 if args.quality is None else args.quality,
        progress=not (args.no_progress or args.quiet),
        overwrite=args.overwrite,
        fmt=args.format or "jpeg",
    )
    n_motors = int((labels["Number of motors"] > 0).sum())
    print(escaped(  # the command's result line (stdout), not a diagnostic
        f"synth: {labels['tomo_id'].nunique()} {split} tomograms, {n_motors} motors -> "
        f"{Path(args.out) / split} (labels {Path(args.out) / f'{split}_labels.csv'})"
    ))
    return 0


def _run_particles(args: argparse.Namespace) -> int:
    from inference.synth.particle_project import CONFIG_NAME, generate_particles

    given = [flag for flag, value in (("--split", args.split), ("--reference", args.reference),
                                      ("--quality", args.quality), ("--format", args.format)) if value is not None]
    if given:
        raise InputError(None, f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} for --task motors only",
                         "drop them (a particles project is OME-Zarr runs with picks)")
    labels = generate_particles(args.out, args.n, args.seed, scale=args.scale, overwrite=args.overwrite,
                                progress=not (args.no_progress or args.quiet))
    counts = labels.groupby("particle_type").size()
    print(escaped(  # the command's result line (stdout), not a diagnostic
        f"synth: {labels['experiment'].nunique()} particle runs, {len(labels)} particles "
        f"({', '.join(f'{k} {v}' for k, v in counts.items())}) -> {Path(args.out)} "
        f"(config {Path(args.out) / CONFIG_NAME}, labels {Path(args.out) / 'labels.csv'})"
    ))
    return 0
