"""Benchmark the slice decoders on synthetic BYU-like JPEG slices.

Writes N 8-bit grayscale JPEG slices (smooth low-frequency structure plus spatially correlated
noise, like a binned cryo-ET slice; quality 90) to a temporary folder, then reads the folder
with ``inference.io.readers.read_slices`` for each available decoder at 1 and 2 threads: every
configuration once per round (interleaved, rotated), ``--repeats`` rounds after a warm-up round.
Reports MB/s of decoded voxels (1 byte each), median (min-max), each configuration against the
fastest one and 2 threads against 1, both as medians of per-round ratios.

    python bench/bench_decoders.py [--slices N] [--shape Y X] [--repeats R] [--out FILE]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from importlib import metadata
from pathlib import Path

import numpy as np
from _measure import measure, spread
from _report import Report

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"simplejpeg": "simplejpeg", "cv2": "opencv-python-headless", "pil": "pillow"}

logger = logging.getLogger("bench_decoders")


def write_slices(folder: Path, n: int, shape: tuple[int, int], quality: int, seed: int = 0) -> int:
    """Write n synthetic slices as slice_0000.jpg ...; return the total bytes written."""
    import cv2

    rng = np.random.default_rng(seed)
    y, x = shape
    structure = cv2.GaussianBlur(rng.normal(0, 1, (y, x)).astype(np.float32), (0, 0), 25)
    structure *= 15 / structure.std()
    total = 0
    for z in range(n):
        noise = cv2.GaussianBlur(rng.normal(0, 1, (y, x)).astype(np.float32), (0, 0), 1.5)
        noise *= 30 / noise.std()
        drift = np.roll(structure, 3 * z, axis=1)  # the structure changes slowly along z
        img = np.clip(128 + drift + noise, 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("OpenCV could not encode a JPEG")
        (folder / f"slice_{z:04d}.jpg").write_bytes(buf.tobytes())
        total += buf.nbytes
    return total


def version_of(decoder: str) -> str:
    try:
        return metadata.version(PACKAGES[decoder])
    except metadata.PackageNotFoundError:
        return "?"


def run(args: argparse.Namespace, argv) -> Report:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from inference.io.image_decoders import available_decoders
    from inference.io.readers import read_slices

    decoders = available_decoders()
    configs = {f"{d}, {t} thread{'s' * (t > 1)}": (d, t) for d in decoders for t in (1, 2)}
    with tempfile.TemporaryDirectory(prefix="bench_decoders_") as tmp:
        folder = Path(tmp) / "tomo_bench"
        folder.mkdir()
        nbytes_jpeg = write_slices(folder, args.slices, tuple(args.shape), args.quality)
        reference = read_slices(folder, decoder=decoders[0], threads=1)
        for d in decoders[1:]:  # a sanity check: every decoder gives the same voxels (or says how far off)
            vol = read_slices(folder, decoder=d, threads=1)
            if not np.array_equal(vol, reference):
                logger.warning("%s decodes differently from %s (max diff %d)", d, decoders[0],
                               int(np.abs(vol.astype(int) - reference).max()))
        variants = {name: (lambda d=d, t=t: read_slices(folder, decoder=d, threads=t)) for name, (d, t) in configs.items()}
        runs = measure(variants, repeats=args.repeats, warmup=1, progress=logger.info)
    mb = reference.nbytes / 1e6
    rate = {name: spread([mb / w for w in runs.values(name)]) for name in configs}
    ref = decoders[0]  # the default (--decoder auto) for JPEG
    rep = Report("bench_decoders.py", "Slice decoders", argv, packages=[PACKAGES[d] for d in decoders])
    rep.record_loads(runs.loads())
    rep.add(f"- data: {args.slices} synthetic 8-bit gray JPEG slices of {args.shape[0]} x {args.shape[1]} (Y x X), "
            f"quality {args.quality}, {nbytes_jpeg / args.slices / 1024:.0f} KiB per slice on average; "
            f"{mb:.1f} MB decoded per read",
            f"- measure: `read_slices(folder, decoder=..., threads=...)`, {args.repeats} interleaved rounds after a "
            "warm-up round; median (min-max). MB/s: decoded output (1e6 bytes) over wall time. The decoders are "
            f"compared by CPU time ({ref}'s CPU time over the row's, per round, at the same thread count: steady on "
            "a shared machine); the second thread's gain is a wall-time ratio, and needs a free second core", "")
    rows = []
    for name, (d, t) in configs.items():
        rep.metric(f"{name} MB/s", rate[name])
        cpu_ms = rep.metric(f"{name} CPU ms per slice", spread([1e3 * c / args.slices for c in runs.values(name, "cpu")]))
        same = f"{ref}, {t} thread{'s' * (t > 1)}"
        vs = rep.metric(f"{name} vs {same} (CPU)", runs.speedup(same, name, "cpu"))
        two = "" if t == 1 else rep.metric(f"{d} 2 threads vs 1 (wall)", runs.speedup(f"{d}, 1 thread", name)).fmt(2, "x")
        rows.append([d, version_of(d), t, rate[name].fmt(0), cpu_ms.fmt(2), vs.fmt(2), two])
    rep.table(["decoder", "version", "threads", "MB/s (wall)", "CPU ms per slice", f"speed vs {ref} (CPU time)",
               "2 threads vs 1 (wall)"], rows, "llrrrrr")
    order = sorted(decoders, key=lambda d: min(rep.metrics[f"{d}, 1 thread CPU ms per slice"].median, 1e9))
    rep.add(f"Least CPU per slice first (1 thread, median): {', '.join(order)}.")
    return rep


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=64, help="number of slices (default 64)")
    parser.add_argument("--shape", type=int, nargs=2, default=[960, 928], metavar=("Y", "X"),
                        help="slice size (default 960 928, the BYU median)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds (default 15)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "decoders.md")
    args = parser.parse_args(argv)
    if args.slices < 2 or min(args.shape) < 8 or args.repeats < 1:
        parser.error("need --slices >= 2, --shape of at least 8 8 and --repeats >= 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    run(args, argv).write(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
