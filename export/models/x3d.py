"""X3D-M as the 3rd-place solution trained it: their modified SlowFast ``X3DEncoder``.

Names follow SlowFast (``s1.pathway0_stem.conv_xy/conv/bn``, ``sN.pathway0_resM.branch1/branch1_bn``,
``branch2.a/a_bn/b/b_bn/se.fc1/fc2/c/c_bn``), under ``encoder.encoder.*`` of the UNet. What their
modification changes from SlowFast's X3D (``third_party/slowfast``, ``MODEL.ARCH x3dencoder``):

* the stem strides 2 in depth as well (``conv`` 5x1x1, stride (2,1,1)), and every stage's first
  block strides 2 in D, H and W (``b`` 3x3x3 depthwise and ``branch1`` 1x1x1): each of s1..s5
  halves every axis, so the features are at strides 2, 4, 8, 16, 32 on every axis;
* no head; ``forward`` returns the input and every stage's output.

X3D-M: widths 24/24/48/96/192 (``DIM_C1`` 12 x width factor 2), depths 3/5/11/7 (1/2/5/3 x 2.2,
rounded up), inner width 2.25x, SE (ratio 1/16 rounded to a multiple of 8) on blocks 0, 2, 4..., Swish
after ``b_bn`` (and after SE), ReLU elsewhere, BatchNorm eps 1e-5.

:class:`X3DEncoderWrapper` is their ``byu.models.encoders.x3d.X3DEncoder``: raw 0..255 input
``(N, 1, D, H, W)`` -> ``(x - 114.75) / 57.375`` (constants, no buffer) -> 3 identical channels ->
the network on ``(N, C, D, H, W)`` -> every feature permuted to ``(N, C, H, W, D)`` for the neck.
"""

from __future__ import annotations

import math

from torch import nn

X3D_MEAN = 114.75  # their x3d.py: (x - 114.75) / 57.375, i.e. SlowFast's 0.45 / 0.225 on a 0..255 scale
X3D_STD = 57.375


def round_width(width: float, multiplier: float, divisor: int = 8) -> int:
    """SlowFast's channel rounding: ``width * multiplier`` to a multiple of ``divisor``, never below 90%."""
    width *= multiplier
    out = max(divisor, int(width + divisor / 2) // divisor * divisor)
    if out < 0.9 * width:
        out += divisor
    return int(out)


class Swish(nn.Module):
    def forward(self, x):
        return x * x.sigmoid()


class SE(nn.Module):
    """SlowFast ``SE``: ``x * sigmoid(fc2(relu(fc1(avgpool(x)))))``, 1x1x1 convs with bias."""

    def __init__(self, channels: int, ratio: float):
        super().__init__()
        hidden = round_width(channels, ratio)
        self.avg_pool = nn.AdaptiveAvgPool3d(1)
        self.fc1 = nn.Conv3d(channels, hidden, 1)
        self.fc1_act = nn.ReLU()
        self.fc2 = nn.Conv3d(hidden, channels, 1)
        self.fc2_sig = nn.Sigmoid()

    def forward(self, x):
        return x * self.fc2_sig(self.fc2(self.fc1_act(self.fc1(self.avg_pool(x)))))


class X3DTransform(nn.Sequential):
    """Bottleneck branch: a 1x1x1, b 3x3x3 depthwise (stride on every axis), optional SE, Swish, c 1x1x1."""

    def __init__(self, cin: int, cout: int, inner: int, stride: int, use_se: bool, se_ratio: float = 0.0625):
        layers = [
            ("a", nn.Conv3d(cin, inner, 1, bias=False)),
            ("a_bn", nn.BatchNorm3d(inner)),
            ("a_relu", nn.ReLU()),
            ("b", nn.Conv3d(inner, inner, 3, stride=stride, padding=1, groups=inner, bias=False)),
            ("b_bn", nn.BatchNorm3d(inner)),
        ]
        if use_se:
            layers.append(("se", SE(inner, se_ratio)))
        layers += [
            ("b_relu", Swish()),
            ("c", nn.Conv3d(inner, cout, 1, bias=False)),
            ("c_bn", nn.BatchNorm3d(cout)),
        ]
        super().__init__()
        for name, module in layers:
            self.add_module(name, module)


class ResBlock(nn.Module):
    """``relu(shortcut(x) + branch2(x))``; the shortcut is ``branch1_bn(branch1(x))`` (1x1x1, strided)
    when the shape changes."""

    def __init__(self, cin: int, cout: int, inner: int, stride: int, block_idx: int):
        super().__init__()
        if cin != cout or stride != 1:
            self.branch1 = nn.Conv3d(cin, cout, 1, stride=stride, bias=False)
            self.branch1_bn = nn.BatchNorm3d(cout)
        self.branch2 = X3DTransform(cin, cout, inner, stride, use_se=(block_idx + 1) % 2 == 1)
        self.relu = nn.ReLU()

    def forward(self, x):
        shortcut = self.branch1_bn(self.branch1(x)) if hasattr(self, "branch1") else x
        return self.relu(shortcut + self.branch2(x))


class ResStage(nn.Module):
    """``pathway0_res0 .. pathway0_res{n-1}``; the first block strides."""

    def __init__(self, cin: int, cout: int, inner: int, blocks: int, stride: int):
        super().__init__()
        self.num_blocks = blocks
        for i in range(blocks):
            self.add_module(f"pathway0_res{i}", ResBlock(cin if i == 0 else cout, cout, inner,
                                                         stride if i == 0 else 1, i))

    def forward(self, x):
        for i in range(self.num_blocks):
            x = getattr(self, f"pathway0_res{i}")(x)
        return x


class X3DStem(nn.Module):
    """``conv_xy`` 1x3x3 stride (1,2,2), depthwise ``conv`` 5x1x1 stride (2,1,1), ``bn``, ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv_xy = nn.Conv3d(cin, cout, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False)
        self.conv = nn.Conv3d(cout, cout, (5, 1, 1), stride=(2, 1, 1), padding=(2, 0, 0), groups=cout, bias=False)
        self.bn = nn.BatchNorm3d(cout)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(self.conv_xy(x))))


class Stem(nn.Module):
    """SlowFast ``VideoModelStem`` with one pathway: ``pathway0_stem``."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.pathway0_stem = X3DStem(cin, cout)

    def forward(self, x):
        return self.pathway0_stem(x)


class X3DEncoder(nn.Module):
    """The network (SlowFast names ``s1``..``s5``); ``forward`` -> ``[x, s1, s2, s3, s4, s5]``."""

    def __init__(self, in_channels: int = 3, dim_c1: int = 12, width_factor: float = 2.0, depth_factor: float = 2.2,
                 bottleneck_factor: float = 2.25):
        super().__init__()
        c1 = round_width(dim_c1, width_factor)
        self.s1 = Stem(in_channels, c1)
        self.output_channels = [in_channels, c1]
        cin = c1
        basis = [(1, dim_c1), (2, round_width(dim_c1, 2.0)), (5, round_width(dim_c1, 4.0)), (3, round_width(dim_c1, 8.0))]
        for i, (blocks, width) in enumerate(basis):
            cout = round_width(width, width_factor)
            n = int(math.ceil(depth_factor * blocks))
            self.add_module(f"s{i + 2}", ResStage(cin, cout, int(bottleneck_factor * cout), n, stride=2))
            self.output_channels.append(cout)
            cin = cout

    def forward(self, x):
        feats = [x]
        for stage in (self.s1, self.s2, self.s3, self.s4, self.s5):
            x = stage(x)
            feats.append(x)
        return feats


class X3DEncoderWrapper(nn.Module):
    """Their ``X3DEncoder`` (see the module docstring): normalise, 3 channels, features in (N, C, H, W, D)."""

    def __init__(self):
        super().__init__()
        self.encoder = X3DEncoder()
        self.output_channels = list(self.encoder.output_channels)

    def forward(self, x):
        x = ((x - X3D_MEAN) / X3D_STD).expand(-1, 3, -1, -1, -1)
        return [f.permute(0, 1, 3, 4, 2) for f in self.encoder(x)]
