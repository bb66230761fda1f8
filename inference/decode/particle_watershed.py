"""``watershed``: ``components``, with every component big enough to hold two particles split along
its distance transform.

Specification (both devices). The components of the threshold mask as in
:mod:`inference.decode.particle_components` (same connectivity, same ``min_cells``). A kept component of
fewer than ``split_cells`` cells (``split_A3`` Å³) gives one pick exactly as there. A bigger one:

1. its own mask on its bounding box grown by one cell on every side (so everything that is not the
   component -- other components, the map's outside -- is background);
2. the Euclidean distance transform of that mask in Å (sampling = the cell sizes, so anisotropic cells
   are measured right), rounded to 1e-6 Å (the CPU's and the GPU's transforms may differ in the last
   bits; rounded, they give the same markers);
3. markers: the component's cells whose distance equals the maximum over the box of half-widths
   ``marker_half`` (cells, from ``marker_A``; outside the crop counts 0), deepest first (then raster
   order in the crop), thinned by the greedy distance NMS at ``marker_A`` Å;
4. one marker: the component stays whole (a watershed from one marker floods all of it). Two or more:
   ``skimage.segmentation.watershed(-distance, markers, mask=component, connectivity=...)`` (the hops of
   ``connectivity``) splits it into regions; each region of at least ``min_cells`` cells is a pick at its
   centroid (weighted as ``weighted_centroid`` says), conf = the highest prob among its cells, its tie key
   its first cell in raster order.

All picks then go best first, border, cap, as ``components``. Only components at least ``split_cells``
large are transformed: most of the map, and most blobs, never are.

CPU: ``scipy.ndimage.distance_transform_edt`` and ``maximum_filter`` on each crop. GPU: the crops, the
transform (cuCIM's ``distance_transform_edt``, else CuPy's) and the marker filter on the device;
**cuCIM has no watershed**, so for a component with two markers or more its crop's mask and distances
come to the host and scikit-image floods them there.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from inference.decode.mask_cells import HOPS, MaskCells, cell_coords, component_stats, threshold_cells, to_host
from inference.decode.nms_points import greedy_nms
from inference.decode.particle_params import CellParams, DecodeParams
from inference.decode.particle_picks import best_first, finish

ROUND_DECIMALS = 6  # distances rounded to 1e-6 Å before the markers are found


def _crop_mask(cells: MaskCells, idx, lo: np.ndarray, size: tuple[int, int, int], xp):
    """The component's own mask on its crop (bounding box + 1 cell each side), and its cells' local
    (z, y, x) in the crop."""
    z, y, x = cell_coords(cells.flat[idx], cells.shape, xp)
    local = (z - int(lo[0]) + 1, y - int(lo[1]) + 1, x - int(lo[2]) + 1)
    own = xp.zeros(size, dtype=bool)
    own[local] = True
    return own, local


def markers(own, dist, grid: CellParams, marker_A: float, ndi, xp) -> np.ndarray:
    """Raster indices in the crop (host int64) of the markers, best first (step 3 of the module docstring)."""
    top = ndi.maximum_filter(dist, size=grid.marker_widths, mode="constant", cval=0.0)
    cand = xp.flatnonzero((own & (dist == top)).reshape(-1))
    depth = to_host(dist.reshape(-1)[cand])
    cand = to_host(cand).astype(np.int64)
    cand = cand[best_first(depth, cand)]
    pts = np.stack(cell_coords(cand, tuple(int(s) for s in own.shape)), axis=1) * np.asarray(grid.cell_A)
    return cand[greedy_nms(pts, marker_A)]


def split_regions(own: np.ndarray, dist: np.ndarray, seeds_flat: np.ndarray, connectivity: int) -> np.ndarray:
    """The watershed of ``-dist`` from the seeds within ``own`` (host): region ids 1..m, 0 outside."""
    from skimage.segmentation import watershed

    seeds = np.zeros(own.shape, np.int32)
    seeds.reshape(-1)[seeds_flat] = np.arange(1, len(seeds_flat) + 1, dtype=np.int32)
    return watershed(-dist, seeds, mask=own, connectivity=HOPS[connectivity])


def decode_watershed(prob, params: DecodeParams, cell_A: Sequence[float], xp=np) -> tuple[np.ndarray, np.ndarray]:
    """Picks of one class map ``prob`` (D, H, W) on ``xp``: ``(cells (K, 3) float64, conf (K,) float64)``,
    best first (see the module docstring)."""
    grid = params.in_cells(cell_A)
    cells = threshold_cells(prob, params.threshold, params.connectivity, xp)
    comps = component_stats(cells, params.weighted_centroid, xp)
    count = to_host(comps.count)
    keep = count >= grid.min_cells
    big = np.flatnonzero(keep & (count >= grid.split_cells))
    whole = keep.copy()
    whole[big] = False
    centroid, conf, first = to_host(comps.centroid), to_host(comps.conf), to_host(comps.first)
    out_c, out_p, out_t = [centroid[whole]], [conf[whole]], [first[whole]]
    if len(big):
        if xp is np:
            from scipy import ndimage as ndi

            def edt(own):
                return ndi.distance_transform_edt(own, sampling=grid.cell_A)
        else:
            from inference.decode.particle_gpu import gpu_libs

            libs = gpu_libs()
            ndi = libs.ndi

            def edt(own):
                return libs.edt(own, grid.cell_A)
        lo_all, hi_all, starts = to_host(comps.lo), to_host(comps.hi), to_host(comps.starts)
        for i in big:
            idx = comps.order[int(starts[i]):int(starts[i + 1])]
            size = tuple(int(s) for s in hi_all[i] - lo_all[i] + 3)
            own, local = _crop_mask(cells, idx, lo_all[i], size, xp)
            dist = xp.round(xp.asarray(edt(own), dtype=xp.float64), ROUND_DECIMALS)
            seeds = markers(own, dist, grid, params.marker_A, ndi, xp)
            if len(seeds) < 2:
                out_c.append(centroid[i:i + 1]), out_p.append(conf[i:i + 1]), out_t.append(first[i:i + 1])
                continue
            regions = split_regions(to_host(own), to_host(dist), seeds, params.connectivity)
            local_h = tuple(to_host(a) for a in local)
            rid = regions[local_h].astype(np.int64) - 1
            inside = rid >= 0
            sub = MaskCells(cells.shape, to_host(cells.flat[idx])[inside], to_host(cells.prob[idx])[inside],
                            rid[inside], len(seeds))
            st = component_stats(sub, params.weighted_centroid, np)
            ok = st.count >= grid.min_cells
            out_c.append(st.centroid[ok]), out_p.append(st.conf[ok]), out_t.append(st.first[ok])
    return finish(np.concatenate(out_c).reshape(-1, 3), np.concatenate(out_p), np.concatenate(out_t), cells.shape,
                  grid.cell_A, border_A=params.border_A, max_picks=params.max_picks)
