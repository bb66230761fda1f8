"""Reading tomograms: folders of slice images, MRC/REC files and NumPy ``.npy`` files.

A tomogram *source* (found by :mod:`inference.io.sources`) is a folder named by its tomo_id holding one
image per z, ``slice_<number>.<ext>`` (jpg, jpeg, png, tif, tiff; the Kaggle BYU layout), an
``.mrc``/``.rec`` file (MRC2014, :mod:`inference.io.mrc`, memory-mapped), a ``.npy`` file holding a
3D array (memory-mapped), or a ``.zarr`` folder or fsspec URL of one: an OME-Zarr tomogram
(:mod:`inference.io.omezarr`). The input may also be a text file listing sources, paths or URLs
(:mod:`inference.io.listing_file`).

Every volume is returned as a (Z, Y, X) array, ``uint8`` for 8-bit data and ``float32`` for
anything else; a float volume's NaN and infinite voxels are replaced, with a WARNING, and its range
recorded (:func:`inference.io.intensity.scan_voxels`). Problems with a source are raised as
:class:`inference.common.errors.InputError` naming the file and what to do; :func:`iter_volumes` reads
many sources, logs and skips bad ones. Voxel spacing: :mod:`inference.io.spacing`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inference.common.errors import InputError
from inference.io import listing_file
from inference.io.image_decoders import get_decoder
from inference.io.intensity import VoxelStats, scan_voxels
from inference.io.memory import allocate, as_float32
from inference.io.mrc import open_mrc, peek_mrc
from inference.io.read_retry import is_transient
from inference.io.sources import FIX_SOURCE, MRC_SUFFIXES, SLICE_RE, is_zarr, slice_files, tomo_id_of

if TYPE_CHECKING:
    from inference.io.omezarr import LevelMap

logger = logging.getLogger(__name__)


def default_threads() -> int:
    """Decode threads used when none are asked for: min(8, CPU count)."""
    return min(8, os.cpu_count() or 1)


# --- readers --------------------------------------------------------------------------------


def _check_volume(data: np.ndarray, path: Path) -> None:
    if data.ndim != 3:
        raise InputError(path, f"array has {data.ndim} dimensions {tuple(data.shape)}; a tomogram is 3D (Z, Y, X)",
                         "give a 3D volume")
    if 0 in data.shape:
        raise InputError(path, f"volume is empty (shape {tuple(data.shape)})", "give a non-empty 3D volume")


def read_slices(
    folder: str | Path,
    *,
    decoder: str = "auto",
    threads: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Decode a folder of slice images into a (Z, Y, X) array (uint8, or float32 for deep images).

    Slices are decoded by ``threads`` threads (default: min(8, CPU count)), each writing its
    slice straight into the preallocated volume.
    """
    folder = Path(folder)
    if threads is None:
        threads = default_threads()
    if not isinstance(threads, int) or threads < 1:
        raise InputError(None, f"decode threads must be a whole number >= 1, got {threads!r}", "pass 1 or more threads")
    files = slice_files(folder)
    decode = get_decoder(decoder)

    first = decode(files[0])
    out = allocate((len(files), *first.shape), first.dtype, folder)
    out[0] = first

    def put(z: int) -> None:
        img = decode(files[z])
        if img.shape != first.shape:
            raise InputError(
                files[z],
                f"slice is {img.shape[0]}x{img.shape[1]} (Y x X) but {files[0].name} is "
                f"{first.shape[0]}x{first.shape[1]}",
                "all slices of a tomogram must have the same size; re-extract the tomogram",
            )
        if img.dtype != first.dtype:
            raise InputError(
                files[z],
                f"slice decodes to {img.dtype} but {files[0].name} decodes to {first.dtype} "
                "(mixed bit depths)",
                "write all slices of a tomogram with the same bit depth",
            )
        out[z] = img

    bar = None
    if progress:
        from tqdm import tqdm  # optional, imported only when asked for

        bar = tqdm(total=len(files), initial=1, unit="slice", desc=folder.name, leave=False)
    try:
        if threads == 1 or len(files) == 1:
            for z in range(1, len(files)):
                put(z)
                if bar is not None:
                    bar.update()
        else:
            pool = ThreadPoolExecutor(max_workers=min(threads, len(files) - 1), thread_name_prefix="slice-decode")
            try:
                futures = [pool.submit(put, z) for z in range(1, len(files))]
                for future in futures:  # in z order, so the first bad slice is the one reported
                    future.result()
                    if bar is not None:
                        bar.update()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
    finally:
        if bar is not None:
            bar.close()
    return out


def read_mrc(path: str | Path) -> tuple[np.ndarray, float | None]:
    """Read an MRC/REC file memory-mapped: ((Z, Y, X) array, header voxel size in Å or None).

    uint8 data stays uint8; signed bytes (MRC mode 0) become uint8 by adding 128, except in files
    stamped by IMOD as unsigned, whose bytes are used as they are; everything else becomes
    float32. A voxel size of 0 (or outside 1-100 Å) means "not set" and gives None.
    """
    path = Path(path)
    data, spacing = open_mrc(path)
    if data.dtype != np.uint8:
        data = as_float32(data, path)
    _check_volume(data, path)
    return data, spacing


def read_npy(path: str | Path) -> np.ndarray:
    """Read a 3D ``.npy`` array memory-mapped; uint8 and float32 stay, other numbers become float32."""
    path = Path(path)
    fix = "save the tomogram with numpy.save(path, volume) as a 3D uint8 or float32 array"
    if not path.is_file():
        raise InputError(path, "file does not exist", "check the path")
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OverflowError, MemoryError) as exc:
        raise InputError(path, f"not a readable .npy array ({exc})", fix) from None
    except (OSError, EOFError) as exc:
        if is_transient(exc):  # the read may pass when tried again (inference.io.read_retry)
            raise
        raise InputError(path, f"cannot read .npy file ({exc})", fix) from None
    if not isinstance(data, np.ndarray):
        raise InputError(path, "file is an .npz archive, not a single .npy array", fix)
    _check_volume(data, path)
    if data.dtype.kind not in "biuf":
        raise InputError(path, f"array has unsupported type {data.dtype}", fix)
    if data.dtype != np.uint8 and data.dtype != np.float32:
        data = as_float32(data, path)
    return data


# --- volumes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Volume:
    """A tomogram as read: (Z, Y, X) data (finite), the header's voxel size (Å; MRC, OME-Zarr level 0), its
    source, for data that is not ``uint8`` what :func:`~inference.io.intensity.scan_voxels` found, and
    ``level_map``: where the voxels of the OME-Zarr level read sit on level 0 (None: level 0)."""

    tomo_id: str
    data: np.ndarray
    header_spacing: float | None
    source: Path | str
    stats: VoxelStats | None = None
    level_map: "LevelMap | None" = None


def read_volume(source: str | Path, *, decoder: str = "auto", threads: int | None = None,
                zarr_level: int | str = 0, target_A: float | None = None, spacing_A: float | None = None) -> Volume:
    """Read one tomogram source (a slice folder, an .mrc/.rec/.map file, an .npy file, an OME-Zarr store or URL).

    OME-Zarr only: ``zarr_level`` (an index or ``"auto"``), ``target_A`` (the finest spacing a member
    needs) and ``spacing_A`` (level 0's spacing when the spacing CSV gives it), see
    :func:`inference.io.omezarr.read_omezarr`.
    """
    started = time.perf_counter()
    if listing_file.is_url(source) or is_zarr(Path(source)):
        from inference.io.omezarr import read_omezarr

        data, header, level_map = read_omezarr(source, level=zarr_level, target_A=target_A, spacing_A=spacing_A)
        data, stats = scan_voxels(data, source)
        volume = Volume(tomo_id=tomo_id_of(source), data=data, header_spacing=header, source=source, stats=stats,
                        level_map=level_map)
        logger.debug("read %s (OME-Zarr level %d): %s %s in %.2f s", volume.tomo_id,
                     level_map.level if level_map else 0, "x".join(map(str, data.shape)), data.dtype,
                     time.perf_counter() - started)
        return volume
    source = Path(source)
    header_spacing = None
    if source.is_dir():
        data = read_slices(source, decoder=decoder, threads=threads)
    elif not source.exists():
        raise InputError(source, "tomogram source does not exist", "check the path")
    elif source.suffix.lower() in MRC_SUFFIXES:
        data, header_spacing = read_mrc(source)
    elif source.suffix.lower() == ".npy":
        data = read_npy(source)
    else:
        raise InputError(source, "not a tomogram source", FIX_SOURCE)
    data, stats = scan_voxels(data, source)
    volume = Volume(tomo_id=tomo_id_of(source), data=data, header_spacing=header_spacing, source=source,
                    stats=stats)
    logger.debug("read %s: %s %s in %.2f s", volume.tomo_id, "x".join(map(str, data.shape)), data.dtype,
                 time.perf_counter() - started)
    return volume


def peek_volume(source: str | Path) -> tuple[tuple[int, int, int], float | None, int]:
    """((Z, Y, X) shape, header voxel size or None, bytes per voxel as read) without reading the voxels:
    an MRC or .npy header, or a slice folder's count and first slice. InputError when it cannot tell (an
    OME-Zarr store: its level is chosen when it is read, in chunks)."""
    if listing_file.is_url(source) or is_zarr(Path(source)):
        raise InputError(source, "an OME-Zarr store is not sized before it is read", None)
    source = Path(source)
    if source.is_dir():  # the names only (no stat per slice): the read validates them
        try:
            numbered = sorted((int(m.group(1)), m.string) for m in map(SLICE_RE.match, os.listdir(source)) if m)
        except OSError as exc:
            raise InputError(source, f"cannot list folder ({exc.strerror or exc})", None) from None
        if not numbered:
            raise InputError(source, "no slice images", None)
        first_file = source / numbered[0][1]
        try:
            from PIL import Image  # the header alone: no decode

            with Image.open(first_file) as im:
                width, height = im.size
                deep = im.mode not in ("1", "L", "LA", "P", "RGB", "RGBA")
                return (len(numbered), height, width), None, 4 if deep else 1
        except Exception:  # noqa: BLE001 - any trouble (no Pillow, an odd file): decode it, which names the problem
            first = get_decoder("auto")(first_file)
            return (len(numbered), *first.shape), None, first.dtype.itemsize
    if source.suffix.lower() in MRC_SUFFIXES:
        shape, spacing = peek_mrc(source)
        return shape, spacing, 4
    try:
        data = np.load(source, mmap_mode="r", allow_pickle=False)
    except (ValueError, OverflowError, MemoryError, OSError, EOFError) as exc:
        raise InputError(source, f"not a readable .npy array ({exc})", None) from None
    if not isinstance(data, np.ndarray) or data.ndim != 3:
        raise InputError(source, "not a 3D .npy array", None)
    return tuple(int(n) for n in data.shape), None, 1 if data.dtype == np.uint8 else 4


def iter_volumes(
    sources: Iterable[str | Path],
    *,
    decoder: str = "auto",
    threads: int | None = None,
    on_error: Callable[[Path, InputError], None] | None = None,
) -> Iterator[tuple[Path, Volume]]:
    """Yield ``(source, Volume)`` for each readable source, one at a time.

    A source that cannot be read is logged (ERROR, naming it and the problem), passed to
    ``on_error(source, error)`` if given, and skipped; the rest are still read.
    """
    for source in sources:
        source = listing_file.as_source(source)
        try:
            volume = read_volume(source, decoder=decoder, threads=threads)
        except InputError as exc:
            logger.error("skipping tomogram %s: %s", source, exc)
            if on_error is not None:
                on_error(source, exc)
            continue
        yield source, volume


