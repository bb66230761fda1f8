"""``bench/gpu_check.py``'s particle section: the particle decoders on the GPU (CuPy, cuCIM where installed)
against the CPU path on a synthetic CZII-sized stack -- picks equal, seconds per tomogram of each.

Without CuPy or a GPU it reports "not available here" and runs nothing.
"""

from __future__ import annotations

import time

import numpy as np
from _gpu_sections import NA, Section

TITLE = "particle decoders: GPU vs CPU (synthetic 7 x 92 x 315 x 315 stack)"
CELL_A = (20.024,) * 3


def compare_picks(cpu: dict, gpu: dict, atol_A: float = 1e-4) -> list[str]:
    """Differences: per class, the same number of picks, positions within ``atol_A`` Å, conf within 1e-6."""
    problems = []
    for name, (zyx, conf) in cpu.items():
        if name not in gpu:
            problems.append(f"{name}: missing on the GPU")
            continue
        gz, gc = gpu[name]
        if gz.shape != zyx.shape:
            problems.append(f"{name}: {len(zyx)} picks on the CPU, {len(gz)} on the GPU")
        elif len(zyx) and (np.abs(gz - zyx).max() > atol_A or np.abs(gc - conf).max() > 1e-6):
            problems.append(f"{name}: max |dz, dy, dx| {np.abs(gz - zyx).max():.3g} Å, max |dconf| "
                            f"{np.abs(gc - conf).max():.3g}")
    return problems


def _median_seconds(fn, rounds: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(rounds):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def particles_section(caps, out, budget, *, shape=(92, 315, 315), blobs=40, rounds=3) -> Section:
    """Decode every class with each method on the CPU and the GPU: picks equal, seconds (median of ``rounds``)."""
    if caps.cupy:
        return Section(TITLE, NA, f"cupy: {caps.cupy}")
    from inference.decode.particle_decode import decode_particles
    from inference.decode.particle_gpu import gpu_libs
    from inference.decode.particle_params import class_targets
    from inference.manifest.particle_classes import CZII_CLASSES
    from inference.synth.particle_maps import blob_stack

    try:
        libs = gpu_libs()
        import cupy as cp
    except ImportError as exc:
        return Section(TITLE, NA, str(exc))
    probs, _ = blob_stack(shape, [c.radius_A for c in CZII_CLASSES], blobs, CELL_A, seed=0)
    device = cp.asarray(probs)
    rows, problems, data = [], [], {"libs": libs.source, "methods": {}}
    for method in ("peaks", "components", "watershed"):
        if budget.left() < 20:
            rows.append(f"| {method} | - | - | - | not measured: time budget spent |")
            continue
        targets = class_targets(CZII_CLASSES, range(1, 7), method)
        decode_particles(device, targets, CELL_A, xp=cp)  # warm-up: kernels compiled, memory pools filled
        cpu_s, cpu = _median_seconds(lambda t=targets: decode_particles(probs, t, CELL_A), rounds)
        gpu_s, gpu = _median_seconds(lambda t=targets: decode_particles(device, t, CELL_A, xp=cp), rounds)
        diffs = compare_picks(cpu, gpu)
        problems += [f"{method}: {d}" for d in diffs]
        n = sum(len(c) for _, c in cpu.values())
        rows.append(f"| {method} | {cpu_s:.3f} | {gpu_s:.3f} | {n} | {'equal' if not diffs else '; '.join(diffs[:3])} |")
        data["methods"][method] = {"cpu_s": cpu_s, "gpu_s": gpu_s, "picks": n, "differences": diffs}
    details = [f"- stack: 7 x {' x '.join(map(str, shape))} float32, {blobs} blobs per class; GPU libraries: "
               f"{libs.source} (+ cupyx.scipy.ndimage; the watershed itself runs on the host: cuCIM has none)",
               f"- seconds per tomogram (6 classes), median of {rounds} after a warm-up; picks compared per class "
               "(positions within 1e-4 Å, conf within 1e-6)", "",
               "| method | CPU s | GPU s | picks | CPU vs GPU |", "|---|---:|---:|---:|---|", *rows]
    measured = len(data["methods"])
    status = "failed" if problems else ("ok" if measured else "skipped")
    summary = (f"{len(problems)} difference(s): {problems[0]}" if problems
               else f"picks equal for {measured} of 3 methods ({libs.source})")
    return Section(TITLE, status, summary, details=details, data=data)
