"""The small subcommands: ``fuse`` and ``submit`` (re-fuse and re-threshold saved candidate tables),
``show`` (a PNG of one tomogram's candidates and truth) and ``demo-models`` (the demo ONNX detectors)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from inference.common.errors import InputError
from inference.common.names import escaped


def add_cli(sub) -> None:
    """Register ``fuse``, ``submit``, ``show`` and ``demo-models`` (in that order) on the main CLI's subparsers."""
    _add_fuse(sub)
    _add_submit(sub)
    _add_show(sub)
    _add_demo_models(sub)


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

    from inference.manifest.parse import load_manifest
    from inference.manifest.types import Fusion

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
    from inference.common.atomic import write_csv_atomic
    from inference.ensemble.candidates import load_candidates
    from inference.ensemble.fusion import fuse_with

    fusion, weights = _fuse_settings(args)
    if len(weights) != len(args.candidates):
        raise InputError(None, f"{len(args.candidates)} candidate files but {len(weights)} weights",
                         "give one --weights value per --candidates file")
    if any(w <= 0 for w in weights):
        raise InputError(None, f"weights must be > 0, got {weights}", "pass positive --weights")
    tables = [load_candidates(p) for p in args.candidates]
    fused = fuse_with(fusion, tables, weights, [str(p) for p in args.candidates])
    write_csv_atomic(fused, args.output)
    print(escaped(f"wrote {args.output}: {len(fused)} fused points in {fused['tomo_id'].nunique()} tomograms "
                  f"from {sum(len(t) for t in tables)} candidates in {len(tables)} files"))
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

    from inference.common.atomic import write_csv_atomic
    from inference.ensemble.candidates import load_candidates
    from inference.ensemble.submission import best_per_tomogram, decide, submission_order
    from inference.manifest.parse import load_manifest
    from inference.manifest.types import Threshold

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
    print(escaped(f"wrote {args.output}: {decision.describe()}"))
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
    g = p.add_argument_group("particle picks (a candidates or submission CSV with a particle_type column)")
    g.add_argument("--manifest", type=Path, default=None, help="the classes (colours, radii) of this task: particles "
                   "manifest (default: the CZII six)")
    g.add_argument("--tomo-type", default="denoised", help="with a copick project as --tomogram (and the run as "
                   "--tomo-id): its tomogram type (default denoised)")
    g.add_argument("--at-A", type=float, nargs=3, default=None, metavar=("Z", "Y", "X"),
                   help="the point the slabs go through, in Å (default: the volume's centre)")
    p.set_defaults(func=_run_show)


def _run_show(args) -> int:
    from inference.evaluate.particle_tables import has_particle_type_column

    if any(has_particle_type_column(p) for p in args.candidates):
        return _run_show_particles(args)
    from inference.ensemble.candidates import load_candidates
    from inference.evaluate import scoring, show
    from inference.io import readers
    from inference.io.spacing import DEFAULT_SPACING_A

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
    spacing = spacings.pop() if spacings else (vol.header_spacing or DEFAULT_SPACING_A)
    out = show.render(vol.data, float(spacing), tomo_id, tables, truth, args.out, slab_A=args.slab_A,
                      near_A=args.near_A)
    print(escaped(f"wrote {out}"))
    return 0


def _add_demo_models(sub) -> None:
    p = sub.add_parser(
        "demo-models", help="write the demo ONNX detectors and a manifest that uses them",
        description="Write small hand-designed ONNX detectors (no torch) that find the synthetic motors, plus "
                    "manifest.yaml. They are the embedded default of the demo and the tests. With --task particles: "
                    "seg.onnx, a 7-channel detector of the six CZII classes at stride 2 (for synth --task "
                    "particles), and its task: particles manifest.yaml.",
    )
    p.add_argument("--out", required=True, type=Path, help="folder to write demo3d.onnx (and demo2d.onnx) and "
                   "manifest.yaml into (particles: seg.onnx and manifest.yaml)")
    p.add_argument("--task", choices=("motors", "particles"), default="motors",
                   help="motors: the motor detectors (default); particles: the CZII multi-class detector")
    p.add_argument("--with-2d", action="store_true", help="motors: also write the 2d member and use both in the "
                   "manifest")
    p.set_defaults(func=_run_demo_models)


def _run_demo_models(args) -> int:
    if args.task == "particles":
        from inference.synth.particle_demo_model import write_particle_demo_models

        if args.with_2d:
            raise InputError(None, "--with-2d only applies to --task motors", "drop --with-2d")
        path = write_particle_demo_models(args.out)
    else:
        from inference.synth.demo_models import write_demo_models

        path = write_demo_models(args.out, with_2d=args.with_2d)
    print(escaped(f"wrote {path}"))
    return 0


def _run_show_particles(args) -> int:
    """``show`` of particle picks (:mod:`inference.evaluate.show_particles`)."""
    from inference.evaluate.particle_tables import load_particle_labels, load_particle_submission
    from inference.evaluate.show_particles import render_particles
    from inference.io import readers
    from inference.io.input_listing import list_input
    from inference.manifest.parse import load_manifest
    from inference.manifest.particle_classes import CZII_CLASSES, CZII_SPACING_A

    classes = CZII_CLASSES
    if args.manifest is not None:
        manifest = load_manifest(args.manifest, check_files=False)
        if manifest.particles is None:
            raise InputError(args.manifest, "not a task: particles manifest", "pass the manifest of the picks")
        classes = manifest.particles.classes
    found = list_input(args.tomogram, tomo_type=args.tomo_type, report=False)
    experiment = args.tomo_id or (found.id_of(found.sources[0]) if len(found.sources) == 1 else None)
    by_id = {found.id_of(s): s for s in found.sources}
    if experiment not in by_id:
        raise InputError(args.tomogram, f"holds {len(by_id)} tomogram(s) ({', '.join(sorted(by_id)[:5])}); "
                         f"{experiment!r} is none of them" if experiment else f"holds {len(by_id)} tomograms",
                         "pass --tomo-id with the run (experiment) to show")
    vol = readers.read_volume(by_id[experiment])
    picks = pd.concat([load_particle_submission(p, classes) for p in args.candidates], ignore_index=True)
    truth = None
    if args.labels is not None:
        truth = load_particle_labels(args.labels, classes).points
        truth = truth[truth["experiment"] == experiment]
    spacing = vol.header_spacing or CZII_SPACING_A
    out = render_particles(vol.data, float(spacing), experiment, classes, picks[picks["experiment"] == experiment],
                           truth, args.out, centre_A=args.at_A)
    print(escaped(f"wrote {out}"))
    return 0
