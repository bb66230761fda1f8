"""Folders the builder owns: it writes, replaces and deletes only those, never through a link.

An owned folder holds a mark file (``.motorfinder-owned``, JSON) listing every file the builder wrote
in it. A folder may be (re)written when it is missing, empty, or marked with nothing in it that the
mark does not list. Anything else (the user's files, a symbolic link in place of the folder) stops the
command with one line that says what to do, before anything is written.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from inference.common.errors import InputError

MARK = ".motorfinder-owned"
WRITER = "motorfinder build_submission.py"


def _entries(folder: Path) -> list[str]:
    """Every file and link below ``folder`` (links are not followed), relative, POSIX style; not the mark."""
    out = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        base = Path(root)
        out += [(base / d).relative_to(folder).as_posix() for d in dirs if (base / d).is_symlink()]
        out += [(base / f).relative_to(folder).as_posix() for f in files]
    return sorted(e for e in out if e != MARK)


def read_mark(folder: Path) -> dict | None:
    path = folder / MARK
    if path.is_symlink() or not path.is_file():
        return None
    try:
        mark = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return mark if isinstance(mark, dict) and mark.get("written_by") == WRITER else None


def write_mark(folder: Path, files: list[str] | None) -> None:
    """``files=None``: the builder is writing the folder now (a run that dies leaves it all owned)."""
    (folder / MARK).write_text(json.dumps({"written_by": WRITER, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                           "files": files}, indent=1) + "\n")


def seal(folder: Path) -> None:
    """Mark ``folder`` as the builder's, listing what is in it now."""
    write_mark(folder, _entries(folder))


def check_writable(folder: Path) -> None:
    """InputError unless ``folder`` may be (re)written: missing, empty, or owned with no foreign entry."""
    folder = Path(folder)
    if folder.is_symlink():
        raise InputError(None, f"{folder} is a symbolic link; the build never writes or deletes through a link",
                         f"remove the link (rm {folder}) or pass another --out")
    if not folder.exists():
        return
    if not folder.is_dir():
        raise InputError(None, f"{folder} exists and is not a folder", "move it away or pass another --out")
    if not any(folder.iterdir()):
        return
    mark = read_mark(folder)
    if mark is None:
        raise InputError(None, f"{folder} exists and is not empty, and this builder did not write it (no {MARK} "
                         "in it); nothing was changed", f"move your files out of {folder}, or pass another --out")
    if mark.get("files") is not None:
        listed = set(mark["files"])
        foreign = [e for e in _entries(folder) if e not in listed]
        if foreign:
            raise InputError(None, f"{folder} holds {len(foreign)} file(s) this builder did not write "
                             f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); nothing was changed",
                             f"move them out of {folder}, or pass another --out")


def remove_owned(folder: Path) -> None:
    """Delete an owned folder (checked first); links inside are removed, never followed."""
    check_writable(folder)
    if folder.exists():
        shutil.rmtree(folder)


def replace_with(folder: Path, staged: Path) -> None:
    """Put ``staged`` (a folder on the same file system) in the place of the owned ``folder``, marked."""
    seal(staged)
    remove_owned(folder)
    os.replace(staged, folder)


@contextmanager
def owned_dir(folder: Path, *, clear: bool = True) -> Iterator[Path]:
    """Write into ``folder`` as its owner: checked, emptied (``clear``), marked while written, sealed after."""
    folder = Path(folder)
    if clear:
        remove_owned(folder)
    else:
        check_writable(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_mark(folder, None)
    yield folder
    seal(folder)


def check_parent(out: Path) -> None:
    """InputError when the output root exists and is not a folder (checked before any work)."""
    if Path(out).exists() and not Path(out).is_dir():
        raise InputError(None, f"{out} exists and is not a folder", "pass another --out")


def ensure_parent(out: Path) -> Path:
    """Create the output root (never removed); InputError when it cannot be a folder."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InputError(None, f"{out} exists and is not a folder", "pass another --out") from None
    except PermissionError:
        raise InputError(None, f"{out} cannot be created (permission denied)", "pass another --out") from None
    return out
