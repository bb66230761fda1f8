"""torch vs ONNX Runtime (fp32, CPU) for every member, at a small input and at the recipe's patch.

    python bench/bench_export_parity.py [--members x3d_m ...] [--skip-full] [--out bench/results/export_parity.md]

Each member is a random-init stand-in (seeded, BatchNorms calibrated on raw input at the export
patch) exported with :func:`export.onnx_export.export_onnx` exactly as ``python -m export onnx``
does; the parity is the exporter's own check on a seeded uniform raw 0..255 input: max |torch -
ORT| and that divided by the output's scale (max |torch output|). Small input: 3d at 32 x 64 x 96,
parity batch 2; 2d members only take the patch of their checkpoints, so their "small" row is
64 x 64 (a build for that img_size). Recipe patch: 224 x 448 x 448 / 896 x 896, parity batch 1
(memory). The small exports share one process; each recipe-patch export runs in its own process
(memory is returned between members; its peak RSS is reported). The time is the whole export
(build, calibration, torch run, trace, checker, ORT run), as a user sees it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _measure import exact
from _report import Report

ROOT = Path(__file__).resolve().parents[1]

MEMBERS = ["x3d_m", "densenet121", "resnext50", "maxvit_tiny", "coat_lite_medium"]
SMALL = {"3d": (32, 64, 96), "2d": (64, 64)}
FULL = {"3d": (224, 448, 448), "2d": (896, 896)}

CHILD = """
import json, sys, resource
sys.path.insert(0, {root!r})
from export.onnx_export import export_onnx
jobs = {jobs!r}
for name, patch, out, batch in jobs:
    try:
        r = export_onnx(name, tuple(patch), out, random_init=True, parity_batch=batch)
    except Exception as exc:
        print(json.dumps(dict(error=f"{{type(exc).__name__}}: {{exc}}"[:200])), flush=True)
        continue
    mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if len(jobs) == 1 else None
    print(json.dumps(dict(params=r.params, diff=r.max_abs_diff, scale=r.output_scale, rel=r.rel_diff,
                          seconds=r.seconds, mb=mb)), flush=True)
"""


def run_jobs(jobs: list[tuple[str, tuple[int, ...], int]], tmp: Path) -> list[dict]:
    """Export each (member, patch, parity batch) in one child process; one result per job."""
    spec = [(name, list(patch), str(tmp / f"{name}-{'x'.join(map(str, patch))}.onnx"), batch) for name, patch, batch in jobs]
    res = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), jobs=spec)], capture_output=True, text=True,
                         cwd=ROOT)
    got = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    why = (res.stderr.strip().splitlines() or [f"exit {res.returncode}"])[-1][:200]
    return got + [{"error": why}] * (len(jobs) - len(got))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", nargs="+", default=MEMBERS, choices=MEMBERS)
    p.add_argument("--skip-full", action="store_true", help="only the small inputs")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "export_parity.md")
    args = p.parse_args(argv)

    from export.models.registry import REGISTRY

    rep = Report("bench_export_parity.py", "Export parity: torch vs ONNX Runtime (fp32, CPU)", argv,
                 packages=["torch", "torchvision", "timm", "onnx"])
    rep.add("- members: random-init stand-ins (seed 0, BatchNorms calibrated on raw input at the export patch), "
            "exported by `export_onnx` as `python -m export onnx --random-init` does, each in its own process; "
            "parity: the exporter's check on a seeded uniform raw 0..255 input, fp32, CPU; of the scale = max |diff| "
            "/ max |torch output| (the export refuses above 1e-4). Small input: 3d 32 x 64 x 96 (batch 2), 2d a model "
            "built for 64 x 64; recipe patch: 224 x 448 x 448 / 896 x 896, parity batch 1",
            "- the differences are deterministic (seeded); export s is one export's wall time (build, calibration, "
            "torch run, trace, checker, ORT run) under the load of the moment, not a comparison; peak RSS only where the "
            "export had its process to itself (the recipe patch)", "")
    small = [(name, SMALL[REGISTRY[name].kind], 2) for name in args.members]
    full = [] if args.skip_full else [(name, FULL[REGISTRY[name].kind], 1) for name in args.members]
    with tempfile.TemporaryDirectory() as d:
        results = dict(zip(small, run_jobs(small, Path(d))))  # small inputs: one process for all
        for job in full:  # the recipe patch: each in its own process (memory is returned between members)
            results[job] = run_jobs([job], Path(d))[0]
    rows = []
    for name in args.members:
        for job in [j for j in small + full if j[0] == name]:
            _, patch, batch = job
            r = results[job]
            shape = " x ".join(map(str, (REGISTRY[name].in_channels, *patch)))
            if "error" in r:
                rows.append([name, shape, batch, "-", f"error: {r['error']}", "", "", "", ""])
                continue
            rep.metric(f"{name} {shape} of the scale", exact(r["rel"]))
            rss = "-" if r["mb"] is None else f"{r['mb'] / 1024:.1f}"
            rows.append([name, shape, batch, f"{r['params'] / 1e6:.2f}", f"{r['diff']:.2e}", f"{r['rel']:.1e}",
                         f"{r['scale']:.3g}", f"{r['seconds']:.0f}", rss])
    rep.table(["member", "input", "parity batch", "params (M)", "max abs diff", "of the scale", "scale",
               "export s (one run)", "peak RSS (GB)"], rows, "llrrrrrrr")
    worst = max((rep.metrics[k].median for k in rep.metrics), default=float("nan"))
    rep.add(f"Largest difference, of the output's scale: {worst:.1e} (the export enforces 1e-4).")
    rep.write(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
