"""The sections of ``bench/gpu_check.py``: each runs what this machine has and says what it lacks.

A section returns a :class:`Section` (status ``ok``, ``failed``, ``not available here`` or
``skipped``) and never raises: one broken runtime must not hide the others' results.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kaggle_builder.profile import projection_hours
from kaggle_builder.target import BYU

ROOT = Path(__file__).resolve().parents[1]
NA = "not available here"


@dataclass
class Section:
    name: str
    status: str
    summary: str
    details: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)
    seconds: float = 0.0


@dataclass(frozen=True)
class Capabilities:
    """What the machine has: for each runtime None (usable) or why not."""

    cupy: str | None
    ort_cuda: str | None
    ort_trt: str | None
    tensorrt: str | None
    torch_cuda: str | None
    gpu_name: str | None = None


def capabilities(report, torch_problem: str | None) -> Capabilities:
    """From a doctor report (:func:`inference.run.doctor.collect`) and the torch probe."""
    ort = report.onnxruntime

    def provider(name):
        if ort.version is None:
            return f"onnxruntime {ort.problem}"
        check = ort.loads(name)
        if check is None:
            return f"onnxruntime {ort.version} has no {name} (the CPU build)"
        return None if check.loads else check.detail

    cuda = report.cuda
    return Capabilities(cupy=None if cuda.ok else (cuda.problem or "no GPU"), ort_cuda=provider("CUDAExecutionProvider"),
                        ort_trt=provider("TensorrtExecutionProvider"),
                        tensorrt=None if report.tensorrt.version else report.tensorrt.problem,
                        torch_cuda=torch_problem, gpu_name=cuda.gpus[0].name if cuda.gpus else None)


def torch_cuda_problem() -> str | None:
    try:
        import torch
    except ImportError as exc:
        return f"torch is not installed ({exc})"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    return None


# ------------------------------------------------------------------------------ kernels


def kernels_on_device(caps: Capabilities, out: Path, timeout_s: float) -> Section:
    """The GPU tests (kernel parity, CuPy vs CPU member candidates) under pytest, on this GPU; without
    pytest, a few parity cases of each kernel run here."""
    if caps.cupy:
        return Section("kernel parity on the device", NA, f"cupy: {caps.cupy}")
    import importlib.util

    if importlib.util.find_spec("pytest") is None:
        return inline_kernel_parity()
    junit = out / "gpu-tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", f"--junitxml={junit}",
           "tests/test_kernels.py", "tests/test_gpu_pipeline.py"]
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return Section("kernel parity on the device", "failed", f"pytest did not finish in {timeout_s:.0f} s")
    counts = junit_counts(junit)
    tail = proc.stdout.strip().splitlines()[-1:] or proc.stderr.strip().splitlines()[-1:]
    ok = proc.returncode == 0 and counts["tests"] > counts["skipped"]
    return Section("kernel parity on the device", "ok" if ok else "failed",
                   f"{counts['tests']} tests: {counts['failures']} failed, {counts['errors']} errors, "
                   f"{counts['skipped']} skipped (`{' '.join(cmd[2:])}`)", details=[f"pytest: {t}" for t in tail],
                   data=counts)


def inline_kernel_parity() -> Section:
    """Each kernel on a few cases against its NumPy reference (exact, as the emulated tests assert)."""
    import cupy as cp

    from kernels.accumulate import accumulate, accumulate_ref
    from kernels.nms import local_max_mask, local_max_mask_ref
    from kernels.resample import resample_normalize, resample_normalize_ref

    rng = np.random.default_rng(0)
    bad, n = [], 0
    for shape, src in (((37, 61, 53), 13.1), ((64, 200, 190), (16.0, 13.1, 6.5)), ((5, 7, 9), 19.7)):
        v = rng.integers(0, 256, shape).astype(np.uint8)
        ref = resample_normalize_ref(v, src, 16.0, 127.5, 60.0)
        got = resample_normalize(cp.asarray(v), src, 16.0, 127.5, 60.0).get()
        n += 1
        if not np.array_equal(got, ref):
            bad.append(f"resample {shape} {src}: max |diff| {np.abs(got - ref).max():.3g}")
    for method, mode in (("gather", "mean"), ("gather", "max"), ("atomic", "max")):
        outs = rng.standard_normal((11, 3, 4, 5)).astype(np.float32)
        starts = np.stack([rng.integers(0, c - d + 1, 11) for c, d in zip((5, 9, 7), (3, 4, 5))], axis=1)
        acc = rng.random((5, 9, 7)).astype(np.float32) if mode == "mean" else np.full((5, 9, 7), -np.inf, np.float32)
        cnt = rng.random((5, 9, 7)).astype(np.float32) if mode == "mean" else None
        a_r, c_r = acc.copy(), None if cnt is None else cnt.copy()
        accumulate_ref(a_r, c_r, outs, starts, 0.75, mode)
        a_g, c_g = cp.asarray(acc), None if cnt is None else cp.asarray(cnt)
        accumulate(a_g, c_g, cp.asarray(outs), starts, 0.75, mode, method=method)
        n += 1
        if not np.array_equal(a_g.get(), a_r):
            bad.append(f"accumulate {method} {mode}")
    for shape, kernel in (((20, 60, 60), 3), ((7, 9, 11), (3, 5, 1))):
        heat = (rng.integers(0, 5, shape) / 4).astype(np.float32)
        n += 1
        if not np.array_equal(local_max_mask(cp.asarray(heat), kernel, 0.5).get(), local_max_mask_ref(heat, kernel, 0.5)):
            bad.append(f"local_max_mask {shape} {kernel}")
    return Section("kernel parity on the device", "failed" if bad else "ok",
                   f"{n} cases in-process (pytest is not installed here): {len(bad)} differ", details=bad)


def junit_counts(path: Path) -> dict:
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if not path.is_file():
        return counts
    root = ET.parse(path).getroot()
    for suite in ([root] if root.tag == "testsuite" else list(root)):
        for key in counts:
            counts[key] += int(suite.get(key, 0))
    return counts


# ------------------------------------------------------------------ candidates on the demo ensemble


class Workspace:
    """Synthetic tomograms, the demo ensemble and its CPU-path candidates, built once."""

    def __init__(self, root: Path, n: int = 3):
        from inference.synth.demo_models import write_demo_models
        from inference.synth.generate import generate

        self.root = root
        generate(root / "data", n, 7, split="test", scale=0.15, progress=False)
        self.manifest_path = write_demo_models(root / "models", with_2d=True)
        self.reference = self.predict("cpu-reference", device="cpu")

    def predict(self, name: str, *, device: str, manifest=None, engine_factory=None, **engine):
        from inference.engines.base import EngineOptions
        from inference.manifest.parse import load_manifest
        from inference.run.runner import PredictConfig, run_predict

        cfg = PredictConfig(manifest=load_manifest(manifest or self.manifest_path), input_dir=self.root / "data" / "test",
                            output=self.root / name / "submission.csv", spacing_csv=self.root / "data" / "test_labels.csv",
                            engine=EngineOptions(device=device, **engine), progress=False, workers=0)
        t0 = time.perf_counter()
        result = run_predict(cfg, engine_factory=engine_factory)
        result.seconds = time.perf_counter() - t0
        return result


def compare_candidates(ref, got, conf_tol: float, min_conf: float = 0.1) -> list[str]:
    """Differences between two runs' candidates (members and fused): every point with conf >= min_conf
    in either must be in the other at the same position (1e-6 voxel), its conf within ``conf_tol``."""
    problems = []
    tables = dict(ref.member_candidates, fused=ref.fused)
    others = dict(got.member_candidates, fused=got.fused)
    for name, a in tables.items():
        b = others.get(name)
        if b is None:
            problems.append(f"{name}: missing")
            continue
        for tomo in sorted(set(a.tomo_id) | set(b.tomo_id)):
            pa = a[a.tomo_id == tomo][["z", "y", "x", "conf"]].to_numpy(float)
            pb = b[b.tomo_id == tomo][["z", "y", "x", "conf"]].to_numpy(float)
            for p, q, side in ((pa, pb, "reference"), (pb, pa, "this run")):
                for z, y, x, c in p[p[:, 3] >= min_conf]:
                    d = np.abs(q[:, :3] - (z, y, x)).max(axis=1) if len(q) else np.array([np.inf])
                    k = int(np.argmin(d))
                    if d[k] > 1e-6:
                        problems.append(f"{name} {tomo}: ({z:.1f}, {y:.1f}, {x:.1f}) conf {c:.4f} of the {side} "
                                        "has no match")
                    elif side == "reference" and abs(q[k, 3] - c) > conf_tol:
                        problems.append(f"{name} {tomo}: ({z:.1f}, {y:.1f}, {x:.1f}) conf {c:.5f} (reference) vs "
                                        f"{q[k, 3]:.5f}")
    return sorted(set(problems))


def candidates_section(title: str, problem: str | None, ws_factory, run, conf_tol: float) -> Section:
    """Run ``run(workspace)`` (a PredictResult) and compare it with the CPU path."""
    if problem:
        return Section(title, NA, problem)
    try:
        ws = ws_factory()
        got = run(ws)
    except ImportError as exc:
        return Section(title, NA, f"{exc}")
    except Exception as exc:  # any runtime error is this section's result, not the script's end
        return Section(title, "failed", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    diffs = compare_candidates(ws.reference, got, conf_tol)
    n = len(ws.reference.fused)
    head = (f"{len(ws.reference.results)} tomograms, {n} fused candidates; {got.seconds:.1f} s "
            f"(CPU path {ws.reference.seconds:.1f} s)")
    if diffs:
        return Section(title, "failed", f"{len(diffs)} difference(s): {head}", details=diffs[:20])
    return Section(title, "ok", f"candidates equal (positions exact, conf within {conf_tol:g}): {head}",
                   data={"seconds": got.seconds, "cpu_seconds": ws.reference.seconds})


def fixed_shape_onnx(src: Path, dst: Path, sample: tuple[int, ...], stride: int) -> Path:
    """A copy of a demo model with its window fixed (TensorRT engines take a fixed patch)."""
    import onnx

    model = onnx.load(str(src))
    for vi, dims in ((model.graph.input[0], sample), (model.graph.output[0], (1,) + tuple(d // stride for d in sample[1:]))):
        for d, v in zip(vi.type.tensor_type.shape.dim[1:], dims):
            d.ClearField("dim_param")
            d.dim_value = int(v)
    del model.graph.value_info[:]
    onnx.save(model, str(dst))
    return dst


def native_tensorrt_run(ws, fp16: bool = True):
    """Build a TensorRT engine per demo member (their windows fixed), then predict through them."""
    import yaml

    from export.tensorrt import build_engine
    from inference.engines.tensorrt_sidecar import BatchProfile
    from inference.manifest.parse import load_manifest
    from inference.run.tomogram import input_hint

    manifest = load_manifest(ws.manifest_path)
    data = yaml.safe_load(Path(ws.manifest_path).read_text())
    folder = ws.root / "engines"
    folder.mkdir(exist_ok=True)
    builds = {}
    for member, entry in zip(manifest.members, data["members"]):
        hint = input_hint(member)
        fixed = fixed_shape_onnx(member.model, folder / f"{member.name}.onnx", hint.sample, member.stride)
        t0 = time.perf_counter()
        build_engine(fixed, folder / f"{member.name}.engine", fp16=fp16, batch=BatchProfile(1, hint.batch, hint.batch))
        builds[member.name] = time.perf_counter() - t0
        entry["model"] = str(folder / f"{member.name}.engine")
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = ws.predict("native-tensorrt", device="cuda", manifest=path)
    result.build_seconds = builds
    return result


# ------------------------------------------------------------------------- throughput


def windows_per_tomogram(member, spacing: float = 13.1, shapes: list[tuple[int, int, int]] | None = None,
                         target_spacing: float = 16.0) -> float:
    """Mean engine windows per tomogram (all TTA transforms) over the real BYU shapes at ``spacing``: the
    member's own resample grid and window rule (:func:`kaggle_builder.cost.reference_windows`)."""
    from kaggle_builder.cost import reference_windows

    if shapes is None:
        import csv

        with open(ROOT / "inference" / "data" / "byu_tomograms_gt_v3.csv") as f:
            shapes = [(int(r["Z"]), int(r["Y"]), int(r["X"])) for r in csv.DictReader(f)]
    return sum(reference_windows(member, target_spacing, shape, spacing) for shape in shapes) / len(shapes)


def torch_throughput(member, seconds: float = 4.0) -> dict:
    """windows/s and peak memory of the member's torch module (export's registry, random weights) at its
    patch, fp32 (TF32 off, as a T4 computes) and fp16 (autocast): {"fp32": {...}, "fp16": {...}}."""
    import torch

    from export.models.registry import arch_for_member, build_model, resolve_arch

    arch = arch_for_member(member.name)
    if arch is None:
        raise LookupError(f"no export architecture for member {member.name}")
    model, spec = build_model(resolve_arch(arch), tuple(member.patch))
    torch.backends.cudnn.benchmark = False  # cuDNN's heuristics: no per-layer autotuning inside the time budget
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    model = model.cuda().eval()
    x = torch.randn((member.batch_size, spec.in_channels, *member.patch), device="cuda")
    out = {}
    for precision in ("fp32", "fp16"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=precision == "fp16"):
            model(x)  # warm-up
            torch.cuda.synchronize()
            n, t0 = 0, time.perf_counter()
            while n < 2 or time.perf_counter() - t0 < seconds and n < 50:
                model(x)
                torch.cuda.synchronize()
                n += 1
            elapsed = time.perf_counter() - t0
        out[precision] = {"windows_per_s": n * member.batch_size / elapsed,
                          "peak_gib": torch.cuda.max_memory_allocated() / 2**30, "calls": n,
                          "backend": f"torch {torch.__version__} eager, random weights, "
                                     + ("autocast fp16" if precision == "fp16" else "fp32 (TF32 off)")}
    del model, x
    torch.cuda.empty_cache()
    return out


def engine_throughput(member, options, seconds: float = 4.0) -> dict:
    """windows/s of the member's exported model through an inference engine (ONNX Runtime CUDA or
    TensorRT provider, or a native engine), CuPy batches; memory: what the device holds after the runs."""
    from dataclasses import replace

    import cupy as cp

    from inference.engines.registry import load_engine
    from inference.run.tomogram import input_hint

    hint = input_hint(member)
    free0 = cp.cuda.runtime.memGetInfo()[0]
    engine = load_engine(member.model, replace(options, input_hint=hint))
    x = cp.random.standard_normal((hint.batch, *hint.sample), dtype=cp.float32)
    sync = cp.cuda.Device().synchronize
    engine.run(x), engine.run(x)
    sync()
    n, t0 = 0, time.perf_counter()
    while n < 3 or time.perf_counter() - t0 < seconds and n < 50:
        engine.run(x)
        n += 1
        sync()
    elapsed = time.perf_counter() - t0
    held = free0 - cp.cuda.runtime.memGetInfo()[0]
    providers = getattr(engine, "providers", None)
    return {"windows_per_s": n * hint.batch / elapsed, "peak_gib": held / 2**30, "calls": n,
            "backend": f"{type(engine).__name__}" + (f" {providers[0]}" if providers else "")
            + (" fp16" if options.fp16 else "") + "; memory: held after the runs"}


# peak dense TFLOPS (fp32, fp16 tensor) by GPU name; the T4 is the projection's target
PEAK_TFLOPS = [
    (r"H200|H100.*(SXM|HBM3)", 67.0, 989.0), (r"H100", 51.0, 756.0), (r"A100", 19.5, 312.0),
    (r"L40S", 91.6, 362.0), (r"L4\b", 30.3, 121.0), (r"A10G?\b", 31.2, 125.0), (r"RTX 4090", 82.6, 165.0),
    (r"V100", 15.7, 125.0), (r"T4\b", 8.1, 65.0), (r"P100", 9.3, 18.7),
]


def peak_tflops(gpu_name: str | None) -> tuple[float, float] | None:
    for pattern, fp32, fp16 in PEAK_TFLOPS:
        if gpu_name and re.search(pattern, gpu_name):
            return fp32, fp16
    return None


def projected_hours(rows: list[dict], gpu_name: str | None, tomograms: int = BYU.hidden_test_tomograms,
                    gpus: int = 2) -> dict:
    """Hours of engine time for ``tomograms`` on ``gpus`` T4s per precision: measured seconds per window
    scaled by (this GPU's peak FLOPs / the T4's), times windows per tomogram, summed over members."""
    peak = peak_tflops(gpu_name)
    if peak is None:
        return {"error": f"peak FLOPs of {gpu_name!r} unknown: no projection"}
    t4 = peak_tflops("T4")
    out = {}
    for i, precision in enumerate(("fp32", "fp16")):
        ratio = peak[i] / t4[i]
        mine = [r for r in rows if r["precision"] == precision and r.get("windows_per_s")]
        members = {r["member"] for r in rows}
        if {r["member"] for r in mine} != members:
            continue
        seconds = sum(r["windows_per_tomogram"] / r["windows_per_s"] * ratio for r in mine)
        out[precision] = {"hours": projection_hours(seconds, tomograms, gpus), "seconds_per_tomogram_t4": seconds,
                          "flops_ratio": ratio}
    return out

