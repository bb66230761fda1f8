"""Build what a Kaggle competitor submits, and run the whole mission on the embedded default.

``python build_submission.py --demo``: synthetic BYU test data, the demo detectors (ONNX, no torch),
``predict`` on the CPU, the competition score, and a one-screen summary with the path of every
artifact. Everything lands under ``--out`` (default ``build/``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from inference.errors import EngineError, InputError

logger = logging.getLogger("build_submission")


@dataclass(frozen=True)
class DemoSummary:
    data_dir: Path
    manifest: Path
    submission: Path
    candidates_dir: Path
    score: dict
    threshold: str
    seconds: dict

    def render(self) -> str:
        s = self.score
        lines = [
            "demo summary",
            f"  synthetic test data : {self.data_dir}",
            f"  manifest (demo)     : {self.manifest}",
            f"  candidates          : {self.candidates_dir}",
            f"  submission          : {self.submission}",
            f"  threshold           : {self.threshold}",
            f"  score               : F2 {s['f2']:.3f}  precision {s['precision']:.3f}  recall {s['recall']:.3f}"
            f"  (tp {s['tp']} fp {s['fp']} fn {s['fn']} tn {s['tn']})",
            "  time                : " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()),
        ]
        return "\n".join(lines)


def run_demo(out: Path, *, n: int = 24, seed: int = 2025, scale: float | None = None,
             progress: bool = True) -> DemoSummary:
    """Synthetic data -> demo detectors (3d + 2d, fused) -> predict -> score, under ``out/demo``."""
    from inference import scoring, synth
    from inference.demo_models import write_demo_models
    from inference.manifest import load_manifest
    from inference.runner import PredictConfig, run_predict

    root = Path(out) / "demo"
    seconds = {}
    t0 = time.perf_counter()
    data = root / "data"
    kw = {} if scale is None else {"scale": scale}
    if (data / "test").exists():
        logger.info("reusing synthetic data in %s", data)
    else:
        synth.generate(data, n, seed, split="test", progress=progress, **kw)
    seconds["synth"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    manifest_path = write_demo_models(root / "models", with_2d=True)
    seconds["models"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    submission = root / "submission.csv"
    cands = root / "candidates"
    result = run_predict(PredictConfig(
        manifest=load_manifest(manifest_path), input_dir=data / "test", output=submission,
        spacing_csv=data / "test_labels.csv",  # synthetic spacings are known; Kaggle's test set assumes 13.1
        candidates_dir=cands, sample_submission=data / "sample_submission.csv", progress=progress,
    ))
    seconds["predict"] = time.perf_counter() - t0

    score = scoring.score_files(data / "test_labels.csv", submission)
    summary = DemoSummary(data_dir=data, manifest=manifest_path, submission=submission, candidates_dir=cands,
                          score=score.as_dict(), threshold=result.decision.describe(), seconds=seconds)
    (root / "summary.json").write_text(json.dumps({**summary.score, "seconds": seconds}, indent=2))
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python build_submission.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", action="store_true", help="run the whole mission on synthetic data with the demo "
                   "detectors (CPU, no GPU, no torch) and print a summary")
    p.add_argument("--out", type=Path, default=Path("build"), help="output folder (default build/)")
    p.add_argument("--n", type=int, default=24, help="--demo: synthetic test tomograms (default 24)")
    p.add_argument("--seed", type=int, default=2025, help="--demo: synthetic data seed (default 2025)")
    p.add_argument("--scale", type=float, default=None, help="--demo: shape scale of the synthetic tomograms "
                   "(default: inference.synth's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not args.demo:
        build_parser().print_help()
        return 2
    try:
        summary = run_demo(args.out, n=args.n, seed=args.seed, scale=args.scale, progress=not args.no_progress)
    except (InputError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary.render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
