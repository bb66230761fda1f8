"""``components``: the threshold mask's connected components, one pick per blob at its centroid.

Specification (both devices). ``mask = prob >= float32(threshold)``; components with the parameters'
``connectivity`` (26 by default: faces, edges and corners); a component of fewer than ``min_cells``
cells (``min_blob_A3`` Å³) is dropped. Its pick is its centroid in cells -- the mean of its cells'
positions weighted by their prob (``weighted_centroid``, the default) or not -- and its conf the highest
prob among its cells. Picks go best first (conf descending, then the blob's first cell in raster
order), those within ``border_A`` of the edge are dropped, at most ``max_picks`` are kept. No NMS: the
blobs are disjoint.

CPU: components from the mask cells alone (:func:`inference.decode.mask_cells.label_cells_cpu`); GPU:
the map labelled on the device (cuCIM / CuPy), sums on the device, only the kept blobs' (n, 3)
centroids and confs come to the host.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from inference.decode.mask_cells import component_stats, threshold_cells, to_host
from inference.decode.particle_params import DecodeParams
from inference.decode.particle_picks import finish


def decode_components(prob, params: DecodeParams, cell_A: Sequence[float], xp=np) -> tuple[np.ndarray, np.ndarray]:
    """Picks of one class map ``prob`` (D, H, W) on ``xp``: ``(cells (K, 3) float64, conf (K,) float64)``,
    best first (see the module docstring)."""
    in_cells = params.in_cells(cell_A)
    cells = threshold_cells(prob, params.threshold, params.connectivity, xp)
    comps = component_stats(cells, params.weighted_centroid, xp)
    keep = comps.count >= in_cells.min_cells
    return finish(to_host(comps.centroid[keep]), to_host(comps.conf[keep]), to_host(comps.first[keep]),
                  cells.shape, in_cells.cell_A, border_A=params.border_A, max_picks=params.max_picks)
