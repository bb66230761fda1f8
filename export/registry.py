"""The members: arch name -> how to build it, its kind, input channels and output stride.

Names are those of ``weights_manifest.yaml``: ``x3d_m``, ``densenet121``, ``resnext50`` (3d, input
``(N, 1, D, H, W)``) and ``maxvit_tiny``, ``coat_lite_medium`` (2d, input ``(N, 3, H, W)``); all give
``(N, 1, *patch/16)`` raw logits. A manifest member named ``<arch>`` or ``<arch>_<suffix>``
(``x3d_m_fold2``) uses that arch.

Bring your own: ``--arch module:function`` (or ``path/to/file.py:function``) where ``function()``
returns an ``nn.Module`` (called as ``function(patch=patch)`` when it takes a ``patch`` argument).
Its input channels, stride and patch multiple come from the command line, else from the module's
attributes ``in_channels``, ``stride``, ``patch_multiple``, else 1 (3d) / 3 (2d), 16 and the stride.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from inference.errors import InputError

logger = logging.getLogger(__name__)

CALIBRATION_BATCH2_VOXELS = 1 << 20  # random-init BN calibration: batch 2 up to this many voxels, else 1


@dataclass(frozen=True)
class MemberSpec:
    """How to build one member: ``builder(patch) -> nn.Module`` (2d timm members are built for their
    patch; the 3d convnets ignore it)."""

    name: str
    kind: str
    in_channels: int | None
    stride: int | None
    patch_multiple: int | None
    builder: Callable[[tuple[int, ...]], nn.Module]
    description: str = ""
    custom: bool = False

    @property
    def ndim(self) -> int:
        return 3 if self.kind == "3d" else 2


def _x3d_m(patch):
    from export.encoders3d import X3D
    from export.layers import HeatmapNet
    return HeatmapNet(X3D(in_channels=1), kind="3d", in_channels=1, neck_width=128)


def _densenet121(patch):
    from export.encoders3d import DenseNet3d
    from export.layers import HeatmapNet
    return HeatmapNet(DenseNet3d(in_channels=1), kind="3d", in_channels=1, neck_width=128)


def _resnext50(patch):
    from export.encoders3d import ResNeXt3d
    from export.layers import HeatmapNet
    return HeatmapNet(ResNeXt3d(in_channels=1), kind="3d", in_channels=1, neck_width=128)


def _maxvit_tiny(patch):
    from export.encoders2d import TimmFeatures
    from export.layers import HeatmapNet
    return HeatmapNet(TimmFeatures("maxvit_tiny_tf_512", 3, tuple(patch)), kind="2d", in_channels=3, neck_width=256)


def _coat_lite_medium(patch):
    from export.encoders2d import CoatFeatures
    from export.layers import HeatmapNet
    return HeatmapNet(CoatFeatures("coat_lite_medium_384", 3, tuple(patch)), kind="2d", in_channels=3,
                      neck_width=256)


REGISTRY: dict[str, MemberSpec] = {
    "x3d_m": MemberSpec("x3d_m", "3d", 1, 16, 32, _x3d_m, "X3D-M (plain torch), FPN neck, stride 16"),
    "densenet121": MemberSpec("densenet121", "3d", 1, 16, 32, _densenet121,
                              "DenseNet121 3D (plain torch), FPN neck, stride 16"),
    "resnext50": MemberSpec("resnext50", "3d", 1, 16, 32, _resnext50,
                            "ResNeXt50-32x4d 3D (plain torch), FPN neck, stride 16"),
    "maxvit_tiny": MemberSpec("maxvit_tiny", "2d", 3, 16, 32, _maxvit_tiny,
                              "timm maxvit_tiny_tf_512 (img_size = patch), FPN neck, stride 16"),
    "coat_lite_medium": MemberSpec("coat_lite_medium", "2d", 3, 16, 32, _coat_lite_medium,
                                   "timm coat_lite_medium_384 (img_size = patch), FPN neck, stride 16"),
}


def arch_for_member(name: str) -> str | None:
    """The registry arch of a manifest member: its name, or the longest arch ``A`` with name ``A_*``/``A-*``/``A.*``."""
    if name in REGISTRY:
        return name
    hits = [a for a in REGISTRY if re.match(re.escape(a) + r"[_.-]", name)]
    return max(hits, key=len) if hits else None


def _load_callable(arch: str) -> Callable:
    target, _, func = arch.rpartition(":")
    if not target or not func.isidentifier():
        raise InputError(None, f"--arch {arch!r} is neither a known arch nor module:function",
                         f"use one of {', '.join(REGISTRY)} or e.g. mypkg.nets:build")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise InputError(path, "file not found", "pass --arch path/to/file.py:function with an existing file")
            spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
    except ImportError as exc:
        raise InputError(None, f"--arch {arch!r}: cannot import {target!r} ({exc})",
                         "put the module on PYTHONPATH or pass path/to/file.py:function") from None
    fn = getattr(module, func, None)
    if not callable(fn):
        raise InputError(None, f"--arch {arch!r}: {target!r} has no callable {func!r}", "name a function that "
                         "returns an nn.Module")
    return fn


def custom_spec(arch: str, kind: str, in_channels: int | None = None, stride: int | None = None,
                patch_multiple: int | None = None) -> MemberSpec:
    """A :class:`MemberSpec` for ``module:function``; unset numbers are read from the module later."""
    fn = _load_callable(arch)
    takes_patch = "patch" in inspect.signature(fn).parameters

    def builder(patch):
        model = fn(patch=tuple(patch)) if takes_patch else fn()
        if not isinstance(model, nn.Module):
            raise InputError(None, f"--arch {arch!r} returned {type(model).__name__}, not an nn.Module",
                             "make the function return the network")
        return model

    return MemberSpec(arch, kind, in_channels, stride, patch_multiple, builder, f"custom {arch}", custom=True)


def resolve_arch(arch: str, kind: str | None = None, *, in_channels: int | None = None, stride: int | None = None,
                 patch_multiple: int | None = None) -> MemberSpec:
    """Registry name or ``module:function`` -> :class:`MemberSpec` (``kind`` needed for the latter)."""
    if arch in REGISTRY:
        spec = REGISTRY[arch]
        for what, given, have in (("in-channels", in_channels, spec.in_channels), ("stride", stride, spec.stride)):
            if given is not None and given != have:
                raise InputError(None, f"--{what} {given} contradicts arch {arch} ({what} {have})",
                                 f"drop --{what}; it is only for --arch module:function")
        return spec
    if ":" not in arch:
        raise InputError(None, f"unknown arch {arch!r}", f"use one of {', '.join(REGISTRY)} or module:function")
    if kind not in ("3d", "2d"):
        raise ValueError(f"kind must be '3d' or '2d' for a custom arch, got {kind!r}")
    return custom_spec(arch, kind, in_channels, stride, patch_multiple)


def finalize_spec(spec: MemberSpec, model: nn.Module) -> MemberSpec:
    """Fill a custom spec's unset numbers from the model's attributes (or the defaults)."""
    in_ch = spec.in_channels or getattr(model, "in_channels", None) or (1 if spec.kind == "3d" else 3)
    stride = spec.stride or getattr(model, "stride", None) or 16
    multiple = spec.patch_multiple or getattr(model, "patch_multiple", None) or stride
    return replace(spec, in_channels=int(in_ch), stride=int(stride), patch_multiple=int(multiple))


def check_patch(spec: MemberSpec, patch: tuple[int, ...], where: str | Path | None = None) -> tuple[int, ...]:
    """Every side a positive multiple of ``spec.patch_multiple``, as many sides as the kind has."""
    patch = tuple(int(p) for p in patch)
    if len(patch) != spec.ndim:
        raise InputError(where, f"{spec.name} is a {spec.kind} member: the patch needs {spec.ndim} sides, got "
                         f"{list(patch)}", "pass D H W for 3d, H W for 2d")
    m = spec.patch_multiple
    bad = [p for p in patch if p <= 0 or p % m]
    if bad:
        near = [max(m, round(p / m) * m) for p in patch]
        raise InputError(where, f"patch {list(patch)} does not fit {spec.name}: every side must be a positive "
                         f"multiple of {m} (its deepest stride)", f"use e.g. {' '.join(map(str, near))}")
    return patch


def calibrate_batchnorm(model: nn.Module, shape: tuple[int, ...], seed: int, steps: int = 2) -> int:
    """Random-init only: set every BatchNorm's running stats from train-mode passes on N(0,1) noise.

    A random-init net in eval mode has running stats (0, 1), so deep nets (DenseNet's concatenations)
    blow activations up to ~1e3; calibrated, every BN output is ~unit variance, as in a trained net,
    and the stand-in's logits stay O(1). Returns the number of BatchNorm layers touched.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    gen = torch.Generator().manual_seed(seed)
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration passes
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(torch.randn(shape, generator=gen))
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    model.eval()
    return len(bns)


def build_model(spec: MemberSpec, patch: tuple[int, ...], *, seed: int = 0, random_init: bool = False
                ) -> tuple[nn.Module, MemberSpec]:
    """Build ``spec`` for ``patch`` (eval mode, seeded); with ``random_init`` calibrate its BatchNorms.

    Returns the model and the spec with every number set (custom archs read theirs from the model).
    """
    torch.manual_seed(seed)
    model = spec.builder(tuple(patch))
    spec = finalize_spec(spec, model) if spec.custom else spec
    model.eval()
    if random_init and not spec.custom:
        # calibrate on the export patch itself: a smaller one is dominated by zero-padded borders, and
        # its statistics let interior activations of the full window grow (logits ~1e2 at 224x448x448,
        # fp32 torch-vs-ONNX Runtime differences ~1e-3); one pass suffices for a large window
        batch = 2 if math.prod(patch) <= CALIBRATION_BATCH2_VOXELS else 1
        n = calibrate_batchnorm(model, (batch, spec.in_channels, *patch), seed, steps=1)
        if n:
            logger.info("%s: random init, %d BatchNorm layers calibrated on N(0,1) noise %s", spec.name, n,
                        [batch, spec.in_channels, *patch])
    return model, spec
