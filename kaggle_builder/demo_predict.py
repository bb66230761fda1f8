"""The demo's first half, per task: synthetic test data, the demo detectors, ``predict`` and the score.

* motors (byu): ``n`` BYU-like tomograms (:func:`inference.synth.generate.generate`), the 3d + 2d demo
  detectors fused, predict with the true spacings (the synthetic ones are known), the F2.
* particles (czii): ``n`` CZII-like runs as a copick project (:func:`inference.synth.particle_project.
  generate_particles`), the demo particle detector (peaks decoder), predict on the project (each run's
  OME-Zarr carries its spacing), the competition's weighted F4 against the runs' curation picks.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from kaggle_builder.target import Target

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Predicted:
    data_dir: Path
    manifest: Path
    submission: Path
    candidates_dir: Path
    score: dict
    threshold: str
    seconds: dict[str, float]        # synth, models, predict


def predict_demo(target: Target, root: Path, *, n: int, seed: int, scale: float | None,
                 progress: bool) -> Predicted:
    """Data -> demo detectors -> predict -> score under ``root``; data already there is reused."""
    from inference.manifest.parse import load_manifest
    from inference.run.runner import PredictConfig, run_predict

    particles = target.task == "particles"
    data, submission, cands = root / "data", root / "submission.csv", root / "candidates"
    kw = {} if scale is None else {"scale": scale}
    seconds = {}
    t0 = time.perf_counter()
    if (data / ("ExperimentRuns" if particles else "test")).exists():
        logger.info("reusing synthetic data in %s", data)
    elif particles:
        from inference.synth.particle_project import generate_particles

        generate_particles(data, n, seed, progress=progress, **kw)
    else:
        from inference.synth.generate import generate

        generate(data, n, seed, split="test", progress=progress, **kw)
    seconds["synth"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if particles:
        from inference.synth.particle_demo_model import write_particle_demo_models

        manifest_path = write_particle_demo_models(root / "models")
    else:
        from inference.synth.demo_models import write_demo_models

        manifest_path = write_demo_models(root / "models", with_2d=True)
    seconds["models"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    manifest = load_manifest(manifest_path)
    if particles:  # a copick project: each run's OME-Zarr carries its spacing
        cfg = PredictConfig(manifest=manifest, input_dir=data, output=submission, candidates_dir=cands,
                            progress=progress, restart=True)
    else:
        cfg = PredictConfig(
            manifest=manifest, input_dir=data / "test", output=submission,
            spacing_csv=data / "test_labels.csv",  # synthetic spacings are known; Kaggle's test set assumes 13.1
            candidates_dir=cands, sample_submission=data / "sample_submission.csv", progress=progress,
            restart=True)
    result = run_predict(cfg)
    seconds["predict"] = time.perf_counter() - t0

    if particles:
        from kaggle_builder.simulated_test import particle_score

        score = particle_score(data, submission)
        threshold = "per class: " + ", ".join(f"{c.name} {c.threshold:g}" for c in manifest.particles.classes)
    else:
        from inference.evaluate import scoring

        score = scoring.score_files(data / "test_labels.csv", submission).as_dict()
        threshold = result.decision.describe()
    return Predicted(data, manifest_path, submission, cands, score, threshold, seconds)
