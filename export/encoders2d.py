"""2D encoders from timm (imported lazily, only when a 2d member is built; never pretrained).

* ``maxvit_tiny_tf_512`` through ``features_only`` (strides 2/4/8/16/32). MaxViT's block/grid
  partition size is ``img_size // 32``, so the model is created with ``img_size`` = the export
  patch: every patch side a multiple of 32 then works, and the relative-position tables are sized
  for that patch (a checkpoint trained at another ``img_size`` fails strict loading, shape diff shown).
* ``coat_lite_medium_384`` through ``return_interm_layers`` (``x1_nocls .. x4_nocls``: strides
  4/8/16/32), also created with ``img_size`` = the patch (its patch embeddings check the size).

timm imports torchvision at import time. Where torchvision cannot be imported (e.g. a CPU-only
torch with the CUDA torchvision wheel from PyPI), building a 2d member raises
:class:`~export.errors.ExportError` saying so; 3d members never touch timm.
"""

from __future__ import annotations

from torch import nn

from export.errors import ExportError


def import_timm():
    """``import timm`` or a clear error naming what is missing and what to install."""
    try:
        import timm
    except ImportError as exc:  # ModuleNotFoundError for timm itself or for torchvision inside it
        missing = getattr(exc, "name", None) or str(exc)
        raise ExportError(
            f"2d members need timm (and timm imports torchvision), but importing it failed: {exc}. "
            f"Fix: pip install timm torchvision with a torchvision built for the installed torch "
            f"(missing module: {missing})") from exc
    return timm


class TimmFeatures(nn.Module):
    """A timm ``features_only`` model: returns its maps at ``feature_strides``."""

    def __init__(self, model_name: str, in_channels: int, img_size: tuple[int, int], strides=(16, 32)):
        super().__init__()
        timm = import_timm()
        probe = timm.create_model(model_name, pretrained=False, features_only=True, in_chans=in_channels,
                                  img_size=img_size)
        reductions = list(probe.feature_info.reduction())
        idx = [reductions.index(s) for s in strides]
        self.model = timm.create_model(model_name, pretrained=False, features_only=True, in_chans=in_channels,
                                       img_size=img_size, out_indices=tuple(idx))
        self.feature_strides = tuple(strides)
        self.feature_channels = tuple(self.model.feature_info.channels())

    def forward(self, x):
        return self.model(x)


class CoatFeatures(nn.Module):
    """timm CoaT(-Lite) with ``return_interm_layers``: maps at strides 16 and 32 (``x3_nocls``, ``x4_nocls``)."""

    def __init__(self, model_name: str, in_channels: int, img_size: tuple[int, int]):
        super().__init__()
        timm = import_timm()
        if img_size[0] != img_size[1]:
            raise ExportError(f"{model_name} takes a square patch (img_size), got {list(img_size)}")
        self.keys = ("x3_nocls", "x4_nocls")
        self.model = timm.create_model(model_name, pretrained=False, in_chans=in_channels, img_size=img_size[0],
                                       return_interm_layers=True, out_features=self.keys)
        self.feature_strides = (16, 32)
        self.feature_channels = tuple(int(self.model.embed_dims[i]) for i in (2, 3))

    def forward(self, x):
        out = self.model(x)
        return [out[k] for k in self.keys]
