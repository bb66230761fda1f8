"""Accuracy of the demo detectors: each member alone and the fused ensemble, on fresh synthetic test sets.

    python bench/bench_ensemble.py [--sets 99:24 123:24 321:48] [--out FILE]

Per set (``SEED:N``: N test tomograms from a seed never used for tuning), one ``predict`` with the 3d + 2d
demo ensemble writes every member's candidates; each member's own candidates are thresholded at the
single-member threshold (fixed 0.5: what the demo manifest of that member alone uses) and the fused
candidates at the ensemble's (0.55), and all three are scored with the competition metric. Both
thresholds were chosen once on a synthetic train split (seed 7). Accuracy does not vary between runs:
no repeats (the F2 of a set is a count, not a timing).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _measure import exact
from _report import Report

ROOT = Path(__file__).resolve().parents[1]


def score_set(root: Path, seed: int, n: int) -> tuple[dict, dict]:
    from inference.ensemble.submission import best_per_tomogram, decide, submission_order
    from inference.evaluate import scoring
    from inference.manifest.parse import load_manifest
    from inference.manifest.types import Threshold
    from inference.run.runner import PredictConfig, run_predict
    from inference.synth.demo_models import demo_manifest_dict, write_demo_models
    from inference.synth.generate import generate

    generate(root / "data", n, seed, split="test", progress=False)
    manifest = load_manifest(write_demo_models(root / "models", with_2d=True))
    res = run_predict(PredictConfig(manifest=manifest, input_dir=root / "data" / "test", output=root / "sub.csv",
                                    spacing_csv=root / "data" / "test_labels.csv", progress=False))
    labels = scoring.load_labels(root / "data" / "test_labels.csv")
    order = submission_order(sorted(labels["tomo_id"].unique()), None)
    single = demo_manifest_dict(with_2d=False)["threshold"]["fixed"]
    systems = {f"demo3d alone (fixed {single})": (res.member_candidates["demo3d"], single),
               f"demo2d alone (fixed {single})": (res.member_candidates["demo2d"], single),
               f"ensemble, point WBF avg (fixed {manifest.threshold.fixed})": (res.fused, manifest.threshold.fixed)}
    scores = {name: scoring.score_frames(labels, decide(best_per_tomogram(c, order), Threshold(fixed=t)).submission)
              for name, (c, t) in systems.items()}
    info = {"motors": int((labels.groupby("tomo_id")["Motor axis 0"].max() >= 0).sum()),
            "spacings": int(labels["Voxel spacing"].nunique())}
    return scores, info


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["99:24", "123:24", "321:48"], help="SEED:N per test set")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "ensemble.md")
    args = ap.parse_args(argv)
    sets = [tuple(int(v) for v in s.split(":")) for s in args.sets]

    rep = Report("bench_ensemble.py", "Demo detectors: single members vs the ensemble", argv)
    results = []
    for seed, n in sets:
        with tempfile.TemporaryDirectory(prefix="bench-ensemble-") as tmp:
            results.append(score_set(Path(tmp), seed, n))
    header = ["system"] + [f"seed {seed}: {n} tomograms, {info['motors']} motors" for (seed, n), (_, info)
                           in zip(sets, results)]
    rows = []
    for system in results[0][0]:
        row = [system]
        for (seed, n), (scores, _) in zip(sets, results):
            s = scores[system]
            rep.metric(f"seed {seed} n {n}: {system} F2", exact(s.f2))
            row.append(f"{s.f2:.3f} (TP {s.tp}, FP {s.fp}, FN {s.fn}, TN {s.tn})")
        rows.append(row)
    rep.add("- data: " + "; ".join(f"seed {seed}, {n} synthetic test tomograms ({info['spacings']} spacing groups)"
                                  for (seed, n), (_, info) in zip(sets, results)),
            "- F2 (TP, FP, FN, TN) with the competition metric; deterministic (no repeats)", "")
    rep.table(header, rows)
    rep.write(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
