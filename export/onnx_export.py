"""One member -> a verified ONNX file.

``export_onnx`` builds the member (registry name or ``module:function``), loads its checkpoint
strictly (or keeps a seeded random init), checks the output grid is exactly ``patch / stride``,
exports with torch's TorchScript-based exporter (opset >= 17, dynamic batch axis ``N``, spatial
axes fixed to the patch), runs ``onnx.checker`` with shape inference, stores the metadata below
in the file, and compares ONNX Runtime (CPU) with torch on a seeded uniform raw 0..255 input of
batch ``parity_batch`` (default: 2 -- the export traced batch 1, so this also proves the batch axis
is dynamic -- unless one input holds more than :data:`PARITY_BATCH2_ELEMENTS` values, as the recipe's
224 x 448 x 448 windows do: then 1, which halves the memory, ~8 GB for DenseNet121 on the CPU). Parity is relative: ``max |torch - ORT| <= tol * max |torch|`` (``tol`` 1e-4, fp32).
Above it, a float64 run of the model tells fp32 rounding from a wrong graph (:mod:`export.parity`:
ORT no further from the float64 result than 2x torch fp32 is, and within 1e-3 of the scale, still
passes; the run is skipped when its estimated memory exceeds what is available). Otherwise the export
fails and leaves nothing at the output path (the file is written next to it and renamed last).

Input: what inference feeds the member. The registry members take raw 0..255 intensities and
normalise inside the graph (as trained), so their metadata says ``normalize {"mean": 0, "std": 1}``;
a ``module:function`` arch defaults to ``{"mean": 0, "std": 255}`` (inputs in 0..1).

Metadata (``metadata_props``; read back by ``inference.engines`` as ``Engine.metadata``), all strings:

======================  ============================================================================
``arch``                registry name or ``module:function``
``kind``                ``3d`` or ``2d``
``patch``               JSON list, e.g. ``[224, 448, 448]``; ``stride``: ``16``; ``in_channels``
``spacing``             Å per voxel the member expects (the manifest's ``target_spacing``)
``slice_spacing``       2d members from a manifest: Å between input slices
``normalize``           ``zscore`` or JSON ``{"mean": 0.0, "std": 255.0}``
``activation``          ``sigmoid`` or ``none`` (the model itself outputs raw logits)
``input``               what the graph expects, e.g. ``raw 0..255 float32, normalised inside the net (N, 1, D, H, W) ...``
``member``              manifest member name (``all``) or the arch (``onnx``)
``checkpoint_sha256``   sha256 of the checkpoint file, or ``random-init``
``checkpoint``          file name and where the weights came from (``random-init (seed S)``)
``weights``             ``ema (decay 0.99)``, ``ema``, ``model`` or ``random-init``
``ignored_keys``        training-only checkpoint keys not loaded (count and the first few)
``exporter_torch``      torch version; ``exporter_onnx``: onnx version; ``opset``
``parity_max_abs_diff`` torch vs ONNX Runtime CPU on the check input; ``parity_scale``: max |torch output|;
                        ``parity_batch``; ``parity_onnxruntime``: its version
``parity_fp64``         only when the float64 run decided: max |ORT - fp64| and max |torch fp32 - fp64|
``producer``            ``motorfinder export``
======================  ============================================================================
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from export.checkpoints import load_into, read_checkpoint
from export.deps import import_module
from export.errors import ExportError
from export.models.registry import MemberSpec, build_model, check_patch, resolve_arch
from export.parity import FP32_ROUNDING_CAP, fp64_output, parity_verdict
from inference.common.errors import InputError
from inference.manifest.types import Normalize

logger = logging.getLogger(__name__)

MIN_OPSET = 17
DEFAULT_OPSET = 17
DEFAULT_TOL = 1e-4  # relative to the output's scale (max |torch output|)
INPUT_NAME = "input"
OUTPUT_NAME = "heatmap"
PARITY_BATCH = 2
PARITY_BATCH2_ELEMENTS = 1 << 22  # above this many values per input, the default parity batch is 1


@dataclass(frozen=True)
class ExportReport:
    path: Path
    arch: str
    kind: str
    patch: tuple[int, ...]
    input_shape: tuple
    output_shape: tuple
    params: int
    checkpoint_sha256: str
    max_abs_diff: float
    output_std: float
    seconds: float
    output_scale: float = 0.0  # max |torch output| on the parity input
    weights: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def rel_diff(self) -> float:
        return self.max_abs_diff / self.output_scale if self.output_scale > 0 else float("inf")

    def describe(self) -> str:
        return (f"{self.path.name}: {self.arch} {self.kind} {list(self.input_shape)} -> {list(self.output_shape)}, "
                f"{self.params / 1e6:.2f}M params, weights {self.weights}, parity max|diff| {self.max_abs_diff:.2e} "
                f"({self.rel_diff:.1e} of the output's scale {self.output_scale:.3g}), {self.seconds:.1f}s")


def normalize_string(n: Normalize) -> str:
    if n.mode == "zscore":
        return "zscore"
    return json.dumps({"mean": n.mean, "std": n.std})


def parse_normalize(text: str) -> Normalize:
    """``zscore`` or ``MEAN,STD`` (the CLI form) -> :class:`Normalize`."""
    if text.strip() == "zscore":
        return Normalize(mode="zscore", mean=0.0, std=1.0)
    parts = text.split(",")
    try:
        mean, std = (float(p) for p in parts)
    except ValueError:
        raise InputError(None, f"--normalize {text!r} is not 'zscore' or MEAN,STD",
                         "pass e.g. --normalize 0,255") from None
    if not std > 0:
        raise InputError(None, f"--normalize std must be > 0, got {std}", "pass e.g. --normalize 0,255")
    return Normalize(mode="affine", mean=mean, std=std)


def _torch_export(model, example: torch.Tensor, path: Path, opset: int, name: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            torch.onnx.export(
                model, (example,), str(path), dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: {0: "N"}, OUTPUT_NAME: {0: "N"}},
                do_constant_folding=True, external_data=False,
            )
        except (RuntimeError, torch.onnx.errors.OnnxExporterError) as exc:  # SymbolicValueError, unsupported op
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
            raise ExportError(f"{name}: torch.onnx.export failed ({type(exc).__name__}: {first}). Fix: make the "
                              f"module traceable (static shapes, no data-dependent control flow) or try --opset "
                              f"{max(opset, 18)}") from None
    seen = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0][:160]}" for w in caught})
    for msg in seen:
        logger.debug("torch.onnx.export: %s", msg)


def _graph_dims(value_info) -> list:
    return [d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else None)
            for d in value_info.type.tensor_type.shape.dim]


def _check_graph_io(model_proto, in_shape: tuple, out_shape: tuple, arch: str) -> None:
    """One input ``(N, C, *patch)`` and one output ``(N, 1, *grid)`` with a symbolic N."""
    graph = model_proto.graph
    if len(graph.input) != 1 or len(graph.output) != 1:
        raise ExportError(f"{arch}: exported graph has {len(graph.input)} inputs and {len(graph.output)} outputs, "
                          "expected one of each")
    for vi, want in ((graph.input[0], in_shape), (graph.output[0], out_shape)):
        dims = _graph_dims(vi)
        if len(dims) != len(want) or not isinstance(dims[0], str):
            raise ExportError(f"{arch}: ONNX {vi.name} has dims {dims}, expected a dynamic batch axis and "
                              f"{list(want[1:])}")
        fixed = dims[1:]
        if any(d is not None and not isinstance(d, str) and d != w for d, w in zip(fixed, want[1:])):
            raise ExportError(f"{arch}: ONNX {vi.name} has dims {dims}, expected [N, {', '.join(map(str, want[1:]))}]; "
                              "export never changes a shape")


def export_onnx(
    arch: str | MemberSpec,
    patch: tuple[int, ...],
    out: str | Path,
    *,
    checkpoint: str | Path | None = None,
    random_init: bool = False,
    weights: str = "auto",
    trust_checkpoint: bool = False,
    opset: int = DEFAULT_OPSET,
    seed: int = 0,
    tol: float = DEFAULT_TOL,
    spacing: float = 16.0,
    normalize: Normalize | None = None,
    activation: str = "sigmoid",
    in_channels: int | None = None,
    stride: int | None = None,
    extra_metadata: dict[str, str] | None = None,
    threads: int | None = None,
    ema_decay: float | None = None,
    parity_batch: int | None = None,
) -> ExportReport:
    """Export one member to ``out`` (see the module docstring); returns what was written and measured."""
    onnx = import_module("onnx", "the ONNX export")
    ort = import_module("onnxruntime", "the ONNX Runtime parity check")

    t0 = time.perf_counter()
    out = Path(out)
    patch = tuple(int(p) for p in patch)
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < MIN_OPSET:
        raise InputError(None, f"opset {opset} is too old", f"pass --opset {MIN_OPSET} or newer")
    if (checkpoint is None) == (not random_init):
        raise InputError(None, "give exactly one of a checkpoint or random init",
                         "pass --checkpoint FILE or --random-init")
    if activation not in ("sigmoid", "none"):
        raise InputError(None, f"activation {activation!r} is not sigmoid or none", "pass --activation sigmoid")
    if out.suffix.lower() != ".onnx":
        raise InputError(out, "the output must be a .onnx file", "pass --out NAME.onnx")
    if parity_batch is not None and (isinstance(parity_batch, bool) or not isinstance(parity_batch, int)
                                     or parity_batch < 1):
        raise InputError(None, f"parity batch must be a positive integer, got {parity_batch!r}",
                         "pass --parity-batch 1 or more")
    if not (isinstance(tol, (int, float)) and tol > 0):
        raise InputError(None, f"--tol must be > 0, got {tol!r}", "pass e.g. --tol 1e-4")
    if len(patch) not in (2, 3):
        raise InputError(None, f"patch {list(patch)} must have 3 sides (3d) or 2 (2d)", "pass --patch D H W or H W")
    kind = "3d" if len(patch) == 3 else "2d"
    spec = arch if isinstance(arch, MemberSpec) else resolve_arch(arch, kind, in_channels=in_channels, stride=stride)
    if spec.kind != kind:
        raise InputError(None, f"{spec.name} is a {spec.kind} member but the patch {list(patch)} is {kind}",
                         "pass D H W for 3d members, H W for 2d members")
    if not spec.custom:
        check_patch(spec, patch)
    model, spec = build_model(spec, patch, seed=seed, random_init=random_init)
    if spec.custom:
        check_patch(spec, patch)

    if normalize is None:
        normalize = Normalize(mode="affine", mean=0.0, std=255.0 if spec.custom else 1.0)
    ignored: tuple[str, ...] = ()
    if checkpoint is not None:
        ckpt = read_checkpoint(checkpoint, weights, trust=trust_checkpoint, ema_decay=ema_decay)
        loaded = load_into(model, ckpt, spec.name, spec.ignored_prefixes, spec.trained_patch)
        ignored = loaded.ignored
        ckpt_sha, ckpt_desc, chosen = ckpt.sha256, f"{ckpt.path.name}: {ckpt.source}", ckpt.weights
    else:
        ckpt_sha, ckpt_desc, chosen = "random-init", f"random-init (seed {seed})", "random-init"
    model.eval()

    grid = tuple(p // spec.stride for p in patch)
    if parity_batch is None:
        big = spec.in_channels * math.prod(patch) > PARITY_BATCH2_ELEMENTS
        parity_batch = 1 if big else PARITY_BATCH
    in_shape = (parity_batch, spec.in_channels, *patch)
    out_shape = (parity_batch, 1, *grid)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(in_shape, generator=gen) * 255.0  # raw intensities, what the registry members are fed
    with torch.no_grad():
        y = model(x)
    if not isinstance(y, torch.Tensor) or tuple(y.shape) != out_shape:
        got = list(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
        raise ExportError(f"{spec.name}: input {list(in_shape)} gives output {got}, expected {list(out_shape)} "
                          f"(patch / stride {spec.stride}). Fix: the arch must output one channel at exactly "
                          f"stride {spec.stride}; export never changes a shape")
    params = sum(p.numel() for p in model.parameters())

    meta = {
        "producer": "motorfinder export",
        "arch": spec.name,
        "member": spec.name,
        "kind": spec.kind,
        "input": spec.input or "as the module expects (custom arch)",
        "patch": json.dumps(list(patch)),
        "stride": str(spec.stride),
        "in_channels": str(spec.in_channels),
        "spacing": str(float(spacing)),
        "normalize": normalize_string(normalize),
        "activation": activation,
        "checkpoint_sha256": ckpt_sha,
        "checkpoint": ckpt_desc,
        "weights": chosen,
        "ignored_keys": f"{len(ignored)}" + (f": {', '.join(ignored[:5])}{', ...' if len(ignored) > 5 else ''}"
                                             if ignored else ""),
        "seed": str(seed),
        "opset": str(opset),
        "exporter_torch": torch.__version__,
        "exporter_onnx": onnx.__version__,
    }
    meta.update({k: str(v) for k, v in (extra_metadata or {}).items()})

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with torch.no_grad():
            _torch_export(model, x[:1], tmp, opset, spec.name)
        proto = onnx.load(str(tmp))
        try:
            onnx.checker.check_model(proto, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
            raise ExportError(f"{spec.name}: onnx.checker rejects the export: {str(exc).splitlines()[0]}") from None
        inferred = onnx.shape_inference.infer_shapes(proto)
        _check_graph_io(inferred, in_shape, out_shape, spec.name)

        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = int(threads)
        sess = ort.InferenceSession(proto.SerializeToString(), sess_options=so, providers=["CPUExecutionProvider"])
        (y_ort,) = sess.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
        y_ref = y.numpy()
        if y_ort.shape != y_ref.shape:
            raise ExportError(f"{spec.name}: ONNX Runtime output {list(y_ort.shape)} != torch {list(y_ref.shape)}")
        diff = float(np.max(np.abs(y_ort.astype(np.float64) - y_ref.astype(np.float64))))
        scale = float(np.max(np.abs(y_ref)))
        ok, why = parity_verdict(y_ref, y_ort, tol)
        if not ok and np.isfinite(diff):  # fp32 rounding, or a wrong graph? ask float64
            y64, why = fp64_output(model, x)
            if y64 is not None:
                ok, why = parity_verdict(y_ref, y_ort, tol, y64)
                if ok:
                    meta["parity_fp64"] = why
                    logger.info("%s: torch and ONNX Runtime differ by %.2e of the output's scale (> --tol %g), "
                                "as fp32 rounding does: %s", spec.name, diff / scale, tol, why)
            elif diff <= FP32_ROUNDING_CAP * scale:
                # no float64 verdict (memory): a gap this small is fp32 rounding in every case measured (a
                # wrong graph differs by the output's own scale); written, and said, rather than refused
                ok = True
                meta["parity_fp64"] = f"not run ({why})"
                logger.warning("%s: torch and ONNX Runtime differ by %.2e of the output's scale (> --tol %g, <= %g): "
                               "taken as fp32 rounding without a float64 check (%s)", spec.name, diff / scale, tol,
                               FP32_ROUNDING_CAP, why)
        if not ok:
            raise ExportError(f"{spec.name}: ONNX Runtime differs from torch by max |diff| {diff:.3g} > {tol:g} x "
                              f"the output's scale {scale:.3g} (fp32, input {list(in_shape)})"
                              + (f"; {why}" if why else "") + f"; nothing written to "
                              f"{out}. Fix: look for ops the exporter approximates (e.g. interpolation modes) or "
                              "raise --tol if justified")
        meta["parity_max_abs_diff"] = f"{diff:.3e}"
        meta["parity_scale"] = f"{scale:.6g}"
        meta["parity_batch"] = str(parity_batch)
        meta["parity_onnxruntime"] = ort.__version__
        del proto.metadata_props[:]
        for k, v in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(proto, str(tmp))
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    report = ExportReport(path=out, arch=spec.name, kind=spec.kind, patch=patch,
                          input_shape=("N", spec.in_channels, *patch), output_shape=("N", 1, *grid), params=params,
                          checkpoint_sha256=ckpt_sha, max_abs_diff=diff, output_std=float(y_ref.std()),
                          seconds=time.perf_counter() - t0, output_scale=scale, weights=chosen, metadata=meta)
    logger.info("wrote %s", report.describe())
    return report


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (without loading its weights into ONNX Runtime)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}

