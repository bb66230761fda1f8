"""Reading a small JSON file with every failure as one InputError line (naming the file and the fix)."""

from __future__ import annotations

import json
from pathlib import Path

from inference.common.errors import InputError


def read_json(path: str | Path, what: str, fix: str) -> object:
    """The parsed document of ``path``; ``what`` names the file in "not found" and "is a folder" lines
    (e.g. "picks file"), ``fix`` is the fix for a file that is no UTF-8 JSON."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, f"{what} not found", "check the path") from None
    except IsADirectoryError:
        raise InputError(path, f"is a folder, not a {what}", f"pass the {what} (.json) itself") from None
    except UnicodeDecodeError:
        raise InputError(path, "not a text (UTF-8) JSON file", fix) from None
    except OSError as exc:
        raise InputError(path, f"cannot be read ({exc.strerror or exc})", "make the file readable") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})", fix) from None
