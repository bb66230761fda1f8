"""The whole mission on synthetic data with the demo detectors, on the CPU: synth -> demo models ->
predict -> score (:mod:`kaggle_builder.demo_predict`) -> Kaggle build (default: with the offline wheels) ->
dry run of the notebook -> quick profile, all under ``<out>/<the target's demo_dir>`` (an owned folder:
``demo`` for byu, ``demo-czii`` for czii), and a one-screen summary with absolute paths."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from kaggle_builder.build import BuildResult, build
from kaggle_builder.config import BuildConfig
from kaggle_builder.demo_predict import Predicted, predict_demo
from kaggle_builder.dry_run import DryRunResult, dry_run
from kaggle_builder.ownership import owned_dir
from kaggle_builder.profile_run import ProfileResult, run_profile
from kaggle_builder.simulated_test import per_class
from kaggle_builder.target import BYU, Target


@dataclass(frozen=True)
class DemoSummary(Predicted):
    """What the demo predicted (its ``seconds`` with the build's, dry run's and profile's added) and built."""

    build: BuildResult | None = None
    dry_run: DryRunResult | None = None
    profile: ProfileResult | None = None
    target: Target = BYU

    def _score(self) -> str:
        s = self.score
        if self.target.task == "particles":
            return (f"{s['score']:.3f}  (the competition's weighted F4; per class: {per_class(s)}; each run at its "
                    "OME-Zarr's spacing)")
        return (f"F2 {s['f2']:.3f}  precision {s['precision']:.3f}  recall {s['recall']:.3f}"
                f"  (tp {s['tp']} fp {s['fp']} fn {s['fn']} tn {s['tn']}; each tomogram at its true spacing)")

    def render(self) -> str:
        t = self.target
        lines = [
            "demo summary" + (f" (--target {t.name}: {t.title})" if t.name != BYU.name else ""),
            f"  synthetic test data : {self.data_dir.resolve()}",
            f"  manifest (demo)     : {self.manifest.resolve()}",
            f"  candidates          : {self.candidates_dir.resolve()}",
            f"  submission          : {self.submission.resolve()}",
            f"  threshold           : {self.threshold}",
            f"  score               : {self._score()}",
        ]
        if self.build is not None:
            b = self.build
            lines += [f"  kaggle dataset      : {b.dataset_dir.resolve()}  ({b.size_bytes / 2**20:,.0f} MiB: wheel "
                      f"{b.wheel.name}, {len(b.wheels)} offline wheel(s))",
                      f"  kaggle notebook     : {b.notebook.resolve()}"]
        if self.dry_run is not None:
            d = self.dry_run
            sc = d.headline if d.score else "-"
            lines.append(f"  notebook dry run    : {d.executed.resolve()}")
            if t.task == "particles":
                lines.append(f"  dry-run submission  : {d.submission.resolve()}  ({d.contents}; valid; {sc}; other "
                             "runs than the demo's)")
            else:
                lines += [f"  dry-run submission  : {d.submission.resolve()}  ({d.n_tomograms} ids valid; {sc})",
                          f"  why the F2 differs  : the notebook reads every tomogram as {t.median_spacing_A} Å "
                          "(Kaggle's test set has no spacing); the synthetic ones have their real spacings, so it "
                          "misjudges sizes"]
        if self.profile is not None:
            p = self.profile
            lines.append(f"  profile             : {p.markdown.resolve()}  (+ {p.png.name})")
            for sc in p.report.scenarios():
                lines.append(f"    {sc.name:<26}: {p.report.hours(sc):8.3g} h for {p.report.n_tomograms} tomograms "
                             f"({sc.kind}; limit {t.limit_h:g} h)")
            note = p.report.host_bound_note()
            if note:
                lines.append(f"    {'why fp16 = fp32':<26}: {note}")
        lines.append("  time                : " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()))
        return "\n".join(lines)


def run_demo(out: Path, *, target: Target = BYU, n: int | None = None, seed: int = 2025, scale: float | None = None,
             progress: bool = True, submission_kit: bool = False, wheels: bool = True, dry_run_n: int = 3,
             env_seed: str = "image", profile_scale: float | None = None, flops_md: Path | None = None,
             cache_dir: Path | None = None) -> DemoSummary:
    """Synthetic data -> demo detectors -> predict -> score, under ``out/<target.demo_dir>`` (``n`` test
    tomograms; default the target's ``demo_tomograms``).

    ``submission_kit=True`` (what ``--demo`` does) adds: the Kaggle dataset and notebook (``kaggle/``, with the
    offline wheels unless ``wheels=False``), the notebook executed on the CPU in a simulated Kaggle tree
    (``dryrun/``, ``dry_run_n`` tomograms) and a quick profile of the demo members (``profile/``).
    """
    if target.task == "particles":
        from inference.synth.particle_scene import DEFAULT_SCALE
    else:
        from inference.synth.reference import DEFAULT_SCALE

    n = target.demo_tomograms if n is None else n
    with owned_dir(Path(out) / target.demo_dir, clear=False) as root:
        done = predict_demo(target, root, n=n, seed=seed, scale=scale, progress=progress)
        seconds = dict(done.seconds)
        built = dried = profiled = None
        if submission_kit:
            t0 = time.perf_counter()
            built = build(BuildConfig(manifest=done.manifest, out=root / "kaggle", wheels=wheels, target=target),
                          cache_dir=cache_dir)
            seconds["build"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            dried = dry_run(built, root / "dryrun", n=dry_run_n, seed=seed + 1,
                            scale=scale if scale is not None else DEFAULT_SCALE, progress=progress,
                            env_seed=env_seed, cache_dir=cache_dir)
            seconds["dry run"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            pscale = profile_scale if profile_scale is not None else (scale if scale is not None
                                                                      else DEFAULT_SCALE)
            profiled = run_profile(done.manifest, root / "profile", target=target, profile_tomograms=2, scale=pscale,
                                   seed=seed + 2, flops_md=flops_md, progress=False)
            seconds["profile"] = time.perf_counter() - t0
        summary = DemoSummary(**{**vars(done), "seconds": seconds}, build=built, dry_run=dried, profile=profiled,
                              target=target)
        (root / "summary.json").write_text(json.dumps({**summary.score, "seconds": seconds}, indent=2))
    return summary
