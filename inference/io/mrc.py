"""MRC/REC files (MRC2014): header checks, voxel size, axis order, memory-mapped data.

:func:`open_mrc` returns the data as mrcfile maps it (signed bytes already turned into uint8) and
the header's voxel size; :func:`inference.io.readers.read_mrc` makes it a (Z, Y, X) uint8 or float32
volume. :func:`peek_mrc` reads the header only (shape and voxel size, for the checks before a run).
Every problem is an :class:`~inference.common.errors.InputError` naming the file: a header with impossible
dimensions, a size that does not match the header, an unknown mode, complex values.
"""

from __future__ import annotations

import logging
import math
import struct
import warnings
from pathlib import Path

import numpy as np

from inference.common.errors import InputError
from inference.io.read_retry import is_transient
from inference.io.spacing import spacing_problem

logger = logging.getLogger(__name__)

FIX = "re-export or re-download this tomogram"
#: Bytes per voxel of the MRC modes mrcfile reads (mode 101: 4-bit, two voxels per byte).
MODE_BYTES = {0: 1, 1: 2, 2: 4, 3: 4, 4: 8, 6: 2, 12: 2, 101: 0.5}
_HEADER_ERRORS = (ValueError, OverflowError, MemoryError, TypeError, IndexError, KeyError, struct.error)


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


def header_spacing(header, path: Path, log: bool = True) -> float | None:
    """Voxel size (Å) from the cell dimensions, or None when not set or unusable (outside 1-100 Å);
    ``log``: say why a voxel size is not used (a header peek before the run stays quiet)."""
    info = logger.info if log else logger.debug
    warn = logger.warning if log else logger.debug
    sizes = []
    for axis in ("x", "y", "z"):
        cell = float(header.cella[axis])
        samples = int(header["m" + axis])
        sizes.append(cell / samples if samples > 0 else 0.0)
    x, y, z = sizes
    if x == 0.0:
        info("%s: the MRC header sets no voxel size (0)", path)
        return None
    if not math.isfinite(x) or x < 0:
        warn("%s: ignoring the MRC header's voxel size %r Å (not a positive number)", path, x)
        return None
    if x == 1.0:
        warn(
            "%s: the MRC header's voxel size is exactly 1.0 Å, the placeholder many writers use; "
            "treating it as not set (give the spacing in a CSV if 1.0 Å is real)", path)
        return None
    problem = spacing_problem(x)
    if problem:
        warn("%s: ignoring the MRC header's voxel size (%s); give the spacing in a CSV if it is real",
                       path, problem)
        return None
    if any(not math.isclose(x, v, rel_tol=1e-3) for v in (y, z) if v > 0):
        warn("%s: anisotropic voxel size x=%.4g y=%.4g z=%.4g Å; using x", path, x, y, z)
    return x


def axis_order(header, path: Path) -> tuple[int, int, int] | None:
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


def _read_header(path: Path):
    """The 1024-byte main header as a NumPy record (byte order from the machine stamp), or an InputError.

    Read here rather than by mrcfile, whose header reader already trips over impossible values (a
    negative extended header size) before they can be named."""
    from mrcfile.dtypes import HEADER_DTYPE

    try:
        with open(path, "rb") as fh:
            raw = fh.read(1024)
    except OSError as exc:
        if is_transient(exc):  # the read may pass when tried again (inference.io.read_retry)
            raise
        raise InputError(path, f"cannot read MRC file ({exc.strerror or exc})", FIX) from None
    if len(raw) < 1024:
        return None
    big = raw[212:214] == b"\x11\x11"  # MRC2014 machine stamp: 0x44 0x44 little, 0x11 0x11 big endian
    dtype = HEADER_DTYPE.newbyteorder(">" if big else "<")
    return np.frombuffer(raw, dtype=dtype).view(np.recarray)[0]


def check_header(header, path: Path, size: int) -> None:
    """Dimensions, mode and file size, computed in Python integers before anything is mapped."""
    if header is None:
        raise InputError(path, "not a readable MRC file: no header (the file is shorter than 1024 bytes?)", FIX)
    nx, ny, nz = int(header.nx), int(header.ny), int(header.nz)
    if min(nx, ny, nz) < 1:
        raise InputError(path, f"MRC header has impossible dimensions {nz} x {ny} x {nx} (Z x Y x X)", FIX)
    mode, ext = int(header.mode), int(header.nsymbt)
    if ext < 0:
        raise InputError(path, f"MRC header has a negative extended header size ({ext})", FIX)
    if mode not in MODE_BYTES:
        raise InputError(path, f"not a readable MRC file: unknown mode {mode}", FIX)
    expected = 1024 + ext + math.ceil(nx * ny * nz * MODE_BYTES[mode])
    if mode == 101:  # 4-bit rows are padded to whole bytes
        expected = 1024 + ext + (nx + 1) // 2 * ny * nz
    if size != expected:
        raise InputError(path, f"file size {size} bytes does not match its header ({nz} x {ny} x {nx} voxels of mode "
                         f"{mode} need {expected} bytes): truncated, or wrong dimensions in the header", FIX)


def peek_mrc(path: str | Path) -> tuple[tuple[int, int, int], float | None]:
    """((Z, Y, X) shape, header voxel size or None) from the header alone."""
    path = Path(path)
    header = _read_header(path)
    check_header(header, path, path.stat().st_size)
    spacing = header_spacing(header, path, log=False)
    shape_crs = (int(header.nz), int(header.ny), int(header.nx))
    mapc, mapr, maps = int(header.mapc), int(header.mapr), int(header.maps)
    if sorted((mapc, mapr, maps)) == [1, 2, 3]:
        by_axis = {maps: shape_crs[0], mapr: shape_crs[1], mapc: shape_crs[2]}
        shape_crs = (by_axis[3], by_axis[2], by_axis[1])
    return shape_crs, spacing


def open_mrc(path: str | Path) -> tuple[np.ndarray, float | None]:
    """(data memory-mapped, in (Z, Y, X) order; header voxel size in Å or None).

    Signed bytes (MRC mode 0) become uint8 by adding 128, except in files stamped by IMOD as unsigned,
    whose bytes are used as they are. Other modes are returned as mrcfile maps them.
    """
    import mrcfile

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "MRC file does not exist", "check the path")
    check_header(_read_header(path), path, path.stat().st_size)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with mrcfile.mmap(path, mode="r", permissive=False) as mrc:
                header = mrc.header.copy()
                data = mrc.data
    except _HEADER_ERRORS as exc:
        problem = str(exc)
        if "mmap length is greater than file size" in problem:
            problem = "the file is shorter than its header says (truncated, or wrong dimensions in the header)"
        raise InputError(path, f"not a readable MRC file: {problem}", FIX) from None
    except OSError as exc:
        if is_transient(exc):  # the read may pass when tried again (inference.io.read_retry)
            raise
        raise InputError(path, f"cannot read MRC file ({exc.strerror or exc})", FIX) from None
    for w in caught:
        logger.debug("%s: mrcfile: %s", path, w.message)
    if data is None or data.ndim != 3:
        shape = () if data is None else tuple(data.shape)
        raise InputError(path, f"MRC file holds a {len(shape)}D image {shape}, not a 3D tomogram", "give a 3D tomogram")
    spacing = header_spacing(header, path)
    transpose = axis_order(header, path)
    if transpose is not None:
        data = data.transpose(transpose)
    if data.dtype.kind == "c":
        raise InputError(path, "MRC file holds complex values (a Fourier transform?), not a tomogram",
                         "give a real-space tomogram")
    if data.dtype == np.int8:
        unsigned = _imod_unsigned_bytes(header)
        data = data.view(np.uint8) if unsigned else np.bitwise_xor(data.view(np.uint8), np.uint8(0x80))
    return data, spacing
