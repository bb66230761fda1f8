"""3D encoders in plain torch: ResNeXt50-32x4d, DenseNet121 and X3D-M.

Each is the 3D version of its public reference with the same parameter names, downsampling
isotropically (z, y, x alike) so the features come at strides 4, 8, 16 and 32 on every axis;
``forward`` returns those four maps and the class sets ``feature_strides``/``feature_channels``.

* :class:`ResNeXt3d` -- torchvision ``resnext50_32x4d`` names (``conv1``, ``bn1``, ``layer1..4``
  of ``Bottleneck`` with ``conv1/bn1/conv2/bn2/conv3/bn3/downsample``), 7x7x7 stem, 3x3x3 grouped
  convs (32 groups, width 4 per group at ``planes=64``), blocks 3/4/6/3.
* :class:`DenseNet3d` -- torchvision ``densenet121`` names (``features.conv0 ... denseblockK.denselayerJ
  .norm1/conv1/norm2/conv2, transitionK.norm/conv, norm5``), growth 32, bn_size 4, blocks 6/12/24/16.
* :class:`X3D` -- X3D-M after pytorchvideo's ``create_x3d``: stem ``conv_xy`` (1x3x3, stride 2 in y,x)
  then depthwise ``conv_t`` (5x1x1; stride 2 in z here, where pytorchvideo keeps the clip length),
  BN, ReLU; four stages of residual bottlenecks (widths 24/48/96/192, inner width 2.25x, depths
  3/5/11/7, depthwise 3x3x3 ``conv_b`` carrying the stage stride, SE (ratio 1/16, rounded to a
  multiple of 8) on every other block, Swish after ``norm_b``). Names follow pytorchvideo's
  ``res_blocks.J.branch1_conv/branch1_norm/branch2.conv_a/norm_a/conv_b/norm_b/conv_c/norm_c`` with
  ``norm_b = [BatchNorm, SE]``; one difference: pytorchvideo's stem stores the spatial conv under
  ``conv_t`` and the temporal one under ``conv_xy`` (swapped); here each name says what it is.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from export.layers import init_conv_bn

# --------------------------------------------------------------------------- ResNeXt


class Bottleneck3d(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, groups: int, base_width: int):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = nn.Conv3d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm3d(width)
        self.conv3 = nn.Conv3d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(
                nn.Conv3d(inplanes, planes * self.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm3d(planes * self.expansion),
            )

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNeXt3d(nn.Module):
    """3D ResNeXt; default: ResNeXt50-32x4d."""

    def __init__(self, in_channels: int = 1, layers=(3, 4, 6, 3), groups: int = 32, width_per_group: int = 4):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        inplanes = 64
        chans = []
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stride = 1 if i == 0 else 2
            mods = []
            for b in range(blocks):
                mods.append(Bottleneck3d(inplanes, planes, stride if b == 0 else 1, groups, width_per_group))
                inplanes = planes * Bottleneck3d.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*mods))
            chans.append(inplanes)
        self.feature_strides = (4, 8, 16, 32)
        self.feature_channels = tuple(chans)
        init_conv_bn(self)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f4 = self.layer1(x)
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        f32 = self.layer4(f16)
        return [f4, f8, f16, f32]


# --------------------------------------------------------------------------- DenseNet


class DenseLayer3d(nn.Module):
    def __init__(self, cin: int, growth: int, bn_size: int):
        super().__init__()
        self.norm1 = nn.BatchNorm3d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv3d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm3d(bn_size * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock3d(nn.ModuleDict):
    def __init__(self, n: int, cin: int, growth: int, bn_size: int):
        super().__init__()
        for i in range(n):
            self[f"denselayer{i + 1}"] = DenseLayer3d(cin + i * growth, growth, bn_size)

    def forward(self, x):
        feats = [x]
        for layer in self.values():
            feats.append(layer(torch.cat(feats, 1)))
        return torch.cat(feats, 1)


class Transition3d(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(OrderedDict([
            ("norm", nn.BatchNorm3d(cin)),
            ("relu", nn.ReLU(inplace=True)),
            ("conv", nn.Conv3d(cin, cout, 1, bias=False)),
            ("pool", nn.AvgPool3d(2, stride=2)),
        ]))


class DenseNet3d(nn.Module):
    """3D DenseNet; default: DenseNet121 (growth 32, blocks 6/12/24/16, 64 initial features)."""

    def __init__(self, in_channels: int = 1, block_config=(6, 12, 24, 16), growth: int = 32,
                 init_features: int = 64, bn_size: int = 4):
        super().__init__()
        mods = OrderedDict([
            ("conv0", nn.Conv3d(in_channels, init_features, 7, stride=2, padding=3, bias=False)),
            ("norm0", nn.BatchNorm3d(init_features)),
            ("relu0", nn.ReLU(inplace=True)),
            ("pool0", nn.MaxPool3d(3, stride=2, padding=1)),
        ])
        c = init_features
        chans = []
        for i, n in enumerate(block_config):
            mods[f"denseblock{i + 1}"] = DenseBlock3d(n, c, growth, bn_size)
            c += n * growth
            chans.append(c)
            if i != len(block_config) - 1:
                mods[f"transition{i + 1}"] = Transition3d(c, c // 2)
                c //= 2
        mods["norm5"] = nn.BatchNorm3d(c)
        self.features = nn.Sequential(mods)
        self._last_block = f"denseblock{len(block_config)}"
        self.relu5 = nn.ReLU(inplace=False)
        self.feature_strides = (4, 8, 16, 32)
        self.feature_channels = tuple(chans)
        init_conv_bn(self)

    def forward(self, x):
        out = []
        for name, mod in self.features.named_children():
            x = mod(x)
            if name.startswith("denseblock") and name != self._last_block:
                out.append(x)
        out.append(self.relu5(x))  # after norm5
        return out


# --------------------------------------------------------------------------- X3D


def round_width(width: float, multiplier: float, min_width: int = 8, divisor: int = 8) -> int:
    """pytorchvideo's channel rounding: nearest multiple of ``divisor``, never below 90% of the target."""
    width *= multiplier
    out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if out < 0.9 * width:
        out += divisor
    return int(out)


class SqueezeExcitation3d(nn.Module):
    """fvcore's SE: global average -> 1x1 conv (reduce) -> ReLU -> 1x1 conv -> sigmoid gate."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool3d(1)
        self.block = nn.Sequential(nn.Conv3d(channels, reduced, 1), nn.ReLU(inplace=True),
                                   nn.Conv3d(reduced, channels, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.block(self.avg_pool(x))


class X3DBottleneck(nn.Module):
    def __init__(self, cin: int, inner: int, cout: int, stride: int, se_ratio: float):
        super().__init__()
        self.conv_a = nn.Conv3d(cin, inner, 1, bias=False)
        self.norm_a = nn.BatchNorm3d(inner)
        self.act_a = nn.ReLU(inplace=True)
        self.conv_b = nn.Conv3d(inner, inner, 3, stride=stride, padding=1, groups=inner, bias=False)
        se = SqueezeExcitation3d(inner, round_width(inner, se_ratio)) if se_ratio > 0 else nn.Identity()
        self.norm_b = nn.Sequential(nn.BatchNorm3d(inner), se)
        self.act_b = nn.SiLU()  # Swish
        self.conv_c = nn.Conv3d(inner, cout, 1, bias=False)
        self.norm_c = nn.BatchNorm3d(cout)

    def forward(self, x):
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class X3DResBlock(nn.Module):
    def __init__(self, cin: int, inner: int, cout: int, stride: int, se_ratio: float):
        super().__init__()
        self.branch1_conv = nn.Conv3d(cin, cout, 1, stride=stride, bias=False) if (cin != cout or stride > 1) else None
        self.branch1_norm = nn.BatchNorm3d(cout) if cin != cout else None
        self.branch2 = X3DBottleneck(cin, inner, cout, stride, se_ratio)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x):
        shortcut = x
        if self.branch1_conv is not None:
            shortcut = self.branch1_conv(shortcut)
        if self.branch1_norm is not None:
            shortcut = self.branch1_norm(shortcut)
        return self.activation(shortcut + self.branch2(x))


class X3DStage(nn.Module):
    def __init__(self, depth: int, cin: int, inner: int, cout: int, stride: int, se_ratio: float):
        super().__init__()
        self.res_blocks = nn.ModuleList(
            X3DResBlock(cin if i == 0 else cout, inner, cout, stride if i == 0 else 1,
                        se_ratio if (i + 1) % 2 else 0.0)  # SE on blocks 0, 2, 4, ...
            for i in range(depth))

    def forward(self, x):
        for b in self.res_blocks:
            x = b(x)
        return x


class X3DStem(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv_xy = nn.Conv3d(cin, cout, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.conv_t = nn.Conv3d(cout, cout, (5, 1, 1), stride=(2, 1, 1), padding=(2, 0, 0), groups=cout, bias=False)
        self.norm = nn.BatchNorm3d(cout)
        self.activation = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.activation(self.norm(self.conv_t(self.conv_xy(x))))


class X3D(nn.Module):
    """X3D backbone; defaults give X3D-M (width factor 2.0, depth factor 2.2, bottleneck 2.25)."""

    def __init__(self, in_channels: int = 1, stem_dim_in: int = 12, width_factor: float = 2.0,
                 depth_factor: float = 2.2, bottleneck_factor: float = 2.25, se_ratio: float = 0.0625):
        super().__init__()
        stem_out = round_width(stem_dim_in, width_factor)
        self.stem = X3DStem(in_channels, stem_out)
        dims = [stem_dim_in]
        for _ in range(3):
            dims.append(round_width(dims[-1], 2.0))
        cin = stem_out
        stages, chans = [], []
        for base_depth, dim in zip((1, 2, 5, 3), dims):
            cout = round_width(dim, width_factor)
            inner = int(bottleneck_factor * cout)
            depth = int(math.ceil(depth_factor * base_depth))
            stages.append(X3DStage(depth, cin, inner, cout, 2, se_ratio))
            chans.append(cout)
            cin = cout
        self.stages = nn.ModuleList(stages)
        self.feature_strides = (4, 8, 16, 32)
        self.feature_channels = tuple(chans)
        init_conv_bn(self)

    def forward(self, x):
        x = self.stem(x)
        out = []
        for s in self.stages:
            x = s(x)
            out.append(x)
        return out
