"""Decoders for single 2D tomogram slices (JPEG, PNG, TIFF).

A decoder is a callable ``decode(path) -> np.ndarray`` returning one 2D grayscale slice:

* ``uint8`` for 8-bit images (colour images are converted to gray with the ITU-R 601 luma
  weights; a colour JPEG is decoded straight to its luma channel);
* ``float32`` for anything deeper (16-bit integer, 32-bit integer or float images), so a
  tomogram made of such slices is a float32 volume.

Three backends are supported, each optional:

``simplejpeg``
    libjpeg-turbo through a thin wrapper; JPEG only. Decodes in strict mode, so libjpeg's
    "recoverable" warnings (corrupt data, premature end of file) are errors.
``cv2``
    OpenCV's ``imdecode``; JPEG, PNG and TIFF. It reads the bytes itself and decodes them from
    memory (the file is read exactly once and non-ASCII paths work everywhere).
``pil``
    Pillow; JPEG, PNG and TIFF.

The format of a file is taken from its first bytes, not from its suffix. ``get_decoder("auto")``
uses, for each format, the first available backend in :data:`SPEED_ORDER` that can read it
(measured by ``bench/bench_decoders.py``; see ``bench/results/decoders.md``).

Every JPEG must end with the EOI marker (``FF D9``). libjpeg and Pillow in tolerant modes fill
a truncated JPEG with gray and return it without complaint; a missing EOI is the cheap and
backend-independent sign of truncation (entropy-coded JPEG data cannot contain ``FF D9``), so
it is checked before any backend runs. Damage in the middle of a complete-length file is
caught by ``simplejpeg`` (strict) and usually by Pillow; OpenCV may decode it with artefacts.

Every problem with a file is raised as :class:`inference.common.errors.InputError` naming the file.
"""

from __future__ import annotations

import functools
import importlib
import io
import logging
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from inference.common.errors import InputError
from inference.io.read_retry import is_transient

logger = logging.getLogger(__name__)

Decoder = Callable[[Path], np.ndarray]

#: Backends from fastest to slowest on 8-bit grayscale JPEG slices (bench/results/decoders.md).
SPEED_ORDER: tuple[str, ...] = ("simplejpeg", "cv2", "pil")

#: Formats each backend can decode.
BACKEND_FORMATS: dict[str, frozenset[str]] = {
    "simplejpeg": frozenset({"jpeg"}),
    "cv2": frozenset({"jpeg", "png", "tiff"}),
    "pil": frozenset({"jpeg", "png", "tiff"}),
}

_MODULES = {"simplejpeg": "simplejpeg", "cv2": "cv2", "pil": "PIL.Image"}
_PACKAGES = {"simplejpeg": "simplejpeg", "cv2": "opencv-python-headless", "pil": "pillow"}

_FIX_SLICE = "re-extract or re-download this slice"

# ITU-R 601 luma weights, the ones OpenCV and Pillow use for RGB -> gray.
_LUMA_RGB = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# The EOI marker may be followed by a little padding (some writers pad to a block size).
_EOI = b"\xff\xd9"
_EOI_TAIL = 64


def sniff_format(data: bytes) -> str | None:
    """Return ``"jpeg"``, ``"png"`` or ``"tiff"`` from the leading bytes, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return None


@functools.cache
def _backend_module(name: str):
    """Import a backend's module, or return None when it is not installed."""
    try:
        return importlib.import_module(_MODULES[name])
    except ImportError:
        logger.debug("slice decoder %r is not available (%s not installed)", name, _PACKAGES[name])
        return None


def available_decoders() -> list[str]:
    """Names of the installed backends, fastest first."""
    return [name for name in SPEED_ORDER if _backend_module(name) is not None]


# --- helpers shared by the backends ---------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "slice file does not exist", "check the folder; " + _FIX_SLICE) from None
    except OSError as exc:
        if is_transient(exc):  # the read may pass when tried again (inference.io.read_retry)
            raise
        raise InputError(path, f"cannot read slice file ({exc.strerror or exc})", _FIX_SLICE) from None
    if not data:
        raise InputError(path, "slice file is empty (0 bytes)", _FIX_SLICE)
    return data


def _check_jpeg_complete(path: Path, data: bytes) -> None:
    if _EOI not in data[-_EOI_TAIL:]:
        raise InputError(
            path,
            f"JPEG is truncated: it does not end with the end-of-image marker ({len(data)} bytes)",
            _FIX_SLICE,
        )


def _finish(arr: np.ndarray, path: Path, channel_order: str) -> np.ndarray:
    """Make a decoded image a 2D gray array: uint8 stays uint8, anything else becomes float32."""
    if arr.ndim == 3:
        channels = arr.shape[2]
        if channels in (1, 2):  # gray, gray + alpha
            arr = arr[:, :, 0]
        elif channels in (3, 4):  # colour (+ alpha)
            weights = _LUMA_RGB if channel_order == "rgb" else _LUMA_RGB[::-1]
            gray = arr[:, :, :3].astype(np.float32) @ weights
            if arr.dtype == np.uint8:
                gray = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
            arr = gray
        else:
            raise InputError(path, f"image has {channels} channels; expected gray or RGB", _FIX_SLICE)
    elif arr.ndim != 2:
        raise InputError(path, f"image has shape {arr.shape}; expected a 2D slice", _FIX_SLICE)
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * np.uint8(255)
    if arr.dtype.kind not in "uif":
        raise InputError(path, f"image has unsupported pixel type {arr.dtype}", _FIX_SLICE)
    return arr.astype(np.float32, copy=False)


# --- backends: each takes the path (for messages) and the file's bytes ----------------------


def _decode_simplejpeg(path: Path, data: bytes) -> np.ndarray:
    simplejpeg = _backend_module("simplejpeg")
    try:
        arr = simplejpeg.decode_jpeg(data, colorspace="GRAY", strict=True)
    except ValueError as exc:
        raise InputError(path, f"cannot decode JPEG ({exc})", _FIX_SLICE) from None
    return arr[:, :, 0] if arr.ndim == 3 else arr


def _decode_cv2(path: Path, data: bytes, fmt: str) -> np.ndarray:
    cv2 = _backend_module("cv2")
    # JPEG is 8-bit: decoding straight to gray (the luma channel) is the fastest path.
    flags = cv2.IMREAD_GRAYSCALE if fmt == "jpeg" else cv2.IMREAD_UNCHANGED
    try:
        arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        raise InputError(path, f"cannot decode {fmt.upper()} ({str(exc).strip()})", _FIX_SLICE) from None
    if arr is None:  # OpenCV reports failures by returning None
        raise InputError(path, f"cannot decode {fmt.upper()}: the file is corrupt", _FIX_SLICE)
    return _finish(arr, path, channel_order="bgr")


def _decode_pil(path: Path, data: bytes, fmt: str) -> np.ndarray:
    image_mod = _backend_module("pil")
    errors = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError, KeyError,
              image_mod.DecompressionBombError)
    try:
        with image_mod.open(io.BytesIO(data)) as im:
            if im.format == "JPEG":
                im.draft("L", im.size)  # decode a colour JPEG straight to its luma channel
            im.load()  # strict: raises on truncated or corrupt data
            if im.mode in ("L", "I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
                arr = np.asarray(im)
            elif im.mode in ("LA", "La"):
                arr = np.asarray(im.getchannel(0))
            else:  # 1, P, RGB, RGBA, CMYK, YCbCr, ...: 8-bit gray via Pillow's luma conversion
                arr = np.asarray(im.convert("L"))
    except errors as exc:
        raise InputError(path, f"cannot decode {fmt.upper()} ({exc})", _FIX_SLICE) from None
    return _finish(arr, path, channel_order="rgb")


def _tiff_has_more_pages(data: bytes) -> bool:
    """True when the first image file directory of a TIFF links to a second one (a stack)."""
    order = "<" if data[:2] == b"II" else ">"
    try:
        if data[2:4] in (b"*\x00", b"\x00*"):  # classic TIFF: 32-bit offsets, 12-byte entries
            (first,) = struct.unpack_from(order + "I", data, 4)
            (count,) = struct.unpack_from(order + "H", data, first)
            (following,) = struct.unpack_from(order + "I", data, first + 2 + 12 * count)
        else:  # BigTIFF: 64-bit offsets, 20-byte entries
            (first,) = struct.unpack_from(order + "Q", data, 8)
            (count,) = struct.unpack_from(order + "Q", data, first)
            (following,) = struct.unpack_from(order + "Q", data, first + 8 + 20 * count)
    except struct.error:
        return False  # a broken directory: let the decoder report it
    return following != 0


def _run_backend(name: str, path: Path, data: bytes, fmt: str) -> np.ndarray:
    if fmt == "jpeg":
        _check_jpeg_complete(path, data)
    elif fmt == "tiff" and _tiff_has_more_pages(data):
        raise InputError(
            path,
            "TIFF holds several pages; a slice file must hold one 2D image",
            "write one slice per file (slice_0000.tif, slice_0001.tif, ...)",
        )
    if name == "simplejpeg":
        return _decode_simplejpeg(path, data)
    if name == "cv2":
        return _decode_cv2(path, data, fmt)
    return _decode_pil(path, data, fmt)


def _sniff_or_raise(path: Path, data: bytes) -> str:
    fmt = sniff_format(data)
    if fmt is None:
        raise InputError(
            path,
            f"not a JPEG, PNG or TIFF image (starts with bytes {data[:8].hex(' ')})",
            _FIX_SLICE,
        )
    return fmt


def get_decoder(name: str = "auto") -> Decoder:
    """Return ``decode(path) -> 2D array`` for backend ``name`` (or ``"auto"``).

    ``"auto"`` decodes each format with the fastest installed backend that can read it.
    A named backend decodes only the formats it supports; any other format is an InputError.
    """
    known = ("auto", *SPEED_ORDER)
    if name not in known:
        raise InputError(None, f"unknown slice decoder {name!r}", f"use one of: {', '.join(known)}")
    available = available_decoders()
    if name == "auto":
        if not available:
            raise InputError(
                None,
                "no slice decoder is installed",
                "pip install simplejpeg and opencv-python-headless (or pillow)",
            )
        choice: dict[str, str] = {}
        for fmt in ("jpeg", "png", "tiff"):
            for backend in available:
                if fmt in BACKEND_FORMATS[backend]:
                    choice[fmt] = backend
                    break
        logger.debug("auto slice decoder: %s", choice)
    else:
        if name not in available:
            raise InputError(
                None,
                f"slice decoder {name!r} is not installed",
                f"pip install {_PACKAGES[name]}, or use decoder 'auto'",
            )
        choice = {fmt: name for fmt in BACKEND_FORMATS[name]}

    def decode(path: Path) -> np.ndarray:
        path = Path(path)
        data = _read_bytes(path)
        fmt = _sniff_or_raise(path, data)
        backend = choice.get(fmt)
        if backend is None:
            if name == "auto":
                raise InputError(
                    path,
                    f"no installed decoder can read {fmt.upper()}",
                    "pip install opencv-python-headless or pillow",
                )
            raise InputError(
                path,
                f"decoder {name!r} cannot read {fmt.upper()}",
                "use decoder 'auto', 'cv2' or 'pil'",
            )
        return _run_backend(backend, path, data, fmt)

    decode.__name__ = f"decode_{name}"
    decode.__qualname__ = decode.__name__
    return decode
