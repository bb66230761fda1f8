"""``show`` for particle picks: three orthogonal slabs through a point of a run, picks per class.

Each panel is the mean of a thin slab (``slab_A`` thick) through ``centre_A`` (z, y, x in Å; by default the
volume's centre); every pick within ``near_A`` of the slab's plane is drawn as a circle of its class's radius
in the class's colour, labelled particles as crosses of the same colour. Picks are ``experiment,
particle_type,x,y,z[,conf]`` rows in Å (voxel ``i`` at ``i * spacing``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from inference.evaluate.show import COLOURS, draw_slab, matplotlib_pyplot, save_figure


def render_particles(volume: np.ndarray, spacing_A: float, experiment: str, classes: Sequence, picks: pd.DataFrame,
                     truth: pd.DataFrame | None, out: str | Path, *, centre_A: Sequence[float] | None = None,
                     slab_A: float = 60.0, near_A: float = 100.0) -> Path:
    """Write the three-panel PNG of one run; ``picks``/``truth`` hold that run's rows (``truth`` may be None)."""
    plt = matplotlib_pyplot()
    shape = np.asarray(volume.shape)
    centre = (np.asarray(centre_A, float) / spacing_A) if centre_A is not None else (shape - 1) / 2
    c = np.clip(np.round(centre).astype(int), 0, shape - 1)
    half = max(0, int(round(slab_A / spacing_A / 2)))
    colour = {cls.name: COLOURS[i % len(COLOURS)] for i, cls in enumerate(classes)}
    radius = {cls.name: float(cls.radius_A) / spacing_A for cls in classes}
    truth = truth if truth is not None else pd.DataFrame(columns=["particle_type", "x", "y", "z"])
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4))
    for k, ax in enumerate(axes):
        rows, cols, img = draw_slab(ax, volume, c, k, half)
        for table, marker in ((picks, "pick"), (truth, "truth")):
            zyx = table[["z", "y", "x"]].to_numpy(float).reshape(-1, 3) / spacing_A
            near = np.abs(zyx[:, k] - centre[k]) * spacing_A <= near_A
            for p, name in zip(zyx[near], table["particle_type"].to_numpy()[near]):
                if name not in colour:
                    continue
                if marker == "pick":
                    ax.add_patch(plt.Circle((p[cols], p[rows]), radius[name], fill=False, color=colour[name],
                                            linewidth=1.4, label=name))
                else:
                    ax.scatter(p[cols], p[rows], s=60, marker="x", c=colour[name], linewidths=1.6,
                               label=f"{name} (truth)")
        ax.set_xlim(-0.5, img.shape[1] - 0.5)
        ax.set_ylim(img.shape[0] - 0.5, -0.5)
    title = (f"{experiment}: {spacing_A:g} Å/voxel; {len(picks)} pick(s), {len(truth)} labelled particle(s); "
             f"circles: picks (class radius), crosses: truth, within {near_A:g} Å of each plane")
    return save_figure(fig, axes, title, out, legend_columns=6, legend_fontsize=8, legend_height=0.08)
