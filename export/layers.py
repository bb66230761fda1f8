"""Building blocks shared by the 2D and 3D members: conv/norm helpers, the neck, the head, the net.

Every member is a :class:`HeatmapNet`: an encoder that yields feature maps at strides 16 and 32,
an FPN-like neck that merges stride 32 into stride 16 (nearest x2 upsample + lateral 1x1 convs +
a 3x3 conv), and a 1x1 head to ONE channel of raw logits (the manifest's activation, sigmoid,
is applied by inference). Input ``(N, C, *S)`` -> output ``(N, 1, *S/16)``.

Parameter names: ``encoder.*`` (the backbone, named like its public reference), ``neck.*``,
``head.*``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# Head bias at init: sigmoid(bias) = HEAD_PRIOR, a low prior as usual for a rare-positive heatmap,
# so a random-init stand-in outputs low confidences instead of a coin flip per cell -- but above the
# shipped manifest's decode min_conf (0.02), so stand-ins still yield candidates and exercise
# peaks, fusion and thresholding end to end.
HEAD_PRIOR = 0.05


def conv_nd(ndim: int):
    return {2: nn.Conv2d, 3: nn.Conv3d}[ndim]


def bn_nd(ndim: int):
    return {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[ndim]


class ConvNormAct(nn.Module):
    """conv (no bias) -> BatchNorm -> ReLU; ``padding = kernel // 2``."""

    def __init__(self, ndim: int, cin: int, cout: int, kernel: int = 3):
        super().__init__()
        self.conv = conv_nd(ndim)(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.norm = bn_nd(ndim)(cout)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.norm(self.conv(x)))


class FPNNeck(nn.Module):
    """Merge the stride-32 map into the stride-16 map: ``fuse(lateral16(f16) + up2(lateral32(f32)))``."""

    def __init__(self, ndim: int, c16: int, c32: int, width: int):
        super().__init__()
        conv = conv_nd(ndim)
        self.lateral16 = conv(c16, width, 1)
        self.lateral32 = conv(c32, width, 1)
        self.fuse = ConvNormAct(ndim, width, width, 3)

    def forward(self, f16, f32):
        up = F.interpolate(self.lateral32(f32), scale_factor=2.0, mode="nearest")
        return self.fuse(self.lateral16(f16) + up)


class HeatmapNet(nn.Module):
    """``encoder`` (returns feature maps, one per entry of ``encoder.feature_strides``) + neck + head.

    Attributes read by the exporter: ``kind`` ('3d'/'2d'), ``in_channels``, ``stride`` (16) and
    ``patch_multiple`` (every patch side must be a multiple of it: the deepest stride, 32).
    """

    def __init__(self, encoder: nn.Module, *, kind: str, in_channels: int, neck_width: int):
        super().__init__()
        ndim = 3 if kind == "3d" else 2
        strides = list(encoder.feature_strides)
        chans = list(encoder.feature_channels)
        if 16 not in strides or 32 not in strides:
            raise ValueError(f"encoder must give features at strides 16 and 32, gives {strides}")
        self._i16, self._i32 = strides.index(16), strides.index(32)
        self.encoder = encoder
        self.neck = FPNNeck(ndim, chans[self._i16], chans[self._i32], neck_width)
        self.head = conv_nd(ndim)(neck_width, 1, 1)
        self.kind = kind
        self.in_channels = in_channels
        self.stride = 16
        self.patch_multiple = 32
        init_conv_bn(self.neck)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.constant_(self.head.bias, -math.log((1 - HEAD_PRIOR) / HEAD_PRIOR))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(x)
        return self.head(self.neck(feats[self._i16], feats[self._i32]))


def init_conv_bn(module: nn.Module) -> None:
    """torchvision-style init: Kaiming-normal (fan_out, ReLU) convs, BN weight 1 / bias 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
