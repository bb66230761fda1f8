"""``python -m inference doctor``: what this machine can run (:mod:`inference.run.doctor`)."""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path
from typing import Callable

from inference.common.errors import EngineError
from inference.common.names import escaped
from inference.run.doctor import collect, verdict


def add_cli(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "doctor", help="check what this machine can run (ONNX Runtime providers, CuPy, GPUs, TensorRT)",
        description="Report Python, numpy, onnxruntime with the providers that actually load (a session on a "
                    "tiny model for each), cupy with the CUDA runtime/driver and each GPU, tensorrt, and for a "
                    "manifest whether its TensorRT engines fit this GPU. Exits 2 with one line naming the reason "
                    "and the fix when --device cannot be used.")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="the device to check (default cpu)")
    p.add_argument("--manifest", type=Path, default=None, help="also check this manifest's member files and engines")
    p.add_argument("--ort-provider", choices=("cuda", "tensorrt"), default="cuda",
                   help="ONNX Runtime GPU provider that --device cuda needs (default cuda)")
    p.add_argument("--engine-cache", type=Path, default=None, help="TensorRT cache folder of predict, to report "
                   "the cached engines for this GPU")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args, import_module: Callable = importlib.import_module) -> int:
    report = collect(args.manifest, args.ort_provider, args.engine_cache, import_module=import_module)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print("\n".join(escaped(line) for line in report.lines()))
    problem = verdict(report, args.device, args.ort_provider)
    if problem is not None:
        why, fix = problem
        raise EngineError(f"--device {args.device} cannot be used: {why}. Fix: {fix}")
    if not args.json:
        print(f"--device {args.device}: usable")
    return 0
