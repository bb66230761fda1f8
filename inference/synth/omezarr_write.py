"""Write a tomogram as OME-Zarr (a multiscale pyramid), as the CryoET Data Portal serves them.

Level k is level 0 downsampled 2^k times by the mean of 2 x 2 x 2 blocks (an odd last voxel is
dropped), so its voxel j covers level-0 voxels ``2^k j .. 2^k (j+1) - 1``: its ``scale`` is
``2^k`` times level 0's and its ``translation`` ``(2^k - 1) / 2`` level-0 voxels, which puts its
centre where the block's centre is (voxel i of level 0 sits at ``i * spacing``). zarr v2 stores
get OME-NGFF 0.4 metadata in ``.zattrs``; v3 stores 0.5 in ``zarr.json`` (under ``ome``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inference.common.errors import InputError
from inference.io.omezarr import UNITS_A, _zarr


def downsample2(volume: np.ndarray) -> np.ndarray:
    """Mean of 2 x 2 x 2 blocks (uint8: rounded half up; others: float32)."""
    z, y, x = (n // 2 * 2 for n in volume.shape)
    if 0 in (z, y, x):
        raise InputError(None, f"a {volume.shape} volume cannot be halved again", "write fewer levels")
    v = volume[:z, :y, :x]
    blocks = v.reshape(z // 2, 2, y // 2, 2, x // 2, 2)
    if volume.dtype == np.uint8:
        return ((blocks.sum(axis=(1, 3, 5), dtype=np.uint32) + 4) // 8).astype(np.uint8)
    return blocks.mean(axis=(1, 3, 5), dtype=np.float64).astype(np.float32)


def write_omezarr(path: str | Path, volume: np.ndarray, spacing_A: float, *, levels: int = 3,
                  chunks: tuple[int, int, int] = (64, 64, 64), zarr_format: int = 2, unit: str = "angstrom",
                  overwrite: bool = False) -> Path:
    """Write ``volume`` (Z, Y, X) with voxel spacing ``spacing_A`` as an OME-Zarr pyramid of ``levels``."""
    path = Path(path)
    zarr = _zarr(path)
    if volume.ndim != 3 or 0 in volume.shape:
        raise InputError(path, f"expected a non-empty (Z, Y, X) volume, got shape {volume.shape}", "pass a 3D volume")
    if unit not in UNITS_A:
        raise InputError(None, f"unknown unit {unit!r}", f"use one of {', '.join(UNITS_A)}")
    if path.exists() and not overwrite:
        raise InputError(path, "already exists", "remove it or pass overwrite=True")
    s0 = float(spacing_A) / UNITS_A[unit]
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    datasets = []
    data = volume
    for k in range(levels):
        if k:
            data = downsample2(data)
        arr = group.create_array(str(k), shape=data.shape, dtype=data.dtype,
                                 chunks=tuple(min(c, n) for c, n in zip(chunks, data.shape)))
        arr[...] = data
        f = 2.0 ** k
        datasets.append({"path": str(k), "coordinateTransformations": [
            {"type": "scale", "scale": [s0 * f] * 3},
            {"type": "translation", "translation": [s0 * (f - 1) / 2] * 3},
        ]})
    multiscale = {"name": path.name[:-5] if path.name.endswith(".zarr") else path.name,
                  "axes": [{"name": n, "type": "space", "unit": unit} for n in "zyx"], "datasets": datasets}
    if zarr_format == 2:
        group.attrs["multiscales"] = [{"version": "0.4", **multiscale}]
    else:
        group.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}
    return path
