"""Benchmark the slice decoders on synthetic BYU-like JPEG slices.

Writes N 8-bit grayscale JPEG slices (smooth low-frequency structure plus spatially correlated
noise, like a binned cryo-ET slice; quality 90) to a temporary folder, then reads the folder
with ``inference.readers.read_slices`` for each available decoder at 1 and 2 threads, repeats,
and reports the median throughput in MB/s of decoded voxels (1 byte each) and its ratio to the
fastest configuration of the same run. Configurations are interleaved within each repeat so
that a noisy, shared machine penalises all of them alike.

    python bench/bench_decoders.py [--slices N] [--shape Y X] [--repeats R] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "decoders.md"
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


def run(args: argparse.Namespace) -> str:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from inference.decoders import available_decoders
    from inference.readers import read_slices

    decoders = available_decoders()
    thread_counts = (1, 2)
    configs = [(d, t) for d in decoders for t in thread_counts]
    times: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory(prefix="bench_decoders_") as tmp:
        folder = Path(tmp) / "tomo_bench"
        folder.mkdir()
        logger.info("writing %d slices of %dx%d", args.slices, *args.shape)
        nbytes_jpeg = write_slices(folder, args.slices, tuple(args.shape), args.quality)
        reference = None
        for decoder, threads in configs:  # warm-up (page cache, imports) and a sanity check
            vol = read_slices(folder, decoder=decoder, threads=threads)
            if reference is None:
                reference = vol
            elif not np.array_equal(vol, reference):
                logger.warning("%s decodes differently from %s (max diff %d)", decoder, configs[0][0],
                               int(np.abs(vol.astype(int) - reference).max()))
        decoded_mb = reference.nbytes / 1e6
        for r in range(args.repeats):
            logger.info("repeat %d/%d", r + 1, args.repeats)
            for config in configs:
                t0 = time.perf_counter()
                read_slices(folder, decoder=config[0], threads=config[1])
                times[config].append(time.perf_counter() - t0)

    mbps = {c: decoded_mb / statistics.median(ts) for c, ts in times.items()}
    best = max(mbps.values())
    lines = [
        "# Slice decoder benchmark",
        "",
        f"- command: `{shlex.join(['python', 'bench/bench_decoders.py', *sys.argv[1:]])}`",
        f"- date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} CPUs "
        f"(`os.cpu_count()`), Python {platform.python_version()}",
        f"- data: {args.slices} synthetic 8-bit gray JPEG slices of {args.shape[0]}x{args.shape[1]} (Y x X), "
        f"quality {args.quality}, {nbytes_jpeg / args.slices / 1024:.0f} KiB per slice on average; "
        f"{decoded_mb:.1f} MB decoded per read",
        f"- measure: `read_slices(folder, decoder=..., threads=...)`, median of {args.repeats} repeats "
        "(interleaved) after one warm-up; MB/s of decoded output (1e6 bytes)",
        "",
        "| decoder | version | threads | median s | MB/s | vs fastest |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for decoder, threads in configs:
        c = (decoder, threads)
        lines.append(f"| {decoder} | {version_of(decoder)} | {threads} | {statistics.median(times[c]):.3f} "
                     f"| {mbps[c]:.0f} | {mbps[c] / best:.2f} |")
    order = sorted(decoders, key=lambda d: -max(mbps[(d, t)] for t in thread_counts))
    lines += ["", f"Fastest first (best of 1 and 2 threads): {', '.join(order)}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=64, help="number of slices (default 64)")
    parser.add_argument("--shape", type=int, nargs=2, default=[960, 928], metavar=("Y", "X"),
                        help="slice size (default 960 928, the BYU median)")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality (default 90)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per configuration (default 5)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"Markdown output (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.slices < 2 or min(args.shape) < 8 or args.repeats < 1:
        parser.error("need --slices >= 2, --shape of at least 8 8 and --repeats >= 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    sys.stdout.write(report)
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
