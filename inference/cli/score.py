"""``python -m inference score``: a submission's metric, the BYU motors' (:mod:`inference.evaluate.scoring`) or
the CZII particles' (:mod:`inference.evaluate.particle_metric`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from inference.common.errors import InputError
from inference.common.names import escaped
from inference.evaluate.scoring import format_table, score_files

TASKS = ("auto", "motors", "particles")


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Add the ``score`` subcommand to an argparse subparsers object; returns its parser."""
    parser = subparsers.add_parser(
        "score",
        help="score a submission CSV: BYU flagellar motors (F2) or CZII particles (weighted F4)",
        description=(
            "Score a submission against labels. motors: the Kaggle 'BYU - Locating Bacterial Flagellar "
            "Motors 2025' metric (a prediction within 1000 Å of a motor is a true positive; F-beta with "
            "beta = 2 over tomograms). particles: the Kaggle 'CZII - CryoET Object Identification' metric "
            "(per experiment and class, a point within half the particle's radius of a label finds it; "
            "TP/FP/FN summed over experiments; F-beta with beta = 4 per class; the weighted mean over the six "
            "classes, weights 1, 0, 2, 1, 2, 1)."
        ),
    )
    parser.add_argument("--task", choices=TASKS, default="auto",
                        help="which metric; auto (default): particles when the submission has a particle_type "
                             "column, else motors")
    parser.add_argument(
        "--labels",
        required=True,
        type=Path,
        metavar="PATH",
        help="motors: a labels CSV in train_labels format (tomo_id, Motor axis 0/1/2, Voxel spacing; one row per "
             "motor). particles: a CSV experiment,particle_type,x,y,z (Å), or a copick project: its root, its "
             "ExperimentRuns/ folder or its config JSON (every ExperimentRuns/<run>/Picks/*.json)",
    )
    parser.add_argument(
        "--submission",
        required=True,
        type=Path,
        metavar="CSV",
        help="submission CSV. motors: tomo_id, Motor axis 0/1/2 (one row per tomogram, -1 for no motor). "
             "particles: id, experiment, particle_type, x, y, z (Å)",
    )
    parser.add_argument("--labels-user", default=None, metavar="USER",
                        help="particles with copick labels: read only this user's picks files (Kaggle's ground "
                             "truth: curation; default: every picks file)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object instead of a table. motors: keys f2, precision, recall, tp, fp, fn, tn. "
             "particles: {\"score\": s, \"per_class\": {name: {tp, fp, fn, precision, recall, fbeta}}}",
    )
    parser.set_defaults(func=run_cli)
    return parser


def chosen_task(args: argparse.Namespace) -> str:
    """The task to score: ``--task``, or for auto the submission's header's (a submission that does not
    exist is its one-line error here, not a labels error of the wrong task)."""
    if args.task != "auto":
        return args.task
    from inference.evaluate.particle_tables import has_particle_type_column

    if not Path(args.submission).is_file():
        raise InputError(args.submission, "the submission does not exist" if not Path(args.submission).exists()
                         else "the submission is not a file", "pass the submission CSV that predict wrote")
    return "particles" if has_particle_type_column(args.submission) else "motors"


def run_cli(args: argparse.Namespace) -> int:
    """Run ``score``; InputError propagates to the main CLI."""
    if chosen_task(args) == "particles":
        from inference.evaluate.particle_metric import format_particle_table, score_particles
        from inference.evaluate.particle_tables import load_particle_labels, load_particle_submission

        labels = load_particle_labels(args.labels, user_id=args.labels_user)
        submission = load_particle_submission(args.submission)
        result = score_particles(labels.points, submission, experiments=labels.experiments)
        if args.json:
            print(json.dumps(result.as_dict()))
        else:
            print(escaped(f"labels: {len(labels.points)} point(s) in {len(labels.experiments)} experiment(s) "
                          f"({labels.source}); submission: {len(submission)} point(s)"))
            print(format_particle_table(result))
        return 0
    if args.labels_user is not None:
        raise InputError(None, "--labels-user reads copick labels, which only the particles task has",
                         "leave out --labels-user, or pass --task particles with a particles submission")
    score = score_files(args.labels, args.submission)
    print(json.dumps(score.as_dict()) if args.json else format_table(score))
    return 0
