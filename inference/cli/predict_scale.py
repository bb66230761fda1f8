"""``predict`` options beyond one machine: OME-Zarr levels, the Ray backend, copick output.

Kept beside :mod:`inference.cli` so that module stays about the commands; ``_add_predict`` and
``_run_predict`` call :func:`add_options` and :func:`settings`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


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


def add_options(p: argparse.ArgumentParser) -> None:
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


def settings(args: argparse.Namespace) -> dict:
    """The PredictConfig fields these options set."""
    from inference.run.copick_out import check_name

    if args.copick_out is not None:
        check_name(args.copick_object, "object")
        check_name(args.copick_user, "user")
    return {"zarr_level": args.zarr_level, "backend": "ray" if args.ray_address else args.backend,
            "ray_address": args.ray_address, "copick_out": args.copick_out, "copick_object": args.copick_object,
            "copick_user": args.copick_user}
