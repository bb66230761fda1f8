"""The dry run's simulated competition test set, per target, and the verdict on what the notebook wrote.

* :func:`write_test_set`: synthetic test data in the competition's layout under ``input/<competition>/``,
  with the truth kept outside the input (the notebook never sees it):

  - byu: ``test/<tomo_id>/slice_NNNN.jpg`` and ``sample_submission.csv`` (:func:`inference.synth.generate.
    generate`); the truth is ``<root>/test_labels.csv``;
  - czii: ``test/static/ExperimentRuns/<run>/VoxelSpacing10.000/denoised.zarr`` (the runs of
    :func:`inference.synth.particle_project.generate_particles`) and a ``sample_submission.csv`` like Kaggle's
    (the header and three rows of the first run); the truth is the whole copick project in ``<root>/truth``
    (its curation picks; ``labels.csv`` beside them).

* :func:`judge`: the submission checked as the notebook checks it (:mod:`kaggle_builder.submission_check`)
  and scored with the competition's metric against the truth.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from kaggle_builder.submission_check import particle_problems, particle_summary, submission_problems
from kaggle_builder.target import Target

TRUTH = "truth"  # the czii truth's folder under the dry run's root


def write_test_set(target: Target, root: Path, comp: Path, *, n: int, seed: int, scale: float,
                   progress: bool = False) -> Path:
    """Write ``n`` synthetic test tomograms into ``comp`` (the competition's folder) as Kaggle lays them
    out; returns the truth (a labels CSV, or a copick project), which lies under ``root``, outside ``comp``."""
    if target.task == "particles":
        return _particles(target, root, comp, n=n, seed=seed, scale=scale, progress=progress)
    from inference.synth.generate import generate

    generate(comp, n, seed, split="test", scale=scale, progress=progress)
    labels = root / "test_labels.csv"
    shutil.move(str(comp / "test_labels.csv"), labels)
    return labels


def _particles(target: Target, root: Path, comp: Path, *, n: int, seed: int, scale: float, progress: bool) -> Path:
    from inference.synth.particle_project import SPACING_FOLDER, generate_particles

    truth = root / TRUTH
    generate_particles(truth, n, seed, scale=scale, progress=progress)
    runs = sorted(p.name for p in (truth / "ExperimentRuns").iterdir())
    for run in runs:  # the tomograms only, not the picks
        shutil.copytree(truth / "ExperimentRuns" / run / SPACING_FOLDER,
                        comp / target.test_input / "ExperimentRuns" / run / SPACING_FOLDER)
    first = runs[0]
    rows = [(0, "beta-amylase"), (1, "beta-amylase"), (2, "beta-galactosidase")]  # Kaggle's sample, in our run
    (comp / "sample_submission.csv").write_text(",".join(target.submission_header) + "\n" + "".join(
        f"{i},{first},{kind},2983.596,3154.13,764.124\n" for i, kind in rows))
    return truth


@dataclass(frozen=True)
class Verdict:
    problems: tuple[str, ...]          # empty: the submission is valid
    n_tomograms: int                   # test tomograms (byu) / test runs (czii)
    contents: str                      # what the submission holds, one phrase
    score: dict | None                 # the metric's as_dict()
    headline: str                      # the score in a few words ("F2 0.667", "score 0.939")


def judge(target: Target, submission: Path, sample: Path, truth: Path, particle_types: Sequence[str] = ()
          ) -> Verdict:
    """Check ``submission`` as the notebook does and, when valid, score it against ``truth``."""
    if not submission.is_file():
        return Verdict(("no submission.csv",), 0, "", None, "-")
    if target.task == "particles":
        problems = particle_problems(submission, particle_types)
        runs = sorted(p.name for p in (truth / "ExperimentRuns").iterdir())
        if problems:
            return Verdict(tuple(problems), len(runs), "", None, "-")
        score = particle_score(truth, submission)
        return Verdict((), len(runs), particle_summary(submission, runs), score, f"score {score['score']:.3f}")
    problems = submission_problems(submission, sample)
    if problems:
        return Verdict(tuple(problems), 0, "", None, "-")
    import pandas as pd

    from inference.evaluate import scoring

    sub = pd.read_csv(submission)
    with_motor = int((sub.iloc[:, 1:] >= 0).all(axis=1).sum())
    score = scoring.score_files(truth, submission).as_dict()
    return Verdict((), len(sub), f"{len(sub)} tomograms, {with_motor} with a motor; every sample id once, in order",
                   score, f"F2 {score['f2']:.3f}")


def particle_score(labels: Path, submission: Path) -> dict:
    """The CZII metric of ``submission`` against ``labels`` (a CSV, or a copick project: its curation picks,
    every run an experiment): ``{"score", "per_class"}``."""
    from inference.evaluate.particle_metric import score_particles
    from inference.evaluate.particle_tables import load_particle_labels, load_particle_submission

    truth = load_particle_labels(labels, user_id=None if labels.suffix == ".csv" else "curation")
    return score_particles(truth.points, load_particle_submission(submission), experiments=truth.experiments).as_dict()


def per_class(score: dict) -> str:
    """``apo-ferritin 0.96, beta-amylase 0.78, ...``: each class's F-beta."""
    return ", ".join(f"{name} {c['fbeta']:.2f}" for name, c in score["per_class"].items())
