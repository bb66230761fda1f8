"""DenseNet121 in 3D, as segmentation_models_pytorch_3d's ``densenet121`` encoder.

torchvision names under ``features`` (``conv0`` 7x7x7/2, ``norm0``, ``pool0`` 3x3x3/2,
``denseblockK.denselayerJ.norm1/conv1/norm2/conv2``, ``transitionK.norm/conv`` + 2x2x2 average pool,
``norm5``), 3 input channels, growth 32, bottleneck 4x, blocks 6/12/24/16, BatchNorm eps 1e-5.

The features are smp's, which are NOT the block outputs: ``[x, relu(norm0(conv0)) /2 (64),
relu(transition1.norm(block1)) /4 (256), relu(transition2.norm(block2)) /8 (512),
relu(transition3.norm(block3)) /16 (1024), norm5(block4) /32 (1024, no ReLU)]`` -- the skip of a
transition is taken after its ReLU, before its conv and pool. Axis-agnostic: the UNet runs it on
``(N, C, H, W, D)``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int, bn_size: int):
        super().__init__()
        self.norm1 = nn.BatchNorm3d(cin)
        self.relu1 = nn.ReLU()
        self.conv1 = nn.Conv3d(cin, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm3d(bn_size * growth)
        self.relu2 = nn.ReLU()
        self.conv2 = nn.Conv3d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.ModuleDict):
    def __init__(self, n: int, cin: int, growth: int, bn_size: int):
        super().__init__()
        for i in range(n):
            self.add_module(f"denselayer{i + 1}", DenseLayer(cin + i * growth, growth, bn_size))

    def forward(self, x):
        feats = [x]
        for layer in self.values():
            feats.append(layer(torch.cat(feats, 1)))
        return torch.cat(feats, 1)


class Transition(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(OrderedDict([("norm", nn.BatchNorm3d(cin)), ("relu", nn.ReLU()),
                                      ("conv", nn.Conv3d(cin, cout, 1, bias=False)), ("pool", nn.AvgPool3d(2, 2))]))

    def with_skip(self, x):
        """``(pooled output, skip after the ReLU)``."""
        skip = self.relu(self.norm(x))
        return self.pool(self.conv(skip)), skip


class DenseNet3dEncoder(nn.Module):
    def __init__(self, in_channels: int = 3, block_config=(6, 12, 24, 16), growth: int = 32, init_features: int = 64,
                 bn_size: int = 4):
        super().__init__()
        mods = OrderedDict([
            ("conv0", nn.Conv3d(in_channels, init_features, 7, stride=2, padding=3, bias=False)),
            ("norm0", nn.BatchNorm3d(init_features)),
            ("relu0", nn.ReLU()),
            ("pool0", nn.MaxPool3d(3, stride=2, padding=1)),
        ])
        c = init_features
        self.output_channels = [in_channels, init_features]
        for i, n in enumerate(block_config):
            mods[f"denseblock{i + 1}"] = DenseBlock(n, c, growth, bn_size)
            c += n * growth
            self.output_channels.append(c)
            if i != len(block_config) - 1:
                mods[f"transition{i + 1}"] = Transition(c, c // 2)
                c //= 2
        mods["norm5"] = nn.BatchNorm3d(c)
        self.features = nn.Sequential(mods)
        self.num_blocks = len(block_config)

    def forward(self, x):
        f = self.features
        out = [x]
        y = f.relu0(f.norm0(f.conv0(x)))
        out.append(y)
        y = f.pool0(y)
        for i in range(1, self.num_blocks):
            y, skip = getattr(f, f"transition{i}").with_skip(getattr(f, f"denseblock{i}")(y))
            out.append(skip)
        out.append(f.norm5(getattr(f, f"denseblock{self.num_blocks}")(y)))
        return out
