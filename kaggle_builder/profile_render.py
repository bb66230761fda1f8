"""The runtime profile as a Markdown table and a PNG: hours on a linear axis with the target's limit (9 h
byu, 12 h czii) and the notebook's budget drawn; measured bars solid, projected bars hatched."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

from kaggle_builder.cost import T4_PEAK_FLOPS
from kaggle_builder.profile import HOST_SEGMENT, STAGES, ProfileReport, projection_hours

Y_TOP = 1.4        # the axis stops at this many times the limit; taller bars are cut and labelled


def y_top_h(report: ProfileReport) -> float:
    return report.target.limit_h * Y_TOP


def markdown(report: ProfileReport, png_name: str | None = None) -> str:
    r, n = report, report.n_tomograms
    limit = r.target.limit_h
    lines = [
        "# Runtime profile",
        "",
        f"- date: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}; machine: {r.machine}",
        f"- reference tomogram: {r.reference} (the real median shape); hidden test set: ~{n} tomograms "
        f"({r.target.hidden_test_source}); Kaggle limit {limit:g} h, notebook budget {r.budget_h:g} h (the deadline "
        "guard's)",
        "- **measured** (CPU rows): every stage on THIS machine (ONNX Runtime CPU), each member run alone through "
        "`run_predict`, scaled to the reference tomogram: engine and stitch by the ratio of windows, read by the "
        "ratio of voxels, resample/decode/fusion by the ratio of resampled voxels. Resampling shared by members of "
        f"one geometry is counted per member (an upper bound). Hours for {r.cpu_machines} machine(s) like this one.",
        f"- **projected** (T4 rows, {r.gpus} GPU(s)): the host stages measured here (read, resample, stitch, decode, "
        "fusion: pessimistic, since `--device cuda` runs resample, stitch and decode on the GPU) + the engine: "
        "windows x FLOPs per window / the T4 peak (65 TFLOP/s fp16 tensor, 8.1 TFLOP/s fp32; no run reaches the "
        "peak, so the engine part is a lower bound), or windows x a measured GPU time per window "
        "(`--gpu-seconds-per-window`).",
        "- hours = seconds per tomogram x N / workers / 3600 (workers: CPU machines or GPUs).",
        "",
        "## Per member (seconds per reference tomogram)",
        "",
        "| member | kind | " + " | ".join(STAGES) + " | member total (CPU) | windows | GFLOPs / window | "
        "FLOPs from | T4 fp16 engine bound | T4 fp32 engine bound | given s / window |",
        "|---|---|" + "---:|" * len(STAGES) + "---:|---:|---:|---|---:|---:|---:|",
    ]
    for m in r.members:
        b16, b32 = m.bound_s(T4_PEAK_FLOPS["fp16"]), m.bound_s(T4_PEAK_FLOPS["fp32"])
        lines.append(
            f"| {m.name} | {m.kind} | " + " | ".join(f"{m.stage_s.get(s, 0.0):.2f}" for s in STAGES)
            + f" | {m.member_s:.2f} | {m.windows} | "
            + (f"{m.flops_per_window / 1e9:,.4g}" if m.flops_per_window is not None else "n/a")
            + f" | {m.flops_source} | " + (f"{b16:.3g}" if b16 is not None else "n/a") + " | "
            + (f"{b32:.3g}" if b32 is not None else "n/a") + " | "
            + (f"{m.gpu_s_per_window:g}" if m.gpu_s_per_window is not None else "-") + " |")
    lines += [
        "",
        "Shared stages (once per tomogram, measured, scaled): "
        + ", ".join(f"{k} {v:.2f} s" for k, v in r.shared_s.items()) + f"; host stages in all: {r.host_s:.2f} s",
        "",
        f"## Projection: {n} tomograms",
        "",
        f"| scenario | measured / projected | what | s / tomogram | workers | hours | vs {limit:g} h |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for sc in r.scenarios():
        h = r.hours(sc)
        verdict = "fits" if h <= limit else f"over by {h / limit:.1f}x"
        lines.append(f"| {sc.name} | {sc.kind} | {sc.what} | {sc.per_tomogram_s:.3g} | {sc.workers} | {h:.3g} | "
                     f"{verdict} |")
    note = r.host_bound_note()
    if note:
        lines += ["", f"Note: {note}."]
    lines += ["", "## Measured runs (unscaled, this machine)", "",
              "| member | tomo_id | shape | spacing (Å) | seconds |", "|---|---|---|---:|---:|"]
    for mm in r.measured:
        for t in mm.tomograms:
            lines.append(f"| {mm.name} | {t.tomo_id} | {'x'.join(map(str, t.shape))} | {t.spacing:g} | "
                         f"{sum(t.seconds.values()):.2f} |")
    if png_name:
        lines += ["", f"![profile]({png_name})"]
    return "\n".join(lines) + "\n"


def plot(report: ProfileReport, path: Path) -> Path:
    """Stacked bars (hours per member / host stages) per scenario, linear axis to 1.4 x the limit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    scenarios, limit, top = report.scenarios(), report.target.limit_h, y_top_h(report)
    keys: list[str] = []
    for sc in scenarios:
        keys += [k for k in sc.segments if k not in keys]
    cmap = plt.get_cmap("tab10")
    colors = {k: ("0.6" if k == HOST_SEGMENT else cmap(i % 10)) for i, k in enumerate(keys)}
    fig, ax = plt.subplots(figsize=(9, 5))
    bottoms = [0.0] * len(scenarios)
    for key in keys:
        vals = [projection_hours(sc.segments.get(key, 0.0), report.n_tomograms, sc.workers) for sc in scenarios]
        for i, (sc, v) in enumerate(zip(scenarios, vals)):
            if v > 0:
                ax.bar(i, v, bottom=bottoms[i], color=colors[key], edgecolor="black", linewidth=0.4,
                       hatch="//" if sc.kind == "projected" else None, label=key)
        bottoms = [b + v for b, v in zip(bottoms, vals)]
    ax.axhline(limit, color="red", linestyle="--", label=f"Kaggle limit {limit:g} h")
    ax.axhline(report.budget_h, color="darkorange", linestyle=":", label=f"notebook budget {report.budget_h:g} h "
               "(deadline guard)")
    for i, sc in enumerate(scenarios):
        h = report.hours(sc)
        if h > top:
            ax.annotate(f"{h:.3g} h\n(off the chart)", (i, top), xytext=(0, -6), textcoords="offset points",
                        ha="center", va="top", fontsize=8, fontweight="bold", color="darkred",
                        bbox=dict(boxstyle="round", facecolor="white", edgecolor="darkred"))
        else:
            ax.text(i, h, f"{h:.3g} h", ha="center", va="bottom", fontsize=8)
    ax.set_ylim(0, top)
    ax.set_xticks(range(len(scenarios)))
    ax.set_xticklabels([f"{sc.name}\n({sc.kind})" for sc in scenarios], fontsize=8)
    ax.set_ylabel(f"hours for {report.n_tomograms} tomograms")
    ax.set_title("motorfinder run time: measured here (solid) and projected to T4s (hatched)", fontsize=10)
    note = report.host_bound_note()
    if note:  # identical fp16 and fp32 bars need their reason beside them
        fig.text(0.01, 0.01, "\n".join(textwrap.wrap(note[0].upper() + note[1:], 110)), fontsize=7, va="bottom")
    lines = [h for h in ax.get_lines()]
    patches = [Patch(facecolor=colors[k], edgecolor="black", linewidth=0.4, label=k) for k in keys]
    patches.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="projected (not measured)"))
    ax.legend(handles=lines + patches, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout(rect=(0, 0.1 if note else 0, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
