"""The 2D members: their ``byu.models.unet_2d.Unet2dModel`` around timm MaxViT-Tiny or CoaT-Lite-Medium.

``(x - mean) / std`` (buffers ``mean``/``std``, shape (1, 3, 1, 1): the encoder's timm data config
x 255) -> ``encoder`` (the timm model itself, head removed; names as timm's) -> ``neck`` (factorized
FPN into the stride-16 level) -> ``dec_blocks.0`` (PixelShuffle UNet block: the stride-32 map up x2,
concatenated with the fused stride-16 map) -> ``seg_head`` (conv3x3, LayerNorm2d, GELU, conv1x1).
Input raw 0..255 float ``(N, 3, H, W)``: three consecutive z-slices as channels; output the heatmap
logits ``(N, 1, H/16, W/16)``, the only output their inference uses (``model(x)[2]``).

Not built: ``reg_head`` and DSNT (training-only; their inference loads with ``reg_head.enable=False``
and ignores the checkpoint's ``reg_head.*`` keys, as :mod:`export.checkpoints` does).

* ``maxvit_tiny``: ``maxvit_tiny_tf_512`` created with ``img_size`` = the patch; features from
  ``forward_intermediates(indices=5, norm=False)``: /2 (64), /4 (64), /8 (128), /16 (256), /32 (512).
  Window and grid partitions are ``img_size / 32``, so the relative-position tables of a checkpoint
  trained at 896 x 896 only fit a model built for 896 x 896 (and that model takes only 896 x 896).
* ``coat_lite_medium``: ``coat_lite_medium_384`` created with ``img_size`` = the patch (its patch
  embeddings accept exactly that size), ``return_interm_layers`` with ``x1_nocls..x4_nocls``: /4 (128),
  /8 (256), /16 (320), /32 (512). CoaT shares its ``cpeN``/``crpeN`` modules with
  ``serial_blocksN.M.cpe``/``.factoratt_crpe.crpe``: one tensor, two names in the state dict.

timm imports torchvision at import time; :func:`export.deps.import_timm` turns any failure to load
them into one :class:`~export.errors.ExportError` line.
"""

from __future__ import annotations

import torch
from torch import nn

from export.deps import import_timm
from export.errors import ExportError
from export.models.blocks import ChannelLayerNorm, FactorizedFPN, UnetBlock2d

NECK_INTERMEDIATE = 64
DECODER_CHANNELS = 256


class Unet2d(nn.Module):
    """See the module docstring. ``features(x)`` returns the encoder's maps, shallow to deep."""

    in_channels = 3
    stride = 16
    patch_multiple = 32

    def __init__(self, encoder: nn.Module, channels: list[int], mean, std, kind: str):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1) * 255.0)
        self.encoder = encoder
        self.kind = kind
        self.neck = FactorizedFPN(2, channels, NECK_INTERMEDIATE, target_level=-2, double_mid=False)
        fused = self.neck.output_channels
        self.dec_blocks = nn.ModuleList([UnetBlock2d(fused[-1], fused[-2], DECODER_CHANNELS)])
        self.seg_head = nn.Sequential(nn.Conv2d(DECODER_CHANNELS, DECODER_CHANNELS, 3, padding=1),
                                      ChannelLayerNorm(DECODER_CHANNELS, 1e-6), nn.GELU(),
                                      nn.Conv2d(DECODER_CHANNELS, 1, 1))

    @property
    def output_conv(self) -> nn.Conv2d:
        return self.seg_head[3]

    def features(self, x) -> list[torch.Tensor]:
        if self.kind == "coat":
            return list(self.encoder.forward_features(x).values())
        return self.encoder.forward_intermediates(x, indices=5, norm=False, stop_early=True, output_fmt="NCHW",
                                                  intermediates_only=True)

    def forward(self, x):
        feats = self.neck(self.features((x - self.mean) / self.std))
        return self.seg_head(self.dec_blocks[0](feats[-1], feats[-2]))


def _data_config(timm, model) -> tuple:
    cfg = timm.data.resolve_data_config({}, model=model)
    return tuple(cfg["mean"]), tuple(cfg["std"])


def maxvit_tiny(patch: tuple[int, int]) -> Unet2d:
    timm = import_timm()
    enc = timm.create_model("maxvit_tiny_tf_512", pretrained=False, img_size=list(patch), in_chans=3)
    mean, std = _data_config(timm, enc)
    enc.head = nn.Identity()  # their reset_timm_head: no head keys in the checkpoint
    channels = [int(f["num_chs"]) for f in enc.feature_info]  # stem and the 4 stages
    return Unet2d(enc, channels, mean, std, kind="maxvit")


def coat_lite_medium(patch: tuple[int, int]) -> Unet2d:
    timm = import_timm()
    if patch[0] != patch[1]:
        raise ExportError(f"coat_lite_medium takes a square patch (its img_size), got {list(patch)}. "
                          "Fix: pass --patch 896 896")
    names = ["x1_nocls", "x2_nocls", "x3_nocls", "x4_nocls"]
    enc = timm.create_model("coat_lite_medium_384", pretrained=False, img_size=patch[0], in_chans=3,
                            num_classes=0, return_interm_layers=True, out_features=names)
    mean, std = _data_config(timm, enc)
    return Unet2d(enc, [int(c) for c in enc.embed_dims], mean, std, kind="coat")
