"""torch vs ONNX Runtime (fp32, CPU) for every member, at a small input and at the recipe's patch.

    python bench/bench_export_parity.py [--members x3d_m ...] [--skip-full] [--out bench/results/export_parity.md]

Each member is a random-init stand-in (seeded, BatchNorms calibrated on raw input at the export
patch) exported with :func:`export.onnx_export.export_onnx` exactly as ``python -m export onnx``
does; the parity is the exporter's own check on a seeded uniform raw 0..255 input: max |torch -
ORT| and that divided by the output's scale (max |torch output|). Small input: 3d at 32 x 64 x 96,
parity batch 2; 2d members only take the patch of their checkpoints, so their "small" row is
64 x 64 (a build for that img_size). Recipe patch: 224 x 448 x 448 / 896 x 896, parity batch 1
(memory). Each export runs in its own process (memory is returned between members); the time is
the whole export (build, calibration, torch run, trace, checker, ORT run), as a user sees it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._report import emit, provenance  # noqa: E402

MEMBERS = ["x3d_m", "densenet121", "resnext50", "maxvit_tiny", "coat_lite_medium"]
SMALL = {"3d": (32, 64, 96), "2d": (64, 64)}
FULL = {"3d": (224, 448, 448), "2d": (896, 896)}

CHILD = """
import json, sys, resource
sys.path.insert(0, {root!r})
from export.onnx_export import export_onnx
r = export_onnx({name!r}, {patch!r}, {out!r}, random_init=True, parity_batch={batch})
print(json.dumps(dict(params=r.params, diff=r.max_abs_diff, scale=r.output_scale, rel=r.rel_diff, seconds=r.seconds,
                      mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)))
"""


def run_one(name: str, patch: tuple[int, ...], batch: int, tmp: Path) -> dict:
    code = CHILD.format(root=str(ROOT), name=name, patch=patch, out=str(tmp / f"{name}.onnx"), batch=batch)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    if res.returncode != 0:
        return {"error": (res.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", nargs="+", default=MEMBERS, choices=MEMBERS)
    p.add_argument("--skip-full", action="store_true", help="only the small inputs")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "export_parity.md")
    args = p.parse_args(argv)

    import onnxruntime
    import torch

    from export.registry import REGISTRY

    lines = ["# Export parity: torch vs ONNX Runtime (fp32, CPU)", ""]
    lines += provenance("python bench/bench_export_parity.py" + (" " + " ".join(argv) if argv else ""))
    lines += [f"- versions: torch {torch.__version__}, onnxruntime {onnxruntime.__version__}",
              "- members: random-init stand-ins (seed 0), raw 0..255 uniform parity input; scale = max |torch output|",
              "", "| member | input | parity batch | params (M) | max abs diff | of the scale | scale | export s "
              "| peak RSS (GB) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as d:
        for name in args.members:
            kind = REGISTRY[name].kind
            runs = [(SMALL[kind], 2)] + ([] if args.skip_full else [(FULL[kind], 1)])
            for patch, batch in runs:
                r = run_one(name, patch, batch, Path(d))
                shape = " x ".join(map(str, (REGISTRY[name].in_channels, *patch)))
                if "error" in r:
                    lines.append(f"| {name} | {shape} | {batch} | - | error: {r['error']} | | | | |")
                else:
                    lines.append(f"| {name} | {shape} | {batch} | {r['params'] / 1e6:.2f} | {r['diff']:.2e} | "
                                 f"{r['rel']:.1e} | {r['scale']:.3g} | {r['seconds']:.0f} | {r['mb'] / 1024:.1f} |")
                print(lines[-1], flush=True)
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
