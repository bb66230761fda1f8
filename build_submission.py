"""Build what a Kaggle competitor submits, check it locally, profile it, and run the whole mission.

For ``--target byu`` (default: BYU motors, a ``task: motors`` manifest) or ``czii`` (CZII particles, ``task:
particles``). Modes (``--help`` lists every option; docs/KAGGLE.md is the walk-through; code: kaggle_builder/):

* build (the default): ``python build_submission.py --manifest models/manifest.yaml --out build/`` writes
  ``build/dataset/`` (this package as a wheel, the manifest and its model files, optional TensorRT
  engines, the offline wheels of what the Kaggle image lacks, metadata) and ``build/notebook/`` (the
  notebook and ``kernel-metadata.json``). Every check runs before anything is written; the build
  replaces only folders it wrote itself.
* ``--dry-run``: build, then execute the notebook with nbclient in a simulated Kaggle tree on the CPU,
  installing into a fresh environment that holds only the Kaggle image's packages.
* ``--profile``: per-member, per-stage times measured here (CPU), projected (T4) to the hidden test set
  against the limit (byu 9 h, czii 12 h): ``build/profile/``.
* ``--demo``: synthetic data, demo detectors, predict and score, build, dry run, a quick profile, and a
  one-screen summary, under ``<out>/demo`` (czii: ``<out>/demo-czii``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from kaggle_builder import target as T

REPO_ROOT = Path(__file__).resolve().parent

FLOPS_MD = REPO_ROOT / "bench" / "results" / "flops.md"
# What each mode needs beyond the [cpu] extra (all in the dev extra), checked before any work.
NEEDS = {"build": ("setuptools", "nbformat"), "dry_run": ("nbclient", "ipykernel"), "profile": ("matplotlib",)}


def missing_tool(args) -> str | None:
    from importlib.util import find_spec

    profile_only = args.profile and not (args.dry_run or args.demo)
    modes = ([] if profile_only else ["build"]) + (["dry_run"] if args.dry_run or args.demo else [])
    modes += ["profile"] if args.profile or args.demo else []
    return next((m for mode in modes for m in NEEDS[mode] if find_spec(m) is None), None)


def by_target(field: str, fmt=str) -> str:  # a target-dependent default, for the help: "byu X, czii Y"
    return ", ".join(f"{t.name} {fmt(getattr(t, field))}" for t in T.TARGETS.values())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python build_submission.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", choices=tuple(T.TARGETS), default=T.BYU.name, help=f"the competition: byu (default; "
                   f"{T.BYU.title}) or czii ({T.CZII.title}); the manifest's task must be its (motors, particles)")
    mode = p.add_argument_group("mode (default: build)")
    mode.add_argument("--demo", action="store_true", help="the whole mission on synthetic data with the demo detectors "
                      "(CPU): predict, score, build, notebook dry run, quick profile, summary")
    mode.add_argument("--dry-run", action="store_true", help="build, then execute the notebook with nbclient in a "
                      "simulated Kaggle tree on synthetic test tomograms, on the CPU, installing into an environment "
                      "that holds only the Kaggle image's packages; check its submission.csv")
    mode.add_argument("--profile", action="store_true", help="per-member, per-stage run time measured here, projected "
                      f"to the hidden test set against the limit ({by_target('limit_h', '{:g} h'.format)}; "
                      "OUT/profile/)")

    b = p.add_argument_group("build")
    b.add_argument("--manifest", type=Path, default=REPO_ROOT / T.MANIFEST_NAME, help="the ensemble's manifest; its "
                   "member files must exist (default: the shipped weights_manifest.yaml, whose members come from "
                   "python -m export all)")
    b.add_argument("--out", type=Path, default=Path("build"), help="output folder (default build/): dataset/, "
                   "notebook/, dryrun/, profile/, demo/; the build replaces only folders it wrote (marked)")
    b.add_argument("--dataset-id", help=f"Kaggle dataset USER/SLUG (default {T.PLACEHOLDER_USER}/SLUG: "
                   f"{by_target('dataset_slug')}; the notebook looks in /kaggle/input/SLUG first)")
    b.add_argument("--kernel-id", help=f"Kaggle notebook USER/SLUG (default {T.PLACEHOLDER_USER}/SLUG: "
                   f"{by_target('kernel_slug')})")
    b.add_argument("--title", help=f"dataset title, 6-50 characters (default {by_target('dataset_title', repr)})")
    b.add_argument("--kernel-title", default=None, help="notebook title (default: the kernel slug with spaces; "
                   "Kaggle requires the slug to be the title lowercased with dashes)")
    b.add_argument("--license", default="other", help="dataset license, one of Kaggle's names (default 'other', "
                   "described as MIT in the dataset description)")
    b.add_argument("--engines", action="store_true", help="ship TensorRT engines found next to the ONNX files "
                   "(M*.engine with a sidecar built from that ONNX), named by GPU and TensorRT version; without "
                   "any, the notebook builds them at run time")
    b.add_argument("--fp32-engines", action="store_true", help="the notebook builds fp32 TensorRT engines "
                   "(default fp16: T4 tensor cores)")
    b.add_argument("--no-wheels", action="store_true", help="ship no offline wheels (default: every wheel the notebook "
                   "needs beyond the Kaggle image, onnxruntime-gpu included, for CPython 3.11 manylinux x86_64); "
                   "the build warns what the notebook then lacks")
    b.add_argument("--with-tensorrt", action="store_true", help="also ship the TensorRT 10 wheels for CUDA 12 "
                   "(tensorrt-cu12 and its -bindings, -libs, one pinned version; the -libs wheel comes from NVIDIA's "
                   "index, https://pypi.nvidia.com, unless --pip-extra-index-url names another)")
    b.add_argument("--pip-extra-index-url", action="append", default=[], metavar="URL", help="extra package "
                   "index for the wheel downloads (repeatable)")
    b.add_argument("--cache-dir", type=Path, default=None, help="downloaded wheels and the Kaggle image stand-in "
                   "(default $MOTORFINDER_CACHE, else ~/.cache/motorfinder)")
    b.add_argument("--gpus", type=int, default=2, help="GPUs the profile projects to (default 2: Kaggle's T4 x2); the "
                   "notebook's predict uses every visible GPU")
    b.add_argument("--budget-h", type=float, help="hours the notebook may take in all: predict's --deadline-h is "
                   f"this minus the time already spent (default {by_target('budget_h')})")
    b.add_argument("--public", action="store_true", help="make the notebook public (default private)")

    d = p.add_argument_group("dry run")
    d.add_argument("--dry-run-tomograms", type=int, help="synthetic test tomograms (default "
                   f"{by_target('dry_run_tomograms')})")
    d.add_argument("--dry-run-scale", type=float, help=f"their shape scale (default {by_target('dry_run_scale')})")
    d.add_argument("--dry-run-seed", choices=("image", "local"), default="image", help="what the environment the "
                   "notebook installs into holds: image (default) = the Kaggle image's packages at its versions "
                   "(kaggle_image_packages.txt; downloaded once), local = this environment's versions (offline)")
    d.add_argument("--dry-run-python", type=Path, default=None, help="a Python 3.11 (Kaggle's) for the dry run "
                   "(default: this one if it is 3.11, else python3.11 on PATH)")
    d.add_argument("--cell-timeout", type=int, default=900, help="seconds one notebook cell may run (default 900)")

    f = p.add_argument_group("profile")
    f.add_argument("--test-tomograms", type=int, help="tomograms to project to (default: the hidden test set's, "
                   f"{by_target('hidden_test_tomograms')})")
    f.add_argument("--cpu-machines", type=int, default=1, help="machines like this one the CPU row shares the "
                   "tomograms between (default 1)")
    f.add_argument("--profile-tomograms", type=int, default=2, help="synthetic tomograms measured (default 2)")
    f.add_argument("--profile-scale", type=float, default=1.0, help="their shape scale (default 1.0: real sizes; "
                   f"smaller is faster; scaled up to the real median tomogram, {by_target('median_shape')})")
    f.add_argument("--gpu-seconds-per-window", action="append", default=[], metavar="[NAME=]S", help="a measured "
                   "GPU time per window (all members, or NAME=S for one; repeatable): adds a projected T4 row")
    f.add_argument("--flops-md", type=Path, default=FLOPS_MD, help="FLOPs per window table (default "
                   "bench/results/flops.md; members not in it are counted from their ONNX)")

    g = p.add_argument_group("demo")
    g.add_argument("--n", type=int, help=f"--demo: synthetic test tomograms (default {by_target('demo_tomograms')})")
    g.add_argument("--seed", type=int, default=2025, help="--demo: synthetic data seed (default 2025)")
    g.add_argument("--scale", type=float, default=None, help="--demo: shape scale of the synthetic tomograms "
                   "(default: inference.synth's)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g.add_argument("-v", "--verbose", action="store_true", help="debug logging (per-tomogram lines)")
    g.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return p


def run(args) -> None:
    from kaggle_builder.build import build
    from kaggle_builder.config import BuildConfig
    from kaggle_builder.demo import run_demo
    from kaggle_builder.dry_run import dry_run
    from kaggle_builder.profile_run import run_profile

    progress, target = not args.no_progress, T.TARGETS[args.target]
    if args.demo:
        print(run_demo(args.out, target=target, n=args.n, seed=args.seed, scale=args.scale, progress=progress,
                       submission_kit=True, wheels=not args.no_wheels, env_seed=args.dry_run_seed,
                       flops_md=args.flops_md, cache_dir=args.cache_dir).render())
        return
    profile = dict(target=target, n_tomograms=args.test_tomograms, gpus=args.gpus, cpu_machines=args.cpu_machines,
                   budget_h=args.budget_h, profile_tomograms=args.profile_tomograms, scale=args.profile_scale,
                   gpu_seconds=args.gpu_seconds_per_window, flops_md=args.flops_md, progress=progress)
    if args.profile and not args.dry_run:
        print(run_profile(args.manifest, args.out / "profile", **profile).render())
        return
    built = build(BuildConfig(
        manifest=args.manifest, out=args.out, dataset_id=args.dataset_id, kernel_id=args.kernel_id, title=args.title,
        kernel_title=args.kernel_title, license=args.license, engines=args.engines, wheels=not args.no_wheels,
        tensorrt_wheels=args.with_tensorrt, extra_index_urls=tuple(args.pip_extra_index_url), gpus=args.gpus,
        budget_h=args.budget_h, fp16_engines=not args.fp32_engines, private=not args.public, target=target),
        cache_dir=args.cache_dir)
    print(built.render())
    if args.dry_run:
        print(dry_run(built, args.out / "dryrun", n=args.dry_run_tomograms, scale=args.dry_run_scale,
                      timeout_s=args.cell_timeout, progress=progress, env_seed=args.dry_run_seed,
                      python=args.dry_run_python, cache_dir=args.cache_dir).render())
    if args.profile:
        print(run_profile(args.manifest, args.out / "profile", **profile).render())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    from inference.cli.main import configure_logging, report_unexpected

    configure_logging(level)
    from inference.common.errors import EngineError, InputError
    from kaggle_builder.dry_run import DryRunError
    from kaggle_builder.package_wheel import WheelBuildError
    from kaggle_builder.profile import ProfileError

    if missing := missing_tool(args):
        print(f"error: build_submission.py needs {missing}, which is not installed. Fix: pip install -e '.[cpu,dev]' "
              f"(or pip install {missing})", file=sys.stderr)
        return 2
    try:
        run(args)
    except (InputError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (DryRunError, ProfileError, WheelBuildError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a full disk, a read-only folder, the unforeseen: one line
        return report_unexpected(exc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
