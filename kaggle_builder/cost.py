"""What one window of a member costs: windows per reference tomogram, FLOPs per window, the T4 bound."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

# NVIDIA T4 datasheet peaks: 65 TFLOP/s fp16 (tensor cores, mixed precision), 8.1 TFLOP/s fp32.
T4_PEAK_FLOPS = {"fp16": 65e12, "fp32": 8.1e12}


def flops_bound_seconds(windows: float, flops_per_window: float, peak_flops: float) -> float:
    """Lower bound on device time: every window's FLOPs at the device's peak rate."""
    return windows * flops_per_window / peak_flops


def reference_windows(member, target_spacing: float, shape: Sequence[int], spacing: float) -> int:
    """Windows (summed over the member's TTA transforms) on a tomogram of ``shape`` at ``spacing`` Å (the
    profile's reference: the target's ``median_shape`` at its ``median_spacing_A``).

    The member's own resample grid and window rule (:func:`inference.predict.geometry.count_member_windows`); a
    volume-scope transposition counts the windows of the transposed volume.
    """
    from inference.predict.geometry import count_member_windows, member_geometry
    from inference.predict.resample import resampled_shape

    g = member_geometry(member, target_spacing)
    res = resampled_shape(shape, spacing, g.spacings, member.resample.grid)
    n_axes = len(member.spatial_axes)
    total = 0
    for t in member.transforms:
        perm3 = tuple(range(3 - n_axes)) + tuple(3 - n_axes + p for p in t.perm)
        view = res if member.tta_scope == "window" else tuple(res[p] for p in perm3)
        total += count_member_windows(member, target_spacing, view)
    return total


def parse_flops_md(path: Path) -> dict[str, tuple[tuple[int, ...], float]]:
    """``bench/results/flops.md``: member -> ((C, *patch), FLOPs per window)."""
    table: dict[str, tuple[tuple[int, ...], float]] = {}
    if not path.is_file():
        return table
    header: list[str] | None = None
    for line in path.read_text().splitlines():
        if not line.startswith("|"):
            header = None if not line.strip() else header
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if set("".join(cells)) <= set("-: "):
            continue
        row = dict(zip(header, cells))
        try:
            shape = tuple(int(v) for v in row["input (C x patch)"].split("x"))
            gflops = float(row["GFLOPs / window"].replace(",", ""))
        except (KeyError, ValueError):
            continue
        table[row.get("member", "")] = (shape, gflops * 1e9)
    return table


def onnx_flops(path: Path, input_shape: Sequence[int]) -> float | None:
    """FLOPs of one window through an ONNX model: Conv, ConvTranspose, MatMul, Gemm at 2 per multiply-add
    (element-wise ops not counted, as in export/flops.py); None where a shape cannot be inferred."""
    import numpy as np
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        return None
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != len(input_shape):
        return None
    for d, v in zip(dims, input_shape):
        d.ClearField("dim_param")
        d.dim_value = int(v)
    try:
        inferred = shape_inference.infer_shapes(model)
    except (shape_inference.InferenceError, ValueError):
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        d = vi.type.tensor_type.shape.dim
        if d and all(x.HasField("dim_value") for x in d):
            shapes[vi.name] = tuple(x.dim_value for x in d)
    for name, init in inits.items():
        shapes[name] = tuple(init.dims)
    total = 0.0
    for node in inferred.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            continue
        ins = [shapes.get(n) for n in node.input[:2]]
        out = shapes.get(node.output[0])
        if out is None or any(s is None for s in ins):
            return None
        if node.op_type == "Conv":
            w = ins[1]
            total += 2.0 * float(np.prod(out)) * w[1] * float(np.prod(w[2:]))
        elif node.op_type == "ConvTranspose":
            w = ins[1]
            total += 2.0 * float(np.prod(ins[0])) * w[1] * float(np.prod(w[2:]))
        elif node.op_type == "MatMul":
            total += 2.0 * float(np.prod(out)) * ins[0][-1]
        else:
            trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
            k = ins[0][0] if trans_a else ins[0][-1]
            total += 2.0 * float(np.prod(out)) * k
    return total


def member_flops(member, flops_table: dict) -> tuple[float | None, str]:
    """FLOPs per window: the flops.md row of the member (same input), else counted from its ONNX."""
    want = (member.channels, *member.patch)
    row = flops_table.get(member.name)
    if row is not None and tuple(row[0]) == tuple(want):
        return row[1], "flops.md"
    if member.model.suffix.lower() == ".onnx" and member.model.is_file():
        count = onnx_flops(member.model, (1, *want))
        if count is not None:
            return count, "ONNX count"
    return None, "n/a"
