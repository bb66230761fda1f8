"""The bench/ scripts and their helpers as modules for tests."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str):
    """Import ``bench/<name>.py`` with bench/ on ``sys.path`` while it imports (its own ``from _measure
    import ...`` resolve as when it runs as a script); registered in ``sys.modules`` like any module."""
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))
