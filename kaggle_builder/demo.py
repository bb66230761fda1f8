"""The whole mission on synthetic data with the demo detectors, on the CPU: synth -> demo models ->
predict -> score -> Kaggle build (default: with the offline wheels) -> dry run of the notebook -> quick
profile, all under ``<out>/demo`` (an owned folder), and a one-screen summary with absolute paths."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from kaggle_builder.build import BuildResult, build
from kaggle_builder.config import BuildConfig
from kaggle_builder.dry_run import DryRunResult, dry_run
from kaggle_builder.ownership import owned_dir
from kaggle_builder.profile_run import ProfileResult, run_profile
from kaggle_builder.target import KAGGLE_LIMIT_H, MEDIAN_SPACING_A

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSummary:
    data_dir: Path
    manifest: Path
    submission: Path
    candidates_dir: Path
    score: dict
    threshold: str
    seconds: dict
    build: BuildResult | None = None
    dry_run: DryRunResult | None = None
    profile: ProfileResult | None = None

    def render(self) -> str:
        s = self.score
        lines = [
            "demo summary",
            f"  synthetic test data : {self.data_dir.resolve()}",
            f"  manifest (demo)     : {self.manifest.resolve()}",
            f"  candidates          : {self.candidates_dir.resolve()}",
            f"  submission          : {self.submission.resolve()}",
            f"  threshold           : {self.threshold}",
            f"  score               : F2 {s['f2']:.3f}  precision {s['precision']:.3f}  recall {s['recall']:.3f}"
            f"  (tp {s['tp']} fp {s['fp']} fn {s['fn']} tn {s['tn']}; each tomogram at its true spacing)",
        ]
        if self.build is not None:
            b = self.build
            lines += [f"  kaggle dataset      : {b.dataset_dir.resolve()}  ({b.size_bytes / 2**20:,.0f} MiB: wheel "
                      f"{b.wheel.name}, {len(b.wheels)} offline wheel(s))",
                      f"  kaggle notebook     : {b.notebook.resolve()}"]
        if self.dry_run is not None:
            d = self.dry_run
            sc = f"F2 {d.score['f2']:.3f}" if d.score else "-"
            lines += [f"  notebook dry run    : {d.executed.resolve()}",
                      f"  dry-run submission  : {d.submission.resolve()}  ({d.n_tomograms} ids valid; {sc})",
                      f"  why the F2 differs  : the notebook reads every tomogram as {MEDIAN_SPACING_A} Å (Kaggle's "
                      "test set has no spacing); the synthetic ones have their real spacings, so it misjudges sizes"]
        if self.profile is not None:
            p = self.profile
            lines.append(f"  profile             : {p.markdown.resolve()}  (+ {p.png.name})")
            for sc in p.report.scenarios():
                lines.append(f"    {sc.name:<26}: {p.report.hours(sc):8.3g} h for {p.report.n_tomograms} tomograms "
                             f"({sc.kind}; limit {KAGGLE_LIMIT_H:g} h)")
        lines.append("  time                : " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()))
        return "\n".join(lines)


def run_demo(out: Path, *, n: int = 24, seed: int = 2025, scale: float | None = None, progress: bool = True,
             submission_kit: bool = False, wheels: bool = True, dry_run_n: int = 3, env_seed: str = "image",
             profile_scale: float | None = None, flops_md: Path | None = None,
             cache_dir: Path | None = None) -> DemoSummary:
    """Synthetic data -> demo detectors (3d + 2d, fused) -> predict -> score, under ``out/demo``.

    ``submission_kit=True`` (what ``--demo`` does) adds: the Kaggle dataset and notebook (``demo/kaggle``,
    with the offline wheels unless ``wheels=False``), the notebook executed on the CPU in a simulated Kaggle
    tree (``demo/dryrun``, ``dry_run_n`` tomograms) and a quick profile of the demo members (``demo/profile``).
    """
    from inference.evaluate import scoring
    from inference.manifest.parse import load_manifest
    from inference.run.runner import PredictConfig, run_predict
    from inference.synth.demo_models import write_demo_models
    from inference.synth.generate import generate
    from inference.synth.reference import DEFAULT_SCALE

    seconds = {}
    with owned_dir(Path(out) / "demo", clear=False) as root:
        t0 = time.perf_counter()
        data = root / "data"
        kw = {} if scale is None else {"scale": scale}
        if (data / "test").exists():
            logger.info("reusing synthetic data in %s", data)
        else:
            generate(data, n, seed, split="test", progress=progress, **kw)
        seconds["synth"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        manifest_path = write_demo_models(root / "models", with_2d=True)
        seconds["models"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        submission, cands = root / "submission.csv", root / "candidates"
        result = run_predict(PredictConfig(
            manifest=load_manifest(manifest_path), input_dir=data / "test", output=submission,
            spacing_csv=data / "test_labels.csv",  # synthetic spacings are known; Kaggle's test set assumes 13.1
            candidates_dir=cands, sample_submission=data / "sample_submission.csv", progress=progress,
            restart=True,
        ))
        seconds["predict"] = time.perf_counter() - t0

        score = scoring.score_files(data / "test_labels.csv", submission)
        built = dried = profiled = None
        if submission_kit:
            t0 = time.perf_counter()
            built = build(BuildConfig(manifest=manifest_path, out=root / "kaggle", wheels=wheels), cache_dir=cache_dir)
            seconds["build"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            dried = dry_run(built, root / "dryrun", n=dry_run_n, seed=seed + 1,
                            scale=scale if scale is not None else DEFAULT_SCALE, progress=progress,
                            env_seed=env_seed, cache_dir=cache_dir)
            seconds["dry run"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            pscale = profile_scale if profile_scale is not None else (scale if scale is not None
                                                                      else DEFAULT_SCALE)
            profiled = run_profile(manifest_path, root / "profile", profile_tomograms=2, scale=pscale,
                                   seed=seed + 2, flops_md=flops_md, progress=False)
            seconds["profile"] = time.perf_counter() - t0
        summary = DemoSummary(data_dir=data, manifest=manifest_path, submission=submission, candidates_dir=cands,
                              score=score.as_dict(), threshold=result.decision.describe(), seconds=seconds,
                              build=built, dry_run=dried, profile=profiled)
        (root / "summary.json").write_text(json.dumps({**summary.score, "seconds": seconds}, indent=2))
    return summary
