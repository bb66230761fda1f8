"""Decode parameters of one particle class: physical (Å, Å³) values with defaults from the class radius.

Every distance and size of a decoder is set in Å or Å³ and converted to the map's cells only when a map
is decoded (:meth:`DecodeParams.in_cells`), so one parameter means the same on a stride-1 or a stride-2
map (a stride-2 cell is 2 voxels) and on anisotropic cells. The defaults are fractions of the class
radius ``r`` (lengths) or of its ball volume ``4/3 pi r^3`` (volumes), named in :class:`Fractions`:

=================  ===========  ==========================================================================
parameter          default      meaning
=================  ===========  ==========================================================================
``filter_A``       1.0 r        ``peaks``: half-width of the max-filter box; a peak is a mask cell at least
                                as high as every mask cell within +-filter_A on each axis (the 1st place's
                                pp_1: ``int(0.5 * r / 10)`` half-resolution cells, i.e. about r)
``nms_A``          0.5 r        ``peaks``: greedy distance NMS (Euclidean, Å): a peak closer than this to a
                                better one is dropped (0.5 r is the metric's match radius: two picks that
                                close would match the same particle)
``min_blob_A3``    0.05 ball    ``components``/``watershed``: blobs (components, watershed regions)
                                smaller than this are dropped (8th place: 5-11 % of the ball; F4 weighs
                                recall 16 times precision, so the small end)
``split_A3``       1.0 ball     ``watershed``: only components at least this large are split (a pair of
                                touching particles whose masks reach their radius covers about two balls)
``marker_A``       1.0 r        ``watershed``: markers are maxima of the distance transform within
                                +-marker_A on each axis, then at least marker_A apart (8th place:
                                ``min_distance = r``)
=================  ===========  ==========================================================================

The others: ``threshold`` (the class's: a cell is in the mask iff ``prob >= float32(threshold)``),
``connectivity`` 26 (of the mask's components: 6 faces, 18 + edges, 26 + corners; cc3d's and
scikit-image's default, which the top solutions used), ``weighted_centroid`` True (a blob's point is its
cells' mean position weighted by prob), ``max_picks`` 1000 per class and map (the best first; the CZII
training tomograms hold at most 95 particles of a class), ``border_A`` 0 (picks closer than this to the
map's first or last cell centre on an axis are dropped; 0: none).

Conversion to cells (:class:`CellParams`): a half-width in cells is ``floor(length_A / cell_A + 0.5)`` per
axis (nearest, halves up); a size in cells is ``ceil(size_A3 / cell_volume)`` (a blob of ``n`` cells
passes iff ``n * cell_volume >= size_A3``, to 1e-9 relative).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping, Sequence

METHODS = ("peaks", "components", "watershed")
CONNECTIVITIES = (6, 18, 26)


@dataclass(frozen=True)
class Fractions:
    """Default parameters as fractions of the class radius (``filter``, ``nms``, ``marker``) or of its
    ball volume (``min_blob``, ``split``); see the module docstring."""

    filter: float = 1.0
    nms: float = 0.5
    marker: float = 1.0
    min_blob: float = 0.05
    split: float = 1.0


@dataclass(frozen=True)
class CellParams:
    """:class:`DecodeParams` on one map's cells (z, y, x): half-widths in cells, sizes in cells."""

    cell_A: tuple[float, float, float]
    filter_half: tuple[int, int, int]
    marker_half: tuple[int, int, int]
    min_cells: int
    split_cells: int

    @property
    def filter_widths(self) -> tuple[int, int, int]:
        return tuple(2 * h + 1 for h in self.filter_half)

    @property
    def marker_widths(self) -> tuple[int, int, int]:
        return tuple(2 * h + 1 for h in self.marker_half)


def half_width_cells(length_A: float, cell_A: Sequence[float]) -> tuple[int, ...]:
    """``floor(length_A / c + 0.5)`` cells on each axis of cell size ``c`` Å (nearest, halves up)."""
    return tuple(int(math.floor(float(length_A) / float(c) + 0.5 + 1e-9)) for c in cell_A)


def size_cells(size_A3: float, cell_A: Sequence[float]) -> int:
    """The fewest cells whose volume reaches ``size_A3`` Å³ (at least 1)."""
    volume = math.prod(float(c) for c in cell_A)
    return max(1, int(math.ceil(float(size_A3) / volume - 1e-9)))


def ball_volume_A3(radius_A: float) -> float:
    return 4.0 / 3.0 * math.pi * float(radius_A) ** 3


def check_cell_A(cell_A: Sequence[float]) -> tuple[float, float, float]:
    cell = tuple(float(c) for c in cell_A)
    if len(cell) != 3 or not all(c > 0 and math.isfinite(c) for c in cell):
        raise ValueError(f"cell_A must be 3 positive sizes in Å (z, y, x), got {tuple(cell_A)}")
    return cell


@dataclass(frozen=True)
class DecodeParams:
    """How one class map becomes picks (all lengths in Å, volumes in Å³; see the module docstring)."""

    method: str
    threshold: float
    filter_A: float
    nms_A: float
    min_blob_A3: float
    split_A3: float
    marker_A: float
    connectivity: int = 26
    weighted_centroid: bool = True
    max_picks: int = 1000
    border_A: float = 0.0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"decode method {self.method!r} is not one of {', '.join(METHODS)}")
        if not 0.0 < float(self.threshold) <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.connectivity not in CONNECTIVITIES:
            raise ValueError(f"connectivity must be one of {CONNECTIVITIES}, got {self.connectivity}")
        for name in ("filter_A", "nms_A", "min_blob_A3", "split_A3", "marker_A", "border_A"):
            value = float(getattr(self, name))
            if not (value >= 0.0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite value >= 0, got {getattr(self, name)}")
        if int(self.max_picks) < 0:
            raise ValueError(f"max_picks must be >= 0, got {self.max_picks}")

    def in_cells(self, cell_A: Sequence[float]) -> CellParams:
        """The parameters on a map whose cells measure ``cell_A`` Å (z, y, x)."""
        cell = check_cell_A(cell_A)
        return CellParams(cell_A=cell, filter_half=half_width_cells(self.filter_A, cell),
                          marker_half=half_width_cells(self.marker_A, cell),
                          min_cells=size_cells(self.min_blob_A3, cell), split_cells=size_cells(self.split_A3, cell))


OVERRIDABLE = tuple(f.name for f in fields(DecodeParams) if f.name != "method")


def decode_params(pclass, method: str = "peaks", *, fractions: Fractions = Fractions(),
                  **overrides: Any) -> DecodeParams:
    """The parameters of ``pclass`` (any object with ``radius_A`` and ``threshold``, e.g. a
    :class:`inference.manifest.particle_classes.ParticleClass`) for ``method``: defaults from its radius and
    ``fractions``, its threshold, then ``overrides`` (any field of :class:`DecodeParams` but ``method``, in its unit)."""
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise ValueError(f"unknown decode parameter(s) {', '.join(unknown)}; known: {', '.join(OVERRIDABLE)}")
    r, ball = float(pclass.radius_A), ball_volume_A3(pclass.radius_A)
    params = DecodeParams(method=method, threshold=float(pclass.threshold), filter_A=fractions.filter * r,
                          nms_A=fractions.nms * r, min_blob_A3=fractions.min_blob * ball,
                          split_A3=fractions.split * ball, marker_A=fractions.marker * r)
    return replace(params, **overrides)


@dataclass(frozen=True)
class ClassTarget:
    """One class to decode from a probability stack: its name, its channel, its parameters."""

    name: str
    channel: int
    params: DecodeParams


def class_targets(classes: Sequence, channels: Sequence[int], method: str = "peaks", *,
                  fractions: Fractions = Fractions(),
                  overrides: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[ClassTarget, ...]:
    """A target per class: ``classes[i]`` is read from channel ``channels[i]``; ``overrides`` maps a class
    name to its parameter overrides (see :func:`decode_params`)."""
    if len(classes) != len(channels):
        raise ValueError(f"{len(classes)} classes but {len(channels)} channels")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - {c.name for c in classes})
    if unknown:
        raise ValueError(f"overrides for unknown class(es) {', '.join(unknown)}")
    return tuple(ClassTarget(c.name, int(ch), decode_params(c, method, fractions=fractions,
                                                            **dict(overrides.get(c.name, {}))))
                 for c, ch in zip(classes, channels))
