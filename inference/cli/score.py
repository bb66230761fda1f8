"""``python -m inference score``: the BYU metric on a submission (:mod:`inference.evaluate.scoring`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from inference.evaluate.scoring import format_table, score_files


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Add the ``score`` subcommand to an argparse subparsers object; returns its parser."""
    parser = subparsers.add_parser(
        "score",
        help="score a submission CSV with the BYU flagellar motor metric (F2)",
        description=(
            "Score a submission against labels with the Kaggle 'BYU - Locating Bacterial Flagellar "
            "Motors 2025' metric: a prediction within 1000 Å of a motor is a true positive; F-beta "
            "with beta = 2 over tomograms."
        ),
    )
    parser.add_argument(
        "--labels",
        required=True,
        type=Path,
        metavar="CSV",
        help="labels CSV in train_labels format (tomo_id, Motor axis 0/1/2, Voxel spacing; one row per motor)",
    )
    parser.add_argument(
        "--submission",
        required=True,
        type=Path,
        metavar="CSV",
        help="submission CSV (tomo_id, Motor axis 0/1/2; one row per tomogram, -1 for no motor)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object with keys f2, precision, recall, tp, fp, fn, tn instead of a table",
    )
    parser.set_defaults(func=run_cli)
    return parser


def run_cli(args: argparse.Namespace) -> int:
    """Run ``score``; InputError propagates to the main CLI."""
    score = score_files(args.labels, args.submission)
    print(json.dumps(score.as_dict()) if args.json else format_table(score))
    return 0
