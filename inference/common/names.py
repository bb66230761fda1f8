"""How names read from the outside (tomo_ids, paths) are listed in messages."""

from __future__ import annotations

MAX_LISTED = 5


def name_list(items: list, limit: int = MAX_LISTED) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")
