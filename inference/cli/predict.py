"""``python -m inference predict``: its options, the checks that must fail before any work, and the run
(:func:`inference.run.runner.run_predict`)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from inference.common.errors import InputError
from inference.common.names import escaped

#: predict's exit code when tomograms were attempted and none succeeded (the submission is written all the same)
EXIT_ALL_FAILED = 3


def _devices(text: str) -> tuple[int, ...] | str:
    """``all`` (or ``auto``): every visible GPU, counted at run time; else comma-separated ids."""
    if text.strip().lower() in ("all", "auto"):
        return "all"
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip() != "")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'all' or comma-separated GPU ids like 0,1, got {text!r}") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected 'all' or comma-separated GPU ids like 0,1, got {text!r}")
    return values


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def add_cli(sub) -> None:
    """Register ``predict`` on the main CLI's subparsers; ``func=run_cli``."""
    p = sub.add_parser(
        "predict", help="run the manifest's members over tomograms and write submission.csv",
        description="Run every member of a manifest over every tomogram source in --input (BYU slice folders, "
                    ".mrc/.rec/.map files, .npy volumes, OME-Zarr stores), decode candidate points, fuse members, "
                    "threshold, and write a submission.",
        epilog=f"Exit codes: 0 done (failed tomograms are named and written as -1); {EXIT_ALL_FAILED} every tomogram "
               "attempted failed (the submission is written all the same); 2 bad input or options, before any work "
               "(one error: line); 1 an unexpected error; 130 interrupted; 143 terminated (SIGTERM). After 130, 143 "
               "or a killed run, the same command resumes.",
    )
    p.add_argument("--manifest", required=True, type=Path, help="weights_manifest.yaml (paths inside are "
                   "relative to it)")
    p.add_argument("--input", required=True, type=Path, help="folder of tomogram sources (one sub-folder of "
                   "slice_NNNN.jpg per tomo_id, .mrc/.rec/.map/.npy files, .zarr OME-Zarr stores), a .txt file "
                   "listing sources one per line (paths, or fsspec URLs such as s3://.../TS_026.zarr), or a copick "
                   "project: its static root (holding ExperimentRuns/), the ExperimentRuns/ folder or its config "
                   "JSON (one tomogram per run, named by the run)")
    p.add_argument("--tomo-type", default="denoised", help="a copick input's tomogram type: "
                   "ExperimentRuns/<run>/VoxelSpacing<s>/<tomo-type>.zarr (default denoised)")
    p.add_argument("--output", required=True, type=Path, help="submission CSV to write")
    p.add_argument("--spacing-csv", type=Path, default=None, help="voxel spacings: train_labels format or "
                   "tomo_id,voxel_spacing; first source of spacing, before the MRC header and the default")
    p.add_argument("--default-spacing", type=float, default=None, help="Å, for tomograms with no spacing in "
                   "the CSV or a header (default: the manifest's default_spacing, 13.1 for BYU test data)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where models run (default cpu; "
                   "--devices implies cuda)")
    p.add_argument("--devices", type=_devices, default=None, help="GPUs, one worker process each: 'all' (every "
                   "GPU this process sees, counted at run time; Kaggle gives one or two T4s) or ids like 0,1 "
                   "(CUDA_VISIBLE_DEVICES order). A GPU whose worker cannot start is reported and skipped")
    p.add_argument("--workers", type=int, default=1, help="CPU worker processes (default 1; 0 runs in this "
                   "process, without crash isolation)")
    p.add_argument("--work-dir", type=Path, default=None, help="per-tomogram results, for resuming (default "
                   "<output>.work): reused when their inputs are unchanged, failed ones retried; one live run "
                   "at a time")
    p.add_argument("--restart", action="store_true", help="discard the results in the work folder and start over "
                   "(removes only the files a run wrote there)")
    p.add_argument("--retries", type=int, default=1, help="re-runs of a tomogram whose worker died (default 1)")
    p.add_argument("--read-retries", type=int, default=2, help="reads again of a source whose read failed with an "
                   "error that can pass by itself (EIO, a timeout, a dropped connection), after 0.2 s, 0.4 s, ... "
                   "(default 2)")
    p.add_argument("--deadline-h", type=float, default=None, help="time budget in hours from the start of predict: "
                   "when the projected finish exceeds it, drop TTA, then the lowest-weight members, then keep the "
                   "single fastest member; past it, start nothing more (the rest is written as -1). Kaggle: ~8.5")
    p.add_argument("--ort-provider", choices=("cuda", "tensorrt"), default="cuda",
                   help="ONNX Runtime GPU provider with --device cuda (default cuda)")
    p.add_argument("--fp16", action="store_true", help="let TensorRT build fp16 engines")
    p.add_argument("--engine-cache", type=Path, default=None, help="folder for TensorRT engine/timing caches "
                   "(a sub-folder per GPU and TensorRT version)")
    p.add_argument("--gpu-mem-limit-gb", type=_positive, default=None, help="most GPU memory ONNX Runtime's CUDA "
                   "arena may hold per worker, in GiB (default: 75%% of the GPU's memory; the rest stays free "
                   "for the volumes on CuPy's side)")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads on CPU "
                   "(default: all cores)")
    p.add_argument("--candidates-dir", type=Path, default=None, help="write <member>.csv per member (<member>@<tta>.csv "
                   "per TTA of a member with tta_merge: separate) and fused.csv when there are several here: "
                   "tomo_id,z,y,x,conf,voxel_spacing in original voxels")
    p.add_argument("--sample-submission", type=Path, default=None, help="write every tomo_id of this file "
                   "once, in its order (absent tomograms get -1)")
    p.add_argument("--decoder", default="auto", help="slice decoder: auto (fastest available), simplejpeg, cv2, "
                   "pil (default auto)")
    p.add_argument("--read-threads", type=int, default=None, help="threads decoding slices (default: "
                   "min(8, cores))")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (also off with -q)")
    _add_scale_options(p)
    p.set_defaults(func=run_cli)


def zarr_level(text: str) -> int | str:
    """``auto`` or a level index >= 0."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a level index 0, 1, ..., got {text!r}")
    return value


def _add_scale_options(p: argparse.ArgumentParser) -> None:
    """The options beyond one machine: OME-Zarr levels, the Ray backend, copick output."""
    g = p.add_argument_group("beyond one machine (OME-Zarr, Ray, copick)")
    g.add_argument("--zarr-level", type=zarr_level, default=0, help="OME-Zarr level to read: an index (default 0, "
                   "full resolution) or 'auto': the coarsest level not coarser than the finest spacing a member "
                   "resamples to (1%% tolerance). Coordinates are written in level-0 voxels either way")
    g.add_argument("--backend", choices=("local", "ray"), default="local", help="local: worker processes on this "
                   "machine (default); ray: one Ray actor per GPU (--devices) or CPU share (--workers), needs "
                   "pip install 'motorfinder[ray]'")
    g.add_argument("--ray-address", default=None, help="Ray cluster to join (host:6379, or ray://host:10001 for Ray "
                   "Client; default $RAY_ADDRESS, else a local Ray on this machine); implies --backend ray")
    g.add_argument("--copick-out", type=Path, default=None, help="also write every tomogram's fused points (Å) as "
                   "copick picks: DIR/ExperimentRuns/<tomo_id>/Picks/<user>_0_<object>.json")
    g.add_argument("--copick-object", default="flagellar-motor", help="copick object name (default flagellar-motor)")
    g.add_argument("--copick-user", default="motorfinder", help="copick user id (default motorfinder)")


def _scale_settings(args: argparse.Namespace) -> dict:
    """The PredictConfig fields of :func:`_add_scale_options`."""
    from inference.run.copick_out import check_name

    if args.copick_out is not None:
        check_name(args.copick_object, "object")
        check_name(args.copick_user, "user")
    return {"zarr_level": args.zarr_level, "backend": "ray" if args.ray_address else args.backend,
            "ray_address": args.ray_address, "copick_out": args.copick_out, "copick_object": args.copick_object,
            "copick_user": args.copick_user, "tomo_type": args.tomo_type}


def _check_predict_options(args) -> None:
    """Options that would otherwise fail every tomogram (or nothing): one line before any work."""
    from inference.io.image_decoders import get_decoder

    if args.deadline_h is not None and not (math.isfinite(args.deadline_h) and args.deadline_h > 0):
        raise InputError(None, f"--deadline-h {args.deadline_h} must be a number of hours > 0",
                         "pass the hours left, e.g. 8.5")
    if args.workers < 0 or args.retries < 0 or args.read_retries < 0:
        raise InputError(None, "--workers, --retries and --read-retries must be >= 0",
                         "pass e.g. --workers 2 --retries 1 --read-retries 2")
    for name in ("threads", "read_threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(None, f"--{name.replace('_', '-')} {value} must be >= 1",
                             "pass 1 or more, or leave it out")
    get_decoder(args.decoder)  # an unknown or missing decoder: its own one-line error, now


def run_cli(args) -> int:
    """Run ``predict`` from parsed arguments; prints the one-line result; returns the exit code."""
    from inference.engines.base import EngineOptions
    from inference.manifest.parse import load_manifest
    from inference.run.runner import PredictConfig, run_predict

    _check_predict_options(args)
    cfg = PredictConfig(
        manifest=load_manifest(args.manifest),
        input_dir=args.input,
        output=args.output,
        spacing_csv=args.spacing_csv,
        default_spacing=args.default_spacing,
        engine=EngineOptions(device="cuda" if args.devices else args.device, ort_provider=args.ort_provider,
                             fp16=args.fp16, cache_dir=args.engine_cache, threads=args.threads,
                             gpu_mem_limit_gb=args.gpu_mem_limit_gb),
        candidates_dir=args.candidates_dir,
        sample_submission=args.sample_submission,
        decoder=args.decoder,
        read_threads=args.read_threads,
        progress=not (args.no_progress or args.quiet),
        workers=args.workers,
        devices=args.devices if args.devices is not None else (() if args.device == "cpu" else (0,)),
        work_dir=args.work_dir,
        restart=args.restart,
        retries=args.retries,
        read_retries=args.read_retries,
        deadline_h=args.deadline_h,
        **_scale_settings(args),
    )
    result = run_predict(cfg)
    if result.all_failed:
        print(escaped(f"wrote {args.output}: every tomogram failed ({len(result.failures)}; the errors above name "
                      f"each); exit code {EXIT_ALL_FAILED}"))
        return EXIT_ALL_FAILED
    print(escaped(f"wrote {args.output}: {result.decision.describe()}; "
                  f"{len(result.failures)} failed; stages: {result.timer.summary()}"))
    return 0
