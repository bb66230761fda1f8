"""Demo ensemble (3d + 2d, fused) vs each single demo member on fresh synthetic test data.

    python bench/bench_ensemble.py [--n 24] [--seed 123] [--out FILE]

Runs ``predict`` once with the ensemble demo manifest (every member's candidates are written),
then thresholds each member's own candidates at its single-member threshold (0.5) and the fused
candidates at the ensemble's (0.55), and scores all three with the competition metric.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _report import emit, provenance


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--out", type=Path, default=Path("bench/results/ensemble.md"))
    args = ap.parse_args(argv)

    from inference import scoring, synth
    from inference.demo_models import demo_manifest_dict, write_demo_models
    from inference.manifest import Threshold, load_manifest
    from inference.runner import PredictConfig, run_predict
    from inference.submission import best_per_tomogram, decide, submission_order

    root = Path(tempfile.mkdtemp())
    synth.generate(root / "data", args.n, args.seed, split="test", progress=False)
    manifest = load_manifest(write_demo_models(root / "models", with_2d=True))
    res = run_predict(PredictConfig(manifest=manifest, input_dir=root / "data" / "test", output=root / "sub.csv",
                                    spacing_csv=root / "data" / "test_labels.csv", progress=False))
    labels = scoring.load_labels(root / "data" / "test_labels.csv")
    order = submission_order(sorted(labels["tomo_id"].unique()), None)
    single = demo_manifest_dict(with_2d=False)["threshold"]["fixed"]
    runs = [(f"demo3d alone (fixed {single})", res.member_candidates["demo3d"], single),
            (f"demo2d alone (fixed {single})", res.member_candidates["demo2d"], single),
            (f"ensemble, point WBF avg (fixed {manifest.threshold.fixed})", res.fused, manifest.threshold.fixed)]
    rows = []
    for name, cands, thr in runs:
        sub = decide(best_per_tomogram(cands, order), Threshold(fixed=thr)).submission
        s = scoring.score_frames(labels, sub)
        rows.append(f"| {name} | {s.f2:.3f} | {s.precision:.3f} | {s.recall:.3f} | {s.tp} | {s.fp} | {s.fn} | {s.tn} |")
    n_motor = int((labels.groupby("tomo_id")["Motor axis 0"].max() >= 0).sum())
    emit([
        "# Demo ensemble vs single members",
        "",
        *provenance(f"python bench/bench_ensemble.py --n {args.n} --seed {args.seed}"),
        f"- data: {args.n} synthetic test tomograms (seed {args.seed}), {n_motor} with a motor, "
        f"{labels['Voxel spacing'].nunique()} spacing groups",
        "",
        "| system | F2 | precision | recall | TP | FP | FN | TN |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"predict stages: {res.timer.summary()}",
        "",
    ], args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
