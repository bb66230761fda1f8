"""Reading a source again after a transient failure: a network file system or an fsspec URL fails now and then.

:func:`read_with_retries` runs a read and, when it raises an error that can pass by itself
(:func:`is_transient`), runs it again after a short backoff (``backoff_s``, doubled each time), at most
``retries`` more times; each retry is logged at DEBUG and counted. A read that still fails raises
:class:`ReadFailed` (one line naming the source, the tries and the last error; the error as its cause).
Anything else is raised at once, as it is: an :class:`inference.common.errors.InputError` says the file
itself is bad, and reading it again would give the same answer.

Transient (:func:`is_transient`): an ``OSError`` whose errno says the device or the connection failed
(:data:`TRANSIENT_ERRNOS`: EIO, ETIMEDOUT, ECONNRESET, ESTALE, ...), any ``TimeoutError`` or
``ConnectionError``, and the I/O errors of fsspec's HTTP stack (aiohttp's connection and payload errors,
fsspec's ``FSTimeoutError``, an HTTP status 408, 429 or 5xx), matched by class name so that neither
package is imported here. Not transient: a missing file, a permission, a full disk, a truncated or
malformed file. The readers let a transient ``OSError`` through as it is (instead of their one-line
``InputError``) so that it can be retried here.
"""

from __future__ import annotations

import errno
import logging
import time
from pathlib import Path
from typing import Callable, TypeVar

from inference.common.errors import InputError, one_line

logger = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_ERRNOS = frozenset(getattr(errno, name) for name in (
    "EIO", "ETIMEDOUT", "ECONNRESET", "ECONNABORTED", "ECONNREFUSED", "EAGAIN", "EINTR", "EBUSY", "ESTALE",
    "EHOSTUNREACH", "EHOSTDOWN", "ENETUNREACH", "ENETDOWN", "ENETRESET", "EPIPE", "ENOLINK", "EREMOTEIO", "ECOMM",
    "EPROTO") if hasattr(errno, name))
_FSSPEC_TRANSIENT = frozenset(("ClientConnectionError", "ClientPayloadError", "ServerDisconnectedError",
                               "ServerTimeoutError", "FSTimeoutError"))
_HTTP_TRANSIENT = frozenset((408, 429, 500, 502, 503, 504))


class ReadFailed(InputError):
    """A read that failed with a transient error on every try; ``retries``: how many times it was read again."""

    def __init__(self, source: str | Path, tries: int, last: BaseException):
        self.retries = tries - 1
        super().__init__(source, f"read failed {tries} time(s) with an error that can pass by itself, the last: "
                                 f"{one_line(last)}", "check the file system or the network; the same command run "
                                 "again reads it again (failed tomograms are tried again)")


def is_transient(exc: BaseException) -> bool:
    """Whether reading again may succeed: see the module docstring. An ``InputError`` never is."""
    if isinstance(exc, InputError):
        return False
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
        return True
    for cls in type(exc).__mro__:
        if cls.__module__.split(".")[0] in ("aiohttp", "fsspec") and cls.__name__ in _FSSPEC_TRANSIENT:
            return True
    status = getattr(exc, "status", None)  # aiohttp's ClientResponseError (fsspec's HTTP file system)
    return type(exc).__module__.split(".")[0] == "aiohttp" and status in _HTTP_TRANSIENT


def read_with_retries(read: Callable[[], T], source: str | Path, *, retries: int, backoff_s: float = 0.2,
                      sleep: Callable[[float], None] = time.sleep) -> tuple[T, int]:
    """``(read(), retries made)``: ``read`` run again after each transient error, at most ``retries`` more times,
    waiting ``backoff_s``, then twice that, ... before each retry. :class:`ReadFailed` when every try failed
    transiently; any other error at once."""
    if retries < 0:
        raise ValueError(f"retries must be >= 0, got {retries}")
    attempt = 0
    while True:
        try:
            return read(), attempt
        except Exception as exc:  # noqa: BLE001 - only a transient error is retried; the rest is raised as it is
            if not is_transient(exc):
                raise
            if attempt == retries:
                raise ReadFailed(source, attempt + 1, exc) from exc
            wait = backoff_s * 2 ** attempt
            attempt += 1
            logger.debug("%s: read failed (%s); retry %d of %d in %.2f s", source, one_line(exc), attempt, retries,
                         wait)
            sleep(wait)
