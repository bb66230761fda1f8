"""Errors the user can act on.

Every problem with user input (a tomogram, a CSV, a manifest) is raised as :class:`InputError`,
which names the offending file and says what to do about it. The CLI prints these as one
readable line and never as a traceback from deep inside NumPy.
"""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad user input: names the file, the problem and the fix."""

    def __init__(self, path: str | Path | None, problem: str, fix: str | None = None):
        self.path = None if path is None else str(path)
        self.problem = problem
        self.fix = fix
        where = f"{self.path}: " if self.path else ""
        hint = f" Fix: {fix}" if fix else ""
        super().__init__(f"{where}{problem}.{hint}" if not problem.endswith(".") else f"{where}{problem}{hint}")


class EngineError(RuntimeError):
    """A model runtime cannot be used as asked (missing provider, bad model file, shape mismatch)."""
