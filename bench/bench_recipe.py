"""The demo ensemble with the default keys vs the recipe's keys (issue 13): F2 and run time.

    python bench/bench_recipe.py [--n 24] [--seed 1313] [--repeats 5] [--threads 1] [--out FILE]

One fresh synthetic test set; the demo detectors (``demo-models --with-2d``) under three manifests:

* ``default``: the demo manifest as written (no recipe key);
* ``recipe keys``: the same members, TTAs, overlap and normalisation, plus every recipe key as the
  shipped manifest sets it: half-pixel uint8 resample, end-placed zero-padded windows,
  window-scope separate TTAs, logit stitching on the stride-8 grid, 1000 Å NMS, top 100, min_conf
  0.02 (2d 0.01), 2d in 3-slice windows every 3 slices with 128 Å z cells (the demo's 64 Å slices:
  cell 2), WBF skip 0.2 rescaled by weights, ties kept at the threshold;
* ``recipe keys, overlap 0``: as above with the recipe's overlap 0 (fewer windows);
* ``default + tta_merge: separate``: the default manifest with only separate TTAs (its cost alone:
  more decodes and fusion inputs, the same engine work).

All keep the demo's fixed threshold (0.55; the recipe's 0.55 quantile assumes the test set's ~45%
motors) and its z-score normalisation (the demo detectors need it). The manifests run interleaved,
``--repeats`` rounds after a warm-up round, in this process (``workers=0``, ONNX Runtime on
``--threads`` threads: one thread is steadier on a shared machine); wall and stage seconds are
medians (min-max), the time against the default the median of per-round ratios. "best F2"
thresholds the fused candidates at the best of all their confs (an oracle, to tell ranking from
calibration).
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import yaml
from _measure import exact, measure, spread
from _report import Report

ROOT = Path(__file__).resolve().parents[1]


def recipe_variant(data: dict, overlap: float | None = None) -> dict:
    out = copy.deepcopy(data)
    for m in out["members"]:
        m.update(tta_scope="window", tta_merge="separate", resample={"grid": "half_pixel", "quantize": "uint8"},
                 windows={"placement": "end", "pad": "zero"}, stitch={"mode": "mean", "space": "logit", "grid_stride": 8})
        m["decode"] = {**m["decode"], "nms_kernel": 3, "top_k": 100, "nms_radius_A": 1000.0,
                       "min_conf": 0.02 if m["kind"] == "3d" else 0.01}
        if m["kind"] == "2d":
            m["slices"] = {"window": 3, "step": 3, "cell": max(1, round(128.0 / m["slice_spacing"]))}
        if overlap is not None:
            m["overlap"] = overlap
    out["fusion"] = {**out["fusion"], "skip_conf": 0.2, "rescale": "weights"}
    out["threshold"] = {**out["threshold"], "keep_equal": True}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seed", type=int, default=1313)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "recipe.md")
    args = ap.parse_args(argv)

    import numpy as np

    from inference.engines.base import EngineOptions
    from inference.ensemble.submission import best_per_tomogram, decide, submission_order
    from inference.evaluate import scoring
    from inference.manifest.parse import load_manifest
    from inference.manifest.types import Threshold
    from inference.run.runner import PredictConfig, run_predict
    from inference.synth.demo_models import demo_manifest_dict, write_demo_models
    from inference.synth.generate import generate

    root = Path(tempfile.mkdtemp())
    generate(root / "data", args.n, args.seed, split="test", progress=False)
    write_demo_models(root / "models", with_2d=True)
    base = demo_manifest_dict(with_2d=True)
    separate = copy.deepcopy(base)
    for m in separate["members"]:
        m["tta_merge"] = "separate"
    variants = {"default": base, "recipe keys": recipe_variant(base), "recipe keys, overlap 0": recipe_variant(base, 0.0),
                "default + tta_merge: separate": separate}
    paths = {}
    for i, (name, data) in enumerate(variants.items()):
        paths[name] = root / "models" / f"variant{i}.yaml"
        paths[name].write_text(yaml.safe_dump(data, sort_keys=False))

    labels = scoring.load_labels(root / "data" / "test_labels.csv")
    order = submission_order(sorted(labels["tomo_id"].unique()), None)

    def run(name):
        manifest = load_manifest(paths[name])
        res = run_predict(PredictConfig(manifest=manifest, input_dir=root / "data" / "test",
                                        output=root / "sub.csv", spacing_csv=root / "data" / "test_labels.csv",
                                        progress=False, workers=0, restart=True,
                                        engine=EngineOptions(threads=args.threads)))
        return res, manifest

    runs = measure({name: (lambda name=name: run(name)) for name in paths}, repeats=args.repeats,
                   progress=lambda m: print(m, flush=True))
    rep = Report("bench_recipe.py", "Demo ensemble: default keys vs the recipe's keys", argv)
    rep.record_loads(runs.loads())
    rows = []
    for name in paths:
        res, manifest = runs.samples[name][0].value
        s = scoring.score_frames(labels, res.submission)
        same = all(x.value[0].submission.equals(res.submission) for x in runs.samples[name])
        confs = np.unique(np.concatenate([[0.0], res.fused["conf"].to_numpy()]))
        oracle = max(scoring.score_frames(labels, decide(best_per_tomogram(res.fused, order),
                                                         Threshold(fixed=float(c))).submission).f2 for c in confs)
        rep.metric(f"{name} F2", exact(s.f2))
        wall = rep.metric(f"{name} wall s", runs.wall(name))
        vs = rep.metric(f"{name} time vs default", runs.speedup(name, "default"))
        stage = {k: rep.metric(f"{name} {k} s", spread(runs.values(name, lambda x, k=k: x.value[0].timer.totals.get(k, 0.0))))
                 for k in ("engine", "stitch", "decode")}
        rows.append([name, len(manifest.inputs), f"{s.f2:.3f}" + ("" if same else " (varied)"), f"{oracle:.3f}",
                     f"{s.precision:.3f}", f"{s.recall:.3f}", f"{s.tp}/{s.fp}/{s.fn}/{s.tn}", wall.fmt(1), vs.fmt(2),
                     stage["engine"].fmt(1), stage["stitch"].fmt(1), stage["decode"].fmt(2)])
    n_motor = int((labels.groupby("tomo_id")["Motor axis 0"].max() >= 0).sum())
    rep.add(f"- data: {args.n} synthetic test tomograms (seed {args.seed}), {n_motor} with a motor",
            f"- threshold: fixed 0.55 for every row (the demo's); runs in-process, ONNX Runtime on {args.threads} "
            f"thread(s); {args.repeats} interleaved rounds after a warm-up round; median (min-max); `time vs default`: "
            "the median (min-max) of per-round ratios (above 1: slower than the default)", "")
    rep.table(["manifest", "fusion inputs", "F2", "best F2", "precision", "recall", "TP/FP/FN/TN", "wall s",
               "time vs default", "engine s", "stitch s", "decode s"], rows, "lrrrrrlrrrrr")
    rep.add("Stage seconds are exclusive and summed over tomograms (stitch excludes the engine calls inside it). "
            "F2 is the same in every round unless marked (varied).")
    rep.write(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
