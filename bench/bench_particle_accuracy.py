"""Accuracy of the particles demo detector with each decoder, on synthetic copick projects (the README's
"Particles" walk-through, scored).

    python bench/bench_particle_accuracy.py [--sets 1:4 3:8] [--out FILE]

Per set (``SEED:N``: N synthetic runs, ``synth --task particles``), one ``predict`` per decoder manifest that
``demo-models --task particles`` writes (peaks, components, watershed) and the competition's metric (per class
F-beta 4, weighted) of its submission against the project's labels. Deterministic: no repeats.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _measure import exact
from _report import Report

ROOT = Path(__file__).resolve().parents[1]


def score_set(root: Path, seed: int, n: int) -> tuple[dict[str, object], int]:
    """{decoder: ParticleScore} of one synthetic project, and how many particles it holds."""
    from inference.evaluate.particle_metric import score_particles
    from inference.evaluate.particle_tables import load_particle_labels, load_particle_submission
    from inference.manifest.parse import load_manifest
    from inference.run.runner import PredictConfig, run_predict
    from inference.synth.particle_demo_model import DECODERS, write_particle_demo_models
    from inference.synth.particle_project import generate_particles

    project = root / "proj"
    generate_particles(project, n, seed, progress=False)
    models = write_particle_demo_models(root / "models").parent
    labels = load_particle_labels(project / "labels.csv")
    scores = {}
    for method, name in DECODERS.items():
        out = root / method / "particles.csv"
        run_predict(PredictConfig(manifest=load_manifest(models / name), input_dir=project, output=out,
                                  progress=False))
        scores[method] = score_particles(labels.points, load_particle_submission(out), experiments=labels.experiments)
    return scores, len(labels.points)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["1:4", "3:8"], help="SEED:N per synthetic project")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "particle_accuracy.md")
    args = ap.parse_args(argv)
    sets = [tuple(int(v) for v in s.split(":")) for s in args.sets]

    rep = Report("bench_particle_accuracy.py", "Particles demo detector: the CZII score per decoder", argv)
    results = []
    for seed, n in sets:
        with tempfile.TemporaryDirectory(prefix="bench-particle-accuracy-") as tmp:
            results.append(score_set(Path(tmp), seed, n))
    header = ["decoder"] + [f"seed {seed}: {n} runs, {count} particles" for (seed, n), (_, count) in zip(sets, results)]
    rows = []
    for method in results[0][0]:
        row = [method]
        for (seed, n), (scores, _) in zip(sets, results):
            s = scores[method]
            rep.metric(f"seed {seed} n {n}: {method} score", exact(s.score))
            row.append(f"{s.score:.3f} (" + ", ".join(f"{c.name} {c.fbeta:.2f}" for c in s.per_class if c.weight) + ")")
        rows.append(row)
    rep.add("- data: " + "; ".join(f"seed {seed}, {n} synthetic runs (`synth --task particles`)" for seed, n in sets),
            "- score: the competition's weighted F-beta 4 (per class F4 in brackets; beta-amylase, weight 0, left "
            "out); deterministic (no repeats)", "")
    rep.table(header, rows)
    rep.write(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
