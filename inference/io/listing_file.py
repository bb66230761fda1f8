"""Sources beyond one input folder: fsspec URLs, and a text file that lists sources.

A tomogram source is a local path (a :class:`~pathlib.Path`) or a URL (a ``str`` such as
``s3://bucket/10000/TS_026/.../TS_026.zarr``). URLs are read by the OME-Zarr reader through fsspec
(:mod:`inference.io.omezarr`); a ``Path`` would fold the ``//`` of a URL, so sources stay strings
until :func:`as_source` has looked at them.

A listing (``--input sources.txt``) holds one source per line: a path (relative paths are taken
from the listing's folder) or a URL. Blank lines and lines starting with ``#`` are skipped. The
sources are returned sorted by tomo_id, like a folder's; two with the same tomo_id are an error.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from inference.common.errors import InputError

logger = logging.getLogger(__name__)

#: Suffixes of a file that lists sources (any other file must be a tomogram source itself).
LISTING_SUFFIXES: tuple[str, ...] = (".txt", ".list", ".lst")
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_FIX_FSSPEC = ("pip install fsspec (plus the file system's package: s3fs for s3://, aiohttp for https://, "
               "gcsfs for gs://)")


def is_url(source) -> bool:
    """True for ``scheme://...`` strings (an fsspec URL); paths are never URLs."""
    return isinstance(source, str) and bool(_URL_RE.match(source))


def as_source(text: str | Path) -> Path | str:
    """A source as the readers take it: the URL string as it is, anything else a ``Path``."""
    return text if is_url(text) else Path(text)


def url_id(url: str) -> str:
    """The tomo_id of a URL: its last path component without ``.zarr`` (and without a query)."""
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return name[:-5] if name.lower().endswith(".zarr") else name


def is_listing(path: Path) -> bool:
    return path.suffix.lower() in LISTING_SUFFIXES and path.is_file()


def read_listing(path: Path, tomo_id_of) -> list[Path | str]:
    """The sources a listing names, sorted by ``tomo_id_of(source)``; see the module docstring.

    A local path that does not exist is kept (its tomogram fails when read, is logged and written
    as -1) and named in one warning; a URL needs fsspec.
    """
    fix = "write one tomogram source per line: a path (slice folder, .mrc/.rec/.map, .npy, .zarr) or a URL"
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise InputError(path, "listing is not a text file", fix) from None
    except OSError as exc:
        raise InputError(path, f"cannot read listing ({exc.strerror or exc})", "check the path") from None
    sources: list[Path | str] = []
    line_of: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        if is_url(text):
            _need_fsspec(path, number)
            source: Path | str = text
        else:
            source = Path(text).expanduser()
            if not source.is_absolute():
                source = path.parent / source
        tomo_id = tomo_id_of(source)
        if tomo_id in line_of:
            raise InputError(path, f"line {number}: tomo_id {tomo_id!r} is already on line {line_of[tomo_id]}",
                             "list each tomogram once (two stores with the same name need distinct names)")
        line_of[tomo_id] = number
        sources.append(source)
    if not sources:
        raise InputError(path, "listing names no tomogram sources", fix)
    missing = [str(s) for s in sources if not is_url(s) and not s.exists()]
    if missing:
        from inference.common.names import name_list

        logger.warning("%s: %d listed source(s) do not exist and will be written as -1: %s", path, len(missing),
                       name_list(missing, 3))
    sources.sort(key=lambda s: (tomo_id_of(s), str(s)))
    logger.info("listing %s: %d tomogram sources", path, len(sources))
    return sources


def _need_fsspec(path: Path, number: int) -> None:
    try:
        import fsspec  # noqa: F401  (only its presence is checked here)
    except ImportError:
        raise InputError(path, f"line {number}: reading a URL needs fsspec, which is not installed",
                         _FIX_FSSPEC) from None
