"""The backend registry: names to ``module:function``, the runner importing none of the backends itself."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

from inference.common.errors import InputError
from inference.run.backends import registry

RUNNER = Path(registry.__file__).resolve().parents[1] / "runner.py"


@pytest.mark.parametrize("backend,workers,devices,name", [
    ("local", 0, (), "inprocess"),
    ("local", 2, (), "local"),
    ("local", 0, (0, 1), "local"),
    ("local", 0, "all", "local"),
    ("ray", 0, (), "ray"),
    ("ray", 3, "all", "ray"),
])
def test_the_backend_of_the_settings(backend, workers, devices, name):
    assert registry.backend_name(backend, workers, devices) == name


def test_an_unknown_backend_is_an_input_error():
    with pytest.raises(InputError, match=r"unknown backend 'spark'.*Fix: use 'local' or 'ray'"):
        registry.backend_name("spark", 0, ())


@pytest.mark.parametrize("name", sorted(registry.BACKENDS))
def test_every_backend_takes_the_run_the_planner_on_workers_and_its_hook(name):
    params = list(inspect.signature(registry.backend(name)).parameters)
    assert params == ["run", "planner", "on_workers", registry.HOOKS[name]]
    assert set(registry.HOOKS) == set(registry.BACKENDS) and set(registry.CHECKS) <= set(registry.BACKENDS)


def test_the_ray_check_is_importing_ray():
    pytest.importorskip("ray")
    registry.check("ray")  # Ray is here: no error
    registry.check("local")  # no check: nothing happens


def test_the_runner_imports_no_backend_but_the_registry():
    names = set()
    for node in ast.walk(ast.parse(RUNNER.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    backends = {n for n in names if n.startswith("inference.run.backends")}
    assert backends == {"inference.run.backends.registry"}, backends
