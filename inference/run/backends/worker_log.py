"""A worker process's log lines, written by its dispatcher: one line each, through the progress bar.

A worker that wrote to stderr itself would land its lines on the dispatcher's progress bar (``tomograms:
40%|...|WARNING worker0 ...``). Instead :class:`PipeLogHandler` sends each record over the worker's pipe as
``("log", wid, level, logger name, message, traceback)``, the message already one line
(:func:`~inference.common.names.escaped`) and the traceback formatted as :class:`~inference.common.log_format.
LineFormatter` writes it; the dispatcher's :func:`relay` hands it to its own logging (its handler writes
through tqdm), named ``worker<wid> <logger>``, so a line reads ``WARNING worker0 inference.run.tomogram: ...``
as before.
"""

from __future__ import annotations

import logging
from typing import Callable

from inference.common.log_format import LineFormatter
from inference.common.names import escaped


class PipeLogHandler(logging.Handler):
    """Sends each record of a worker ``wid`` with ``send`` (the worker's locked pipe send)."""

    def __init__(self, wid: int, send: Callable[[tuple], None]):
        super().__init__()
        self.wid, self.send = wid, send
        self._tracebacks = LineFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            trace = self._tracebacks.formatException(record.exc_info) if record.exc_info else None
            self.send(("log", self.wid, record.levelno, record.name, escaped(record.getMessage()), trace))
        except Exception:  # noqa: BLE001 - logging must never raise (logging.Handler.handleError's contract)
            self.handleError(record)


def relay(message: tuple) -> None:
    """Log a worker's ``("log", ...)`` message in this process, as ``worker<wid> <name>``."""
    _, wid, level, name, text, trace = message
    logger = logging.getLogger(name)
    if not logger.isEnabledFor(level):
        return
    record = logging.makeLogRecord({"name": f"worker{wid} {name}", "levelno": level,
                                    "levelname": logging.getLevelName(level), "msg": text, "args": None,
                                    "exc_text": trace})
    logger.handle(record)
