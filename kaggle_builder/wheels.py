"""What the notebook installs beyond the Kaggle image, as wheels for Kaggle's Python, from a cached wheelhouse.

pip resolves everything, as the notebook's install will: the package wheel with its dependencies and
the extra requirements (onnxruntime-gpu, optionally TensorRT), for CPython 3.11 on manylinux x86_64,
with the image's versions as constraints (the image is never upgraded). A wheel ships when its package
is not in the closure of the image's ``seed`` packages. Downloads land in a wheelhouse under the cache
folder (``~/.cache/motorfinder``, or ``$MOTORFINDER_CACHE``); a rerun resolves offline from it.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import unquote, urlparse

from inference.common.errors import InputError
from kaggle_builder.image import KaggleImage, canonical, requirement_name
from kaggle_builder.runtime import pip_problem

logger = logging.getLogger(__name__)

# onnxruntime-gpu: on PyPI 1.27 and later link CUDA 13 (their `cuda` extra requires nvidia-cuda-runtime-cu13);
# 1.20-1.26 are CUDA 12 builds, what the image's CUDA 12.5 runs.
ONNXRUNTIME_GPU = "onnxruntime-gpu>=1.20,<1.27"
# TensorRT 10 for CUDA 12, one pinned version (TensorRT 11 dropped the FP16 builder flag; 10.16.1.11 is the
# last 10.x). Three distributions: `tensorrt-cu12` provides the `tensorrt` module but is an sdist only (its
# pure-Python wheel is built here with `pip wheel --no-deps`); `-bindings` is a wheel on PyPI; PyPI has `-libs`
# only as a stub that downloads at install time, so its wheel comes from NVIDIA's index.
TENSORRT_VERSION = "10.16.1.11"
TENSORRT = tuple(f"{name}=={TENSORRT_VERSION}" for name in
                 ("tensorrt-cu12", "tensorrt-cu12-bindings", "tensorrt-cu12-libs"))
NVIDIA_INDEX = "https://pypi.nvidia.com"
# The particles task (--target czii) beyond the package's own dependencies: pyproject's `zarr` extra (zarr 3
# reads the runs' OME-Zarr; its fsspec only serves URL sources, and the test runs are local folders) and its
# `particles` extra (scikit-image's watershed, cc3d's labelling for the decoders).
PARTICLES = ("zarr>=3", "scikit-image>=0.22", "connected-components-3d>=3.12")
# Requirements published as sdists only: built into the wheelhouse (pure Python, no dependencies bundled)
# before the wheels are downloaded.
SDIST_ONLY = frozenset({"tensorrt-cu12"})
PACKAGE = "motorfinder"


@dataclass(frozen=True)
class WheelGroup:
    """One folder under ``dataset/wheels``: what one requirement set adds to the ones before it."""

    name: str
    requirements: tuple[str, ...]    # what the notebook asks pip for (the package wheel's group: none)
    why: str


@dataclass(frozen=True)
class ShippedWheel:
    group: str
    name: str
    version: str
    path: Path                       # in the wheelhouse (copied into the dataset)


def wheel_groups(tensorrt: bool = False, task: str = "motors") -> list[WheelGroup]:
    """The wheel folders of a build, in install order: the package's, the task's (particles), ONNX Runtime's,
    TensorRT's (``tensorrt``)."""
    groups = [WheelGroup(PACKAGE, (), "motorfinder's dependencies that the image lacks")]
    if task == "particles":
        groups.append(WheelGroup("particles", PARTICLES, "the particles task: zarr 3 for the runs' OME-Zarr, the "
                                 "decoders' scikit-image and connected-components-3d"))
    groups.append(WheelGroup("onnxruntime-gpu", (ONNXRUNTIME_GPU,), "ONNX Runtime with the CUDA and TensorRT "
                             "providers (CUDA 12 builds; the image has no ONNX Runtime)"))
    if tensorrt:
        groups.append(WheelGroup("tensorrt", TENSORRT, f"TensorRT {TENSORRT_VERSION} for native engines and ONNX "
                                 "Runtime's TensorRT provider (optional: without it the notebook runs ONNX Runtime's "
                                 "CUDA provider)"))
    return groups


def default_cache_dir() -> Path:
    """``$MOTORFINDER_CACHE``, else ``$XDG_CACHE_HOME/motorfinder``, else ``~/.cache/motorfinder``."""
    if os.environ.get("MOTORFINDER_CACHE"):
        return Path(os.environ["MOTORFINDER_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "motorfinder"


def isolated_pip_env() -> dict[str, str]:
    """This environment without pip's configuration (config files, PIP_* variables) or PYTHONPATH: a pip
    that sees only what its command line names, as on a machine with nothing configured."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k != "PYTHONPATH"}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1")
    return env


@dataclass(frozen=True)
class Resolved:
    name: str                        # canonical
    version: str
    path: Path | None                # the wheel file (None: not a local file)


Runner = Callable[..., subprocess.CompletedProcess]


class Wheelhouse:
    """Wheels for the image's Python and platform in one folder; pip resolves against it offline."""

    def __init__(self, root: Path, image: KaggleImage, extra_index_urls: Sequence[str] = (),
                 runner: Runner = subprocess.run):
        self.root = Path(root)
        self.image = image
        self.extra_index_urls = tuple(extra_index_urls)
        self.run = runner

    @classmethod
    def in_cache(cls, image: KaggleImage, cache_dir: Path | None = None, **kw) -> "Wheelhouse":
        tag = f"cp{image.python_version.replace('.', '')}-manylinux-x86_64"
        return cls((cache_dir or default_cache_dir()) / "wheelhouse" / tag, image, **kw)

    def _target(self) -> list[str]:
        cmd = ["--only-binary=:all:", "--python-version", self.image.python_version, "--implementation", "cp"]
        for p in self.image.platforms:
            cmd += ["--platform", p]
        return cmd

    def _constraints(self, tmp: Path) -> list[str]:
        path = tmp / "kaggle-image-constraints.txt"
        path.write_text("".join(f"{r}\n" for r in self.image.pins()))
        return ["-c", str(path)]

    def resolve(self, requirements: Sequence[str]) -> list[Resolved]:
        """pip's resolution of ``requirements`` from the wheelhouse alone (no index), for the image.

        Raises InputError with pip's reason when it cannot be resolved from what is there.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="motorfinder-resolve-") as tmp:
            report = Path(tmp) / "report.json"
            cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                   "--report", str(report), "--target", str(Path(tmp) / "target"), "--no-index",
                   "--find-links", str(self.root), *self._target(), *self._constraints(Path(tmp)), *requirements]
            proc = self.run(cmd, capture_output=True, text=True, env=isolated_pip_env())
            if proc.returncode != 0 or not report.is_file():
                raise InputError(None, f"pip cannot resolve {', '.join(requirements)} for CPython "
                                 f"{self.image.python_version} from {self.root}: {pip_problem(proc.stderr)}",
                                 "see the requirement named; run again with network access to download it")
            items = json.loads(report.read_text())["install"]
        out = []
        for it in items:
            url = it.get("download_info", {}).get("url", "")
            path = Path(unquote(urlparse(url).path)) if url.startswith("file:") else None
            out.append(Resolved(canonical(it["metadata"]["name"]), it["metadata"]["version"], path))
        return out

    def build_sdists(self, requirements: Sequence[str]) -> None:
        """Wheels of the ``SDIST_ONLY`` requirements, built into the wheelhouse with ``pip wheel --no-deps``
        (pure Python: the same wheel serves every Python and platform); the ones already there are kept."""
        for req in requirements:
            name = requirement_name(req)
            if name not in SDIST_ONLY or any(self.root.glob(f"{name.replace('-', '_')}-*.whl")):
                continue
            logger.info("building the wheel of %s from its sdist (pip wheel --no-deps)", req)
            cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "--no-input",
                   "--quiet", "-w", str(self.root), req]
            for url in self.extra_index_urls:
                cmd += ["--extra-index-url", url]
            proc = self.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise InputError(None, f"cannot build the wheel of {req} from its sdist: {pip_problem(proc.stderr)}",
                                 "check the network and the index, or build without --with-tensorrt")

    def fetch(self, requirements: Sequence[str]) -> None:
        """Download ``requirements`` and their dependencies for the image (with the image's versions) into
        the wheelhouse, through the user's pip configuration (index, proxy). Sdist-only requirements are
        built first (:meth:`build_sdists`) and found in the wheelhouse."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.build_sdists(requirements)
        logger.info("downloading wheels for CPython %s (%s) into %s: %s", self.image.python_version,
                    self.image.platforms[0], self.root, ", ".join(requirements))
        with tempfile.TemporaryDirectory(prefix="motorfinder-fetch-") as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input",
                   "--quiet", "-d", str(self.root), "--find-links", str(self.root), *self._target(),
                   *self._constraints(Path(tmp))]
            for url in self.extra_index_urls:
                cmd += ["--extra-index-url", url]
            proc = self.run([*cmd, *requirements], capture_output=True, text=True)
        for r in requirements:  # pip download copies a local wheel it was given; it is not the wheelhouse's
            if Path(r).is_file() and Path(r).parent.resolve() != self.root.resolve():
                (self.root / Path(r).name).unlink(missing_ok=True)
        if proc.returncode != 0:
            raise InputError(None, f"no wheels for CPython {self.image.python_version} on manylinux x86_64: "
                             f"{pip_problem(proc.stderr)}",
                             "check the requirement named (its version range in kaggle_builder/wheels.py, the "
                             "image's versions in kaggle_builder/kaggle_image_packages.txt) and the index "
                             "(--pip-extra-index-url), or build with --no-wheels")

    def ensure(self, requirements: Sequence[str]) -> list[Resolved]:
        """Resolve offline; when the wheelhouse lacks something, download once and resolve again."""
        try:
            return self.resolve(requirements)
        except InputError:
            self.fetch(requirements)
            return self.resolve(requirements)


class PipWheelSource:
    """The build's default source of offline wheels: a :class:`Wheelhouse` in the cache folder."""

    def __init__(self, image: KaggleImage, cache_dir: Path | None = None, extra_index_urls: Sequence[str] = ()):
        self.wheelhouse = Wheelhouse.in_cache(image, cache_dir, extra_index_urls=extra_index_urls)

    def __call__(self, package_wheel: Path, groups: Sequence[WheelGroup]) -> list[ShippedWheel]:
        return bundle_wheels(self.wheelhouse, package_wheel, groups)


def bundle_wheels(house: Wheelhouse, package_wheel: Path, groups: Sequence[WheelGroup]) -> list[ShippedWheel]:
    """The wheels to ship: the resolution of everything minus the closure of the image's seed packages,
    each in the folder of the first group whose requirements bring it in."""
    seed = house.image.seed_requirements()
    everything = [*seed, str(package_wheel), *(r for g in groups for r in g.requirements)]
    final = house.ensure(everything)
    on_image = {r.name for r in house.resolve(seed)}
    first_group: dict[str, str] = {}
    wanted = list(seed)
    for g in groups[:-1]:  # what no earlier group brings in is the last group's (the default below)
        wanted += [str(package_wheel)] if g.name == PACKAGE else list(g.requirements)
        for r in house.resolve(wanted):
            first_group.setdefault(r.name, g.name)
    shipped = []
    for r in final:
        if r.name in on_image or r.name == PACKAGE:
            continue
        if r.path is None or not r.path.is_file():
            raise InputError(None, f"pip resolved {r.name} {r.version} to no file in {house.root}",
                             f"delete {house.root} and build again")
        shipped.append(ShippedWheel(first_group.get(r.name, groups[-1].name), r.name, r.version, r.path))
    return sorted(shipped, key=lambda w: (w.group, w.name))


def package_requirements(wheel: Path) -> list[str]:
    """``Requires-Dist`` of a wheel without extras markers: what ``pip install WHEEL`` needs."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode().splitlines()
    return [ln.split(":", 1)[1].strip() for ln in lines
            if ln.startswith("Requires-Dist:") and "extra ==" not in ln]


def lacking_without_wheels(package_wheel: Path, image: KaggleImage, groups: Sequence[WheelGroup]) -> list[str]:
    """What a --no-wheels bundle leaves the notebook without (by name against the image's list)."""
    names = image.names()
    missing = [r for r in package_requirements(package_wheel)
               if requirement_name(r) not in names]
    return missing + [r for g in groups for r in g.requirements]
