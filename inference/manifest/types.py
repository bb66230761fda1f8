"""The frozen dataclasses a manifest is parsed into (:mod:`inference.manifest.parse` parses and documents).

Every field added for the recipe (issue 13) defaults to the behaviour the package had before it,
so a manifest that does not name a key runs exactly as it did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inference.decode.particle_params import DecodeParams
from inference.manifest.particle_classes import ParticleClass


@dataclass(frozen=True)
class Normalize:
    """``x = (v - mean) / std`` (``mode='affine'``) or per-tomogram z-score (``mode='zscore'``)."""

    mode: str = "affine"
    mean: float = 0.0
    std: float = 255.0


@dataclass(frozen=True)
class Intensity:
    """How a volume that is not 8-bit reaches the 0..255 range a member's fixed ``mean``/``std`` (and
    ``resample.quantize: uint8``) assume (:mod:`inference.io.intensity`): ``percentiles`` (``low`` -> 0,
    ``high`` -> 255, clipped), ``minmax``, or ``raw`` (values as they are)."""

    rule: str = "percentiles"
    low: float = 0.5
    high: float = 99.5

    def describe(self) -> str:
        return f"percentiles {self.low:g}/{self.high:g}" if self.rule == "percentiles" else self.rule


@dataclass(frozen=True)
class Decode:
    nms_kernel: int = 3
    min_conf: float = 0.02
    top_k: int = 50
    border_A: float = 0.0     # drop cells whose centre is closer than this to the tomogram's border
    nms_radius_A: float = 0.0  # > 0: greedy L2 NMS in Å after the local-maximum test (keep >= R)


@dataclass(frozen=True)
class Resample:
    """``grid``: ``corner`` (voxel i at i*s Å) or ``half_pixel`` (PyTorch ``align_corners=False``
    with ``scale_factor``); ``quantize``: ``none`` or ``uint8`` (truncate, as ``.to(torch.uint8)``)."""

    grid: str = "corner"
    quantize: str = "none"


@dataclass(frozen=True)
class Windows:
    """``placement``: ``stride`` (starts on the output grid, the end padded) or ``end`` (the last
    window ends at the volume's end; a smaller volume is padded at the START); ``pad``: ``mean``
    (the normalised volume's mean) or ``zero`` (raw intensity 0)."""

    placement: str = "stride"
    pad: str = "mean"


@dataclass(frozen=True)
class Stitch:
    """``mode``: ``mean``/``max`` over overlapping windows; ``space``: ``prob`` (activation per
    window) or ``logit`` (activation after stitching); ``grid_stride``: None pastes window
    outputs cell-aligned on the output grid (with ``windows.placement: end`` or ``slices``: the
    resized grid at the stride), a number ``g`` uses the recipe's resized grid of ``round(m/g)``
    cells per axis (:mod:`inference.predict.window_merge`)."""

    mode: str = "mean"
    space: str = "prob"
    grid_stride: int | None = None


@dataclass(frozen=True)
class Slices:
    """2d members, the recipe's geometry: windows of ``window`` consecutive slices (the engine's
    channels) every ``step`` slices (the last ending at the volume's end), each window's output
    pasted into the z cells of ``cell`` slices it maps to."""

    window: int = 3
    step: int = 3
    cell: int = 4


@dataclass(frozen=True)
class Transform:
    """A TTA transform (:mod:`inference.predict.tta` applies and inverts it): the axis order, then flips."""

    name: str
    perm: tuple[int, ...]   # new axis i is old axis perm[i]
    flips: tuple[int, ...]  # positions (in the transformed frame) to flip

    @property
    def is_identity(self) -> bool:
        return self.perm == tuple(range(len(self.perm))) and not self.flips


def parse_tta(name: str, axes: str = "zyx") -> Transform:
    """Parse a TTA name over ``axes`` (``'zyx'`` or ``'yx'``); ValueError says what is wrong."""
    order, _, flip = name.partition("_")
    if sorted(order) != sorted(axes) or len(order) != len(axes):
        raise ValueError(f"TTA '{name}': '{order}' is not an order of the axes '{axes}' (e.g. '{axes}', '{axes[::-1]}')")
    if "_" in name and not flip:
        raise ValueError(f"TTA '{name}': nothing after '_' (name the axes to flip, e.g. '{axes}_{axes[-1]}')")
    if len(set(flip)) != len(flip) or any(a not in axes for a in flip):
        raise ValueError(f"TTA '{name}': flip axes '{flip}' must be distinct letters of '{axes}'")
    perm = tuple(axes.index(a) for a in order)
    flips = tuple(sorted(order.index(a) for a in flip))
    return Transform(name=name, perm=perm, flips=flips)


@dataclass(frozen=True)
class Member:
    """One detector of the ensemble as the manifest describes it: its model file and kind (``3d``: volume
    windows; ``2d``: slice windows with ``channels`` neighbouring slices), window ``patch`` and output
    ``stride``, how its input is prepared (``resample``, ``normalize``, ``intensity``), windows and TTA, how
    windows are stitched and decoded, and its ``weight`` in fusion. Schema: :mod:`inference.manifest.parse`."""

    name: str
    kind: str
    model: Path
    patch: tuple[int, ...]
    stride: int
    overlap: tuple[float, ...]
    normalize: Normalize
    activation: str
    tta: tuple[str, ...]
    weight: float
    stitch: Stitch  # a plain 'mean'/'max' string is accepted and becomes Stitch(mode=...)
    batch_size: int
    decode: Decode
    channels: int = 1
    slice_spacing: float | None = None
    resample: Resample = field(default_factory=Resample)
    windows: Windows = field(default_factory=Windows)
    tta_scope: str = "volume"   # volume | window
    tta_merge: str = "mean"     # mean | separate
    slices: Slices | None = None  # 2d only; None: every slice a window centre
    intensity: Intensity | None = None  # None: the default for the normalisation (see intensity_rule)
    fp16: bool | None = None    # TensorRT may run it in fp16; None: the run's --fp16 decides
    outputs: tuple[str, ...] = ()  # task particles: the model's output channels by name, in its order
    class_decode: tuple[DecodeParams, ...] = ()  # task particles, ensemble points: one per manifest class
    transforms: tuple[Transform, ...] = field(init=False, repr=False, compare=False)  # ``tta`` parsed

    def __post_init__(self):
        if isinstance(self.stitch, str):
            object.__setattr__(self, "stitch", Stitch(mode=self.stitch))
        object.__setattr__(self, "transforms", tuple(parse_tta(n, self.spatial_axes) for n in self.tta))

    @property
    def intensity_rule(self) -> Intensity | None:
        """The rule for volumes that are not 8-bit; None: the values are used as they are. Unless the
        manifest names one: percentiles 0.5/99.5 for a fixed mean/std or ``quantize: uint8`` (they assume
        0..255), none for a z-scored member (a z-score does not depend on the scale)."""
        rule = self.intensity
        if rule is None:
            rule = Intensity() if self.normalize.mode == "affine" or self.resample.quantize == "uint8" else None
        return None if rule is None or rule.rule == "raw" else rule

    @property
    def spatial_axes(self) -> str:
        return "zyx" if self.kind == "3d" else "yx"

    @property
    def out_channels(self) -> int:
        """The model's output channels: one heatmap (motors), or one per name in ``outputs`` (particles)."""
        return len(self.outputs) or 1

    @property
    def input_names(self) -> tuple[str, ...]:
        """The fusion inputs this member produces: itself, or ``<name>@<tta>`` per separate TTA."""
        if self.tta_merge == "separate":
            return tuple(f"{self.name}@{t}" for t in self.tta)
        return (self.name,)


@dataclass(frozen=True)
class Threshold:
    """Exactly one of ``quantile`` (of the per-tomogram best confs) or ``fixed`` is set.
    ``keep_equal``: a best conf EQUAL to the threshold keeps its motor (the recipe's rule)."""

    quantile: float | None = None
    fixed: float | None = None
    keep_equal: bool = False

    def describe(self) -> str:
        rule = f"quantile {self.quantile}" if self.quantile is not None else f"fixed {self.fixed}"
        return rule + (", ties kept" if self.keep_equal else "")


@dataclass(frozen=True)
class Fusion:
    method: str = "wbf"
    dist_A: float = 1000.0
    conf_type: str = "avg"
    skip_conf: float = 0.0
    box_A: float = 1000.0   # wbf_iou: cube side around each point
    iou_thr: float = 0.55   # wbf_iou: IoU to join a cluster
    rescale: str = "members"  # avg conf x min(n, M)/sum(w) (members) or x min(n, sum(w))/sum(w) (weights)


@dataclass(frozen=True)
class Particles:
    """What ``task: particles`` adds: the ``classes`` (the submission's order), the task's decoder (one
    :class:`~inference.decode.particle_params.DecodeParams` per class), how members combine (``heatmap``:
    their stitched logits averaged on one grid, then the activation, then one decode; ``points``: each
    member decoded, then per-class point WBF joining points closer than ``fusion_radius`` x the class radius),
    and ``candidate_floor``: the probability down to which picks are kept as candidates (``tune``)."""

    classes: tuple[ParticleClass, ...]
    decode: tuple[DecodeParams, ...]
    ensemble: str = "heatmap"
    fusion_radius: float = 0.5
    candidate_floor: float = 0.05

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)


@dataclass(frozen=True)
class Manifest:
    """A parsed ``weights_manifest.yaml``: the members, the spacing they run at (``target_spacing`` Å; a tomogram
    without one is read at ``default_spacing``), how their candidates are fused and the submission thresholded.
    ``task``: ``motors`` (one point or none per tomogram) or ``particles`` (picks of several classes,
    :class:`Particles`). ``path`` is the file it came from (member paths are relative to it)."""

    path: Path
    target_spacing: float
    members: tuple[Member, ...]
    threshold: Threshold | None  # motors; None for particles (each class has its threshold)
    default_spacing: float = 13.1
    fusion: Fusion = field(default_factory=Fusion)
    task: str = "motors"  # motors | particles
    particles: Particles | None = None  # task particles: its classes, decoder and ensemble

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(name)

    @property
    def inputs(self) -> tuple[tuple[str, Member], ...]:
        """``(input name, member)`` of every fusion input, in manifest order (see Member.input_names)."""
        return tuple((n, m) for m in self.members for n in m.input_names)

    def input_weights(self) -> dict[str, float]:
        return {n: m.weight for n, m in self.inputs}
