"""The backends by name, as ``module:function`` (the runner imports none of them; the chosen one is
imported when the run starts, as :data:`inference.engines.registry.ENGINES` does for engines).

Every backend function takes ``(run, planner, on_workers=None, <its test hook>=None)`` and runs
``run.pending``, recording each result in ``run`` (an :class:`inference.run.runner.Run`); the hooks
are :data:`HOOKS`. A backend in :data:`CHECKS` has a check that runs before anything is written (a
missing Ray is an option error, not a failed run).
"""

from __future__ import annotations

import importlib
from typing import Callable

from inference.common.errors import InputError

BACKENDS: dict[str, str] = {
    "inprocess": "inference.run.backends.inprocess:run_in_process",
    "local": "inference.run.backends.local:run_workers",
    "ray": "inference.run.backends.ray_actors:run_ray",
}
HOOKS: dict[str, str] = {  # the keyword of each backend's test hook (what it replaces: its docstring)
    "inprocess": "engine_factory",
    "local": "worker_entry",
    "ray": "actor_hook",
}
CHECKS: dict[str, str] = {
    "ray": "inference.run.backends.ray_actors:import_ray",
}
OPTIONS = ("local", "ray")  # PredictConfig.backend: "local" is in-process or worker processes


def backend_name(backend: str, workers: int, devices) -> str:
    """The backend that runs a ``PredictConfig``'s ``backend``, ``workers`` and ``devices``: ``"ray"``;
    ``"inprocess"`` for local with no workers and no devices; else ``"local"``."""
    if backend not in OPTIONS:
        raise InputError(None, f"unknown backend {backend!r}", "use " + " or ".join(map(repr, OPTIONS)))
    if backend == "ray":
        return "ray"
    return "inprocess" if workers == 0 and not devices else "local"


def check(name: str) -> None:
    """Run ``name``'s check before the run writes anything (an error when the backend cannot run here)."""
    if name in CHECKS:
        _resolve(CHECKS[name])()


def backend(name: str) -> Callable:
    """The function that runs backend ``name`` (imported now)."""
    return _resolve(BACKENDS[name])


def _resolve(target: str) -> Callable:
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function)
