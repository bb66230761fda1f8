"""``python -m inference``: the command line. Each subcommand's ``--help`` documents every option.

Bad input ends with one line ``error: <file>: <problem>. Fix: <what to do>`` and exit code 2,
never a traceback from inside a library.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from inference import __version__
from inference.errors import EngineError, InputError

logger = logging.getLogger("inference")


def _add_predict(sub) -> None:
    p = sub.add_parser(
        "predict", help="run the manifest's members over tomograms and write submission.csv",
        description="Run every member of a manifest over every tomogram source in --input (BYU slice folders, "
                    ".mrc/.rec files, .npy volumes), decode candidate points, fuse members, threshold, "
                    "and write a submission.",
    )
    p.add_argument("--manifest", required=True, type=Path, help="weights_manifest.yaml (paths inside are "
                   "relative to it)")
    p.add_argument("--input", required=True, type=Path, help="folder of tomogram sources (one sub-folder of "
                   "slice_NNNN.jpg per tomo_id, or .mrc/.rec/.npy files)")
    p.add_argument("--output", required=True, type=Path, help="submission CSV to write")
    p.add_argument("--spacing-csv", type=Path, default=None, help="voxel spacings: train_labels format or "
                   "tomo_id,voxel_spacing; first source of spacing, before the MRC header and the default")
    p.add_argument("--default-spacing", type=float, default=None, help="Å, for tomograms with no spacing in "
                   "the CSV or a header (default: the manifest's default_spacing, 13.1 for BYU test data)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where models run (default cpu)")
    p.add_argument("--device-id", type=int, default=0, help="CUDA device index with --device cuda (default 0)")
    p.add_argument("--ort-provider", choices=("cuda", "tensorrt"), default="cuda",
                   help="ONNX Runtime GPU provider with --device cuda (default cuda)")
    p.add_argument("--fp16", action="store_true", help="let TensorRT build fp16 engines")
    p.add_argument("--engine-cache", type=Path, default=None, help="folder for TensorRT engine/timing caches")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads on CPU "
                   "(default: all cores)")
    p.add_argument("--candidates-dir", type=Path, default=None, help="write <member>.csv per member (and "
                   "fused.csv for an ensemble) here: tomo_id,z,y,x,conf,voxel_spacing in original voxels")
    p.add_argument("--sample-submission", type=Path, default=None, help="write every tomo_id of this file "
                   "once, in its order (absent tomograms get -1)")
    p.add_argument("--decoder", default="auto", help="slice decoder: auto (fastest available), simplejpeg, cv2, "
                   "pil (default auto)")
    p.add_argument("--read-threads", type=int, default=None, help="threads decoding slices (default: "
                   "min(8, cores))")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_predict)


def _run_predict(args) -> int:
    from inference.engines import EngineOptions
    from inference.manifest import load_manifest
    from inference.runner import PredictConfig, run_predict

    cfg = PredictConfig(
        manifest=load_manifest(args.manifest),
        input_dir=args.input,
        output=args.output,
        spacing_csv=args.spacing_csv,
        default_spacing=args.default_spacing,
        engine=EngineOptions(device=args.device, device_id=args.device_id, ort_provider=args.ort_provider,
                             fp16=args.fp16, cache_dir=args.engine_cache, threads=args.threads),
        candidates_dir=args.candidates_dir,
        sample_submission=args.sample_submission,
        decoder=args.decoder,
        read_threads=args.read_threads,
        progress=not args.no_progress,
    )
    result = run_predict(cfg)
    print(f"wrote {args.output}: {result.decision.describe()}; "
          f"{len(result.failures)} failed; stages: {result.timer.summary()}")
    return 0


def _add_demo_models(sub) -> None:
    p = sub.add_parser(
        "demo-models", help="write the demo ONNX detectors and a manifest that uses them",
        description="Write small hand-designed ONNX detectors (no torch) that find the synthetic motors, plus "
                    "manifest.yaml. They are the embedded default of the demo and the tests.",
    )
    p.add_argument("--out", required=True, type=Path, help="folder to write demo3d.onnx (and demo2d.onnx) and "
                   "manifest.yaml into")
    p.add_argument("--with-2d", action="store_true", help="also write the 2d member and use both in the manifest")
    p.set_defaults(func=_run_demo_models)


def _run_demo_models(args) -> int:
    from inference.demo_models import write_demo_models

    path = write_demo_models(args.out, with_2d=args.with_2d)
    print(f"wrote {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from inference import scoring, synth

    parser = argparse.ArgumentParser(
        prog="python -m inference",
        description="Offline 3D point detection in cryo-ET tomograms (BYU flagellar motors).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    synth.add_cli(sub)
    scoring.add_cli(sub)
    _add_predict(sub)
    _add_demo_models(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (InputError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
