"""Errors the user can act on.

Every problem with user input (a tomogram, a CSV, a manifest) is raised as :class:`InputError`,
which names the offending file and says what to do about it. The CLI prints these as one
readable line and never as a traceback from deep inside NumPy. A file that cannot be written
(read-only folder, full disk) is a :class:`WriteError`, made from the ``OSError`` by
:func:`write_error`; writes are atomic, so what was written before stays valid.
"""

from __future__ import annotations

import errno
from pathlib import Path

from inference.common.names import escaped


class InputError(ValueError):
    """Bad user input: names the file, the problem and the fix."""

    def __init__(self, path: str | Path | None, problem: str, fix: str | None = None):
        self.path = None if path is None else str(path)
        self.problem = problem
        self.fix = fix
        where = f"{self.path}: " if self.path else ""
        hint = f" Fix: {fix}" if fix else ""
        super().__init__(f"{where}{problem}.{hint}" if not problem.endswith(".") else f"{where}{problem}{hint}")


class WriteError(InputError):
    """A file or folder could not be written (permissions, a full disk, a read-only file system)."""


class EngineError(RuntimeError):
    """A model runtime cannot be used as asked (missing provider, bad model file, shape mismatch)."""


class ModelOutputError(EngineError):
    """A member's model gave an unusable output on one tomogram (NaN, infinite): that tomogram fails."""


def one_line(exc: BaseException, limit: int = 400) -> str:
    """``exc`` as one line for the log: its type unless it is one of ours, and its message: ours whole (a name
    with a newline in it escaped, :func:`~inference.common.names.escaped`), another library's first line."""
    ours = isinstance(exc, (InputError, EngineError))
    message = str(exc) if ours else str(exc).split("\n", 1)[0]
    text = " ".join(escaped(message).split()) or type(exc).__name__
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return text if ours or text == type(exc).__name__ else f"{type(exc).__name__}: {text}"


_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def write_error(path: str | Path, exc: OSError, what: str = "cannot write") -> WriteError:
    """The one-line error for an ``OSError`` raised while writing ``path``, with the fix for its cause."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in _FULL:
        fix = "free disk space, or write elsewhere (files written before are complete)"
    elif exc.errno in _DENIED:
        fix = "make the folder writable, or write elsewhere"
    else:
        fix = "check the path and the disk"
    return WriteError(path, f"{what} ({reason})", fix)
