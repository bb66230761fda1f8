"""``python -m inference doctor``: what this machine can run, found by running it.

One line per library, named by its import name: Python, ``numpy``, ``onnxruntime`` with the
providers that actually load (for each provider the wheel lists, a session on a tiny model built
in memory, and ``get_providers()`` read back: ONNX Runtime falls back to the CPU without an
error), ``cupy`` with the CUDA runtime and driver versions and each visible GPU (name, memory,
compute capability), ``tensorrt``; and for a manifest, whether its TensorRT engines (their
sidecars) and the TensorRT provider's cache fit this GPU and TensorRT.

Exit 0 when ``--device`` can be used; else the report, then one line ``error: <reason>. Fix: <what
to do>`` and exit 2 (no traceback). Every probe takes an ``import_module`` so the logic is tested
with fake modules.
"""

from __future__ import annotations

import importlib
import logging
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from inference.common.errors import EngineError
from inference.engines import gpus
from inference.engines import ort_providers as prov

logger = logging.getLogger(__name__)

_NATIVE = (".engine", ".plan")


@dataclass
class ProviderCheck:
    name: str
    loads: bool
    detail: str = ""   # why not (and the fix), when it does not load


@dataclass
class OrtReport:
    version: str | None = None
    available: list[str] = field(default_factory=list)
    providers: list[ProviderCheck] = field(default_factory=list)
    problem: str | None = None

    def loads(self, provider: str) -> ProviderCheck | None:
        return next((p for p in self.providers if p.name == provider), None)

    def describe(self) -> str:
        if self.version is None:
            return f"onnxruntime: {self.problem}"
        if self.problem:
            return f"onnxruntime {self.version}: lists {', '.join(self.available)}; {self.problem}"
        ok = [p.name for p in self.providers if p.loads]
        text = f"onnxruntime {self.version}: providers that load: {', '.join(ok) or 'none'}"
        for p in self.providers:
            if not p.loads:
                text += f"\n  {p.name} is listed but does not load: {p.detail}"
        return text


@dataclass
class TensorRTReport:
    version: str | None = None      # the tensorrt module's
    libs_version: str | None = None  # the libraries' (tensorrt_libs wheel), which ONNX Runtime's provider uses
    problem: str | None = None

    def describe(self) -> str:
        libs = f" (libraries {self.libs_version})" if self.libs_version else ""
        if self.version is None:
            return f"tensorrt: {self.problem}{libs}"
        return f"tensorrt {self.version}{libs}"


@dataclass
class MemberCheck:
    member: str
    model: str
    ok: bool
    detail: str


@dataclass
class Report:
    python: str
    numpy: str
    onnxruntime: OrtReport
    cuda: gpus.CudaStatus
    tensorrt: TensorRTReport
    members: list[MemberCheck] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"python {self.python}", f"numpy {self.numpy}", self.onnxruntime.describe(), self.cuda.describe()]
        out += [f"  {g.describe()}" for g in self.cuda.gpus]
        if self.cuda.problem and self.cuda.cupy_version is not None:
            out.append(f"  fix: {self.cuda.fix}")
        out.append(self.tensorrt.describe())
        for m in self.members:
            out.append(f"member {m.member} ({m.model}): {'ok' if m.ok else 'NOT OK'}: {m.detail}")
        return out

    def to_dict(self) -> dict:
        return asdict(self)


# ------------------------------------------------------------------------------------ probes


def tiny_model() -> bytes:
    """y = x + x on a (1, 4) float tensor: every provider can run it."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "doctor", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by every onnxruntime this package supports
    onnx.checker.check_model(model)
    return model.SerializeToString()


def probe_onnxruntime(import_module: Callable = importlib.import_module) -> OrtReport:
    try:
        ort = import_module("onnxruntime")
    except ImportError as exc:
        return OrtReport(problem=f"not installed ({exc})")
    import numpy as np

    report = OrtReport(version=str(getattr(ort, "__version__", "?")), available=list(ort.get_available_providers()))
    try:
        model = tiny_model()
    except ImportError as exc:
        report.problem = f"providers not probed: the probe model needs onnx ({exc})"
        return report
    gpu = any(p in report.available for p in (prov.CUDA, prov.TRT))
    if gpu and hasattr(ort, "preload_dlls"):
        ort.preload_dlls()
    if prov.TRT in report.available:
        prov.preload_tensorrt_libs(import_module)
    for name in report.available:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        try:
            session = ort.InferenceSession(model, sess_options=so, providers=[name])
            active = list(session.get_providers())
            if not active or active[0] != name:
                why, fix = prov.diagnose(ort, name)
                report.providers.append(ProviderCheck(name, False, f"{why}. Fix: {fix}"))
                continue
            (y,) = session.run(None, {"x": np.ones((1, 4), np.float32)})
            if not np.array_equal(np.asarray(y), np.full((1, 4), 2.0, np.float32)):
                report.providers.append(ProviderCheck(name, False, f"wrong result {np.asarray(y).tolist()}"))
                continue
            report.providers.append(ProviderCheck(name, True))
        except Exception as exc:  # ORT's own error types (Fail, EPFail, ...): reported, never raised
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            report.providers.append(ProviderCheck(name, False, f"session failed: {first}"))
    return report


def probe_tensorrt(import_module: Callable = importlib.import_module) -> TensorRTReport:
    libs = prov.tensorrt_version(import_module=_raise_import)
    try:
        trt = import_module("tensorrt")
    except ImportError as exc:
        return TensorRTReport(libs_version=libs, problem=f"not installed ({exc})")
    return TensorRTReport(version=str(getattr(trt, "__version__", "?")), libs_version=libs)


def _raise_import(name: str):
    raise ImportError(name)  # tensorrt_version: read the wheel's metadata only, never import the bindings


def check_members(manifest_path: Path, cuda: gpus.CudaStatus, trt: TensorRTReport, ort_provider: str,
                  cache_dir: Path | None) -> list[MemberCheck]:
    """Per member: its model file, and for TensorRT whether the engine or cache fits every visible GPU."""
    from inference.engines.tensorrt_sidecar import check_sidecar
    from inference.manifest.parse import load_manifest

    manifest = load_manifest(manifest_path, check_files=False)
    out = []
    for m in manifest.members:
        model = Path(m.model)
        if not model.is_file():
            out.append(MemberCheck(m.name, model.name, False, f"{model} not found"))
            continue
        if model.suffix.lower() in _NATIVE:
            if trt.version is None:
                out.append(MemberCheck(m.name, model.name, False, "a TensorRT engine, and tensorrt is not importable"))
                continue
            if not cuda.gpus:
                out.append(MemberCheck(m.name, model.name, False, "a TensorRT engine needs a GPU"))
                continue
            reasons, by_cc = [], {}  # one check (and one read of the engine) per compute capability
            for g in cuda.gpus:
                if g.compute_capability not in by_cc:
                    try:
                        check_sidecar(model, trt_version=trt.version, compute_capability=g.compute_capability)
                        by_cc[g.compute_capability] = None
                    except EngineError as exc:
                        by_cc[g.compute_capability] = str(exc)
                if by_cc[g.compute_capability]:
                    reasons.append(f"GPU {g.index}: {by_cc[g.compute_capability]}")
            out.append(MemberCheck(m.name, model.name, not reasons,
                                   "; ".join(reasons) or f"engine fits this TensorRT {trt.version} and GPU(s)"))
        elif ort_provider == "tensorrt" and cache_dir is not None and cuda.gpus:
            version = trt.libs_version or trt.version
            notes = []
            for g in cuda.gpus:
                folder = prov.tensorrt_cache_dir(cache_dir, g.name, g.compute_capability, version)
                n = len(list(folder.glob("*.engine"))) if folder.is_dir() else 0
                notes.append(f"GPU {g.index}: {n} cached engine(s) in {folder}" + ("" if n else
                             " (the first run builds them: minutes per member)"))
            out.append(MemberCheck(m.name, model.name, True, "; ".join(notes)))
        else:
            out.append(MemberCheck(m.name, model.name, True, "ONNX model present"))
    return out


def collect(manifest: Path | None = None, ort_provider: str = "cuda", cache_dir: Path | None = None,
            import_module: Callable = importlib.import_module) -> Report:
    import numpy

    cuda = gpus.probe(import_module)
    trt = probe_tensorrt(import_module)
    report = Report(python=f"{platform.python_version()} ({platform.platform()})", numpy=numpy.__version__,
                    onnxruntime=probe_onnxruntime(import_module), cuda=cuda, tensorrt=trt)
    if manifest is not None:
        report.members = check_members(manifest, cuda, trt, ort_provider, cache_dir)
    return report


_ORT_GPU = f"pip uninstall -y onnxruntime && pip install {prov._ORT_GPU_PIN} (CUDA 12)"


def verdict(report: Report, device: str, ort_provider: str = "cuda") -> tuple[str, str] | None:
    """None when ``device`` can be used (for the manifest's members, if any), else (reason, fix)."""
    native = [m for m in report.members if Path(m.model).suffix.lower() in _NATIVE]
    onnx = [m for m in report.members if m not in native]
    missing = [m for m in onnx if not m.ok]
    if missing:
        return (f"member {missing[0].member}: {missing[0].detail}",
                "export it (python -m export all --manifest M --checkpoints DIR) or correct its path in the manifest")
    if device == "cpu":
        if native:
            return (f"member {native[0].member} is a TensorRT engine, which runs on a GPU only",
                    "point the manifest at the member's .onnx for the CPU")
        return _provider_verdict(report.onnxruntime, prov.CPU, "pip install --force-reinstall 'motorfinder[cpu]'")
    if device != "cuda":
        return f"unknown device {device!r}", "use --device cpu or --device cuda"
    # ONNX members (or no manifest: the default, ONNX members) need ONNX Runtime's GPU provider
    ort = (_provider_verdict(report.onnxruntime, prov.PROVIDERS.get(ort_provider, prov.CUDA),
                             f"{_ORT_GPU}, or run with --device cpu") if onnx or not report.members else None)
    if not report.cuda.ok:
        if ort is not None:  # the GPU stack is missing, not one piece: the extra that brings it all
            return (f"cupy: {report.cuda.problem}; {ort[0]}",
                    "pip install 'motorfinder[gpu]' (CUDA 12: CuPy, onnxruntime-gpu 1.26, TensorRT 10; uninstall the "
                    "CPU onnxruntime first: pip uninstall -y onnxruntime), or run with --device cpu")
        return f"cupy: {report.cuda.problem}", report.cuda.fix or "run with --device cpu"
    if native and report.tensorrt.version is None:
        return (f"member {native[0].member} is a TensorRT engine and tensorrt is {report.tensorrt.problem}",
                "pip install tensorrt-cu12==10.* (Kaggle: the bundle's wheels), or use the member's .onnx")
    unfit = [m for m in native if not m.ok]
    if unfit:
        return (f"member {unfit[0].member}: {unfit[0].detail}",
                "rebuild the engine on this machine (python -m export tensorrt), or use the member's .onnx")
    return ort


def _provider_verdict(ort: OrtReport, wanted: str, install: str) -> tuple[str, str] | None:
    if ort.version is None:
        return f"onnxruntime is {ort.problem}", install
    if ort.problem:
        return f"onnxruntime {ort.version}: {ort.problem}", "pip install onnx"
    check = ort.loads(wanted)
    if check is None:
        return f"onnxruntime {ort.version} has no {wanted}", install
    if not check.loads:
        why, _, fix = check.detail.partition(". Fix: ")
        return f"{wanted} does not load: {why}", fix or install
    return None
