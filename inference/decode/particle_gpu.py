"""The GPU libraries of the particle decoders, imported on first use: CuPy's ``cupyx.scipy.ndimage``
and, where installed, cuCIM.

* ``label(mask, hops) -> (labels, n)``: ``cucim.skimage.measure.label(mask, connectivity=hops,
  return_num=True)``, else ``cupyx.scipy.ndimage.label(mask, structure)`` with the structure of
  ``scipy.ndimage.generate_binary_structure(3, hops)``;
* ``edt(mask, sampling) -> float64 distances``: ``cucim.core.operations.morphology.distance_transform_edt(
  mask, sampling=..., float64_distances=True)`` (PBA+), else ``cupyx.scipy.ndimage.distance_transform_edt``
  (same signature);
* ``ndi.maximum_filter``: ``cupyx.scipy.ndimage.maximum_filter``.

cuCIM has no watershed: that step runs on the host (scikit-image), see
:mod:`inference.decode.particle_watershed`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class GpuLibs:
    ndi: Any
    label: Callable
    edt: Callable
    source: str  # "cucim" or "cupyx"


def gpu_libs(import_module: Callable = importlib.import_module) -> GpuLibs:
    """The device functions; ImportError with the fix where CuPy is missing."""
    try:
        ndi = import_module("cupyx.scipy.ndimage")
        cp = import_module("cupy")
    except ImportError as exc:
        raise ImportError("decoding on the GPU needs CuPy (pip install 'motorfinder[gpu]')") from exc
    try:
        measure = import_module("cucim.skimage.measure")
        morphology = import_module("cucim.core.operations.morphology")
    except ImportError:
        measure = morphology = None
    if measure is not None:
        return GpuLibs(ndi, lambda mask, hops: measure.label(mask, connectivity=hops, return_num=True),
                       lambda mask, sampling: morphology.distance_transform_edt(
                           mask, sampling=tuple(sampling), float64_distances=True), "cucim")

    def label(mask, hops):
        import scipy.ndimage

        structure = cp.asarray(scipy.ndimage.generate_binary_structure(mask.ndim, hops))
        return ndi.label(mask, structure=structure)

    return GpuLibs(ndi, label, lambda mask, sampling: ndi.distance_transform_edt(
        mask, sampling=tuple(sampling), float64_distances=True), "cupyx")
