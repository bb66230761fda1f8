"""A Python environment holding only the Kaggle image's packages: where the dry run installs the bundle.

A *seed* is a site-packages folder with the image's ``seed`` packages (and what they depend on):

* :func:`seed_from_image`: those packages at the image's versions, installed by pip from the wheelhouse
  (downloaded once) into a virtual environment in the cache folder, made once per package list;
* :func:`seed_from_environment`: links to the distributions of THIS environment (its versions, no
  download; for machines without network).

:func:`fresh_env` makes an empty virtual environment that sees a seed through a ``.pth`` file: pip in it
finds the image's packages installed and puts everything else (what the dataset ships) into the fresh
environment, never into the seed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

from inference.common.errors import InputError
from kaggle_builder.image import KaggleImage, canonical, requirement_name
from kaggle_builder.runtime import pip_problem
from kaggle_builder.wheels import Wheelhouse, default_cache_dir, isolated_pip_env

logger = logging.getLogger(__name__)

SEED_PTH = "kaggle-image-seed.pth"


def _run(cmd: Sequence, what: str) -> str:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=isolated_pip_env())
    if proc.returncode != 0:
        raise InputError(None, f"{what} failed: {pip_problem(proc.stderr or proc.stdout)}",
                         "see the message; the command was: " + " ".join(str(c) for c in cmd[:6]) + " ...")
    return proc.stdout


def python_version_of(python: Path) -> str:
    return _run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], f"running {python}").strip()


def find_python(version: str, given: Path | None = None) -> Path:
    """An interpreter of ``version`` (Kaggle's): ``given``, this one, or ``python<version>`` on PATH."""
    if given is not None:
        found = python_version_of(Path(given))
        if found != version:
            raise InputError(given, f"is Python {found}, not {version} (Kaggle's)", f"pass a Python {version}")
        return Path(given)
    if "%d.%d" % sys.version_info[:2] == version:
        return Path(sys.executable)
    exe = shutil.which(f"python{version}")
    if exe is None:
        raise InputError(None, f"the dry run needs Python {version}, Kaggle's (the bundle's wheels are built for it); "
                         f"this is Python {sys.version.split()[0]} and python{version} is not on PATH",
                         f"install Python {version} or pass --dry-run-python PATH")
    return Path(exe)


def site_packages(python: Path) -> Path:
    return Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                     f"running {python}").strip())


def seed_from_image(image: KaggleImage, house: Wheelhouse, python: Path, cache_dir: Path | None = None) -> Path:
    """The site-packages of a cached environment holding the image's seed packages at the image's versions."""
    reqs = image.seed_requirements()
    key = hashlib.sha256(json.dumps([reqs, python_version_of(python)]).encode()).hexdigest()[:12]
    root = (cache_dir or default_cache_dir()) / "image-env"
    dest = root / f"py{image.python_version}-{key}"
    if (dest / "complete").is_file():
        return site_packages(dest / "bin" / "python")
    house.ensure(reqs)
    root.mkdir(parents=True, exist_ok=True)
    logger.info("making the Kaggle image stand-in (%s) in %s", ", ".join(reqs), dest)
    partial = Path(tempfile.mkdtemp(prefix=dest.name + ".partial-", dir=root))
    try:
        _run([python, "-m", "venv", partial], "making a virtual environment")
        _run([partial / "bin" / "python", "-m", "pip", "install", "--quiet", "--no-index", "--find-links", house.root,
              "--only-binary=:all:", *reqs], "installing the image's packages")
        (partial / "complete").write_text(json.dumps(reqs) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(partial, dest)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    # a venv does not survive a move for its scripts, but its site-packages (all we use) does
    return site_packages(dest / "bin" / "python")


def _requires(dist) -> list[str]:
    return [requirement_name(r) for r in (dist.requires or []) if "extra ==" not in r]


def seed_from_environment(names: Sequence[str], dest: Path) -> Path:
    """A seed of links to this environment's distributions ``names``, their dependencies and pip."""
    from importlib.metadata import PackageNotFoundError, distribution

    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    todo, done = [*names, "pip"], set()
    while todo:
        name = canonical(todo.pop())
        if name in done or name == "motorfinder":
            continue
        done.add(name)
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            if name in {canonical(n) for n in names}:
                raise InputError(None, f"{name} is not installed in this environment: it cannot seed the dry run",
                                 "pip install it, or use the image seed (the default)") from None
            continue
        site = Path(dist.locate_file(""))
        tops = {Path(f).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            if (site / top).exists() and not (dest / top).exists():
                (dest / top).symlink_to(site / top)
        todo += _requires(dist)
    return dest


def fresh_env(dest: Path, seed_site: Path, python: Path) -> Path:
    """An empty virtual environment at ``dest`` layered on ``seed_site``; its interpreter."""
    dest = Path(dest)
    if dest.exists():
        shutil.rmtree(dest)
    _run([python, "-m", "venv", "--without-pip", dest], "making a virtual environment")
    exe = dest / "bin" / "python"
    (site_packages(exe) / SEED_PTH).write_text(f"{Path(seed_site).resolve()}\n")
    return exe
