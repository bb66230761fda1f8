"""Atomic writes: a temporary file beside the target, then a rename over it.

A reader never sees half a file, and a write that fails (full disk, read-only folder) is a
:class:`~inference.common.errors.WriteError` naming the file and leaves the previous one as it was.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Callable

import pandas as pd

from inference.common.errors import write_error


@functools.cache
def _file_mode() -> int:
    """The mode a plain ``open()`` would give a new file (0666 less the umask); mkstemp's is 0600."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path, write: Callable, newline: str | None = None) -> Path:
    """``write(file)`` into a temporary file beside ``path``, then rename it over ``path``: a reader never
    sees half a file, and a failed write (full disk, read-only folder: a WriteError naming ``path``)
    leaves the previous file as it was. The file gets the usual permissions (umask), not mkstemp's 0600."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "w", newline=newline) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_text_atomic(path: Path, text: str) -> None:
    """:func:`atomic_write` of a text."""
    atomic_write(path, lambda fh: fh.write(text))


def write_csv_atomic(df: pd.DataFrame, path: str | Path, float_format: str | None = None) -> Path:
    """Write ``df`` to ``path`` through a temp file + rename, so a reader never sees half a file; a write that
    fails (read-only folder, full disk) is a WriteError naming ``path`` and leaves the previous file as it was."""
    return atomic_write(Path(path), lambda fh: df.to_csv(fh, index=False, float_format=float_format), newline="")
