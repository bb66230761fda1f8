"""Blocks shared by the 3rd-place members, each written once: channel LayerNorm, the factorized FPN
neck, SCSE attention, the 3D UNet decoder block (smp-3d) and the 2D UNet block (PixelShuffle).

Every class keeps the parameter names of the module it reproduces (``dangnh0611/kaggle_byu`` and
what it imports: yagm's ``FactorizedFPN2d/3d``, segmentation_models_pytorch_3d's ``DecoderBlock``
and ``SCSEModule``, ``unet_2d.UnetBlock``), so their checkpoints load strictly. ``ndim`` (2 or 3)
picks the Conv2d/Conv3d flavour; nothing here knows which axis is depth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv_nd(ndim: int):
    return {2: nn.Conv2d, 3: nn.Conv3d}[ndim]


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of ``(N, C, *spatial)`` (yagm ``ChannelFirstLayerNorm2d/3d``,
    eps 1e-5; timm ``LayerNorm2d``, eps 1e-6). Parameters ``weight``, ``bias``."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps
        self.normalized_shape = (channels,)

    def forward(self, x):
        nd = x.dim()  # explicit, non-negative permutations: the ONNX exporter mistranslates movedim(-1, 1)
        x = x.permute(0, *range(2, nd), 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, nd - 1, *range(1, nd - 1))


class FactorizedFPN(nn.Module):
    """Fuse every level into the ``target_level`` map (yagm ``FactorizedFPN2d/3d``).

    Each non-target level goes through ``convs.i = [conv3x3(c -> m'), GELU, ChannelLayerNorm(m'),
    conv3x3(m' -> m)]`` (``m' = 2m`` in the 3D version, ``m`` in the 2D one), is resized
    (tri/bilinear, ``align_corners=False``) to the target's size and concatenated after it:
    ``[target, level 0, level 1, ...]``. ``forward`` returns the list with the target replaced.
    ``intermediate`` None means each level's own channel count.
    """

    def __init__(self, ndim: int, in_channels, intermediate: int | None, target_level: int, *,
                 double_mid: bool, eps: float = 1e-5):
        super().__init__()
        chans = list(in_channels)
        mids = list(chans) if intermediate is None else [int(intermediate)] * len(chans)
        self.ndim = ndim
        self.target_level = target_level % len(chans)
        self.output_channels = list(chans)
        chans.pop(self.target_level)
        mids.pop(self.target_level)
        conv = conv_nd(ndim)
        self.convs = nn.ModuleList(
            nn.Sequential(conv(c, m * (2 if double_mid else 1), 3, padding=1), nn.GELU(),
                          ChannelLayerNorm(m * (2 if double_mid else 1), eps),
                          conv(m * (2 if double_mid else 1), m, 3, padding=1))
            for c, m in zip(chans, mids))
        self.output_channels[self.target_level] += sum(mids)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = list(xs)
        target = xs.pop(self.target_level)
        size = target.shape[2:]
        mode = "trilinear" if self.ndim == 3 else "bilinear"
        parts = [target] + [F.interpolate(c(x), size=size, mode=mode, align_corners=False)
                            for c, x in zip(self.convs, xs)]
        xs.insert(self.target_level, torch.cat(parts, dim=1))
        return xs


class SCSE(nn.Module):
    """Concurrent spatial and channel squeeze-excitation (smp ``SCSEModule``, reduction 16):
    ``x * cSE(x) + x * sSE(x)``."""

    def __init__(self, ndim: int, channels: int, reduction: int = 16):
        super().__init__()
        conv = conv_nd(ndim)
        pool = {2: nn.AdaptiveAvgPool2d, 3: nn.AdaptiveAvgPool3d}[ndim]
        self.cSE = nn.Sequential(pool(1), conv(channels, channels // reduction, 1), nn.ReLU(),
                                 conv(channels // reduction, channels, 1), nn.Sigmoid())
        self.sSE = nn.Sequential(conv(channels, 1, 1), nn.Sigmoid())

    def forward(self, x):
        return x * self.cSE(x) + x * self.sSE(x)


class Attention(nn.Module):
    """smp's ``Attention`` wrapper: the block under ``.attention`` (names ``attentionN.attention.*``)."""

    def __init__(self, ndim: int, channels: int):
        super().__init__()
        self.attention = SCSE(ndim, channels)

    def forward(self, x):
        return self.attention(x)


def conv_bn_relu(ndim: int, cin: int, cout: int) -> nn.Sequential:
    """smp ``Conv3dReLU`` with batch norm: ``[conv3x3 (no bias), BatchNorm, ReLU]``."""
    bn = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[ndim]
    return nn.Sequential(conv_nd(ndim)(cin, cout, 3, padding=1, bias=False), bn(cout), nn.ReLU())


class UnetDecoderBlock(nn.Module):
    """smp-3d ``DecoderBlock`` (SCSE attention, batch norm): nearest x2 upsample of ``x``, concat the
    skip, ``attention1``, ``conv1``, ``conv2``, ``attention2``."""

    def __init__(self, ndim: int, in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = conv_bn_relu(ndim, in_channels + skip_channels, out_channels)
        self.attention1 = Attention(ndim, in_channels + skip_channels)
        self.conv2 = conv_bn_relu(ndim, out_channels, out_channels)
        self.attention2 = Attention(ndim, out_channels)

    def forward(self, x, skip):
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        x = self.attention1(torch.cat([x, skip], dim=1))
        return self.attention2(self.conv2(self.conv1(x)))


class UnetDecoder(nn.Module):
    """smp-3d ``MultiscaleUnetDecoder`` with one block and no centre: ``blocks.0(deepest, skip)``."""

    def __init__(self, ndim: int, deepest_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.blocks = nn.ModuleList([UnetDecoderBlock(ndim, deepest_channels, skip_channels, out_channels)])

    def forward(self, deepest, skip):
        return self.blocks[0](deepest, skip)


class PixelShuffleUp(nn.Sequential):
    """``unet_2d.PixelShuffleICNR`` without blur: ``[conv1x1(c -> 4c'), LayerNorm2d, GELU, PixelShuffle(2)]``."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout * 4, 1), ChannelLayerNorm(cout * 4, 1e-6), nn.GELU(), nn.PixelShuffle(2))


class UnetBlock2d(nn.Module):
    """``unet_2d.UnetBlock``: ``conv2(conv1(GELU(cat[shuf(up_in), bn(skip)])))``, convs 3x3 + GELU,
    ``bn`` a LayerNorm2d (eps 1e-6)."""

    def __init__(self, up_in_channels: int, skip_channels: int, out_channels: int):
        super().__init__()
        self.shuf = PixelShuffleUp(up_in_channels, up_in_channels // 2)
        self.bn = ChannelLayerNorm(skip_channels, 1e-6)
        self.conv1 = nn.Sequential(nn.Conv2d(up_in_channels // 2 + skip_channels, out_channels, 3, padding=1),
                                   nn.GELU())
        self.conv2 = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1), nn.GELU())
        self.relu = nn.GELU()

    def forward(self, up_in, skip):
        x = self.relu(torch.cat([self.shuf(up_in), self.bn(skip)], dim=1))
        return self.conv2(self.conv1(x))
