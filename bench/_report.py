"""What every benchmark report starts and ends with: its command, date and machine; print + write."""

from __future__ import annotations

import datetime as dt
import os
import platform
from pathlib import Path


def provenance(command: str) -> list[str]:
    """The report's command, UTC date and machine lines (Markdown bullets)."""
    return [
        f"- command: `{command}`",
        f"- date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
    ]


def emit(lines: list[str], out: Path) -> str:
    """Print the report and write it to ``out`` (parents created)."""
    text = "\n".join(lines)
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text
