"""``python -m inference``: the command line. Each subcommand's ``--help`` documents every option.

Bad input ends with one line ``error: <file>: <problem>. Fix: <what to do>`` and exit code 2,
never a traceback from inside a library; a file that cannot be written (read-only folder, full
disk) too. Anything unexpected ends with one ``error:`` line and exit code 1; ``-v`` adds the
traceback.
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
from pathlib import Path

from inference import __version__, cli_scale
from inference.errors import EngineError, InputError, one_line, write_error

logger = logging.getLogger("inference")


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


def _add_predict(sub) -> None:
    p = sub.add_parser(
        "predict", help="run the manifest's members over tomograms and write submission.csv",
        description="Run every member of a manifest over every tomogram source in --input (BYU slice folders, "
                    ".mrc/.rec files, .npy volumes, OME-Zarr stores), decode candidate points, fuse members, "
                    "threshold, and write a submission.",
    )
    p.add_argument("--manifest", required=True, type=Path, help="weights_manifest.yaml (paths inside are "
                   "relative to it)")
    p.add_argument("--input", required=True, type=Path, help="folder of tomogram sources (one sub-folder of "
                   "slice_NNNN.jpg per tomo_id, .mrc/.rec/.npy files, .zarr OME-Zarr stores), or a .txt file "
                   "listing sources one per line (paths, or fsspec URLs such as s3://.../TS_026.zarr)")
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
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    cli_scale.add_options(p)
    p.set_defaults(func=_run_predict)


def _check_predict_options(args) -> None:
    """Options that would otherwise fail every tomogram (or nothing): one line before any work."""
    from inference.decoders import get_decoder

    if args.deadline_h is not None and not (math.isfinite(args.deadline_h) and args.deadline_h > 0):
        raise InputError(None, f"--deadline-h {args.deadline_h} must be a number of hours > 0",
                         "pass the hours left, e.g. 8.5")
    if args.workers < 0 or args.retries < 0:
        raise InputError(None, "--workers and --retries must be >= 0", "pass e.g. --workers 2 --retries 1")
    for name in ("threads", "read_threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(None, f"--{name.replace('_', '-')} {value} must be >= 1",
                             "pass 1 or more, or leave it out")
    get_decoder(args.decoder)  # an unknown or missing decoder: its own one-line error, now


def _run_predict(args) -> int:
    from inference.engines import EngineOptions
    from inference.manifest import load_manifest
    from inference.runner import PredictConfig, run_predict

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
        progress=not args.no_progress,
        workers=args.workers,
        devices=args.devices if args.devices is not None else (() if args.device == "cpu" else (0,)),
        work_dir=args.work_dir,
        restart=args.restart,
        retries=args.retries,
        deadline_h=args.deadline_h,
        **cli_scale.settings(args),
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


def _add_fuse(sub) -> None:
    p = sub.add_parser(
        "fuse", help="fuse candidate tables of several members into one (point WBF in Å)",
        description="Fuse saved candidate tables (tomo_id,z,y,x,conf,voxel_spacing) without re-running models. "
                    "Per tomogram, in Å: drop conf < --skip-conf, weight confs, cluster in descending weighted "
                    "conf (join the nearest fused point closer than --dist-A), fused conf avg or max. With "
                    "--manifest, the settings and each file's weight come from the manifest (files named "
                    "<member>.csv or <member>@<tta>.csv, as predict --candidates-dir writes them); options "
                    "given here override it.",
    )
    p.add_argument("--candidates", required=True, nargs="+", type=Path, help="candidate CSVs, one per member "
                   "(or per <member>@<tta>)")
    p.add_argument("--manifest", type=Path, default=None, help="take the fusion block and the weights (by file "
                   "name) from this manifest")
    p.add_argument("--weights", nargs="+", type=float, default=None, help="one weight per file (default all 1, "
                   "or the manifest's)")
    p.add_argument("--method", choices=("wbf", "wbf_iou"), default=None, help="wbf: point WBF by distance "
                   "(default); wbf_iou: ensemble_boxes 3D WBF on cubes of --box-A, for comparison")
    p.add_argument("--dist-A", type=float, default=None, help="wbf: join distance in Å (default 1000)")
    p.add_argument("--box-A", type=float, default=None, help="wbf_iou: cube side in Å (default 1000)")
    p.add_argument("--iou-thr", type=float, default=None, help="wbf_iou: IoU to join (default 0.55)")
    p.add_argument("--conf-type", choices=("avg", "max"), default=None, help="fused conf (default avg)")
    p.add_argument("--skip-conf", type=float, default=None, help="drop candidates below this conf (default 0)")
    p.add_argument("--rescale", choices=("members", "weights"), default=None, help="avg conf x min(n, files)/sum(w) "
                   "(members, default) or x min(n, sum(w))/sum(w) (weights: the 3rd-place WBF)")
    p.add_argument("--output", required=True, type=Path, help="fused candidate CSV to write")
    p.set_defaults(func=_run_fuse)


def _fuse_settings(args):
    """(Fusion, weights) from the options, over the manifest's when --manifest is given."""
    from dataclasses import replace

    from inference.manifest import Fusion, load_manifest

    fusion, weights = Fusion(), args.weights
    if args.manifest is not None:
        manifest = load_manifest(args.manifest, check_files=False)
        fusion = manifest.fusion
        if weights is None:
            known = manifest.input_weights()
            unknown = [str(p) for p in args.candidates if p.stem not in known]
            if unknown:
                raise InputError(unknown[0], f"no member or <member>@<tta> of {args.manifest} is named "
                                 f"'{Path(unknown[0]).stem}' (inputs: {', '.join(known)})",
                                 "name the files as predict --candidates-dir writes them, or pass --weights")
            weights = [known[p.stem] for p in args.candidates]
    given = {k: getattr(args, k) for k in ("method", "dist_A", "box_A", "iou_thr", "conf_type", "skip_conf", "rescale")}
    fusion = replace(fusion, **{k: v for k, v in given.items() if v is not None})
    if fusion.method == "wbf_iou" and fusion.rescale != "members":
        raise InputError(None, "--rescale weights applies to --method wbf only", "drop --rescale or use wbf")
    return fusion, weights or [1.0] * len(args.candidates)


def _run_fuse(args) -> int:
    from inference.candidates import load_candidates
    from inference.fusion import fuse_with
    from inference.submission import write_csv_atomic

    fusion, weights = _fuse_settings(args)
    if len(weights) != len(args.candidates):
        raise InputError(None, f"{len(args.candidates)} candidate files but {len(weights)} weights",
                         "give one --weights value per --candidates file")
    if any(w <= 0 for w in weights):
        raise InputError(None, f"weights must be > 0, got {weights}", "pass positive --weights")
    tables = [load_candidates(p) for p in args.candidates]
    fused = fuse_with(fusion, tables, weights, [str(p) for p in args.candidates])
    write_csv_atomic(fused, args.output)
    print(f"wrote {args.output}: {len(fused)} fused points in {fused['tomo_id'].nunique()} tomograms "
          f"from {sum(len(t) for t in tables)} candidates in {len(tables)} files")
    return 0


def _add_submit(sub) -> None:
    p = sub.add_parser(
        "submit", help="threshold a (fused) candidate table into submission.csv",
        description="Best candidate per tomogram; a tomogram is 'no motor' (-1) when its best conf is at or "
                    "below the threshold (only below it with --keep-equal; a quantile of the best confs, NumPy's "
                    "linear rule, or a fixed value). Every tomo_id of --sample-submission is written once, in "
                    "its order.",
    )
    p.add_argument("--candidates", required=True, type=Path, help="candidate CSV (e.g. fused.csv)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quantile", type=float, help="threshold = this quantile of the per-tomogram best confs "
                   "(0.55: 55%% of tomograms become 'no motor')")
    g.add_argument("--fixed", type=float, help="threshold = this conf")
    g.add_argument("--manifest", type=Path, default=None, help="the threshold block of this manifest "
                   "(quantile or fixed, and keep_equal)")
    p.add_argument("--keep-equal", action="store_true", help="a best conf equal to the threshold keeps its motor "
                   "(the 3rd-place rule)")
    p.add_argument("--sample-submission", required=True, type=Path, help="the competition's sample_submission.csv")
    p.add_argument("--output", required=True, type=Path, help="submission CSV to write")
    p.set_defaults(func=_run_submit)


def _run_submit(args) -> int:
    from dataclasses import replace

    from inference.candidates import load_candidates
    from inference.manifest import Threshold, load_manifest
    from inference.submission import best_per_tomogram, decide, submission_order, write_csv_atomic

    if args.manifest is not None:
        threshold = load_manifest(args.manifest, check_files=False).threshold
        if args.keep_equal:
            threshold = replace(threshold, keep_equal=True)
    elif args.quantile is None and args.fixed is None:
        raise InputError(None, "no threshold given", "pass --quantile Q, --fixed T or --manifest M")
    else:
        if args.quantile is not None and not 0.0 <= args.quantile <= 1.0:
            raise InputError(None, f"--quantile {args.quantile} is outside [0, 1]", "pass e.g. --quantile 0.55")
        threshold = Threshold(quantile=args.quantile, fixed=args.fixed, keep_equal=args.keep_equal)
    cands = load_candidates(args.candidates)
    order = submission_order(sorted(set(cands["tomo_id"])), args.sample_submission)
    decision = decide(best_per_tomogram(cands, order), threshold)
    write_csv_atomic(decision.submission, args.output)
    print(f"wrote {args.output}: {decision.describe()}")
    return 0


def _add_show(sub) -> None:
    p = sub.add_parser(
        "show", help="PNG of three orthogonal slabs through a tomogram's best candidate, candidates and truth marked",
        description="Three orthogonal thin slabs through the best candidate (over all files) of one tomogram, "
                    "each file's candidates in its own colour with its conf and the labelled motors as crosses: "
                    "what to open to see why a tomogram was a FP or FN.",
    )
    p.add_argument("--tomogram", required=True, type=Path, help="the tomogram source (slice folder, .mrc, .npy)")
    p.add_argument("--candidates", required=True, nargs="+", type=Path, help="candidate CSVs (members, fused)")
    p.add_argument("--labels", type=Path, default=None, help="train_labels-format CSV with the truth")
    p.add_argument("--tomo-id", default=None, help="tomo_id in the CSVs (default: the source's name)")
    p.add_argument("--slab-A", type=float, default=100.0, help="slab thickness in Å (default 100)")
    p.add_argument("--near-A", type=float, default=500.0, help="mark points within this distance of a plane "
                   "(default 500 Å)")
    p.add_argument("--out", required=True, type=Path, help="PNG to write")
    p.set_defaults(func=_run_show)


def _run_show(args) -> int:
    from inference import readers, scoring, show
    from inference.candidates import load_candidates

    vol = readers.read_volume(args.tomogram)
    tomo_id = args.tomo_id or vol.tomo_id
    tables = {}
    spacings = set()
    for p in args.candidates:
        df = load_candidates(p)
        df = df[df["tomo_id"] == tomo_id]
        spacings.update(df["voxel_spacing"].round(6))
        tables[p.stem] = df
    truth = None
    if args.labels is not None:
        lab = scoring.load_labels(args.labels)
        lab = lab[lab["tomo_id"] == tomo_id]
        spacings.update(lab["Voxel spacing"].round(6))
        xyz = lab[["Motor axis 0", "Motor axis 1", "Motor axis 2"]].to_numpy(float)
        truth = xyz[(xyz >= 0).all(axis=1)]
    if len(spacings) > 1:
        raise InputError(args.tomogram, f"the files disagree on the voxel spacing of {tomo_id}: {sorted(spacings)}",
                         "pass candidate and label files of the same run")
    spacing = spacings.pop() if spacings else (vol.header_spacing or readers.DEFAULT_SPACING_A)
    out = show.render(vol.data, float(spacing), tomo_id, tables, truth, args.out, slab_A=args.slab_A,
                      near_A=args.near_A)
    print(f"wrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from inference import doctor, scoring, synth

    parser = argparse.ArgumentParser(
        prog="python -m inference",
        description="Offline 3D point detection in cryo-ET tomograms (BYU flagellar motors).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    synth.add_cli(sub)
    scoring.add_cli(sub)
    _add_predict(sub)
    _add_fuse(sub)
    _add_submit(sub)
    _add_show(sub)
    _add_demo_models(sub)
    doctor.add_cli(sub)
    return parser


def add_log_flags(parser: argparse.ArgumentParser) -> None:
    """``-v``/``-q`` on ``parser`` and on each of its subcommands (before or after the subcommand)."""
    targets = [(parser, False)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):  # SUPPRESS: absent after the subcommand keeps the top's
            targets += [(sub, argparse.SUPPRESS) for sub in action.choices.values()]
    for p, default in targets:
        if "--verbose" not in p._option_string_actions:
            p.add_argument("-v", "--verbose", action="store_true", default=default,
                           help="debug logging (per-tomogram lines)")
            p.add_argument("-q", "--quiet", action="store_true", default=default, help="warnings and errors only")


class _TqdmSafeHandler(logging.StreamHandler):
    """Writes log lines through ``tqdm.write`` (when tqdm is there) so they never break a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm
        except ImportError:
            return super().emit(record)
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging must never raise (logging.Handler.handleError's contract)
            self.handleError(record)


def configure_logging(level: int) -> None:
    """Log to stderr as ``LEVEL name: message``, through tqdm; per-tomogram lines are DEBUG (``-v``).

    Like ``logging.basicConfig``: nothing changes where logging is configured already (a test runner).
    """
    handler = _TqdmSafeHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None,
                errors: tuple[type[BaseException], ...] = (InputError, EngineError)) -> int:
    """Parse, set up logging, run the chosen subcommand; ``errors`` end as one ``error:`` line, exit 2.

    Shared by ``python -m inference`` and ``python -m export``.
    """
    add_log_flags(parser)
    args = parser.parse_args(argv)
    configure_logging(logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main else None
    try:
        return int(args.func(args) or 0)
    except errors as exc:
        logger.debug("the traceback", exc_info=exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        resume = "; what was done is saved: rerun the same command to resume" if args.func is _run_predict else ""
        print(f"terminated (SIGTERM){resume}", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user; the traceback with -v
        return report_unexpected(exc)
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)


def report_unexpected(exc: Exception) -> int:
    """One ``error:`` line for an exception no check foresaw (the traceback at DEBUG, ``-v``); the exit code:
    2 for an OSError naming its file (a full disk, a read-only folder), 1 otherwise."""
    logger.debug("the traceback", exc_info=exc)
    if isinstance(exc, OSError) and exc.filename and exc.errno is not None:
        where = exc.filename2 or exc.filename  # a copy names its destination second
        print(f"error: {write_error(where, exc, 'cannot read or write')}", file=sys.stderr)
        return 2
    print(f"error: {one_line(exc)} (an unexpected error; -v shows the traceback)", file=sys.stderr)
    return 1


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler's stop, ``kill``): unwinds like Ctrl-C, so the submission is written on the way out."""


def _terminate(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)
