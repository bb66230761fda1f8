"""How names read from the outside (tomo_ids, paths, experiments, class names) appear in messages.

A name can hold any character a file system or a CSV allows, a newline or a terminal escape included.
Printed as it is, ``tomo_nl<newline>x`` would end a log line early and start a forged one. Every log
line, ``error:`` line and summary therefore shows names through :func:`escaped`: each control character
(Unicode category C: newline, carriage return, tab, escape, ...; and the line and paragraph separators
U+2028, U+2029) as a Python-style escape (``\\n``,
``\\r``, ``\\t``, ``\\x1b``, ``\\u200b``), a backslash as ``\\\\`` only where a control character is
escaped too (so an ordinary Windows-style path reads as it is). Letters of any script stay as they
are. Files (submission.csv, candidate tables, picks) keep the real value.
"""

from __future__ import annotations

import unicodedata

MAX_LISTED = 5
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _control(ch: str) -> bool:
    """Category C (control, format, ...) and the line and paragraph separators, which some readers break on."""
    category = unicodedata.category(ch)
    return category[0] == "C" or category in ("Zl", "Zp")


def escaped(value) -> str:
    """``str(value)`` with its control characters escaped (the module docstring); unchanged when it has none."""
    text = str(value)
    if not any(_control(ch) for ch in text):
        return text
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif not _control(ch):
            out.append(ch)
        elif ch in _NAMED:
            out.append(_NAMED[ch])
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return "".join(out)


def name_list(items: list, limit: int = MAX_LISTED) -> str:
    """The first ``limit`` names of ``items``, escaped, comma-separated, and how many there are in all."""
    shown = ", ".join(escaped(i) for i in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")
