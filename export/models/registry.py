"""The members: arch name -> how to build it, its kind, input channels, output stride, what
inference feeds it, and which checkpoint keys are training-only.

Names are those of ``weights_manifest.yaml``: ``x3d_m``, ``densenet121``, ``resnext50`` (3d, input
``(N, 1, D, H, W)``; :mod:`export.models.unet3d`) and ``maxvit_tiny``, ``coat_lite_medium`` (2d, input
``(N, 3, H, W)``, three consecutive z-slices as channels; :mod:`export.models.unet2d`). Each is built as the
3rd-place solution trained it (module tree, names, axis order, normalisation inside the net), takes
raw 0..255 intensities and gives ``(N, 1, *patch/16)`` logits. A manifest member named ``<arch>`` or
``<arch>_<suffix>`` (``x3d_m_fold2``) uses that arch.

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

from inference.common.errors import InputError

logger = logging.getLogger(__name__)

CALIBRATION_BATCH2_VOXELS = 1 << 20  # random-init BN calibration: batch 2 up to this many voxels, else 1
# Random-init stand-ins: sigmoid(head bias) = HEAD_PRIOR, above the manifest's decode min_conf (0.02),
# so stand-ins yield candidates and exercise peaks, fusion and thresholding end to end.
HEAD_PRIOR = 0.05
# Random-init stand-ins: the BatchNorm closing each residual branch starts at this gamma (the usual
# small-residual init, cf. torchvision's zero_init_residual). With gamma 1 a random ResNeXt50 or X3D
# amplifies fp32 rounding ~4x per stage (torch fp32 vs fp64: 8e-5 of the output's scale at 32x64x96,
# vs 2e-6 at gamma 0.3), which is the stand-in's conditioning, not the export's.
RESIDUAL_GAMMA = 0.3
RAW_INPUT = "raw 0..255 float32, normalised inside the net"


@dataclass(frozen=True)
class MemberSpec:
    """How to build one member: ``builder(patch) -> nn.Module`` (2d timm members are built for their
    patch; the 3d convnets ignore it). ``ignored_prefixes``: checkpoint keys that only training uses
    (listed and dropped before the strict load). ``trained_patch``: the patch of the 3rd-place
    checkpoints (said in errors). ``input``: what the net expects (stored in the ONNX metadata)."""

    name: str
    kind: str
    in_channels: int | None
    stride: int | None
    patch_multiple: int | None
    builder: Callable[[tuple[int, ...]], nn.Module]
    description: str = ""
    custom: bool = False
    ignored_prefixes: tuple[str, ...] = ()
    trained_patch: tuple[int, ...] | None = None
    input: str = ""
    residual_norms: tuple[str, ...] = ()  # name suffixes of the BatchNorms closing residual branches

    @property
    def ndim(self) -> int:
        return 3 if self.kind == "3d" else 2


def _unet3d(name: str):
    def build(patch):
        from export.models import unet3d
        return getattr(unet3d, name)()
    return build


def _unet2d(name: str):
    def build(patch):
        from export.models import unet2d
        return getattr(unet2d, name)(tuple(patch))
    return build


_IN_3D = RAW_INPUT + " (N, 1, D, H, W): z, y, x of a 16 A volume"
_IN_2D = RAW_INPUT + " (N, 3, H, W): 3 consecutive z-slices (32 A apart) as channels, y, x at 16 A"
REGISTRY: dict[str, MemberSpec] = {
    "x3d_m": MemberSpec("x3d_m", "3d", 1, 16, 32, _unet3d("x3d_m"),
                        "X3D-M (their SlowFast X3DEncoder), factorized FPN, UNet block + SCSE, stride 16",
                        trained_patch=(224, 448, 448), input=_IN_3D, residual_norms=(".c_bn",)),
    "densenet121": MemberSpec("densenet121", "3d", 1, 16, 32, _unet3d("densenet121"),
                              "DenseNet121 3D (smp-3d, runs on H,W,D), factorized FPN, UNet block + SCSE, stride 16",
                              trained_patch=(224, 448, 448), input=_IN_3D),
    "resnext50": MemberSpec("resnext50", "3d", 1, 16, 32, _unet3d("resnext50"),
                            "ResNeXt50-32x4d 3D (smp-3d, runs on H,W,D), factorized FPN, UNet block + SCSE, stride 16",
                            trained_patch=(224, 448, 448), input=_IN_3D, residual_norms=(".bn3",)),
    "maxvit_tiny": MemberSpec("maxvit_tiny", "2d", 3, 16, 32, _unet2d("maxvit_tiny"),
                              "timm maxvit_tiny_tf_512 (img_size = patch), factorized FPN, PixelShuffle UNet block",
                              ignored_prefixes=("reg_head.",), trained_patch=(896, 896), input=_IN_2D),
    "coat_lite_medium": MemberSpec("coat_lite_medium", "2d", 3, 16, 32, _unet2d("coat_lite_medium"),
                                   "timm coat_lite_medium_384 (img_size = patch), factorized FPN, PixelShuffle UNet "
                                   "block", ignored_prefixes=("reg_head.",), trained_patch=(896, 896), input=_IN_2D),
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
    """Random-init only: set every BatchNorm's running stats from train-mode passes on uniform raw
    0..255 input (what the members are fed).

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
            model(torch.rand(shape, generator=gen) * 255.0)
    for m, mom in zip(bns, momenta):
        m.momentum = mom
    model.eval()
    return len(bns)


def build_model(spec: MemberSpec, patch: tuple[int, ...], *, seed: int = 0, random_init: bool = False
                ) -> tuple[nn.Module, MemberSpec]:
    """Build ``spec`` for ``patch`` (eval mode, seeded); with ``random_init`` make it a stand-in: head
    bias at the prior :data:`HEAD_PRIOR`, residual branches closed by :data:`RESIDUAL_GAMMA`,
    BatchNorms calibrated on raw input at the patch.

    Returns the model and the spec with every number set (custom archs read theirs from the model).
    """
    torch.manual_seed(seed)
    model = spec.builder(tuple(patch))
    spec = finalize_spec(spec, model) if spec.custom else spec
    model.eval()
    if random_init and not spec.custom:
        head = getattr(model, "output_conv", None)  # Unet3d / Unet2d: the one-channel head conv
        if head is not None:
            nn.init.normal_(head.weight, std=0.01)
            nn.init.constant_(head.bias, -math.log((1 - HEAD_PRIOR) / HEAD_PRIOR))
        for name, m in model.named_modules():
            if spec.residual_norms and name.endswith(spec.residual_norms):
                nn.init.constant_(m.weight, RESIDUAL_GAMMA)
        # calibrate on the export patch itself: a smaller one is dominated by zero-padded borders
        batch = 2 if math.prod(patch) <= CALIBRATION_BATCH2_VOXELS else 1
        n = calibrate_batchnorm(model, (batch, spec.in_channels, *patch), seed, steps=1)
        if n:
            logger.info("%s: random init, %d BatchNorm layers calibrated on raw noise %s", spec.name, n,
                        [batch, spec.in_channels, *patch])
    return model, spec
