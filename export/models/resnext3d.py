"""ResNeXt50-32x4d in 3D, as segmentation_models_pytorch_3d's ``resnext50_32x4d`` encoder.

torchvision names (``conv1``, ``bn1``, ``layer1..4`` of ``Bottleneck`` with ``conv1/bn1/conv2/bn2/
conv3/bn3/downsample.0/.1``), 3 input channels, 7x7x7 stem with stride 2, 3x3x3 max-pool stride 2,
the stride of a stage on its first ``conv2`` (ResNet v1.5; 32 groups of width 4 at 64 planes), blocks
3/4/6/3, BatchNorm eps 1e-5, every stride (2,2,2). ``forward`` -> ``[x, /2 (64), /4 (256), /8 (512),
/16 (1024), /32 (2048)]`` (smp's stages: identity, conv1-bn1-relu, maxpool+layer1, layer2..4).
Axis-agnostic: the UNet runs it on ``(N, C, H, W, D)``.
"""

from __future__ import annotations

from torch import nn


class Bottleneck(nn.Module):
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
        self.relu = nn.ReLU()
        self.downsample = None
        if stride != 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(nn.Conv3d(inplanes, planes * self.expansion, 1, stride=stride, bias=False),
                                            nn.BatchNorm3d(planes * self.expansion))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNeXt3dEncoder(nn.Module):
    def __init__(self, in_channels: int = 3, layers=(3, 4, 6, 3), groups: int = 32, width_per_group: int = 4):
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        inplanes = 64
        self.output_channels = [in_channels, 64]
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            mods = []
            for b in range(blocks):
                stride = 2 if (i > 0 and b == 0) else 1
                mods.append(Bottleneck(inplanes, planes, stride, groups, width_per_group))
                inplanes = planes * Bottleneck.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*mods))
            self.output_channels.append(inplanes)

    def forward(self, x):
        f2 = self.relu(self.bn1(self.conv1(x)))
        f4 = self.layer1(self.maxpool(f2))
        f8 = self.layer2(f4)
        f16 = self.layer3(f8)
        return [x, f2, f4, f8, f16, self.layer4(f16)]
