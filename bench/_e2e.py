"""The end-to-end comparison: our runner vs the straightforward pipeline on the same tomograms, the same
model and the same engine; on the CPU (``bench/bench_runner.py``) and on a GPU (``gpu_section``, a section
for ``bench/gpu_check.py``).

* Straightforward: the engine built from its file (as ours does), then per tomogram PIL decode (one thread), ``scipy.ndimage.zoom`` (order 1), z-score, MONAI
  ``sliding_window_inference`` (same patch, overlap and batch; a plain window loop where MONAI is not
  installed), argmax of the heatmap. Every step on the host, one after the other; the engine is the same
  object ours builds (on a GPU: ONNX Runtime's CUDA provider, host batches copied in).
* Ours: ``run_predict`` in-process (a prefetch thread reads and resamples tomogram k+1 while the engine
  runs on k), or with worker processes. On a GPU (``device='cuda'``) the volume is uploaded once and
  resampling, stitching and decoding run on the device.

What each machine can show: on a CPU the engine and the host stages share the same cores, so the
prefetch thread's work is not free and an engine-bound member gains at most its non-engine share
(the straightforward pipeline's wall / engine time). On a GPU, decode and resample on the host (or
the device) overlap the engine, so ours approaches engine time alone.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import yaml
from _measure import Runs, measure, ratios
from onnx import TensorProto, helper, numpy_helper

PATCH, OVERLAP = (64, 128, 128), 0.25
STRAIGHT = "straightforward"


def heavy_model(channels: int = 8, depth: int = 3) -> onnx.ModelProto:
    """An engine-bound stand-in for a UNet: 3x3x3 convs at full resolution, average-pooled to stride 16."""
    rng = np.random.default_rng(0)
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, "D", "H", "W"])
    out = helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["N", 1, "d", "h", "w"])
    nodes, inits, cur, cin = [], [], "input", 1
    for i in range(depth):
        w = (rng.standard_normal((channels, cin, 3, 3, 3)) / np.sqrt(27 * cin)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [helper.make_node("Conv", [cur, f"w{i}"], [f"c{i}"], pads=[1] * 6),
                  helper.make_node("Relu", [f"c{i}"], [f"r{i}"])]
        cur, cin = f"r{i}", channels
    inits.append(numpy_helper.from_array((rng.standard_normal((1, channels, 1, 1, 1)) * 0.1).astype(np.float32), "wh"))
    nodes += [helper.make_node("AveragePool", [cur], ["pooled"], kernel_shape=[16] * 3, strides=[16] * 3),
              helper.make_node("Conv", ["pooled", "wh"], ["heatmap"])]
    model = helper.make_model(helper.make_graph(nodes, "heavy", [inp], [out], initializer=inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 8)
    entry = model.metadata_props.add()
    entry.key, entry.value = "stride", "16"
    return model


def manifest_for(model_file: str, patch=PATCH, overlap: float = OVERLAP, tta=("zyx",)) -> dict:
    return {"target_spacing": 16.0, "members": [{
        "name": "m", "kind": "3d", "model": model_file, "patch": list(patch), "stride": 16, "overlap": overlap,
        "normalize": "zscore", "activation": "sigmoid", "tta": list(tta), "batch_size": 2,
        "decode": {"nms_kernel": 3, "min_conf": 0.0, "top_k": 5}}], "threshold": {"fixed": 0.5}}


class TimedEngine:
    """An engine that sums the seconds spent inside its calls (the straightforward pipeline's engine time);
    ``load()`` builds it anew from its file, as a script run from the command line does."""

    def __init__(self, path: Path, options, sync=None):
        self.path, self.options, self.sync, self.seconds, self.engine = path, options, sync, 0.0, None

    def load(self) -> None:
        from inference.engines.registry import load_engine

        self.engine = load_engine(self.path, self.options)

    def __call__(self, batch):
        t0 = time.perf_counter()
        out = self.engine(batch)
        if self.sync:
            self.sync()
        self.seconds += time.perf_counter() - t0
        return out


def plain_windows(vol: np.ndarray, engine, patch, overlap: float, batch: int, stride: int = 16) -> np.ndarray:
    """The obvious window loop: the volume zero-padded to whole windows and strides, windows every
    patch x (1 - overlap) (rounded to the stride), the last one at the end; outputs averaged per cell."""
    padded = [max(p, -(-n // stride) * stride) for n, p in zip(vol.shape, patch)]
    vol = np.pad(vol, [(0, m - n) for n, m in zip(vol.shape, padded)])
    starts = []
    for n, p in zip(padded, patch):
        step = max(stride, int(p * (1 - overlap)) // stride * stride)
        starts.append(sorted(set(range(0, n - p + 1, step)) | {n - p}))
    cells = tuple(n // stride for n in padded)
    acc, cnt = np.zeros(cells, np.float32), np.zeros(cells, np.float32)
    todo = [(z, y, x) for z in starts[0] for y in starts[1] for x in starts[2]]
    for i in range(0, len(todo), batch):
        chunk = todo[i:i + batch]
        out = np.asarray(engine(np.stack([vol[z:z + patch[0], y:y + patch[1], x:x + patch[2]] for z, y, x in chunk])[:, None]))
        for (z, y, x), o in zip(chunk, out[:, 0]):
            region = tuple(slice(a // stride, a // stride + d) for a, d in zip((z, y, x), o.shape))
            acc[region] += o
            cnt[region] += 1
    return acc / np.maximum(cnt, 1)


def straightforward(sources, spacings: dict, engine: TimedEngine, patch=PATCH, overlap: float = OVERLAP) -> dict:
    """Load the engine; then per tomogram PIL, scipy zoom, z-score, MONAI sliding window (or the plain loop),
    argmax. Returns the engine seconds."""
    from PIL import Image
    from scipy import ndimage

    engine.seconds = 0.0
    engine.load()
    for src in sources:
        files = sorted(src.glob("slice_*.jpg"), key=lambda p: int(p.stem.split("_")[1]))
        vol = np.stack([np.asarray(Image.open(f).convert("L")) for f in files])
        vol = ndimage.zoom(vol.astype(np.float32), spacings[src.name] / 16.0, order=1)
        vol = (vol - vol.mean()) / (vol.std() or 1.0)
        try:
            import torch
            from monai.inferers import sliding_window_inference
        except ImportError:
            heat = plain_windows(vol, engine, patch, overlap, 2)
        else:
            with torch.no_grad():
                heat = sliding_window_inference(torch.from_numpy(vol[None, None]), roi_size=patch, sw_batch_size=2,
                                                overlap=overlap, mode="constant",
                                                predictor=lambda b: torch.from_numpy(np.asarray(engine(b.numpy()))))
            heat = heat.numpy()
        np.unravel_index(int(np.argmax(heat)), heat.shape)
    return {"engine": engine.seconds}


def window_loop() -> str:
    try:
        import monai  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return "a plain window loop (MONAI is not installed)"
    return "MONAI `sliding_window_inference`"


def ours(manifest_path: Path, data: Path, workers: int, engine_options=None) -> dict:
    """One ``run_predict`` from an empty work folder; returns its stage totals (engine summed over workers)."""
    from inference.engines.base import EngineOptions
    from inference.manifest.parse import load_manifest
    from inference.run.runner import PredictConfig, run_predict

    with tempfile.TemporaryDirectory(prefix="e2e-") as tmp:
        res = run_predict(PredictConfig(manifest=load_manifest(manifest_path), input_dir=data / "test",
                                        output=Path(tmp) / "sub.csv", spacing_csv=data / "test_labels.csv",
                                        progress=False, workers=workers, engine=engine_options or EngineOptions()))
    return dict(res.timer.totals)


def make_data(root: Path, n: int, seed: int, scale: float) -> tuple[Path, list[Path], dict]:
    import pandas as pd

    from inference.synth.generate import generate

    data = root / "data"
    generate(data, n, seed, split="test", scale=scale, progress=False)
    labels = pd.read_csv(data / "test_labels.csv")
    return data, sorted((data / "test").iterdir()), dict(zip(labels["tomo_id"], labels["Voxel spacing"]))


def compare(root: Path, model: onnx.ModelProto, name: str, data: Path, sources, spacings, workers=(0, 1, 2),
            repeats: int = 5, engine_options=None, sync=None, progress=None) -> Runs:
    """Ours (in-process and ``workers`` processes) and the straightforward pipeline, interleaved."""
    from inference.engines.base import EngineOptions

    onnx.save(model, root / f"{name}.onnx")
    manifest = root / f"{name}.yaml"
    manifest.write_text(yaml.safe_dump(manifest_for(f"{name}.onnx")))
    options = engine_options or EngineOptions()
    engine = TimedEngine(root / f"{name}.onnx", options, sync)
    variants = {ours_label(w): (lambda w=w: ours(manifest, data, w, options)) for w in workers}
    variants[STRAIGHT] = lambda: straightforward(sources, spacings, engine)
    return measure(variants, repeats=repeats, progress=progress)


def ours_label(workers: int) -> str:
    return "ours, in-process" if workers == 0 else f"ours, {workers} worker process{'es' * (workers > 1)}"


def outside_engine(runs: Runs, name: str) -> list[float]:
    """Per round: wall seconds not spent inside engine calls (meaningful for one engine at a time)."""
    return [s.wall - s.value.get("engine", 0.0) for s in runs.samples[name]]


def rows(runs: Runs, n: int, report=None, prefix: str = "") -> list[list[str]]:
    """One table row per variant: wall, engine, outside the engine, CPU, tomograms/s, speed vs straightforward."""
    from _measure import ratios, spread

    keep = report.metric if report else (lambda k, v: v)
    out = []
    for name in runs.names:
        wall = keep(f"{prefix}{name} wall s", runs.wall(name))
        eng = keep(f"{prefix}{name} engine s", spread(runs.values(name, lambda s: s.value.get("engine", 0.0))))
        parallel = name.startswith("ours, 2")
        rest = "-" if parallel else keep(f"{prefix}{name} outside the engine s", spread(outside_engine(runs, name))).fmt(2)
        w_e = keep(f"{prefix}{name} wall / engine", ratios(runs.values(name), runs.values(name, lambda s: s.value["engine"])))
        speed = keep(f"{prefix}{name} vs {STRAIGHT}", runs.speedup(STRAIGHT, name))
        cpu = keep(f"{prefix}{name} CPU s", runs.cpu(name))
        cpu_speed = keep(f"{prefix}{name} vs {STRAIGHT} (CPU)", runs.speedup(STRAIGHT, name, "cpu"))
        out.append([name, wall.fmt(2), eng.fmt(2), rest, w_e.fmt(2), f"{n / wall.median:.3f}", speed.fmt(2, "x"),
                    cpu.fmt(1), cpu_speed.fmt(2, "x")])
    return out


HEADER = ["run", "wall s", "engine s (summed)", "outside the engine s", "wall / engine", "tomograms/s",
          "speed vs straightforward (wall)", "CPU s", "CPU time: straightforward / this"]


def findings(runs: Runs, report=None, prefix: str = "") -> list[str]:
    """The sentences the table supports: the non-engine share, what ours removed of it, the bound."""
    from _measure import ratios

    keep = report.metric if report else (lambda k, v: v)
    inproc = ours_label(0)
    bound = keep(f"{prefix}bound: straightforward wall / its engine",
                 ratios(runs.values(STRAIGHT), runs.values(STRAIGHT, lambda s: s.value["engine"])))
    removed = keep(f"{prefix}outside the engine: straightforward / ours in-process",
                   ratios(outside_engine(runs, STRAIGHT), outside_engine(runs, inproc)))
    eng = keep(f"{prefix}engine time: ours in-process / straightforward",
               ratios(runs.values(inproc, lambda s: s.value["engine"]), runs.values(STRAIGHT, lambda s: s.value["engine"])))
    speed = runs.speedup(STRAIGHT, inproc)
    cpu = runs.speedup(STRAIGHT, inproc, "cpu")
    return [f"the straightforward pipeline spends {100 * (1 - 1 / bound.median):.0f} % of its wall time outside the "
            f"engine, so no runner can gain more than {bound.fmt(2, 'x')} end to end with this engine; ours in-process "
            f"gains {speed.fmt(2, 'x')}: its time outside the engine is {removed.fmt(2, 'x')} smaller, while its "
            f"engine calls take {eng.fmt(2, 'x')} the straightforward pipeline's (the prefetch thread competes for "
            "the same cores)",
            f"in CPU time, the work itself and steady when other jobs share the cores, the straightforward pipeline "
            f"needs {cpu.fmt(2, 'x')} ours in-process"]


# ------------------------------------------------------------------------ the GPU form (bench/gpu_check.py)


def gpu_section(caps, out: Path, budget, n: int = 4, scale: float = 0.3, repeats: int = 5):
    """``bench/gpu_check.py``'s section "end to end vs the straightforward pipeline (GPU)": the heavy member on
    ONNX Runtime's CUDA provider, ours in-process with ``device='cuda'`` vs the straightforward pipeline
    (host decode, zoom and windows, the same CUDA engine), interleaved rounds while the budget allows."""
    import _gpu_sections as S

    title = "end to end vs the straightforward pipeline (GPU)"
    if caps.ort_cuda:
        return S.Section(title, S.NA, f"needs ONNX Runtime's CUDA provider: {caps.ort_cuda}")
    from inference.engines.base import EngineOptions

    sync = None
    if caps.cupy is None:  # CuPy usable: wait for the device inside the timed engine calls
        import cupy as cp

        sync = cp.cuda.Device().synchronize
    root = Path(tempfile.mkdtemp(prefix="gpu-e2e-", dir=out))
    data, sources, spacings = make_data(root, n, 77, scale)
    start = time.perf_counter()
    fits = max(1, min(repeats, int((budget.left() - 30) // 40)))  # ~40 s per round at these sizes on a T4-class GPU
    runs = compare(root, heavy_model(), "heavy", data, sources, spacings, workers=(0,), repeats=fits,
                   engine_options=EngineOptions(device="cuda"), sync=sync)
    table = ["| " + " | ".join(HEADER) + " |", "|---|" + "---:|" * (len(HEADER) - 1)]
    table += ["| " + " | ".join(r) + " |" for r in rows(runs, n)]
    speed = runs.speedup(STRAIGHT, ours_label(0))
    # ours' engine calls may return before the device finishes (streams): its own engine timer is no bound.
    # The straightforward pipeline's engine calls are synchronous (host arrays out): ours' wall over that
    # engine time says how close ours comes to running the engine alone (1.0).
    to_engine = ratios(runs.values(ours_label(0)), runs.values(STRAIGHT, lambda s: s.value["engine"]))
    details = table + ["", f"- {n} synthetic tomograms (scale {scale}), patch {'x'.join(map(str, PATCH))}, overlap "
                       f"{OVERLAP}, batch 2; {fits} interleaved rounds after a warm-up; straightforward windows: "
                       f"{window_loop()}", *(f"- {f}" for f in findings(runs)),
                       f"- ours' wall time over the straightforward pipeline's (synchronous) engine time: "
                       f"{to_engine.fmt(2)} (1.00: the engine alone)"]
    return S.Section(title, "ok", f"ours {speed.fmt(2, 'x')} vs straightforward; ours' wall / the engine's time "
                     f"{to_engine.median:.2f}", details=details, seconds=time.perf_counter() - start,
                     data={"speedup": speed.as_dict(), "wall_over_engine": to_engine.as_dict(), "rounds": fits})
