"""This package as a pure-Python wheel, built offline from a source checkout.

The wheel is what the Kaggle notebook imports (from the file, before installing) and installs. It is
built from a clean copy of the sources (no stale ``build/`` or ``*.egg-info``) with ``pip wheel
--no-deps --no-build-isolation --no-index``: no network, the build backend of this environment.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from inference.common.errors import InputError


class WheelBuildError(RuntimeError):
    """The package wheel could not be built (the message says what to install)."""


def source_root() -> Path:
    """The checkout this package runs from (the folder with pyproject.toml), or InputError."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        raise InputError(None, f"motorfinder runs from {root}, not from a source checkout: the Kaggle bundle is "
                         "built from the sources", "clone the repository and pip install -e '.[cpu,dev]' there")
    return root


def _backend_problem() -> str | None:
    """Why ``pip wheel --no-build-isolation`` cannot build here (None: it can)."""
    import importlib.util
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = version("setuptools")
    except PackageNotFoundError:
        return "setuptools is not installed"
    ver = tuple(int(p) for p in re.findall(r"\d+", text)[:2])
    if ver < (68, 0):
        return f"setuptools {text} is older than pyproject's build requirement (>=68)"
    if ver < (70, 1) and importlib.util.find_spec("wheel") is None:
        return f"setuptools {text} needs the wheel package to build wheels"
    return None


def package_tops(root: Path) -> list[str]:
    """The top-level packages pyproject.toml puts in the wheel (``[tool.setuptools.packages.find] include``)."""
    import tomllib

    py = tomllib.loads((root / "pyproject.toml").read_text())
    include = py.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {}).get("include", [])
    return sorted({pattern.split(".")[0].rstrip("*") for pattern in include})


def build_wheel(dest: Path, root: Path | None = None) -> Path:
    """Build the wheel into ``dest``; its path."""
    root = root or source_root()
    problem = _backend_problem()
    if problem:
        raise WheelBuildError(f"cannot build the motorfinder wheel without network: {problem}. Fix: pip install "
                              "'setuptools>=68' wheel (both are in the dev extra: pip install -e '.[cpu,dev]')")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="motorfinder-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(root / name, src / name)
        for top in package_tops(root):
            shutil.copytree(root / top, src / top, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        cmd = [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-input", "--no-deps",
               "--no-build-isolation", "--no-index", "-w", str(dest), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("motorfinder-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise WheelBuildError(f"building the motorfinder wheel failed (pip exited {proc.returncode}): {tail}. "
                              "Fix: pip install setuptools wheel into this environment")
    return wheels[-1]


def wheel_packages(wheel: Path) -> set[str]:
    """The Python packages (dotted names) inside a wheel: every folder holding an ``__init__.py``."""
    with zipfile.ZipFile(wheel) as zf:
        return {n.rsplit("/", 1)[0].replace("/", ".") for n in zf.namelist() if n.endswith("/__init__.py")}
