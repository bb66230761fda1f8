"""The one log line format: ``LEVEL name: message``, a message that cannot break its line.

:class:`LineFormatter` writes every record as one line whatever its arguments hold: the message (its
format string filled in) goes through :func:`~inference.common.names.escaped`, so a name with a newline
or a terminal escape shows as ``\\n`` / ``\\x1b`` instead of ending the line or colouring the terminal.
A traceback (``-v``) stays multi-line, its lines as Python writes them; a line of an exception's message
that a newline pushed out of place is indented, so every line is ``LEVEL name: message``, a traceback
header, or an indented continuation.
"""

from __future__ import annotations

import logging

from inference.common.names import escaped

FORMAT = "%(levelname)s %(name)s: %(message)s"
_HEADERS = (
    "Traceback (most recent call last):",
    "During handling of the above exception, another exception occurred:",
    "The above exception was the direct cause of the following exception:",
)


def traceback_lines(text: str) -> str:
    """A formatted traceback with the lines of each exception's message after its first one indented, and
    control characters other than the line breaks escaped."""
    out, in_message = [], False
    for line in text.split("\n"):
        if not line or line.startswith(" ") or line in _HEADERS:
            in_message = False
            out.append(escaped(line))
        elif in_message:  # the rest of an exception's message: a continuation, not a line of its own
            out.append("    " + escaped(line))
        else:  # "Type: message"
            in_message = True
            out.append(escaped(line))
    return "\n".join(out)


class LineFormatter(logging.Formatter):
    """``fmt`` (default :data:`FORMAT`) with the message escaped and tracebacks kept in their forms."""

    def __init__(self, fmt: str = FORMAT):
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)  # the other handlers keep the record as it was
        record.msg, record.args = escaped(record.getMessage()), None
        return super().format(record)

    def formatException(self, ei) -> str:  # noqa: N802 - logging.Formatter's name
        return traceback_lines(super().formatException(ei))
