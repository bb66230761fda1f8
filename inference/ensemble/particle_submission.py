"""The particle task's tables: ``submission.csv`` (``id,experiment,particle_type,x,y,z``) and candidates.

Picks are stored per experiment and class in ORIGINAL voxel indices ``[z, y, x, conf]``
(:class:`~inference.run.results.TomoResult`'s ``picks``/``candidates``); the tables give them in Å, voxel
``i`` at ``i * spacing`` (the frame of copick's pick locations), x, y, z in that order.

A pick is in the submission when its conf is at least its class's threshold (the decoders' rule, a mask
cell is in when ``prob >= threshold``; ``tune`` sweeps the same rule). Rows run experiment by experiment
(the run's order), then class by class (the manifest's), then by conf (best first); ``id`` counts from 0.
A failed or unreached experiment has no row; a submission with only its header is valid. Candidate tables
(``experiment,particle_type,x,y,z,conf``) keep every pick down to the candidate floor, for ``tune``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

SUBMISSION_COLUMNS = ["id", "experiment", "particle_type", "x", "y", "z"]
CANDIDATE_COLUMNS = ["experiment", "particle_type", "x", "y", "z", "conf"]


@dataclass
class ParticleDecision:
    """The submission and how many picks each class got."""

    submission: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)
    n_experiments: int = 0

    def describe(self) -> str:
        per_class = ", ".join(f"{name} {n}" for name, n in self.counts.items())
        return f"{len(self.submission)} picks in {self.n_experiments} experiment(s): {per_class}"


def picks_table(picks: Mapping[str, Mapping[str, Sequence]], spacings: Mapping[str, float], classes: Sequence,
                order: Sequence[str], thresholds: Mapping[str, float] | None = None) -> pd.DataFrame:
    """``experiment,particle_type,x,y,z,conf`` (Å) of ``picks`` (``{experiment: {class: [[z, y, x, conf], ...]}}``,
    voxel indices at ``spacings[experiment]``), in the module's row order; ``thresholds``: only the picks with
    ``conf >= thresholds[class]``."""
    rows = []
    for experiment in order:
        if experiment not in picks:
            continue
        s = float(spacings[experiment])
        for c in classes:
            pts = np.asarray(picks[experiment].get(c.name, []), dtype=np.float64).reshape(-1, 4)
            if thresholds is not None:
                pts = pts[pts[:, 3] >= thresholds[c.name]]
            pts = pts[np.argsort(-pts[:, 3], kind="stable")]
            rows.extend((experiment, c.name, x * s, y * s, z * s, conf) for z, y, x, conf in pts)
    df = pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)
    return df.astype({"experiment": str, "particle_type": str, "x": float, "y": float, "z": float, "conf": float})


def particle_submission(picks: Mapping[str, Mapping[str, Sequence]], spacings: Mapping[str, float],
                        classes: Sequence, order: Sequence[str]) -> ParticleDecision:
    """The submission of ``picks`` (see :func:`picks_table`) at each class's ``threshold``."""
    table = picks_table(picks, spacings, classes, order, {c.name: float(c.threshold) for c in classes})
    sub = table.drop(columns="conf")
    sub.insert(0, "id", np.arange(len(sub), dtype=np.int64))
    counts = {c.name: int((table["particle_type"] == c.name).sum()) for c in classes}
    return ParticleDecision(submission=sub[SUBMISSION_COLUMNS], counts=counts,
                            n_experiments=sum(1 for e in order if e in picks))
