"""Reading tomograms: folders of slice images, MRC/REC files and NumPy ``.npy`` files.

A tomogram *source* is one of

* a folder named by its tomo_id holding one image per z, ``slice_<number>.<ext>`` with ``<ext>``
  one of jpg, jpeg, png, tif, tiff (any case) -- the Kaggle BYU layout
  (``tomo_003acc/slice_0000.jpg``, ...);
* an ``.mrc`` / ``.rec`` file (MRC2014, read memory-mapped);
* a ``.npy`` file holding a 3D array (read memory-mapped);
* a ``.zarr`` folder or an fsspec URL of one: an OME-Zarr tomogram (:mod:`inference.omezarr`).

The input may also be a text file listing sources, paths or URLs (:mod:`inference.source_list`).

Every volume is returned as a (Z, Y, X) array, ``uint8`` for 8-bit data and ``float32`` for
anything else. Problems with a source are raised as :class:`inference.errors.InputError` naming
the file and what to do; :func:`iter_volumes` reads many sources, logs and skips bad ones.

Slice numbering: the slice number is the z index, so the numbers must be exactly
0, 1, ..., Z-1. A folder whose first slice is not 0, with a gap or with a number used twice is
rejected rather than silently renumbered, because renumbering would shift every z coordinate
the detector reports. Zero padding is optional (``slice_7.png`` and ``slice_0007.png`` are both
slice 7) and extensions may be mixed as long as the numbers are unique.

Voxel spacing (Å) is resolved per tomogram by :func:`resolve_spacing`: a spacing CSV first
(:func:`load_spacing_table`), then the MRC header, then the default of 13.1 Å, the spacing the
BYU test set is assumed to have.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inference import source_list
from inference.decoders import get_decoder
from inference.errors import InputError

if TYPE_CHECKING:
    from inference.omezarr import LevelMap

logger = logging.getLogger(__name__)

#: File suffixes that are tomogram sources by themselves (folders of slices are the other kind).
SOURCE_SUFFIXES: tuple[str, ...] = (".mrc", ".rec", ".npy")
MRC_SUFFIXES: tuple[str, ...] = (".mrc", ".rec")
#: Suffixes of slice images inside a tomogram folder.
SLICE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".tif", ".tiff")

#: Spacing (Å) used when neither a CSV nor an MRC header gives one: the BYU test-set assumption.
DEFAULT_SPACING_A = 13.1

_SLICE_RE = re.compile(r"^slice_(\d+)\.(?:jpg|jpeg|png|tif|tiff)$", re.IGNORECASE)
_FIX_SOURCE = ("point the input at folders of slice_NNNN.jpg images, .mrc/.rec/.npy files, OME-Zarr .zarr folders, "
               "or a .txt file listing them")
_FIX_SLICES = "re-extract the tomogram so its slices are slice_0000 ... slice_<Z-1> with no gaps"
_MAX_LISTED = 5


def _listing(items: list, limit: int = _MAX_LISTED) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def default_threads() -> int:
    """Decode threads used when none are asked for: min(8, CPU count)."""
    return min(8, os.cpu_count() or 1)


# --- finding sources ------------------------------------------------------------------------


def tomo_id_of(path: str | Path) -> str:
    """The tomo_id of a source: a folder's name, a file's or a ``.zarr`` store's name without its suffix."""
    if source_list.is_url(path):
        return source_list.url_id(path)
    path = Path(path)
    if _is_zarr(path):
        return path.name[: -len(".zarr")]
    return path.name if path.is_dir() else path.stem


def _is_zarr(path: Path) -> bool:
    return path.suffix.lower() == ".zarr"


def _has_slices(folder: Path) -> bool:
    try:
        with os.scandir(folder) as entries:
            return any(_SLICE_RE.match(e.name) and e.is_file() for e in entries)
    except OSError:
        return False


def _is_source_file(path: Path) -> bool:
    return path.suffix.lower() in SOURCE_SUFFIXES and path.is_file()


def list_sources(input_dir: str | Path) -> list[Path]:
    """Tomogram sources in ``input_dir``, sorted by tomo_id.

    Sources are sub-folders holding slice images, and ``.mrc``/``.rec``/``.npy`` files. Hidden
    entries (names starting with '.') are ignored. For convenience ``input_dir`` may itself be
    one source: a folder of slices, or a single source file.
    """
    input_dir = Path(input_dir)
    if not input_dir.exists():
        raise InputError(input_dir, "input does not exist", "check the path")
    if input_dir.is_file():
        if _is_source_file(input_dir):
            return [input_dir]
        if source_list.is_listing(input_dir):
            return source_list.read_listing(input_dir, tomo_id_of)
        raise InputError(input_dir, "not a tomogram source", _FIX_SOURCE)
    if _is_zarr(input_dir):
        return [input_dir]
    try:
        entries = sorted(p for p in input_dir.iterdir() if not p.name.startswith("."))
    except OSError as exc:
        raise InputError(input_dir, f"cannot list folder ({exc.strerror or exc})", "check permissions") from None

    sources = [p for p in entries if (p.is_dir() and (_is_zarr(p) or _has_slices(p))) or _is_source_file(p)]
    if not sources and _has_slices(input_dir):
        logger.info("%s holds slice images itself: reading it as one tomogram", input_dir)
        return [input_dir]
    if not sources:
        what = "is empty" if not entries else f"holds no tomograms ({len(entries)} entries, none usable)"
        raise InputError(input_dir, f"input folder {what}", _FIX_SOURCE)

    sources.sort(key=lambda p: (tomo_id_of(p), p.name))
    for a, b in zip(sources, sources[1:]):
        if tomo_id_of(a) == tomo_id_of(b):
            raise InputError(
                input_dir,
                f"two sources have the tomo_id {tomo_id_of(a)!r}: {a.name} and {b.name}",
                "keep one of them (move the other out of the input folder)",
            )
    skipped = len(entries) - len(sources)
    if skipped:
        logger.debug("%s: ignored %d entries that are not tomogram sources", input_dir, skipped)
    return sources


def slice_files(folder: str | Path) -> list[Path]:
    """The slice images of a tomogram folder, ordered by slice number (the z index)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder of slice images", _FIX_SOURCE)
    numbered: dict[int, list[Path]] = {}
    others: list[str] = []
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise InputError(folder, f"cannot list folder ({exc.strerror or exc})", "check permissions") from None
    for name in names:
        match = _SLICE_RE.match(name)
        if match and (folder / name).is_file():
            numbered.setdefault(int(match.group(1)), []).append(folder / name)
        elif not name.startswith("."):
            others.append(name)

    if not numbered:
        problem = "folder is empty" if not names else (
            "no slice images named slice_<number>.jpg/.jpeg/.png/.tif/.tiff"
            + (f" (found: {_listing(others)})" if others else "")
        )
        raise InputError(folder, problem, "name the slices slice_0000.jpg, slice_0001.jpg, ... (one per z)")

    duplicates = [files for _, files in sorted(numbered.items()) if len(files) > 1]
    if duplicates:
        first = duplicates[0]
        raise InputError(
            folder,
            f"slice number {int(_SLICE_RE.match(first[0].name).group(1))} appears "
            f"{len(first)} times ({', '.join(p.name for p in first)})"
            + (f"; {len(duplicates)} numbers are duplicated" if len(duplicates) > 1 else ""),
            "keep one file per slice number",
        )

    numbers = sorted(numbered)
    if numbers[0] != 0:
        raise InputError(
            folder,
            f"slice numbers start at {numbers[0]} ({numbered[numbers[0]][0].name}), not 0; the slice "
            "number is the z index",
            _FIX_SLICES,
        )
    if numbers[-1] != len(numbers) - 1:
        present = set(numbers)
        missing = [n for n in range(numbers[-1]) if n not in present]
        raise InputError(
            folder,
            f"{len(missing)} slice(s) missing between 0 and {numbers[-1]}: numbers {_listing(missing)}",
            _FIX_SLICES,
        )
    if others:
        logger.debug("%s: ignored %d files that are not slice images", folder, len(others))
    return [numbered[n][0] for n in numbers]


# --- readers --------------------------------------------------------------------------------


def _check_volume(data: np.ndarray, path: Path) -> None:
    if data.ndim != 3:
        raise InputError(path, f"array has {data.ndim} dimensions {tuple(data.shape)}; a tomogram is 3D (Z, Y, X)",
                         "give a 3D volume")
    if 0 in data.shape:
        raise InputError(path, f"volume is empty (shape {tuple(data.shape)})", "give a non-empty 3D volume")


def _allocate(shape: tuple[int, ...], dtype: np.dtype, path: Path) -> np.ndarray:
    try:
        return np.empty(shape, dtype=dtype)
    except MemoryError:
        gib = math.prod(shape) * np.dtype(dtype).itemsize / 2**30
        raise InputError(path, f"not enough memory for a {shape} {np.dtype(dtype)} volume ({gib:.1f} GiB)",
                         "free memory or process this tomogram on a larger machine") from None


def _as_float32(data: np.ndarray, path: Path) -> np.ndarray:
    try:
        return data.astype(np.float32, copy=False)
    except MemoryError:
        gib = data.size * 4 / 2**30
        raise InputError(path, f"not enough memory to convert the {tuple(data.shape)} volume to float32 "
                         f"({gib:.1f} GiB)", "free memory or process this tomogram on a larger machine") from None


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
    out = _allocate((len(files), *first.shape), first.dtype, folder)
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


def _imod_unsigned_bytes(header) -> bool:
    """True when an IMOD-stamped mode-0 header says its bytes are unsigned.

    IMOD writes 8-bit data unsigned and sets bit 0 of ``imodFlags`` only for signed bytes;
    ``imodStamp`` (1146047817, "IMOD") sits at byte 152 and ``imodFlags`` at 156 of the header,
    inside mrcfile's ``extra2`` field (offset 112).
    """
    extra2 = header.extra2.tobytes()
    stamp, flags = extra2[40:44], extra2[44:48]
    if stamp not in (b"IMOD", b"DOMI"):
        return False
    order = "<" if stamp == b"IMOD" else ">"
    return not (int.from_bytes(flags, "little" if order == "<" else "big") & 1)


def _header_spacing(header, path: Path) -> float | None:
    """Voxel size (Å) from the cell dimensions, or None when not set or unusable."""
    sizes = []
    for axis in ("x", "y", "z"):
        cell = float(header.cella[axis])
        samples = int(header["m" + axis])
        sizes.append(cell / samples if samples > 0 else 0.0)
    x, y, z = sizes
    if x == 0.0:
        logger.info("%s: the MRC header sets no voxel size (0)", path)
        return None
    if not math.isfinite(x) or x < 0:
        logger.warning("%s: ignoring the MRC header's voxel size %r Å (not a positive number)", path, x)
        return None
    if x == 1.0:
        logger.warning(
            "%s: the MRC header's voxel size is exactly 1.0 Å, the placeholder many writers use; "
            "treating it as not set (give the spacing in a CSV if 1.0 Å is real)", path)
        return None
    if any(not math.isclose(x, v, rel_tol=1e-3) for v in (y, z) if v > 0):
        logger.warning("%s: anisotropic voxel size x=%.4g y=%.4g z=%.4g Å; using x", path, x, y, z)
    return x


def _axis_order(header, path: Path) -> tuple[int, int, int] | None:
    """Transpose turning mrcfile's (section, row, column) data into (Z, Y, X); None if identity."""
    mapc, mapr, maps = int(header.mapc), int(header.mapr), int(header.maps)
    if (mapc, mapr, maps) in ((1, 2, 3), (0, 0, 0)):
        return None
    if sorted((mapc, mapr, maps)) != [1, 2, 3]:
        raise InputError(path, f"MRC header has an invalid axis order MAPC/MAPR/MAPS = {mapc}/{mapr}/{maps}",
                         "rewrite the file with a standard MRC writer")
    data_axis = {maps: 0, mapr: 1, mapc: 2}  # spatial axis (1=X, 2=Y, 3=Z) -> data axis
    logger.warning("%s: MRC axis order MAPC/MAPR/MAPS = %d/%d/%d; transposing to Z, Y, X", path, mapc, mapr, maps)
    return (data_axis[3], data_axis[2], data_axis[1])


def read_mrc(path: str | Path) -> tuple[np.ndarray, float | None]:
    """Read an MRC/REC file memory-mapped: ((Z, Y, X) array, header voxel size in Å or None).

    uint8 data stays uint8; signed bytes (MRC mode 0) become uint8 by adding 128, except in files
    stamped by IMOD as unsigned, whose bytes are used as they are; everything else becomes
    float32. A voxel size of 0 means "not set" and gives None.
    """
    import mrcfile  # imported here so importing this module stays cheap

    path = Path(path)
    fix = "re-export or re-download this tomogram"
    if not path.is_file():
        raise InputError(path, "MRC file does not exist", "check the path")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with mrcfile.mmap(path, mode="r", permissive=False) as mrc:
                header = mrc.header.copy()
                data = mrc.data
    except ValueError as exc:
        problem = str(exc)
        if "mmap length is greater than file size" in problem:
            problem = "the file is shorter than its header says (truncated, or wrong dimensions in the header)"
        raise InputError(path, f"not a readable MRC file: {problem}", fix) from None
    except OSError as exc:
        raise InputError(path, f"cannot read MRC file ({exc.strerror or exc})", fix) from None
    for w in caught:
        logger.debug("%s: mrcfile: %s", path, w.message)
    expected = header.nbytes + int(header.nsymbt) + data.nbytes
    size = path.stat().st_size
    if size != expected:
        raise InputError(
            path,
            f"file size {size} bytes does not match its header ({int(header.nz)} x {int(header.ny)} x "
            f"{int(header.nx)} voxels of mode {int(header.mode)} need {expected} bytes)",
            fix,
        )
    if data.ndim != 3:
        raise InputError(path, f"MRC file holds a {data.ndim}D image {tuple(data.shape)}, not a 3D tomogram",
                         "give a 3D tomogram")
    spacing = _header_spacing(header, path)
    transpose = _axis_order(header, path)
    if transpose is not None:
        data = data.transpose(transpose)
    if data.dtype.kind == "c":
        raise InputError(path, "MRC file holds complex values (a Fourier transform?), not a tomogram",
                         "give a real-space tomogram")
    if data.dtype == np.int8:
        unsigned = _imod_unsigned_bytes(header)
        data = data.view(np.uint8) if unsigned else np.bitwise_xor(data.view(np.uint8), np.uint8(0x80))
    elif data.dtype != np.uint8:
        data = _as_float32(data, path)
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
    except ValueError as exc:
        raise InputError(path, f"not a readable .npy array ({exc})", fix) from None
    except (OSError, EOFError) as exc:
        raise InputError(path, f"cannot read .npy file ({exc})", fix) from None
    if not isinstance(data, np.ndarray):
        raise InputError(path, "file is an .npz archive, not a single .npy array", fix)
    _check_volume(data, path)
    if data.dtype.kind not in "biuf":
        raise InputError(path, f"array has unsupported type {data.dtype}", fix)
    if data.dtype != np.uint8 and data.dtype != np.float32:
        data = _as_float32(data, path)
    return data


# --- volumes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Volume:
    """A tomogram as read: (Z, Y, X) data, the header's voxel size (Å; MRC, OME-Zarr level 0) and its
    source; ``level_map``: where the voxels of the OME-Zarr level read sit on level 0 (None: level 0)."""

    tomo_id: str
    data: np.ndarray
    header_spacing: float | None
    source: Path | str
    level_map: "LevelMap | None" = None


def read_volume(source: str | Path, *, decoder: str = "auto", threads: int | None = None,
                zarr_level: int | str = 0, target_A: float | None = None, spacing_A: float | None = None) -> Volume:
    """Read one tomogram source (a slice folder, an .mrc/.rec file, an .npy file, an OME-Zarr store or URL).

    OME-Zarr only: ``zarr_level`` (an index or ``"auto"``), ``target_A`` (the finest spacing a member
    needs) and ``spacing_A`` (level 0's spacing when the spacing CSV gives it), see
    :func:`inference.omezarr.read_omezarr`.
    """
    started = time.perf_counter()
    if source_list.is_url(source) or _is_zarr(Path(source)):
        from inference.omezarr import read_omezarr

        data, header, level_map = read_omezarr(source, level=zarr_level, target_A=target_A, spacing_A=spacing_A)
        volume = Volume(tomo_id=tomo_id_of(source), data=data, header_spacing=header, source=source,
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
        raise InputError(source, "not a tomogram source", _FIX_SOURCE)
    volume = Volume(tomo_id=tomo_id_of(source), data=data, header_spacing=header_spacing, source=source)
    logger.debug("read %s: %s %s in %.2f s", volume.tomo_id, "x".join(map(str, data.shape)), data.dtype,
                time.perf_counter() - started)
    return volume


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
        source = source_list.as_source(source)
        try:
            volume = read_volume(source, decoder=decoder, threads=threads)
        except InputError as exc:
            logger.error("skipping tomogram %s: %s", source, exc)
            if on_error is not None:
                on_error(source, exc)
            continue
        yield source, volume


# --- voxel spacing --------------------------------------------------------------------------


def _norm_column(name: str) -> str:
    return re.sub(r"[\s_]+", "_", str(name).strip().lower())


def load_spacing_table(csv_path: str | Path) -> dict[str, float]:
    """Voxel spacing (Å) per tomo_id from a CSV.

    Accepted: the competition's ``train_labels.csv`` (columns ``tomo_id`` and ``Voxel spacing``,
    one row per motor, so several rows per tomogram) or a file with columns
    ``tomo_id,voxel_spacing``. Column names are matched ignoring case, spaces and underscores.
    Rows of one tomo_id must agree.
    """
    import pandas as pd  # imported here so importing this module stays cheap

    csv_path = Path(csv_path)
    fix = "give a CSV with columns tomo_id,voxel_spacing (one row per tomogram, spacing in Å)"
    if not csv_path.is_file():
        raise InputError(csv_path, "spacing CSV does not exist", "check the path")
    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise InputError(csv_path, "spacing CSV is empty", fix) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(csv_path, f"cannot parse spacing CSV ({str(exc).strip()})", fix) from None
    except OSError as exc:
        raise InputError(csv_path, f"cannot read spacing CSV ({exc.strerror or exc})", fix) from None

    columns = {_norm_column(c): c for c in frame.columns}
    id_col, spacing_col = columns.get("tomo_id"), columns.get("voxel_spacing")
    missing = [name for name, col in (("tomo_id", id_col), ("voxel_spacing", spacing_col)) if col is None]
    if missing:
        raise InputError(csv_path, f"spacing CSV lacks column(s) {', '.join(missing)} "
                         f"(has: {', '.join(map(str, frame.columns))})", fix)
    if frame.empty:
        raise InputError(csv_path, "spacing CSV has no rows", fix)

    table: dict[str, float] = {}
    first_line: dict[str, int] = {}
    for index, (tomo_id, raw) in enumerate(zip(frame[id_col], frame[spacing_col])):
        line = index + 2  # 1-based, after the header line
        tomo_id = str(tomo_id).strip()
        if not tomo_id:
            raise InputError(csv_path, f"line {line}: empty tomo_id", fix)
        try:
            spacing = float(str(raw).strip())
        except ValueError:
            raise InputError(csv_path, f"line {line} ({tomo_id}): voxel spacing {raw!r} is not a number", fix) from None
        if not math.isfinite(spacing) or spacing <= 0:
            raise InputError(csv_path, f"line {line} ({tomo_id}): voxel spacing {raw!r} is not a positive number",
                             fix)
        if tomo_id in table and not math.isclose(table[tomo_id], spacing, rel_tol=1e-6):
            raise InputError(
                csv_path,
                f"line {line} ({tomo_id}): voxel spacing {spacing:g} disagrees with {table[tomo_id]:g} "
                f"on line {first_line[tomo_id]}",
                "give one spacing per tomogram",
            )
        if tomo_id not in table:
            table[tomo_id] = spacing
            first_line[tomo_id] = line
    logger.info("spacing CSV %s: %d tomograms", csv_path, len(table))
    return table


def resolve_spacing(
    tomo_id: str,
    *,
    table: dict[str, float] | None,
    header_spacing: float | None,
    default: float = DEFAULT_SPACING_A,
) -> tuple[float, str]:
    """Voxel spacing (Å) of a tomogram and where it came from: "csv", "header" or "default".

    The first that applies wins: the spacing CSV, the MRC header, ``default`` (13.1 Å).
    """
    if not (isinstance(default, (int, float)) and math.isfinite(default) and default > 0):
        raise InputError(None, f"default voxel spacing must be a positive number of Å, got {default!r}",
                         "pass a spacing such as 13.1")
    if table is not None and tomo_id in table:
        spacing, source = table[tomo_id], "csv"
        if header_spacing is not None and not math.isclose(spacing, header_spacing, rel_tol=0.01):
            logger.warning("%s: spacing CSV says %.4g Å but the MRC header says %.4g Å; using the CSV",
                           tomo_id, spacing, header_spacing)
    elif header_spacing is not None and math.isfinite(header_spacing) and header_spacing > 0:
        spacing, source = float(header_spacing), "header"
    else:
        spacing, source = float(default), "default"
    if table is not None and source != "csv":
        logger.debug("%s: not in the spacing CSV", tomo_id)
    logger.debug("%s: voxel spacing %.4g Å (from %s)", tomo_id, spacing, source)
    return spacing, source
