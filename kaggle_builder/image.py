"""The Kaggle GPU image's packages that matter to us (``kaggle_image_packages.txt``) and its Python.

The list is data with a source for every line; :func:`load_image` reads it. The build ships a wheel for
everything the notebook needs beyond the ``seed`` packages and their dependencies; the dry run installs
into an environment that holds exactly those (:mod:`kaggle_builder.image_env`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from inference.common.errors import InputError

IMAGE_FILE = Path(__file__).with_name("kaggle_image_packages.txt")
# Kaggle's Python and platform (the project brief: Python 3.11 on x86_64 Linux). Wheels are fetched for
# CPython 3.11 and these manylinux tags, newest first (onnxruntime-gpu 1.26 is manylinux_2_27/2_28).
PYTHON_VERSION = "3.11"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
ROLES = ("seed", "gpu")

_LINE_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:==(?P<version>[A-Za-z0-9.+!_-]+))?\s+"
                      r"(?P<role>[a-z]+)\s+(?P<source>\[[A-Z]\])\s*$")


def canonical(name: str) -> str:
    """PEP 503 name: lowercase, runs of ``-_.`` -> ``-`` (``PyYAML`` and ``pyyaml`` are one package)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    """The canonical package name of a requirement (``numpy (>=1.0)``, ``PyYAML>=6; python_version<'4'``)."""
    return canonical(re.split(r"[<>=!~;\[ (]", requirement, maxsplit=1)[0])


@dataclass(frozen=True)
class ImagePackage:
    name: str
    version: str | None
    role: str
    source: str

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}" if self.version else self.name


@dataclass(frozen=True)
class KaggleImage:
    packages: tuple[ImagePackage, ...]
    python_version: str = PYTHON_VERSION
    platforms: tuple[str, ...] = PLATFORMS

    @property
    def seed(self) -> tuple[ImagePackage, ...]:
        return tuple(p for p in self.packages if p.role == "seed")

    def seed_requirements(self) -> list[str]:
        return [p.requirement for p in self.seed]

    def pins(self) -> list[str]:
        """Constraints for a resolution against the image: its versions, never another."""
        return [p.requirement for p in self.packages if p.version]

    def names(self) -> set[str]:
        return {canonical(p.name) for p in self.packages}

    def version_of(self, name: str) -> str | None:
        key = canonical(name)
        return next((p.version for p in self.packages if canonical(p.name) == key), None)


def load_image(path: Path = IMAGE_FILE) -> KaggleImage:
    """Parse the package list; a malformed line is an InputError naming it."""
    packages = []
    for no, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = _LINE_RE.match(line)
        if m is None or m["role"] not in ROLES:
            raise InputError(path, f"line {no} {raw.strip()!r} is not 'NAME[==VERSION] ROLE [SOURCE]' with ROLE in "
                             f"{'/'.join(ROLES)}", "fix the line (the file's header says the format)")
        packages.append(ImagePackage(m["name"], m["version"], m["role"], m["source"]))
    return KaggleImage(packages=tuple(packages))
