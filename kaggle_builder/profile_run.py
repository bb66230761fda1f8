"""``build_submission.py --profile``: synthetic tomograms of the target's task (byu: BYU-like tomograms; czii:
CZII-like runs as a copick project, predict's input as on Kaggle), each member measured through ``predict``,
then the report (:mod:`kaggle_builder.profile`), its table and plot (:mod:`kaggle_builder.profile_render`)
under ``out``."""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from inference.common.errors import InputError
from kaggle_builder.cost import parse_flops_md
from kaggle_builder.members import read_members
from kaggle_builder.ownership import owned_dir
from kaggle_builder.profile import (
    MemberMeasure,
    ProfileError,
    ProfileReport,
    TomoMeasure,
    parse_gpu_seconds,
    profile_report,
)
from kaggle_builder.profile_render import markdown, plot
from kaggle_builder.target import BYU, Target

logger = logging.getLogger(__name__)


def measure_members(manifest, data_dir: Path, work: Path, *, spacing_csv: Path | None = None,
                    progress: bool = False) -> tuple[MemberMeasure, ...]:
    """Each member alone through ``run_predict`` (in this process) over the tomograms of ``data_dir``."""
    from inference.run.runner import PredictConfig, run_predict

    measures = []
    for m in manifest.members:
        logger.info("profiling %s", m.name)
        res = run_predict(PredictConfig(manifest=replace(manifest, members=(m,)), input_dir=data_dir,
                                        output=work / m.name / "submission.csv", spacing_csv=spacing_csv,
                                        progress=progress, workers=0, work_dir=work / m.name / "work", restart=True))
        if res.failures:
            raise ProfileError(f"profiling {m.name} failed on {len(res.failures)} tomogram(s): "
                               + "; ".join(f"{t}: {e}" for t, e in sorted(res.failures.items())[:3]))
        tomos = tuple(TomoMeasure(tomo_id=t, shape=tuple(r.shape), spacing=float(r.spacing),
                                  seconds={k: float(v) for k, v in r.seconds.items()})
                      for t, r in sorted(res.results.items()))
        measures.append(MemberMeasure(name=m.name, tomograms=tomos))
    return tuple(measures)


@dataclass(frozen=True)
class ProfileResult:
    report: ProfileReport
    markdown: Path
    png: Path
    json: Path
    seconds: float

    def render(self) -> str:
        limit = self.report.target.limit_h
        lines = ["profile (measured: this CPU; projected: T4 = host stages measured here + engine)"]
        for sc in self.report.scenarios():
            h = self.report.hours(sc)
            lines.append(f"  {sc.name:<28}: {sc.kind:<9} {sc.per_tomogram_s:9.3g} s/tomogram -> {h:8.3g} h for "
                         f"{self.report.n_tomograms} ({'fits' if h <= limit else 'over'} {limit:g} h)")
        note = self.report.host_bound_note()
        if note:
            lines.append(f"  note                : {note}")
        lines += [f"  table               : {self.markdown.resolve()}",
                  f"  plot                : {self.png.resolve()}"]
        return "\n".join(lines)


def synthetic_input(target: Target, data: Path, n: int, seed: int, scale: float,
                    progress: bool) -> tuple[Path, Path | None]:
    """``n`` synthetic test tomograms of the target's task under ``data``: ``(predict's input, spacing CSV)``."""
    if target.task == "particles":
        from inference.synth.particle_project import generate_particles

        generate_particles(data, n, seed, scale=scale, progress=progress)
        return data, None  # a copick project; each run's OME-Zarr carries its spacing
    from inference.synth.generate import generate

    generate(data, n, seed, split="test", scale=scale, progress=progress)
    return data / "test", data / "test_labels.csv"


def run_profile(manifest_path: Path, out: Path, *, target: Target = BYU, n_tomograms: int | None = None,
                gpus: int = 2, cpu_machines: int = 1, budget_h: float | None = None, profile_tomograms: int = 2,
                scale: float = 1.0, seed: int = 11, gpu_seconds: Sequence[str] = (), flops_md: Path | None = None,
                progress: bool = False, measure: Callable[..., tuple[MemberMeasure, ...]] | None = None
                ) -> ProfileResult:
    """Synthetic tomograms -> per-member measurement -> report, table and plot under ``out`` (owned).
    ``n_tomograms`` and ``budget_h`` default to the target's hidden test set and notebook budget."""
    t0 = time.perf_counter()
    n_tomograms = target.hidden_test_tomograms if n_tomograms is None else n_tomograms
    budget_h = target.budget_h if budget_h is None else budget_h
    if min(n_tomograms, gpus, profile_tomograms, cpu_machines) < 1:
        raise InputError(None, "--test-tomograms, --gpus, --cpu-machines and --profile-tomograms must be >= 1",
                         f"pass e.g. --test-tomograms {target.hidden_test_tomograms} --gpus 2 --profile-tomograms 2")
    manifest, _ = read_members(manifest_path, target)
    overrides = parse_gpu_seconds(gpu_seconds, [m.name for m in manifest.members])
    with owned_dir(out) as out, tempfile.TemporaryDirectory(prefix="motorfinder-profile-") as tmp:
        data, spacing_csv = synthetic_input(target, Path(tmp) / "data", profile_tomograms, seed, scale, progress)
        measured = (measure or measure_members)(manifest, data, Path(tmp) / "runs", spacing_csv=spacing_csv,
                                                progress=progress)
        report = profile_report(manifest, measured, target=target, n_tomograms=n_tomograms, gpus=gpus,
                                cpu_machines=cpu_machines, budget_h=budget_h, gpu_seconds=overrides,
                                flops_table=parse_flops_md(flops_md) if flops_md else {})
        png = plot(report, out / "profile.png")
        md = out / "profile.md"
        md.write_text(f"- command: `{' '.join(['python', 'build_submission.py', *sys.argv[1:]])}`\n"
                      f"- target: {target.name} ({target.title}); manifest: {manifest_path}; {profile_tomograms} "
                      f"synthetic tomogram(s) at scale {scale:g}\n\n"
                      + markdown(report, png.name))
        js = out / "profile.json"
        js.write_text(json.dumps({
            "target": target.name, "limit_h": target.limit_h, "n_tomograms": n_tomograms, "gpus": gpus,
            "cpu_machines": cpu_machines, "budget_h": budget_h,
            "reference": report.reference, "machine": report.machine,
            "members": [{"name": m.name, "windows": m.windows, "flops_per_window": m.flops_per_window,
                         "flops_source": m.flops_source, "stage_s": m.stage_s, "gpu_s_per_window": m.gpu_s_per_window}
                        for m in report.members],
            "shared_s": report.shared_s,
            "scenarios": [{"name": sc.name, "kind": sc.kind, "what": sc.what, "segments": sc.segments,
                           "workers": sc.workers, "per_tomogram_s": sc.per_tomogram_s, "hours": report.hours(sc)}
                          for sc in report.scenarios()],
        }, indent=2) + "\n")
    return ProfileResult(report=report, markdown=md, png=png, json=js, seconds=time.perf_counter() - t0)
