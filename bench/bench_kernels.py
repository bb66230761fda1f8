"""CUDA kernels (``kernels/``) vs their NumPy references vs the obvious CuPy compositions.

    python bench/bench_kernels.py [--repeats 5] [--cpu-repeats 9] [--shape Z Y X] [--out bench/results/kernels.md]

Realistic sizes: resample 300x960x928 uint8 at 13.1 -> 16 Å (+ affine normalize); accumulate 64
windows of 14x28x28 cells into a 16x60x58 heatmap (random overlapping starts); NMS on a 20x60x60
heatmap with kernel 3. GPU times are wall time with a device synchronize after each call (what
the pipeline pays, Python launch overhead included), data already on the device; the host ->
device copy of the volume is timed on its own row. Each GPU row also reports its parity with
the NumPy reference. Without CuPy or a GPU only the NumPy rows are measured and the report says
why CuPy was unavailable.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _measure import Spread, measure, spread
from _report import Report

ROOT = Path(__file__).resolve().parents[1]
LOADS: list[float] = []  # the load average at every CPU run


def cupy_status() -> tuple[object | None, str]:
    """``(cupy module or None, description)``; None when CuPy is missing or sees no device."""
    try:
        import cupy
    except ImportError as exc:
        return None, f"CuPy unavailable: not installed ({exc})"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except (cupy.cuda.runtime.CUDARuntimeError, cupy.cuda.driver.CUDADriverError) as exc:
        return None, f"CuPy {cupy.__version__} unavailable: no usable CUDA device ({exc})"
    if n < 1:
        return None, f"CuPy {cupy.__version__} unavailable: no CUDA device"
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return cupy, f"CuPy {cupy.__version__}, GPU 0: {name} (CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()})"


def time_cpu(variants: dict, repeats: int, number: int = 1) -> tuple[dict[str, Spread], dict[str, Spread]]:
    """Seconds per call of each variant (``repeats`` interleaved rounds of ``number`` calls, after a warm-up
    round), and each variant's speed against the first one (median of per-round ratios of CPU time: NumPy runs
    these in one thread, and CPU time is steadier than wall time on a shared machine)."""
    runs = measure({k: (lambda f=f: [f() for _ in range(number)]) for k, f in variants.items()}, repeats=repeats)
    LOADS.extend(runs.loads())
    first = next(iter(variants))
    return ({k: runs.wall(k).scaled(1 / number) for k in variants},
            {k: runs.speedup(first, k, "cpu") for k in variants})


def time_gpu(cp, fn, repeats: int, number: int = 1) -> Spread:
    """As :func:`time_cpu`, synchronizing the device before and after each batch (2 warm-ups: compile)."""
    fn(), fn()
    dev = cp.cuda.Device()
    dev.synchronize()
    times = []
    for _ in range(repeats):
        dev.synchronize()
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        dev.synchronize()
        times.append((time.perf_counter() - t0) / number)
    return spread(times)


def parity(got, ref) -> str:
    got = got.get() if hasattr(got, "get") else np.asarray(got)
    if got.shape != ref.shape:
        return f"shape {got.shape} != {ref.shape}"
    if np.array_equal(got, ref):
        return "exact"
    if got.dtype == np.bool_:
        return f"{int((got != ref).sum())} cells differ"
    return f"max abs diff {float(np.nanmax(np.abs(got.astype(np.float64) - ref))):.2e}"


class Table:
    """Rows of (op, size, implementation, seconds per call, speed vs the NumPy reference, parity)."""

    def __init__(self):
        self.rows: list[list[str]] = []
        self.base: dict[str, Spread] = {}
        self.metrics: dict[str, Spread] = {}

    def add(self, op, size, impl, seconds: Spread, check="", base=False, ratio=True, paired: Spread | None = None):
        """``paired``: the speed against the reference measured in the same rounds (CPU rows); otherwise
        the ratio of medians (GPU rows, measured on their own)."""
        if base:
            self.base[op] = seconds
        self.metrics[f"{op}: {impl} ms"] = seconds.scaled(1e3)
        speed = ""
        if paired is not None:
            speed = paired.fmt(2, "x")
            self.metrics[f"{op}: {impl} vs ref (CPU)"] = paired
        elif base:
            speed = "1.00x"
        elif ratio and op in self.base and seconds.median:
            speed = f"{self.base[op].median / seconds.median:.1f}x (ratio of medians)"
        self.rows.append([op, size, impl, seconds.scaled(1e3).fmt(3), speed, check])
        print(f"{op:12s} {impl:58s} {seconds.median * 1e3:10.3f} ms  {check}", flush=True)


def bench_resample(t: Table, cp, args):
    from inference.manifest.types import Normalize
    from inference.predict.resample import normalize, resample
    from kernels.resample import output_shape, resample_normalize, resample_normalize_ref

    shape, src, dst, mean, std = tuple(args.shape), args.src, args.dst, 127.5, 60.0
    vol = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    out_shape = output_shape(shape, src, dst)
    size = f"{'x'.join(map(str, shape))} u8 {src}->{dst} Å -> {'x'.join(map(str, out_shape))}"
    ref = resample_normalize_ref(vol, src, dst, mean, std)
    norm = Normalize("affine", mean, std)
    secs, speed = time_cpu({"ref": lambda: resample_normalize_ref(vol, src, dst, mean, std),
                            "pipeline": lambda: normalize(resample(vol, src, dst), norm)}, args.cpu_repeats)
    t.add("resample", size, "NumPy ref `kernels.resample.resample_normalize_ref`", secs["ref"], base=True,
          paired=speed["ref"])
    t.add("resample", size, "NumPy `inference.predict.resample` resample + normalize", secs["pipeline"],
          parity(normalize(resample(vol, src, dst), norm), ref), paired=speed["pipeline"])
    if cp is None:
        return
    import cupyx.scipy.ndimage as cnd

    dvol = cp.asarray(vol)
    t.add("resample", size, "host -> device copy of the uint8 volume (`cupy.asarray`)",
          time_gpu(cp, lambda: cp.asarray(vol), args.repeats), ratio=False)
    t.add("resample", size, "CUDA kernel `resample_normalize` (fused, 1 pass)",
          time_gpu(cp, lambda: resample_normalize(dvol, src, dst, mean, std), args.repeats),
          parity(resample_normalize(dvol, src, dst, mean, std), ref))
    t.add("resample", size, "CuPy `inference.predict.resample` (xp=cupy) resample + normalize",
          time_gpu(cp, lambda: normalize(resample(dvol, src, dst, xp=cp), norm, xp=cp), args.repeats),
          parity(normalize(resample(dvol, src, dst, xp=cp), norm, xp=cp), ref))
    zoom = tuple(m / n for m, n in zip(out_shape, shape))

    def cupyx_zoom():
        return (cnd.zoom(dvol, zoom, output=cp.float32, order=1, mode="nearest") - mean) / std
    t.add("resample", size, "`cupyx.scipy.ndimage.zoom(order=1)` + normalize (corner-aligned grid)",
          time_gpu(cp, cupyx_zoom, args.repeats), parity(cupyx_zoom(), ref) + " (other sample grid)")


def bench_accumulate(t: Table, cp, args):
    from kernels.accumulate import accumulate, accumulate_ref

    cells, n, dhw = (16, 60, 58), 64, (14, 28, 28)
    rng = np.random.default_rng(1)
    outs = rng.random((n,) + dhw).astype(np.float32)
    starts = np.stack([rng.integers(0, c - d + 1, n) for c, d in zip(cells, dhw)], axis=1)
    size = f"{n} x {'x'.join(map(str, dhw))} -> {'x'.join(map(str, cells))}"
    for mode, dtype in (("mean", np.float64), ("max", np.float32)):
        op = f"accumulate {mode}"
        init = 0.0 if mode == "mean" else -np.inf

        def fresh(xp):
            acc = xp.full(cells, init, dtype=dtype)
            return acc, (xp.zeros(cells, dtype=xp.float64) if mode == "mean" else None)

        acc_r, cnt_r = fresh(np)
        accumulate_ref(acc_r, cnt_r, outs, starts, 1.0, mode)
        acc, cnt = fresh(np)
        secs, _ = time_cpu({"ref": lambda: accumulate_ref(acc, cnt, outs, starts, 1.0, mode)}, args.cpu_repeats, 10)
        t.add(op, size, f"NumPy ref `accumulate_ref` ({np.dtype(dtype).name} acc)", secs["ref"], base=True)
        if cp is None:
            continue
        douts = cp.asarray(outs)
        for method in ("gather", "atomic"):
            a, c = fresh(cp)
            accumulate(a, c, douts, starts, 1.0, mode, method=method)
            check = parity(a, acc_r)
            a, c = fresh(cp)
            t.add(op, size, f"CUDA kernel `accumulate(method='{method}')`",
                  time_gpu(cp, lambda: accumulate(a, c, douts, starts, 1.0, mode, method=method), args.repeats, 20),
                  check)

        def cupy_loop(a, c):
            for o, (z, y, x) in zip(douts, starts.tolist()):
                region = (slice(z, z + dhw[0]), slice(y, y + dhw[1]), slice(x, x + dhw[2]))
                if mode == "mean":
                    a[region] += o
                    c[region] += 1.0
                else:
                    a[region] = cp.maximum(a[region], o)
        a, c = fresh(cp)
        cupy_loop(a, c)
        check = parity(a, acc_r)
        a, c = fresh(cp)
        t.add(op, size, "CuPy per-window slicing loop (as `inference.predict.windows`, xp=cupy)",
              time_gpu(cp, lambda: cupy_loop(a, c), args.repeats, 5), check)


def bench_nms(t: Table, cp, args):
    import scipy.ndimage as snd

    from kernels.nms import box_max, local_max_mask, local_max_mask_ref

    shape, k, min_conf = (20, 60, 60), 3, 0.02
    heat = np.random.default_rng(2).random(shape).astype(np.float32)
    size = f"{'x'.join(map(str, shape))}, kernel {k}"
    ref = local_max_mask_ref(heat, k, min_conf)

    def scipy_mask():
        return (heat == snd.maximum_filter(heat, size=k, mode="constant", cval=-np.inf)) & (heat >= np.float32(min_conf))
    secs, speed = time_cpu({"ref": lambda: local_max_mask_ref(heat, k, min_conf), "scipy": scipy_mask},
                           args.cpu_repeats, 20)
    t.add("nms", size, "NumPy ref `local_max_mask_ref`", secs["ref"], base=True, paired=speed["ref"])
    t.add("nms", size, "SciPy `ndimage.maximum_filter` + mask", secs["scipy"], parity(scipy_mask(), ref),
          paired=speed["scipy"])
    if cp is None:
        return
    import cupyx.scipy.ndimage as cnd

    dheat = cp.asarray(heat)
    t.add("nms", size, "CUDA kernel `local_max_mask`",
          time_gpu(cp, lambda: local_max_mask(dheat, k, min_conf), args.repeats, 50),
          parity(local_max_mask(dheat, k, min_conf), ref))

    def box_max_mask():
        return (dheat == box_max(dheat, k)) & (dheat >= np.float32(min_conf))
    t.add("nms", size, "CuPy `kernels.nms.box_max` (on the device) + mask",
          time_gpu(cp, box_max_mask, args.repeats, 50), parity(box_max_mask(), ref))

    def cupyx_mask():
        pooled = cnd.maximum_filter(dheat, size=k, mode="constant", cval=-np.inf)
        return (dheat == pooled) & (dheat >= np.float32(min_conf))
    t.add("nms", size, "`cupyx.scipy.ndimage.maximum_filter` + mask", time_gpu(cp, cupyx_mask, args.repeats, 50),
          parity(cupyx_mask(), ref))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="GPU repeats")
    ap.add_argument("--cpu-repeats", type=int, default=9, help="NumPy rounds (interleaved within each op)")
    ap.add_argument("--shape", type=int, nargs=3, default=[300, 960, 928], help="resample input (Z Y X) uint8")
    ap.add_argument("--src", type=float, default=13.1)
    ap.add_argument("--dst", type=float, default=16.0)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "kernels.md")
    args = ap.parse_args(argv)

    cp, status = cupy_status()
    print(status, flush=True)
    t = Table()
    bench_resample(t, cp, args)
    bench_accumulate(t, cp, args)
    bench_nms(t, cp, args)

    rep = Report("bench_kernels.py", "CUDA kernels vs NumPy references vs CuPy compositions", argv,
                 packages=["scipy", "cupy-cuda12x"])
    rep.record_loads(LOADS)
    for k, v in t.metrics.items():
        rep.metric(k, v)
    rep.add(f"- GPU: {status}",
            f"- measure: CPU rows: {args.cpu_repeats} rounds after a warm-up round, the implementations of one op "
            f"interleaved; GPU rows: {args.repeats} repeats after warm-up, wall time with a device synchronize (launch "
            "overhead included), inputs already on the device unless the row says otherwise; small ops time 10-50 "
            "calls per repeat; ms per call, median (min-max); `vs NumPy ref`: the reference's time over the row's, "
            "the median (min-max) of per-round ratios of CPU time where they ran in the same rounds (NumPy: one thread)", "")
    rep.table(["op", "size", "implementation", "ms per call", "vs NumPy ref", "parity with ref"],
              t.rows, "lllrrl")
    if cp is None:
        rep.add(f"Only the NumPy rows were measured: {status}. Run `python bench/bench_kernels.py` unchanged on a "
                "CUDA machine with CuPy for the GPU rows.", "")
    rep.add("Parity: `exact` means bit-identical to the NumPy reference. The cupyx zoom row samples a corner-aligned "
            "grid (`j * (n-1)/(m-1)`), not the pipeline's `j * t/s`, so its values differ by design; it is timed as the "
            "library alternative only. The accumulate rows keep adding into the same accumulator across repeats "
            "(timing only; parity is checked on a fresh one).")
    rep.write(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
