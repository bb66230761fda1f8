"""The 3D members: their ``byu.models.unet_3d.Unet3dModel`` around X3D-M, DenseNet121 or ResNeXt50.

``encoder`` -> ``neck`` (factorized FPN into the stride-16 level) -> ``decoder.blocks.0`` (one smp
UNet block with SCSE: the stride-32 map upsampled x2, concatenated with the fused stride-16 map) ->
``ms_seg_heads.0.0`` (Conv3d 3x3x3 to one channel, no activation). Input raw 0..255 float
``(N, 1, D, H, W)``; output the logits of head 0, ``(N, 1, D/16, H/16, W/16)`` -- the only output
their inference uses (``model(x)[0]``).

Axis order, as trained: the net after the encoder runs on ``(N, C, H, W, D)`` and the head's output
is permuted back to ``(N, 1, D, H, W)``. DenseNet121 and ResNeXt50 (:class:`SMPEncoder`) permute the
INPUT first, so every one of their kernels has spatial axes (H, W, D); X3D runs on (D, H, W) and
permutes its features. A checkpoint loaded into the wrong order still loads (the kernels are cubic)
but computes something else: the tests check the order with non-cubic inputs.

Names: ``encoder.encoder.*`` (the network), ``encoder.mean``/``encoder.std`` (SMP encoders: ImageNet
mean/std x 255, shape (1, 3, 1, 1, 1), saved in the checkpoint), ``neck.convs.*``, ``decoder.blocks.0.*``,
``ms_seg_heads.0.0.*``.
"""

from __future__ import annotations

import torch
from torch import nn

from export.models.blocks import FactorizedFPN, UnetDecoder

IMAGENET_MEAN_255 = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD_255 = (0.229 * 255, 0.224 * 255, 0.225 * 255)
DECODER_CHANNELS = 192


class SMPEncoder(nn.Module):
    """Their ``SMPEncoder``: input ``(N, 1, D, H, W)`` permuted to ``(N, 1, H, W, D)``, expanded to 3
    channels, ``(x - mean) / std`` with the buffers, then the network."""

    def __init__(self, network: nn.Module):
        super().__init__()
        self.encoder = network
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN_255, dtype=torch.float32).reshape(1, 3, 1, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD_255, dtype=torch.float32).reshape(1, 3, 1, 1, 1))
        self.output_channels = list(network.output_channels)

    def forward(self, x):
        x = x.permute(0, 1, 3, 4, 2).expand(-1, 3, -1, -1, -1)
        return self.encoder((x - self.mean) / self.std)


class Unet3d(nn.Module):
    """See the module docstring. ``encoder`` returns ``[input, /2, /4, /8, /16, /32]`` in (N, C, H, W, D)."""

    in_channels = 1
    stride = 16
    patch_multiple = 32

    def __init__(self, encoder: nn.Module, neck_intermediate: int | None):
        super().__init__()
        chans = list(encoder.output_channels)
        self.encoder = encoder
        self.neck = FactorizedFPN(3, chans[1:], neck_intermediate, target_level=-2, double_mid=True)
        fused = self.neck.output_channels
        self.decoder = UnetDecoder(3, fused[-1], fused[-2], DECODER_CHANNELS)
        self.ms_seg_heads = nn.ModuleList([nn.Sequential(nn.Conv3d(DECODER_CHANNELS, 1, 3, padding=1))])

    @property
    def output_conv(self) -> nn.Conv3d:
        return self.ms_seg_heads[0][0]

    def forward(self, x):
        feats = self.neck(self.encoder(x)[1:])
        heat = self.ms_seg_heads[0](self.decoder(feats[-1], feats[-2]))
        return heat.permute(0, 1, 4, 2, 3)  # (N, 1, H, W, D) -> (N, 1, D, H, W)


def x3d_m() -> Unet3d:
    from export.models.x3d import X3DEncoderWrapper

    return Unet3d(X3DEncoderWrapper(), neck_intermediate=None)


def densenet121() -> Unet3d:
    from export.models.densenet3d import DenseNet3dEncoder

    return Unet3d(SMPEncoder(DenseNet3dEncoder()), neck_intermediate=32)


def resnext50() -> Unet3d:
    from export.models.resnext3d import ResNeXt3dEncoder

    return Unet3d(SMPEncoder(ResNeXt3dEncoder()), neck_intermediate=32)
