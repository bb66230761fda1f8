"""``peaks``: local maxima of a class map above its threshold, then greedy distance NMS in Å.

Specification (both devices). With ``mask = prob >= float32(threshold)``, cell ``c`` is a candidate iff
it is in the mask and ``prob[c] >= prob[n]`` for every mask cell ``n`` of the box of half-widths
``filter_half`` (cells per axis, from ``filter_A``) centred on ``c``, the box clipped at the map's edge.
A cell below the threshold cannot beat one above it, so on a map without NaN this is the 1st place's
max-pool NMS ``prob == maximum_filter(prob) & prob >= threshold``; NaN cells never take part. Every cell
of a plateau is a candidate (the NMS then keeps the first). A candidate's conf is its prob and its point
the cell itself. Candidates go best first (conf descending, raster index ascending), those within
``border_A`` of the edge are dropped, then the greedy NMS at ``nms_A`` Å keeps at most ``max_picks``.

* CPU: the box maximum is taken only around the mask: for each 6-connected component of the mask (any
  partition of the mask cells gives the same answer), over its bounding box grown by the half-widths
  (clipped at the map), with ``scipy.ndimage.maximum_filter`` on the masked crop (mask cells keep prob,
  the others count 0 -- below any threshold --, so does the outside of the crop: a crop edge inside the
  map lies beyond every box of the component's cells). Where the boxes add up to more than the map, one
  filter of the whole map.
* GPU: ``cupyx.scipy.ndimage.maximum_filter`` of the whole masked map (``mode="constant"``, 0); only
  the candidates' raster indices and probs come to the host.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from inference.decode.mask_cells import cell_coords, component_stats, label_cells_cpu, threshold32, to_host
from inference.decode.particle_params import DecodeParams
from inference.decode.particle_picks import finish

# What the cells outside the mask (and outside the map) count in the box maximum: anything below the
# threshold (which is > 0) does; 0 keeps the device kernels free of non-finite constants.
FILL = np.float32(0.0)


def candidates_cpu(prob: np.ndarray, threshold: float, widths: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Raster indices (int64, ascending) and probs (float32) of the candidates, working around the mask."""
    from scipy.ndimage import maximum_filter

    prob = np.ascontiguousarray(prob, dtype=np.float32)
    mask = prob >= threshold32(threshold)
    cells = label_cells_cpu(mask, prob, 6)
    if cells.n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    widths = tuple(int(w) for w in widths)
    half = np.asarray([(w - 1) // 2 for w in widths], np.int64)
    last = np.asarray(prob.shape, np.int64) - 1
    comps = component_stats(cells, weighted=False)
    lo = np.maximum(comps.lo - half, 0)
    hi = np.minimum(comps.hi + half, last)
    if int(np.prod(hi - lo + 1, axis=1).sum()) >= prob.size:
        whole = maximum_filter(np.where(mask, prob, FILL), size=widths, mode="constant", cval=float(FILL))
        box_max = whole.reshape(-1)[cells.flat]
    else:
        z, y, x = cell_coords(cells.flat, prob.shape)
        box_max = np.empty(len(cells.flat), np.float32)
        for i in range(cells.n):
            crop = tuple(slice(int(a), int(b) + 1) for a, b in zip(lo[i], hi[i]))
            local = maximum_filter(np.where(mask[crop], prob[crop], FILL), size=widths, mode="constant",
                                   cval=float(FILL))
            idx = comps.order[comps.starts[i]:comps.starts[i + 1]]
            box_max[idx] = local[z[idx] - lo[i, 0], y[idx] - lo[i, 1], x[idx] - lo[i, 2]]
    peak = cells.prob == box_max
    return cells.flat[peak], cells.prob[peak]


def candidates_gpu(prob, threshold: float, widths: Sequence[int], libs, xp) -> tuple[np.ndarray, np.ndarray]:
    """The candidates from one maximum filter of the whole map on the device; host arrays back."""
    prob = xp.ascontiguousarray(xp.asarray(prob, dtype=xp.float32))
    mask = prob >= threshold32(threshold)
    masked = xp.where(mask, prob, FILL)
    box_max = libs.ndi.maximum_filter(masked, size=tuple(int(w) for w in widths), mode="constant",
                                      cval=float(FILL))
    flat = xp.flatnonzero((mask & (masked == box_max)).reshape(-1))
    return to_host(flat).astype(np.int64), to_host(prob.reshape(-1)[flat]).astype(np.float32)


def decode_peaks(prob, params: DecodeParams, cell_A: Sequence[float], xp=np) -> tuple[np.ndarray, np.ndarray]:
    """Picks of one class map ``prob`` (D, H, W) on ``xp``: ``(cells (K, 3) float64, conf (K,) float64)``,
    best first; cells are (z, y, x) in the map's cell index space (see the module docstring)."""
    cells = params.in_cells(cell_A)
    if xp is np:
        flat, conf = candidates_cpu(prob, params.threshold, cells.filter_widths)
    else:
        from inference.decode.particle_gpu import gpu_libs

        flat, conf = candidates_gpu(prob, params.threshold, cells.filter_widths, gpu_libs(), xp)
    shape = tuple(int(s) for s in prob.shape)
    coords = np.stack(cell_coords(flat, shape), axis=1).astype(np.float64)
    return finish(coords, conf, flat, shape, cells.cell_A, border_A=params.border_A, max_picks=params.max_picks,
                  nms_A=params.nms_A)
