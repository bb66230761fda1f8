"""The top CZII solutions' straightforward decoders, written as they wrote them (whole-map passes), to time
against ours on the same maps. Each takes one class map and our :class:`DecodeParams` (the same threshold,
sizes and connectivity) and returns ``(cells (K, 3), conf (K,))``:

* ``maxfilter_peaks`` (1st place, pp_1 / TopCUP): ``scipy.ndimage.maximum_filter`` of the whole map,
  ``prob == max & prob >= threshold``, then the same greedy NMS as ours;
* ``cc3d_components`` (2nd place): ``cc3d.connected_components`` + ``cc3d.statistics`` (voxel counts,
  unweighted centroids), blobs under the minimum size dropped;
* ``scipy_components``: ``scipy.ndimage.label`` + ``center_of_mass`` (prob-weighted), sizes by ``bincount``;
* ``edt_watershed`` (8th place): ``scipy.ndimage.distance_transform_edt`` of the whole mask,
  ``skimage.feature.peak_local_max(min_distance=marker cells, labels=mask)``, markers labelled,
  ``skimage.segmentation.watershed(-dist, markers, mask=mask)``, ``skimage.measure.regionprops`` centroids,
  regions under the minimum size dropped.

The components' and the watershed's conf is the blob's size (they compute no other): it orders their picks.
"""

from __future__ import annotations

import numpy as np

from inference.decode.mask_cells import HOPS, threshold32
from inference.decode.nms_points import greedy_nms


def _best_first(cells, conf, max_picks):
    order = np.argsort(-conf, kind="stable")[:max_picks]
    return np.asarray(cells, np.float64).reshape(-1, 3)[order], np.asarray(conf, np.float64)[order]


def maxfilter_peaks(prob, params, cell_A):
    from scipy.ndimage import maximum_filter

    c = params.in_cells(cell_A)
    peak = (prob == maximum_filter(prob, size=c.filter_widths)) & (prob >= threshold32(params.threshold))
    flat = np.flatnonzero(peak)
    conf = prob.reshape(-1)[flat]
    order = np.lexsort((flat, -conf))
    cells = np.stack(np.unravel_index(flat[order], prob.shape), axis=1).astype(np.float64)
    keep = greedy_nms(cells * np.asarray(cell_A), params.nms_A, params.max_picks)
    return cells[keep], conf[order][keep].astype(np.float64)


def cc3d_components(prob, params, cell_A):
    import cc3d

    c = params.in_cells(cell_A)
    labels = cc3d.connected_components(prob >= threshold32(params.threshold), connectivity=params.connectivity)
    stats = cc3d.statistics(labels)
    counts, centroids = stats["voxel_counts"][1:], stats["centroids"][1:]
    keep = counts >= c.min_cells
    return _best_first(centroids[keep], counts[keep].astype(np.float64), params.max_picks)


def scipy_components(prob, params, cell_A):
    from scipy import ndimage as ndi

    c = params.in_cells(cell_A)
    mask = prob >= threshold32(params.threshold)
    labels, n = ndi.label(mask, structure=ndi.generate_binary_structure(3, HOPS[params.connectivity]))
    counts = np.bincount(labels.reshape(-1), minlength=n + 1)[1:]
    centres = np.asarray(ndi.center_of_mass(prob, labels, np.arange(1, n + 1))).reshape(-1, 3)
    keep = counts >= c.min_cells
    return _best_first(centres[keep], counts[keep].astype(np.float64), params.max_picks)


def edt_watershed(prob, params, cell_A):
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.measure import label, regionprops
    from skimage.segmentation import watershed

    c = params.in_cells(cell_A)
    mask = prob >= threshold32(params.threshold)
    if not mask.any():
        return np.zeros((0, 3)), np.zeros(0)
    dist = ndi.distance_transform_edt(mask, sampling=cell_A)
    peaks = peak_local_max(dist, min_distance=max(1, c.marker_half[0]), labels=mask, exclude_border=False)
    seeds = np.zeros(mask.shape, bool)
    seeds[tuple(peaks.T)] = True
    regions = watershed(-dist, label(seeds), mask=mask, connectivity=HOPS[params.connectivity])
    props = [r for r in regionprops(regions) if r.area >= c.min_cells]
    cells = np.asarray([r.centroid for r in props], np.float64).reshape(-1, 3)
    return _best_first(cells, np.asarray([r.area for r in props], np.float64), params.max_picks)


BASELINES = {
    "scipy maximum_filter peaks (1st place)": ("peaks", maxfilter_peaks),
    "cc3d components + statistics (2nd place)": ("components", cc3d_components),
    "scipy label + center_of_mass": ("components", scipy_components),
    "scipy EDT + skimage peak_local_max + watershed + regionprops (8th place)": ("watershed", edt_watershed),
}
