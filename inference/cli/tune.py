"""``python -m inference tune``: per-class thresholds for the CZII particle metric from saved candidates, written
into a copy of a ``task: particles`` manifest (:mod:`inference.evaluate.particle_tune`)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import pandas as pd

from inference.common.errors import InputError
from inference.common.names import escaped

logger = logging.getLogger(__name__)


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Register ``tune`` on the main CLI's subparsers; ``func=run_cli``."""
    p = subparsers.add_parser(
        "tune",
        help="sweep each particle class's threshold on saved candidates against labels; write a manifest with them",
        description=(
            "Sweep each class's threshold (a candidate is kept when conf >= threshold) on saved candidate tables "
            "(experiment,particle_type,x,y,z,conf; x y z in Å) against labels, maximising the CZII metric (the "
            "classes are independent in it: each is swept alone), and write a copy of the manifest whose "
            "classes[i].threshold holds the best one (the lowest of ties). A class whose F4 is 0 at every "
            "threshold (no labels, or no candidate near one) keeps its manifest threshold."
        ),
    )
    p.add_argument("--candidates", required=True, nargs="+", type=Path, metavar="CSV",
                   help="candidate CSVs (experiment,particle_type,x,y,z,conf); several are concatenated")
    p.add_argument("--labels", required=True, type=Path, metavar="PATH",
                   help="a CSV experiment,particle_type,x,y,z (Å), or a copick project: its root, its ExperimentRuns/ "
                        "folder or its config JSON")
    p.add_argument("--labels-user", default=None, metavar="USER",
                   help="with copick labels: read only this user's picks files (default: every picks file)")
    p.add_argument("--manifest", required=True, type=Path, metavar="YAML",
                   help="the task: particles manifest whose classes: get the thresholds")
    p.add_argument("--output", required=True, type=Path, metavar="YAML", help="the manifest copy to write")
    p.add_argument("--step", type=float, default=None, metavar="S",
                   help="threshold step, > 0 and at most 0.005 (default 0.005): thresholds F, F+S, ..., 1 from the "
                        "manifest's candidate_floor F (0.05 by default)")
    p.add_argument("--json", action="store_true",
                   help="print {\"thresholds\": {name: t}, \"score\": s, \"per_class\": {...}} instead of a table")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    """Run ``tune``; InputError propagates to the main CLI."""
    from inference.evaluate.particle_metric import ParticleScore, score_particles
    from inference.evaluate.particle_tables import load_candidates, load_particle_labels
    from inference.evaluate.particle_tune import (
        MAX_STEP,
        apply_thresholds,
        manifest_floor,
        manifest_thresholds,
        tune_thresholds,
        write_tuned_manifest,
    )

    step = MAX_STEP if args.step is None else args.step
    if not (0 < step <= MAX_STEP):
        raise InputError(None, f"--step {step:g} is not in (0, {MAX_STEP}]", f"pass a step of at most {MAX_STEP}")
    before = manifest_thresholds(args.manifest)  # checks the manifest before the work
    labels = load_particle_labels(args.labels, user_id=args.labels_user)
    candidates = pd.concat([load_candidates(path) for path in args.candidates], ignore_index=True)
    result = tune_thresholds(labels.points, candidates, experiments=labels.experiments, step=step,
                             start=manifest_floor(args.manifest))
    done = write_tuned_manifest(args.manifest, args.output, result.thresholds)
    lacking = [n for n, t in result.thresholds.items() if t is not None and n not in done]
    if lacking:
        logger.warning("the manifest has no classes: entry for %s: not written", ", ".join(lacking))
    tuned = ParticleScore(result.score, result.per_class)
    if args.json:
        print(json.dumps({"thresholds": result.thresholds, **tuned.as_dict()}))
        return 0
    old = score_particles(labels.points, apply_thresholds(candidates, before), experiments=labels.experiments)
    print(f"{'class':<22}{'manifest':>9}{'tuned':>8}{'tp':>7}{'fp':>7}{'fn':>7}{'precision':>11}{'recall':>8}"
          f"{'F4':>8}")
    for c in result.per_class:
        t = result.thresholds[c.name]
        was = f"{before[c.name]:g}" if c.name in before else "-"
        print(f"{c.name:<22}{was:>9}{'-' if t is None else f'{t:g}':>8}{c.tp:>7}{c.fp:>7}{c.fn:>7}"
              f"{c.precision:>11.4f}{c.recall:>8.4f}{c.fbeta:>8.4f}")
    print(escaped(f"score: {old.score:.6f} at the manifest's thresholds, {result.score:.6f} tuned -> {args.output}"))
    return 0
