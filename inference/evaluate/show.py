"""``show``: three orthogonal views through a tomogram's best candidate, with every member's
candidates and the truth marked, to see why a tomogram became a FP or a FN.

Each panel is the mean of a thin slab (``slab_A`` thick) through the centre point; candidates
within ``near_A`` of the slab's plane are drawn (further ones would mislead), each file in its own
colour with its conf; labelled motors are magenta crosses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from inference.common.errors import InputError

COLOURS = ("#ff7f0e", "#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
AXES = ("z", "y", "x")


def matplotlib_pyplot():
    """``matplotlib.pyplot`` on the Agg backend, or the one-line error naming what to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise InputError(None, "`show` needs matplotlib", "pip install matplotlib") from exc
    return plt


def draw_slab(ax, volume: np.ndarray, c, k: int, half: int):
    """Panel ``k`` of three: the mean of the slab ``c[k] - half .. c[k] + half`` across axis ``k``, titled;
    returns ``(row axis, column axis, image)``."""
    lo, hi = max(0, c[k] - half), min(volume.shape[k], c[k] + half + 1)
    img = np.take(volume, np.arange(lo, hi), axis=k).astype(np.float32).mean(axis=k)
    rows, cols = [a for a in range(3) if a != k]
    ax.imshow(img, cmap="gray", interpolation="nearest")
    ax.set_title(f"{AXES[k]} = {c[k]} (slab {hi - lo} voxels): {AXES[rows]} down, {AXES[cols]} across", fontsize=9)
    return rows, cols, img


def centre_point(tables: Mapping[str, pd.DataFrame], truth: np.ndarray, shape) -> tuple[np.ndarray, str]:
    """The best candidate over all tables, else the first labelled motor, else the volume centre."""
    best = None
    for name, df in tables.items():
        if len(df):
            row = df.loc[df["conf"].idxmax()]
            if best is None or row["conf"] > best[1]["conf"]:
                best = (name, row)
    if best is not None:
        name, row = best
        return row[["z", "y", "x"]].to_numpy(float), f"best candidate ({name}, conf {row['conf']:.3f})"
    if len(truth):
        return truth[0], "labelled motor (no candidates)"
    return (np.asarray(shape, float) - 1) / 2, "volume centre (no candidates, no motor)"


def render(volume: np.ndarray, spacing_A: float, tomo_id: str, tables: Mapping[str, pd.DataFrame],
           truth_zyx: np.ndarray | None, out: str | Path, *, slab_A: float = 100.0, near_A: float = 500.0) -> Path:
    """Write the three-panel PNG for one tomogram; ``tables`` hold only this tomogram's rows."""
    plt = matplotlib_pyplot()
    truth = np.zeros((0, 3)) if truth_zyx is None else np.asarray(truth_zyx, float).reshape(-1, 3)
    centre, why = centre_point(tables, truth, volume.shape)
    c = np.clip(np.round(centre).astype(int), 0, np.asarray(volume.shape) - 1)
    half = max(0, int(round(slab_A / spacing_A / 2)))
    fig, axes = plt.subplots(1, 3, figsize=(15, 5.4))
    for k, ax in enumerate(axes):
        rows, cols, img = draw_slab(ax, volume, c, k, half)
        for i, (name, df) in enumerate(tables.items()):
            pts = df[["z", "y", "x"]].to_numpy(float)
            keep = np.abs(pts[:, k] - centre[k]) * spacing_A <= near_A
            for p, conf in zip(pts[keep], df["conf"].to_numpy()[keep]):
                ax.scatter(p[cols], p[rows], s=160, facecolors="none", edgecolors=COLOURS[i % len(COLOURS)],
                           linewidths=1.6, label=name)
                ax.annotate(f"{conf:.2f}", (p[cols], p[rows]), xytext=(6, 6), textcoords="offset points",
                            color=COLOURS[i % len(COLOURS)], fontsize=8)
        near_truth = truth[np.abs(truth[:, k] - centre[k]) * spacing_A <= near_A] if len(truth) else truth
        for p in near_truth:
            ax.scatter(p[cols], p[rows], s=120, marker="x", c="#ff00ff", linewidths=2.0, label="truth")
        ax.set_xlim(-0.5, img.shape[1] - 0.5)
        ax.set_ylim(img.shape[0] - 0.5, -0.5)
    title = (f"{tomo_id}: {spacing_A:g} Å/voxel, centred on the {why}; "
             f"{len(truth)} labelled motor(s); marks within {near_A:g} Å of each plane")
    return save_figure(fig, axes, title, out, legend_columns=None, legend_fontsize=9, legend_height=0.06)


def save_figure(fig, axes, title: str, out, *, legend_columns: int | None, legend_fontsize: int,
                legend_height: float) -> Path:
    """One legend of every axis's labels (each label once, at most ``legend_columns`` columns; None: one row)
    below the panels, ``title`` above, the PNG written to ``out`` (its folder made) and the figure closed."""
    handles, labels = [], []
    for ax in axes:
        h, lab = ax.get_legend_handles_labels()
        handles, labels = handles + h, labels + lab
    uniq = dict(zip(labels, handles))
    if uniq:
        ncol = len(uniq) if legend_columns is None else min(len(uniq), legend_columns)
        fig.legend(uniq.values(), uniq.keys(), loc="lower center", ncol=ncol, fontsize=legend_fontsize)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, legend_height, 1, 0.95))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    matplotlib_pyplot().close(fig)
    return out
