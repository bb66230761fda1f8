"""The work folder of a ``predict`` run (``<output>.work`` unless ``--work-dir``): its identity, its
lock, the keys that decide which stored results are reused, and what ``--restart`` may remove.

Layout (tools read it)::

    run.json                   the run record: {"format": 2, "written_by": "motorfinder predict", "key": ...}
    lock                       flock'ed by the live run; holds its pid, for the message
    tomograms/<tomo_id>.json   one result each ("status": "ok" | "failed"), with the key of its inputs

* **Lock**: the live run holds an exclusive ``fcntl.flock`` on ``lock``; a second run on the same
  folder stops with one line. The kernel drops the lock with the process, so a killed run never
  blocks its rerun (a stale pid in the file means nothing).
* **Keys**: a result is reused only when its key equals the key of its inputs now:
  :func:`options_key` (the manifest's and every model file's content hash, the spacing CSV's content,
  the default spacing and the options that change results) with :func:`source_stamp` (size and
  mtime of the source file, or of every file of a slice folder).
* **Ownership**: a folder is a run's when its run record says so, or when it holds nothing but what
  a run writes. ``--restart`` removes only ``run.json``, ``tomograms/*.json`` and the temporary
  files of interrupted writes; a folder holding anything else is refused, nothing deleted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

from inference.common.errors import InputError, write_error
from inference.common.file_hash import sha256_file

try:
    import fcntl
except ImportError:  # not POSIX: no lock (documented)
    fcntl = None

logger = logging.getLogger(__name__)

FORMAT = 2
WRITER = "motorfinder predict"
RECORD, LOCK, TOMOGRAMS = "run.json", "lock", "tomograms"
_FIX_CORRUPT = "pass --restart to start over (it removes only the files a run wrote there), or another --work-dir"


# ------------------------------------------------------------------------------------------ keys


file_digest = sha256_file  # the run key's name for it


def options_key(manifest_path: Path, model_paths: list[Path], spacing_csv: Path | None, default_spacing: float,
                options: dict | None = None) -> str:
    """What every result depends on besides its source: files by content, settings by value."""
    parts = {"manifest": file_digest(manifest_path),
             "models": [[Path(p).name, file_digest(p)] for p in model_paths],
             "spacing_csv": file_digest(spacing_csv) if spacing_csv is not None else None,
             "default_spacing": repr(float(default_spacing)), "options": options or {}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def source_stamp(source: str | Path) -> str:
    """Size and mtime of a source file, or of every entry of a slice folder or ``.zarr`` store's top level (names
    included); a URL is its own stamp (what it points at is not looked at)."""
    from inference.io.listing_file import is_url

    if is_url(source):
        return f"url:{source}"
    source = Path(source)
    try:
        if source.is_dir():
            rows = []
            with os.scandir(source) as it:
                for e in it:
                    st = e.stat()
                    rows.append((e.name, st.st_size, st.st_mtime_ns))
            rows.sort()
            return hashlib.sha256(json.dumps(rows).encode()).hexdigest()
        st = source.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"
    except OSError as exc:
        return f"unreadable:{exc.errno}"


_MAX_STEM_BYTES = 200  # a file name has 255 bytes; the temporary file adds '.', '.json.' and 8 characters


def file_stem(tomo_id: str) -> str:
    """The result file's name without ``.json``: the tomo_id, or for a very long one its first characters and
    a hash of the whole (still unique, still readable)."""
    if len(tomo_id.encode("utf-8", "surrogateescape")) <= _MAX_STEM_BYTES:
        return tomo_id
    head = tomo_id.encode("utf-8", "surrogateescape")[:120].decode("utf-8", "ignore")
    return f"{head}~{hashlib.sha256(tomo_id.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}"


def result_key(options: str, stamp: str) -> str:
    return hashlib.sha256(f"{options}|{stamp}".encode()).hexdigest()[:40]


# ---------------------------------------------------------------------------------- the folder


def _is_temp(name: str) -> bool:
    """A temporary file of an interrupted atomic write (``.<name>.json.<random>``)."""
    return name.startswith(".") and ".json." in name


def _is_result(path: Path) -> bool:
    """A file that reads as a result a run wrote (format, tomo_id, status)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "format" in data and "tomo_id" in data and data.get("status") in ("ok", "failed")


def _tomogram_files(folder: Path, strict: bool = False) -> tuple[list[Path], list[str]]:
    """(result and temporary files a run wrote in ``tomograms/``, names of anything else there).
    ``strict`` (a folder without a run record): a ``.json`` counts as a run's only when it reads as a result."""
    sub = folder / TOMOGRAMS
    if not sub.exists():
        return [], []
    if sub.is_symlink() or not sub.is_dir():
        return [], [TOMOGRAMS]
    ours, others = [], []
    with os.scandir(sub) as it:
        for e in it:
            path = Path(e.path)
            is_file = e.is_file(follow_symlinks=False)
            if is_file and (_is_temp(e.name) or (e.name.endswith(".json") and (not strict or _is_result(path)))):
                ours.append(path)
            else:
                others.append(f"{TOMOGRAMS}/{e.name}")
    return ours, others


def foreign_entries(folder: Path, strict: bool = True) -> list[str]:
    """Entries of ``folder`` that a run does not write (empty: the folder may be a run's)."""
    others = []
    with os.scandir(folder) as it:
        for e in it:
            if e.name in (RECORD, LOCK) and e.is_file(follow_symlinks=False):
                continue
            if e.name == TOMOGRAMS or _is_temp(e.name):
                continue
            others.append(e.name)
    return sorted(others + _tomogram_files(folder, strict)[1])


def read_record(folder: Path) -> dict | None:
    """The run record, None when there is none; InputError when it is there but not a run record."""
    path = folder / RECORD
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(path, f"corrupt run record ({type(exc).__name__}: {exc})", _FIX_CORRUPT) from None
    valid = isinstance(record, dict) and record.get("format") in (1, FORMAT) and isinstance(record.get("key"), str)
    if not valid:
        raise InputError(path, "corrupt run record (not a motorfinder run record: no format and key)", _FIX_CORRUPT)
    return record


def check_folder(folder: Path, restart: bool) -> None:
    """InputError unless ``folder`` may hold this run: missing, a run's (record or contents), or empty."""
    if folder.exists() and not folder.is_dir():
        raise InputError(folder, "the work folder is a file", "pass --work-dir with a folder path")
    if not folder.exists():
        return
    try:
        record_ok = read_record(folder) is not None
    except InputError:
        if not restart:
            raise
        record_ok = False
    try:
        others = foreign_entries(folder, strict=not record_ok)
    except OSError as exc:
        raise InputError(folder, f"cannot list the work folder ({exc.strerror or exc})", "check permissions") from None
    if others and not record_ok:
        from inference.common.names import name_list

        raise InputError(folder, f"not a motorfinder work folder: no run record, and it holds files a run does not "
                         f"write ({name_list(others)}); nothing was changed",
                         "pass --work-dir with a new or empty folder")


def clean(folder: Path) -> int:
    """``--restart``: remove what a run wrote (run record, results, temporary files); returns the count.
    Call it after :func:`check_folder` (which refuses a folder holding anything else)."""
    removed = 0
    files, _ = _tomogram_files(folder)
    files += [folder / RECORD] if (folder / RECORD).is_file() else []
    with os.scandir(folder) as it:
        files += [Path(e.path) for e in it if _is_temp(e.name) and e.is_file(follow_symlinks=False)]
    for f in files:
        try:
            f.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise write_error(f, exc, "--restart cannot remove this file") from None
    try:
        (folder / TOMOGRAMS).rmdir()  # only when empty
    except OSError:
        pass
    return removed


def write_record(folder: Path, key: str) -> None:
    from inference.common.atomic import write_text_atomic

    write_text_atomic(folder / RECORD, json.dumps({"format": FORMAT, "written_by": WRITER, "key": key,
                                                   "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))


class RunLock:
    """An exclusive ``flock`` on ``<folder>/lock`` for the life of a run (released on close or death)."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK
        self.fd = None
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(folder, exc, "cannot create the work folder") from None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise write_error(self.path, exc, "cannot create the run's lock file") from None
        if fcntl is None:
            logger.debug("no fcntl here: the work folder %s is not locked", folder)
            self.fd = fd
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise InputError(folder, f"another predict run (pid {holder}) is using this work folder",
                             "wait for it to finish, or pass another --output (or --work-dir)") from None
        except OSError as exc:  # a file system without locks (some NFS): go on, say so
            logger.warning("%s: cannot lock the work folder (%s); make sure no other run uses it", folder,
                           exc.strerror or exc)
        self.fd = fd
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the pid is only for the message

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if fcntl is not None:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
        finally:
            os.close(self.fd)
            self.fd = None
