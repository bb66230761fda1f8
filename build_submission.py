"""Build what a Kaggle competitor submits, check it locally, profile it, and run the whole mission.

Modes (``--help`` lists every option; docs/KAGGLE.md is the walk-through):

* build (the default): ``python build_submission.py --manifest weights_manifest.yaml --out build/``
  writes ``build/dataset/`` (this package as a wheel, the manifest and its model files, optional
  TensorRT engines and offline wheels, ``dataset-metadata.json``) and ``build/notebook/`` (the
  submission notebook and ``kernel-metadata.json``). Every problem (a member file missing, a
  manifest that does not validate, a wheel that cannot be found) is reported before anything is
  written.
* ``--dry-run``: build, then execute the notebook with nbclient in a simulated Kaggle tree
  (``KAGGLE_ROOT``) on synthetic test tomograms, on the CPU, and check its submission.csv.
* ``--profile``: per-member, per-stage times on synthetic tomograms, scaled to the real median
  tomogram, projected to the hidden test set on G GPUs against the 9 h limit, with a FLOPs lower
  bound for a T4. Markdown table and PNG in ``build/profile/``.
* ``--demo``: synthetic data, demo detectors, predict and score, build, dry run, a quick profile,
  and a one-screen summary with the path of every artifact. Everything lands under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from inference.errors import EngineError, InputError

logger = logging.getLogger("build_submission")

REPO_ROOT = Path(__file__).resolve().parent

# ------------------------------------------------------------------------------------ the target
COMPETITION = "byu-locating-bacterial-flagellar-motors-2025"
# The competition's data description: "~900 tomograms in the hidden test set".
HIDDEN_TEST_TOMOGRAMS = 900
KAGGLE_LIMIT_H = 9.0           # notebook run-time limit of the competition
NOTEBOOK_BUDGET_H = 8.5        # what predict may use, minus the time the notebook spent before it
# Real median tomogram (voxels, z y x) and the spacing Kaggle's test set is assumed to have.
MEDIAN_SHAPE = (300, 960, 928)
MEDIAN_SPACING_A = 13.1
# NVIDIA T4 datasheet peaks: 65 TFLOP/s fp16 (tensor cores, mixed precision), 8.1 TFLOP/s fp32.
T4_PEAK_FLOPS = {"fp16": 65e12, "fp32": 8.1e12}
STAGES = ("read", "resample", "engine", "stitch", "decode", "fusion")
SHARED_STAGES = ("read", "fusion")    # once per tomogram, whatever the number of members

# Kaggle's "GPU T4 x2" accelerator is machine_shape "NvidiaTeslaT4" (Kaggle/kaggle-cli PR #1198,
# which documents NvidiaTeslaT4 as "GPU T4 x2"; `kaggle kernels push --accelerator` takes the same).
MACHINE_SHAPE_T4X2 = "NvidiaTeslaT4"
# dataset-metadata.json licenses: Kaggle API docs (datasets_metadata.md), "Licenses".
KAGGLE_LICENSES = (
    "CC0-1.0", "CC-BY-SA-3.0", "CC-BY-SA-4.0", "CC-BY-NC-SA-4.0", "GPL-2.0", "ODbL-1.0", "DbCL-1.0",
    "copyright-authors", "other", "unknown", "CC-BY-4.0", "CC-BY-NC-4.0", "PDDL", "CC-BY-3.0", "CC-BY-3.0-IGO",
    "US-Government-Works", "CC-BY-NC-SA-3.0-IGO", "CDLA-Permissive-1.0", "CDLA-Sharing-1.0", "CC-BY-ND-4.0",
    "CC-BY-NC-ND-4.0", "ODC-BY-1.0", "LGPL-3.0", "AGPL-3.0", "FDL-1.3", "EU-ODP-Legal-Notice", "apache-2.0",
    "GPL-3.0",
)
PLACEHOLDER_USER = "your-username"
DEFAULT_DATASET_SLUG = "motorfinder-byu-offline"
DEFAULT_KERNEL_SLUG = "motorfinder-byu-submission"
DEFAULT_DATASET_TITLE = "motorfinder BYU offline package"

MANIFEST_NAME = "weights_manifest.yaml"     # the manifest's name inside the dataset
MARKER_NAME = "MOTORFINDER.json"            # what the notebook looks for to find the dataset
ENGINE_SUFFIXES = (".engine", ".plan")


# --------------------------------------------------------------------------- offline wheels
@dataclass(frozen=True)
class WheelRequirement:
    requirement: str
    group: str  # "base": motorfinder's own dependencies; "gpu": ONNX Runtime; "tensorrt": optional
    why: str


# The ONLY list of what the notebook installs besides motorfinder itself: what Kaggle's image (late
# 2025: Python 3.11, CUDA 12.5, CuPy, numpy/pandas/pyyaml/tqdm/pillow/opencv, onnx) lacks.
KAGGLE_WHEELS: tuple[WheelRequirement, ...] = (
    WheelRequirement("mrcfile>=1.4", "base", "motorfinder dependency (MRC reader); not in the Kaggle image"),
    WheelRequirement("simplejpeg>=1.7", "base", "motorfinder dependency (fastest slice decoder); not in the Kaggle "
                     "image"),
    WheelRequirement("onnxruntime-gpu>=1.20,<1.27", "gpu", "ONNX Runtime with the CUDA and TensorRT providers; the "
                     "image has none. 1.27+ are built for CUDA 13, the image has CUDA 12.5: stay below"),
    WheelRequirement("tensorrt-cu12-bindings>=10,<11", "tensorrt", "TensorRT 10 Python bindings for native engines "
                     "(optional: without TensorRT the notebook runs ONNX Runtime's CUDA provider)"),
    WheelRequirement("tensorrt-cu12-libs>=10,<11", "tensorrt", "TensorRT 10 libraries; PyPI holds only a stub that "
                     "downloads at install time, so this wheel comes from NVIDIA's index (--pip-extra-index-url)"),
)
WHEEL_PYTHON = "3.11"
WHEEL_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
NVIDIA_INDEX_HINT = "https://pypi.nvidia.com"

Downloader = Callable[..., None]


class BuildError(RuntimeError):
    """A step of the build, dry run or profile failed for a reason other than bad input."""


# ---------------------------------------------------------------------------- configuration
@dataclass(frozen=True)
class BuildConfig:
    manifest: Path
    out: Path
    dataset_id: str = f"{PLACEHOLDER_USER}/{DEFAULT_DATASET_SLUG}"
    kernel_id: str = f"{PLACEHOLDER_USER}/{DEFAULT_KERNEL_SLUG}"
    title: str = DEFAULT_DATASET_TITLE
    kernel_title: str | None = None      # None: derived from the kernel slug
    license: str = "other"
    engines: bool = False
    wheels: bool = False
    tensorrt_wheels: bool = False
    extra_index_urls: tuple[str, ...] = ()
    gpus: int = 2
    budget_h: float = NOTEBOOK_BUDGET_H
    fp16_engines: bool = True
    private: bool = True

    @property
    def dataset_slug(self) -> str:
        return self.dataset_id.split("/", 1)[1]

    @property
    def kernel_slug(self) -> str:
        return self.kernel_id.split("/", 1)[1]


@dataclass(frozen=True)
class MemberFiles:
    name: str
    kind: str
    rel: Path                   # model path relative to the manifest (kept in the dataset)
    source: Path                # absolute path of the file
    extra: tuple[Path, ...]     # ONNX external-data files, relative to the manifest
    batch: int


@dataclass(frozen=True)
class EngineFile:
    member: str
    source: Path
    rel: Path                   # in the dataset: engines/<stem>.<gpu>-sm<cc>.trt<version><suffix>
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    fp16: bool
    batch: str


@dataclass(frozen=True)
class BuildResult:
    out: Path
    dataset_dir: Path
    notebook_dir: Path
    notebook: Path
    wheel: Path
    manifest: Path
    members: tuple[str, ...]
    engines: tuple[str, ...]
    wheels: tuple[str, ...]
    notes: tuple[str, ...]

    def render(self) -> str:
        lines = [
            "build",
            f"  dataset             : {self.dataset_dir}  (kaggle datasets create -p {self.dataset_dir})",
            f"  notebook            : {self.notebook}  (kaggle kernels push -p {self.notebook_dir})",
            f"  wheel               : {self.wheel.name}",
            f"  members             : {', '.join(self.members)}",
            f"  engines             : {', '.join(self.engines) or 'none shipped'}",
            f"  offline wheels      : {', '.join(self.wheels) or 'none (--wheels)'}",
        ]
        lines += [f"  note                : {n}" for n in self.notes]
        return "\n".join(lines)


# ------------------------------------------------------------------------------- validation
_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,48}[a-z0-9]$")


def _check_id(value: str, what: str, option: str) -> None:
    user, sep, slug = value.partition("/")
    if not sep or not _USER_RE.match(user) or not _SLUG_RE.match(slug):
        raise InputError(None, f"{option} {value!r} is not USER/SLUG with a slug of 3-50 lowercase letters, digits "
                         f"and dashes ({what})", f"pass e.g. {option} {PLACEHOLDER_USER}/{DEFAULT_DATASET_SLUG}")


def slug_of_title(title: str) -> str:
    """Kaggle's kernel slug of a title: lowercased, runs of other characters -> one dash."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def kernel_title_of(cfg: BuildConfig) -> str:
    return cfg.kernel_title if cfg.kernel_title is not None else cfg.kernel_slug.replace("-", " ")


def validate_config(cfg: BuildConfig) -> None:
    _check_id(cfg.dataset_id, "the Kaggle dataset", "--dataset-id")
    _check_id(cfg.kernel_id, "the Kaggle notebook", "--kernel-id")
    if not 6 <= len(cfg.title) <= 50:
        raise InputError(None, f"--title {cfg.title!r} has {len(cfg.title)} characters; Kaggle wants 6 to 50",
                         "pass a dataset title of 6-50 characters")
    ktitle = kernel_title_of(cfg)
    if slug_of_title(ktitle) != cfg.kernel_slug:
        raise InputError(None, f"--kernel-title {ktitle!r} gives the slug {slug_of_title(ktitle)!r}, not the "
                         f"--kernel-id slug {cfg.kernel_slug!r} (Kaggle links a notebook's title and slug)",
                         "make the title the slug with spaces for dashes, or leave --kernel-title out")
    if cfg.license not in KAGGLE_LICENSES:
        raise InputError(None, f"--license {cfg.license!r} is not one of Kaggle's dataset licenses",
                         f"use one of: {', '.join(KAGGLE_LICENSES)}")
    if cfg.gpus < 1:
        raise InputError(None, f"--gpus {cfg.gpus} must be >= 1", "pass --gpus 2 (Kaggle's T4 x2)")
    if not 0 < cfg.budget_h <= KAGGLE_LIMIT_H:
        raise InputError(None, f"--budget-h {cfg.budget_h} must be in (0, {KAGGLE_LIMIT_H}]", "pass e.g. 8.5")
    if cfg.tensorrt_wheels and not cfg.extra_index_urls:
        raise InputError(None, "--with-tensorrt needs NVIDIA's package index: PyPI has tensorrt-cu12-libs only as a "
                         "stub that downloads at install time", f"add --pip-extra-index-url {NVIDIA_INDEX_HINT}")


def _export_fix(manifest: Path) -> str:
    return (f"export the members first: python -m export all --manifest {manifest} --checkpoints DIR "
            "(or --random-init for runnable stand-ins); or use the demo members: python -m inference "
            "demo-models --out models --with-2d, then --manifest models/manifest.yaml (python build_submission.py "
            "--demo does all of it)")


def read_members(manifest_path: Path):
    """Validate the manifest and list its member files; every problem is an InputError naming the file."""
    from inference.manifest import load_manifest, parse_manifest, read_manifest_yaml

    manifest_path = Path(manifest_path)
    raw = read_manifest_yaml(manifest_path)
    parse_manifest(raw, manifest_path, check_files=False)  # everything but the files, with the manifest's message
    missing = []
    for i, m in enumerate(raw["members"]):
        rel = Path(m["model"])
        if rel.is_absolute() or ".." in rel.parts:
            raise InputError(manifest_path, f"key 'members[{i}] ({m['name']}).model': {m['model']} is not inside the "
                             "manifest's folder", "use a path relative to the manifest, below its folder")
        if not (manifest_path.parent / rel).is_file():
            missing.append(f"{m['name']}: {manifest_path.parent / rel}")
    if missing:
        raise InputError(manifest_path, f"{len(missing)} member file(s) not found ({'; '.join(missing)})",
                         _export_fix(manifest_path))
    manifest = load_manifest(manifest_path)
    members = []
    root = manifest_path.parent.resolve()
    for i, m in enumerate(manifest.members):
        rel = Path(raw["members"][i]["model"])
        extra = tuple(p.relative_to(root) for p in _external_data(m.model) if p.is_relative_to(root))
        members.append(MemberFiles(name=m.name, kind=m.kind, rel=rel, source=m.model, extra=extra,
                                   batch=m.batch_size))
    return manifest, members


def _external_data(model: Path) -> list[Path]:
    """Files an ONNX model keeps its weights in (external data), absolute; [] for others."""
    if model.suffix.lower() != ".onnx":
        return []
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto = onnx.load(str(model), load_external_data=False)
    except (OSError, ValueError, DecodeError) as exc:
        raise InputError(model, f"not a readable ONNX file ({exc})", "re-export the member") from None
    files = set()
    for init in proto.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            for entry in init.external_data:
                if entry.key == "location":
                    files.add((model.parent / entry.value).resolve())
    for f in sorted(files):
        if not f.is_file():
            raise InputError(model, f"external data file {f} not found", "copy it next to the ONNX file")
    return sorted(files)


# --------------------------------------------------------------------------------- engines
def _tag(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def engine_name(stem: str, gpu_name: str, compute_capability: str, tensorrt_version: str, suffix: str) -> str:
    """``<stem>.<gpu>-sm<cc>.trt<version><suffix>``: an engine runs only where both match."""
    return f"{stem}.{_tag(gpu_name)}-sm{compute_capability.replace('.', '')}.trt{tensorrt_version}{suffix}"


def find_engines(members: Sequence[MemberFiles]) -> tuple[list[EngineFile], list[str]]:
    """Engines (with a sidecar built from the member's current ONNX) next to each member's ONNX."""
    from export.tensorrt import read_sidecar, sha256_file

    found, notes = [], []
    for m in members:
        if m.source.suffix.lower() != ".onnx":
            continue
        onnx_sha = None
        for path in sorted(m.source.parent.iterdir()):
            if path.suffix.lower() not in ENGINE_SUFFIXES or not path.name.startswith(m.source.stem):
                continue
            try:
                sc = read_sidecar(path)
            except InputError as exc:
                notes.append(f"skipped engine {path.name}: {exc.problem}")
                continue
            onnx_sha = onnx_sha or sha256_file(m.source)
            if sc.onnx_sha256 != onnx_sha:
                notes.append(f"skipped engine {path.name}: built from another ONNX than {m.source.name}")
                continue
            name = engine_name(m.source.stem, sc.gpu_name, sc.compute_capability, sc.tensorrt_version, path.suffix)
            found.append(EngineFile(member=m.name, source=path, rel=Path("engines") / name,
                                    tensorrt_version=sc.tensorrt_version, gpu_name=sc.gpu_name,
                                    compute_capability=sc.compute_capability, fp16=sc.fp16,
                                    batch=str(sc.batch_profile)))
    return found, notes


# ----------------------------------------------------------------------------------- wheels
def wheel_requirements(cfg: BuildConfig) -> list[WheelRequirement]:
    if not (cfg.wheels or cfg.tensorrt_wheels):
        return []
    groups = {"base", "gpu"} | ({"tensorrt"} if cfg.tensorrt_wheels else set())
    return [w for w in KAGGLE_WHEELS if w.group in groups]


def pip_download(requirement: str, dest: Path, *, python_version: str = WHEEL_PYTHON,
                 platforms: Sequence[str] = WHEEL_PLATFORMS, extra_index_urls: Sequence[str] = ()) -> None:
    """``pip download`` one requirement as a binary wheel for the Kaggle image (no dependencies).

    Raises InputError naming the requirement when pip finds no wheel for the target.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-input", "--no-deps",
           "--only-binary=:all:", "--python-version", python_version, "--implementation", "cp", "-d", str(dest)]
    for p in platforms:
        cmd += ["--platform", p]
    for url in extra_index_urls:
        cmd += ["--extra-index-url", url]
    cmd.append(requirement)
    logger.info("pip download %s (CPython %s, %s)", requirement, python_version, ", ".join(platforms))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.startswith("ERROR")]
        raise InputError(None, f"no wheel of {requirement} for CPython {python_version} on "
                         f"{'/'.join(platforms)} ({' '.join(lines[-2:]) or f'pip exited {proc.returncode}'})",
                         "check the version range in KAGGLE_WHEELS (build_submission.py) and the index "
                         "(--pip-extra-index-url), or build without --wheels")


def download_wheels(reqs: Sequence[WheelRequirement], dest: Path, downloader: Downloader = pip_download,
                    extra_index_urls: Sequence[str] = ()) -> list[Path]:
    """Each requirement into ``dest`` (a scratch folder); the wheel files, or InputError."""
    dest.mkdir(parents=True, exist_ok=True)
    got: list[Path] = []
    for req in reqs:
        before = set(dest.glob("*.whl"))
        downloader(req.requirement, dest, python_version=WHEEL_PYTHON, platforms=WHEEL_PLATFORMS,
                   extra_index_urls=tuple(extra_index_urls))
        new = sorted(set(dest.glob("*.whl")) - before)
        if not new:
            raise InputError(None, f"the download of {req.requirement} produced no wheel",
                             "check the requirement in KAGGLE_WHEELS (build_submission.py)")
        got += new
    return got


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


def build_wheel(dest: Path) -> Path:
    """This package as a pure-Python wheel, built from a clean copy of its sources (no network)."""
    import tomllib

    problem = _backend_problem()
    if problem:
        raise BuildError(f"cannot build the motorfinder wheel without network: {problem}. Fix: pip install "
                         "'setuptools>=68' wheel (both are in the dev extra: pip install -e '.[dev]')")
    py = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    packages = py.get("tool", {}).get("setuptools", {}).get("packages", [])
    with tempfile.TemporaryDirectory(prefix="motorfinder-wheel-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(REPO_ROOT / name, src / name)
        for top in sorted({p.split(".")[0] for p in packages}):
            shutil.copytree(REPO_ROOT / top, src / top, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        cmd = [sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-input", "--no-deps",
               "--no-build-isolation", "--no-index", "-w", str(dest), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("motorfinder-*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise BuildError(f"building the motorfinder wheel failed (pip exited {proc.returncode}): {tail}. "
                         "Fix: pip install setuptools wheel into this environment")
    return wheels[-1]


# ------------------------------------------------------------------------------ the notebook
_CELL_SETUP = '''\
# 1. Set-up and offline install. No cell needs the internet. Built by build_submission.py from
#    $manifest_source; every path below is derived from the build (dataset and competition slugs).
import os
import subprocess
import sys
import time
from pathlib import Path

T0 = time.time()
KAGGLE_ROOT = Path(os.environ.get("KAGGLE_ROOT", "/kaggle"))  # the local dry run points this elsewhere
INPUT, WORKING = KAGGLE_ROOT / "input", KAGGLE_ROOT / "working"
COMPETITION = INPUT / $competition
DATASET_SLUG = $dataset_slug
DEVICE = os.environ.get("MOTORFINDER_DEVICE", "cuda")  # "cpu": predict on the CPU (the dry run)
SITE = os.environ.get("MOTORFINDER_SITE", "")  # dry run: install into this folder, not the environment
GPU_IDS = $gpu_ids
BUDGET_H = $budget_h  # hours for the whole notebook (Kaggle's limit: $limit_h h)
WHEEL = $wheel
EXTRA_WHEELS = $extra_wheels  # offline wheels of what the Kaggle image lacks (--no-deps)


def find_dataset():
    """The attached dataset: input/<slug>, else the folder holding $marker (mount layouts vary)."""
    if (INPUT / DATASET_SLUG / $marker).is_file():
        return INPUT / DATASET_SLUG
    for pattern in ("*/" + $marker, "*/*/" + $marker, "*/*/*/" + $marker):
        hits = sorted(INPUT.glob(pattern))
        if hits:
            return hits[0].parent
    raise FileNotFoundError(f"dataset {DATASET_SLUG} ({$marker}) not found under {INPUT}: attach it to the notebook")


def sh(cmd, env=None):
    """Run a command, streaming its output into the notebook; raise when it fails."""
    cmd = [str(c) for c in cmd]
    print("$$", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    for line in proc.stdout:
        print(line, end="", flush=True)
    if proc.wait() != 0:
        raise RuntimeError(f"command failed with exit code {proc.returncode}: {cmd[:4]}")


DATASET = find_dataset()
WHEELS = DATASET / "wheels"
WORKING.mkdir(parents=True, exist_ok=True)
PIP = [sys.executable, "-m", "pip", "install", "--no-index", "--disable-pip-version-check", "--no-input"]
ENV = dict(os.environ, PYTHONUNBUFFERED="1")
if SITE:
    # Dry run: only the package, into a throwaway folder; its dependencies come from this environment.
    sh(PIP + ["--no-deps", "--target", SITE, DATASET / WHEEL])
    sys.path.insert(0, SITE)
    ENV["PYTHONPATH"] = os.pathsep.join([SITE] + ([ENV["PYTHONPATH"]] if ENV.get("PYTHONPATH") else []))
else:
    if EXTRA_WHEELS:
        sh(PIP + ["--no-deps"] + [WHEELS / w for w in EXTRA_WHEELS])
    sh(PIP + (["--find-links", WHEELS] if WHEELS.is_dir() else []) + [DATASET / WHEEL])
import inference  # noqa: E402

print("motorfinder", inference.__version__, "from", Path(inference.__file__).parent, "| dataset", DATASET,
      "| device", DEVICE)
'''

_CELL_ENGINES = '''\
# 2. TensorRT engines: build or reuse them in WORKING/engines where TensorRT is importable (engines are
#    bound to the GPU and TensorRT version). Without TensorRT, or if anything here fails, predict runs
#    the ONNX files on ONNX Runtime's CUDA provider: this cell never fails the notebook.
MANIFEST = DATASET / $manifest_name
PREDICT_MANIFEST = MANIFEST
ENGINE_DIR = WORKING / "engines"
ENGINE_FP16 = $fp16
ENGINE_MEMBERS = $members  # name -> ONNX, batch profile, shipped engines (dataset-relative)


def build_engines():
    import yaml
    from export.tensorrt import BatchProfile, ensure_engine, read_sidecar, runtime_env

    env = runtime_env(0)
    print(f"TensorRT {env.tensorrt_version} on {env.gpu_name} (sm {env.compute_capability})")
    raw = yaml.safe_load(MANIFEST.read_text())
    for member in raw["members"]:
        spec = ENGINE_MEMBERS[member["name"]]
        given = None
        for rel in spec["engines"]:
            sc = read_sidecar(DATASET / rel)
            if (sc.tensorrt_version, sc.compute_capability, sc.gpu_name) == (
                    env.tensorrt_version, env.compute_capability, env.gpu_name):
                given = DATASET / rel
        t = time.time()
        res = ensure_engine(DATASET / spec["onnx"], given, ENGINE_DIR, fp16=ENGINE_FP16,
                            batch=BatchProfile(*spec["batch"]))
        print(f"{member['name']}: {res.path.name} ({res.reason}; {time.time() - t:.0f} s)", flush=True)
        member["model"] = str(res.path)
    derived = ENGINE_DIR / "weights_manifest.engines.yaml"
    derived.write_text(yaml.safe_dump(raw, sort_keys=False))
    return derived


if DEVICE != "cuda":
    print(f"device {DEVICE}: no TensorRT engines; predict runs the ONNX files on the CPU")
elif not ENGINE_MEMBERS:
    print("the members are not ONNX files: nothing to build")
else:
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        print(f"TensorRT is not importable ({exc}): predict runs the ONNX files on ONNX Runtime's CUDA provider")
    else:
        try:
            PREDICT_MANIFEST = build_engines()
        except Exception as exc:  # an engine problem must not cost the submission: fall back to ONNX Runtime
            print(f"engine build failed ({type(exc).__name__}: {exc}); predict runs the ONNX files on ONNX "
                  "Runtime's CUDA provider")
print("manifest for predict:", PREDICT_MANIFEST)
'''

_CELL_PREDICT = '''\
# 3. Predict every test tomogram. The deadline guard gets what is left of BUDGET_H: it degrades the
#    ensemble when the projected finish is later, and writes -1 for tomograms it cannot reach.
DEADLINE_H = max(0.1, BUDGET_H - (time.time() - T0) / 3600.0)
if DEVICE == "cpu":
    DEVICE_FLAGS = ["--device", "cpu", "--workers", "1"]
else:
    DEVICE_FLAGS = ["--devices", GPU_IDS]
SUBMISSION = WORKING / "submission.csv"
sh([sys.executable, "-m", "inference", "predict", "--manifest", PREDICT_MANIFEST,
    "--input", COMPETITION / "test", "--sample-submission", COMPETITION / "sample_submission.csv",
    "--output", SUBMISSION, *DEVICE_FLAGS, "--deadline-h", f"{DEADLINE_H:.3f}",
    "--work-dir", WORKING / "work", "--no-progress"], env=ENV)
'''

_CELL_CHECK = '''\
# 4. Check: every tomo_id of the sample submission exactly once, the sample's columns, finite numbers.
import pandas as pd

sample = pd.read_csv(COMPETITION / "sample_submission.csv")
sub = pd.read_csv(SUBMISSION)
assert list(sub.columns) == list(sample.columns), f"columns {list(sub.columns)} != {list(sample.columns)}"
missing = sorted(set(sample["tomo_id"]) - set(sub["tomo_id"]))
extra = sorted(set(sub["tomo_id"]) - set(sample["tomo_id"]))
dupes = sorted(set(sub["tomo_id"][sub["tomo_id"].duplicated()]))
assert not missing and not extra and not dupes, f"missing {missing[:5]}, extra {extra[:5]}, duplicated {dupes[:5]}"
coords = sub[[c for c in sample.columns if c != "tomo_id"]].astype(float)
assert coords.notna().all().all(), "submission has empty coordinates"
with_motor = int((coords >= 0).all(axis=1).sum())
print(f"submission OK: {len(sub)} tomograms, {with_motor} with a motor, {len(sub) - with_motor} without; "
      f"{(time.time() - T0) / 60:.1f} min in total")
'''


def notebook_cells(cfg: BuildConfig, wheel_name: str, extra_wheels: Sequence[str], members: Sequence[MemberFiles],
                   engines: Sequence[EngineFile], manifest_source: str) -> list[tuple[str, str]]:
    """The notebook as (cell type, source) pairs, every value derived from the build."""
    from string import Template

    onnx_members = {}
    if members and all(m.source.suffix.lower() == ".onnx" for m in members):
        for m in members:
            onnx_members[m.name] = {"onnx": m.rel.as_posix(), "batch": [1, m.batch, m.batch],
                                    "engines": [e.rel.as_posix() for e in engines if e.member == m.name]}
    values = {
        "manifest_source": manifest_source,
        "competition": repr(COMPETITION),
        "dataset_slug": repr(cfg.dataset_slug),
        "gpu_ids": repr(",".join(str(i) for i in range(cfg.gpus))),
        "budget_h": repr(float(cfg.budget_h)),
        "limit_h": f"{KAGGLE_LIMIT_H:g}",
        "wheel": repr(wheel_name),
        "extra_wheels": repr(list(extra_wheels)),
        "marker": repr(MARKER_NAME),
        "manifest_name": repr(MANIFEST_NAME),
        "fp16": repr(bool(cfg.fp16_engines)),
        "members": "{" + "".join(f"\n    {k!r}: {v!r}," for k, v in onnx_members.items())
                   + ("\n}" if onnx_members else "}"),
    }
    shipped = ", ".join(e.rel.name for e in engines) if engines else "none: the notebook builds them at run time"
    intro = (
        f"# motorfinder: BYU flagellar motors, offline submission\n\n"
        f"Runs the ensemble of `{MANIFEST_NAME}` (members: {', '.join(m.name for m in members)}) over the "
        f"competition's test tomograms and writes `/kaggle/working/submission.csv`.\n\n"
        f"1. offline install of the `motorfinder` wheel (and of the wheels in `wheels/`) from the dataset "
        f"`{cfg.dataset_id}`;\n"
        f"2. TensorRT engines built or reused where TensorRT is importable (shipped engines: {shipped}); "
        f"otherwise ONNX Runtime's CUDA provider;\n"
        f"3. `python -m inference predict` on GPUs {','.join(str(i) for i in range(cfg.gpus))} with the deadline "
        f"guard ({cfg.budget_h:g} h for the notebook, Kaggle's limit is {KAGGLE_LIMIT_H:g} h);\n"
        f"4. a check that every `tomo_id` of the sample submission is there once.\n\n"
        f"Environment variables (for running it elsewhere): `KAGGLE_ROOT` (default `/kaggle`), "
        f"`MOTORFINDER_DEVICE=cpu`, `MOTORFINDER_SITE` (install into this folder instead)."
    )
    cells = [("markdown", intro)]
    for template in (_CELL_SETUP, _CELL_ENGINES, _CELL_PREDICT, _CELL_CHECK):
        cells.append(("code", Template(template).substitute(values).rstrip("\n")))
    return cells


def write_notebook(path: Path, cells: Sequence[tuple[str, str]]) -> None:
    import nbformat
    from nbformat import v4

    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python", "version": WHEEL_PYTHON}
    # What `kaggle kernels pull` shows for a notebook on "GPU T4 x2", no internet (kernel-metadata.json
    # is what the push API reads; this mirrors it for the editor).
    nb.metadata["kaggle"] = {"accelerator": "nvidiaTeslaT4", "isGpuEnabled": True, "isInternetEnabled": False,
                             "language": "python", "sourceType": "notebook"}
    for kind, source in cells:
        nb.cells.append(v4.new_markdown_cell(source) if kind == "markdown" else v4.new_code_cell(source))
    nbformat.validate(nb)
    nbformat.write(nb, str(path))


def dataset_metadata(cfg: BuildConfig) -> dict:
    """Kaggle's dataset-metadata.json (Kaggle API docs, datasets_metadata.md)."""
    return {
        "title": cfg.title,
        "id": cfg.dataset_id,
        "licenses": [{"name": cfg.license}],
        "description": "Offline package for the Kaggle competition BYU - Locating Bacterial Flagellar Motors 2025: "
                       "the motorfinder wheel (MIT), the ensemble manifest and its ONNX members, optional TensorRT "
                       "engines and offline wheels. Built by build_submission.py; see docs/KAGGLE.md.",
    }


def kernel_metadata(cfg: BuildConfig, code_file: str) -> dict:
    """Kaggle's kernel-metadata.json (Kaggle API docs, kernels_metadata.md; machine_shape: kaggle-cli)."""
    return {
        "id": cfg.kernel_id,
        "title": kernel_title_of(cfg),
        "code_file": code_file,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": bool(cfg.private),
        "enable_gpu": True,
        "enable_tpu": False,
        "enable_internet": False,
        "dataset_sources": [cfg.dataset_id],
        "competition_sources": [COMPETITION],
        "kernel_sources": [],
        "model_sources": [],
        "machine_shape": MACHINE_SHAPE_T4X2,
    }


# ------------------------------------------------------------------------------------ build
def _git_commit() -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    except OSError:
        return None
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def build(cfg: BuildConfig, *, downloader: Downloader = pip_download,
          wheel_builder: Callable[[Path], Path] = build_wheel) -> BuildResult:
    """Validate everything, stage the dataset and notebook in a scratch folder, then move them to ``cfg.out``.

    ``downloader`` (offline wheels) and ``wheel_builder`` (this package) are injectable for tests.
    """
    validate_config(cfg)
    manifest, members = read_members(cfg.manifest)
    notes: list[str] = []
    engines: list[EngineFile] = []
    if cfg.engines:
        engines, skipped = find_engines(members)
        notes += skipped
        if not engines:
            notes.append("no TensorRT engines next to the ONNX files: the notebook builds them at run time "
                         "(where TensorRT is importable; otherwise ONNX Runtime's CUDA provider runs the ONNX)")
        for e in engines:
            m = next(m for m in members if m.name == e.member)
            if e.fp16 != cfg.fp16_engines or e.batch != f"1:{m.batch}:{m.batch}":
                notes.append(f"engine {e.rel.name} is fp16={e.fp16}, batch {e.batch}; the notebook asks for "
                             f"fp16={cfg.fp16_engines}, batch 1:{m.batch}:{m.batch} and will rebuild it")
    if cfg.dataset_id.startswith(PLACEHOLDER_USER + "/") or cfg.kernel_id.startswith(PLACEHOLDER_USER + "/"):
        notes.append(f"ids use the placeholder user '{PLACEHOLDER_USER}': pass --dataset-id and --kernel-id with your "
                     "Kaggle user name before uploading")

    if engines:
        from export.tensorrt import sidecar_path
    out = Path(cfg.out)
    with tempfile.TemporaryDirectory(prefix="motorfinder-build-") as tmp:
        stage = Path(tmp)
        reqs = wheel_requirements(cfg)
        extra = download_wheels(reqs, stage / "downloads", downloader, cfg.extra_index_urls) if reqs else []
        wheel = wheel_builder(stage / "wheel")

        ds = stage / "dataset"
        ds.mkdir()
        shutil.copy2(wheel, ds / wheel.name)
        shutil.copy2(cfg.manifest, ds / MANIFEST_NAME)
        root = Path(cfg.manifest).parent
        for m in members:
            for rel in (m.rel, *m.extra):
                (ds / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / rel, ds / rel)
        for e in engines:
            (ds / e.rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(e.source, ds / e.rel)
            shutil.copy2(sidecar_path(e.source), sidecar_path(ds / e.rel))
        if extra:
            (ds / "wheels").mkdir()
            for w in extra:
                shutil.move(str(w), ds / "wheels" / w.name)
        (ds / "dataset-metadata.json").write_text(json.dumps(dataset_metadata(cfg), indent=2) + "\n")
        (ds / MARKER_NAME).write_text(json.dumps({
            "format": "motorfinder-dataset", "format_version": 1, "dataset_id": cfg.dataset_id,
            "wheel": wheel.name, "manifest": MANIFEST_NAME, "members": {m.name: m.rel.as_posix() for m in members},
            "engines": [e.rel.as_posix() for e in engines], "wheels": sorted(w.name for w in extra),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "git_commit": _git_commit(),
        }, indent=2) + "\n")

        nbdir = stage / "notebook"
        nbdir.mkdir()
        code_file = f"{cfg.kernel_slug}.ipynb"
        cells = notebook_cells(cfg, wheel.name, sorted(w.name for w in extra), members, engines,
                               Path(cfg.manifest).name)
        write_notebook(nbdir / code_file, cells)
        (nbdir / "kernel-metadata.json").write_text(json.dumps(kernel_metadata(cfg, code_file), indent=2) + "\n")

        out.mkdir(parents=True, exist_ok=True)
        for name in ("dataset", "notebook"):
            if (out / name).exists():
                shutil.rmtree(out / name)
            shutil.move(str(stage / name), out / name)
    logger.info("built %s (%d member(s), %d engine(s), %d offline wheel(s))", out, len(members), len(engines),
                len(extra))
    return BuildResult(out=out, dataset_dir=out / "dataset", notebook_dir=out / "notebook",
                       notebook=out / "notebook" / code_file, wheel=out / "dataset" / wheel.name,
                       manifest=out / "dataset" / MANIFEST_NAME, members=tuple(m.name for m in members),
                       engines=tuple(e.rel.name for e in engines), wheels=tuple(sorted(w.name for w in extra)),
                       notes=tuple(notes))


# ---------------------------------------------------------------------------------- dry run
@dataclass(frozen=True)
class DryRunResult:
    root: Path
    executed: Path
    submission: Path
    sample: Path
    labels: Path
    n_tomograms: int
    with_motor: int
    score: dict | None
    seconds: float

    def render(self) -> str:
        s = self.score
        score = (f"F2 {s['f2']:.3f} (spacing assumed {MEDIAN_SPACING_A} Å as on Kaggle)" if s else "-")
        return "\n".join([
            "dry run (notebook executed with nbclient, CPU)",
            f"  simulated Kaggle    : {self.root}",
            f"  executed notebook   : {self.executed}",
            f"  submission          : {self.submission}  ({self.n_tomograms} tomograms, {self.with_motor} with a "
            f"motor; every sample id once, in order)",
            f"  score               : {score}",
            f"  time                : {self.seconds:.1f}s",
        ])


def check_submission(submission: Path, sample: Path) -> list[str]:
    """Problems of a submission against the sample submission: ids (each once, in order), columns, numbers."""
    import numpy as np
    import pandas as pd

    try:
        sub, ref = pd.read_csv(submission), pd.read_csv(sample)
    except (OSError, ValueError) as exc:
        return [f"unreadable: {exc}"]
    problems = []
    if list(sub.columns) != list(ref.columns):
        problems.append(f"columns {list(sub.columns)} != {list(ref.columns)}")
        return problems
    if list(sub["tomo_id"].astype(str)) != list(ref["tomo_id"].astype(str)):
        missing = sorted(set(ref["tomo_id"]) - set(sub["tomo_id"]))
        dupes = sorted(set(sub["tomo_id"][sub["tomo_id"].duplicated()]))
        problems.append(f"tomo_ids differ from the sample's (missing {missing[:5]}, duplicated {dupes[:5]}, "
                        "or another order)")
    coords = sub[[c for c in ref.columns if c != "tomo_id"]].to_numpy(dtype=float)
    if not np.isfinite(coords).all():
        problems.append("coordinates that are not finite numbers")
    partial = ~((coords == -1).all(axis=1) | (coords >= 0).all(axis=1))
    if partial.any():
        problems.append(f"{int(partial.sum())} row(s) are neither all -1 nor all >= 0")
    return problems


@contextmanager
def _environ(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def dry_run(result: BuildResult, root: Path, *, n: int = 3, seed: int = 7, scale: float = 0.2,
            timeout_s: int = 900, progress: bool = False) -> DryRunResult:
    """Execute the built notebook in a simulated Kaggle tree under ``root`` (on the CPU) and check its output."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    from inference import scoring, synth

    t0 = time.perf_counter()
    root = Path(root).resolve()  # the kernel runs in working/: every path it gets must be absolute
    meta = json.loads((result.notebook_dir / "kernel-metadata.json").read_text())
    slug = meta["dataset_sources"][0].split("/", 1)[1]
    if root.exists():
        shutil.rmtree(root)
    kaggle = root / "kaggle"
    comp = kaggle / "input" / COMPETITION
    synth.generate(comp, n, seed, split="test", scale=scale, progress=progress)
    labels = root / "test_labels.csv"        # the hidden truth: not in the notebook's input
    shutil.move(str(comp / "test_labels.csv"), labels)
    (kaggle / "input" / slug).symlink_to(result.dataset_dir.resolve(), target_is_directory=True)
    working = kaggle / "working"
    working.mkdir(parents=True)
    site = root / "site"

    nb = nbformat.read(str(result.notebook), as_version=4)
    client = NotebookClient(nb, timeout=timeout_s, kernel_name="python3",
                            resources={"metadata": {"path": str(working)}})
    executed = root / f"executed-{result.notebook.name}"
    logger.info("executing %s in %s (KAGGLE_ROOT), CPU", result.notebook.name, kaggle)
    try:
        with _environ(KAGGLE_ROOT=str(kaggle), MOTORFINDER_DEVICE="cpu", MOTORFINDER_SITE=str(site),
                      PYTHONUNBUFFERED="1"):
            client.execute()
    except (CellExecutionError, CellTimeoutError) as exc:
        nbformat.write(nb, str(executed))
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()  # no terminal colours
        raise BuildError(f"the notebook failed in the dry run: {first[-1] if first else exc}; executed notebook "
                         f"with every output: {executed}") from None
    nbformat.write(nb, str(executed))
    submission = working / "submission.csv"
    sample = comp / "sample_submission.csv"
    if not submission.is_file():
        raise BuildError(f"the notebook ran but wrote no {submission}; see {executed}")
    problems = check_submission(submission, sample)
    if problems:
        raise BuildError(f"the dry run's submission {submission} is not valid: {'; '.join(problems)}")
    import pandas as pd

    sub = pd.read_csv(submission)
    with_motor = int((sub.iloc[:, 1:] >= 0).all(axis=1).sum())
    score = scoring.score_files(labels, submission).as_dict()
    return DryRunResult(root=kaggle, executed=executed, submission=submission, sample=sample, labels=labels,
                        n_tomograms=len(sub), with_motor=with_motor, score=score,
                        seconds=time.perf_counter() - t0)


# ----------------------------------------------------------------------------------- profile
@dataclass(frozen=True)
class TomoMeasure:
    """One member on one tomogram, as measured (this machine)."""

    tomo_id: str
    shape: tuple[int, int, int]
    spacing: float
    seconds: dict[str, float]


@dataclass(frozen=True)
class MemberMeasure:
    name: str
    tomograms: tuple[TomoMeasure, ...]


@dataclass(frozen=True)
class MemberProfile:
    name: str
    kind: str
    windows: int                     # per reference tomogram, all TTA transforms
    flops_per_window: float | None
    flops_source: str
    stage_s: dict[str, float]        # measured here, scaled to the reference tomogram
    gpu_s_per_window: float | None   # given (--gpu-seconds-per-window)

    @property
    def member_s(self) -> float:
        """Measured seconds of this member's own stages (shared read and fusion excluded)."""
        return sum(v for k, v in self.stage_s.items() if k not in SHARED_STAGES)

    def bound_s(self, peak: float) -> float | None:
        return None if self.flops_per_window is None else flops_bound_seconds(self.windows, self.flops_per_window,
                                                                              peak)


def flops_bound_seconds(windows: float, flops_per_window: float, peak_flops: float) -> float:
    """Lower bound on device time: every window's FLOPs at the device's peak rate."""
    return windows * flops_per_window / peak_flops


def projection_hours(per_tomogram_s: float, n_tomograms: int, gpus: int) -> float:
    """Hours for ``n_tomograms`` shared by ``gpus`` devices working in parallel."""
    return per_tomogram_s * n_tomograms / gpus / 3600.0


@dataclass(frozen=True)
class Scenario:
    name: str
    segments: dict[str, float]       # member (or "shared (read, fusion)" / "host ...") -> s per tomogram
    what: str                        # measured / projected / bound, in words

    @property
    def per_tomogram_s(self) -> float:
        return sum(self.segments.values())


@dataclass(frozen=True)
class ProfileReport:
    members: tuple[MemberProfile, ...]
    shared_s: dict[str, float]       # read, fusion: measured, scaled, once per tomogram
    n_tomograms: int
    gpus: int
    reference: str
    measured: tuple[MemberMeasure, ...]
    machine: str

    def scenarios(self) -> list[Scenario]:
        shared = sum(self.shared_s.values())
        out = [Scenario("this CPU, measured", {**{m.name: m.member_s for m in self.members},
                                               "shared (read, fusion)": shared},
                        f"measured on this machine ({self.machine}), scaled to the reference tomogram; G = machines "
                        "like this one")]
        for prec in ("fp16", "fp32"):
            peak = T4_PEAK_FLOPS[prec]
            if all(m.flops_per_window is not None for m in self.members):
                out.append(Scenario(f"T4 bound, {prec}", {m.name: m.bound_s(peak) for m in self.members},
                                    f"lower bound: FLOPs / {peak / 1e12:g} TFLOP/s ({prec} peak), engines only"))
        if any(m.gpu_s_per_window is not None for m in self.members):
            seg = {}
            for m in self.members:
                if m.gpu_s_per_window is not None:
                    seg[m.name] = m.windows * m.gpu_s_per_window
                else:
                    seg[m.name + " (fp16 bound)"] = m.bound_s(T4_PEAK_FLOPS["fp16"]) or 0.0
            host = sum(self.shared_s.values()) + sum(m.stage_s.get(k, 0.0) for m in self.members
                                                     for k in ("resample", "decode"))
            seg["host (read, resample, decode, fusion; CPU here)"] = host
            out.append(Scenario("T4 projected", seg, "given s/window x windows + host stages measured here "
                                                     "(no overlap assumed)"))
        return out

    def hours(self, scenario: Scenario) -> float:
        return projection_hours(scenario.per_tomogram_s, self.n_tomograms, self.gpus)

    def markdown(self, png_name: str | None = None) -> str:
        g, n = self.gpus, self.n_tomograms
        lines = [
            "# Runtime profile",
            "",
            f"- date: {time.strftime('%Y-%m-%dT%H:%M:%S%z')}; machine: {self.machine}",
            f"- reference tomogram: {self.reference} (the real median shape); hidden test set: ~{n} tomograms "
            f"(competition data description: \"~900 tomograms in the hidden test set\"), on {g} GPU(s); "
            f"Kaggle limit {KAGGLE_LIMIT_H:g} h",
            "- **measured**: the CPU rows, on THIS machine (ONNX Runtime CPU), per member (each member run alone "
            "through `run_predict`), scaled to the reference tomogram: engine and stitch by the ratio of windows, "
            "read by the ratio of voxels, resample/decode/fusion by the ratio of resampled voxels. Resampling "
            "shared by members of one geometry is counted per member (an upper bound).",
            "- **bound**: T4 rows = windows x FLOPs per window / peak (65 TFLOP/s fp16 tensor, 8.1 TFLOP/s fp32): "
            "no real run reaches the peak, so the real time is longer.",
            "- **projected**: only where --gpu-seconds-per-window was given (a measured GPU time per window), plus "
            "the host stages measured here.",
            "- hours = seconds per tomogram x N / G / 3600 (G: GPUs for the T4 rows, machines like this one for "
            "the CPU row).",
            "",
            "## Per member (seconds per reference tomogram)",
            "",
            "| member | kind | " + " | ".join(STAGES) + " | member total (CPU) | windows | GFLOPs / window | "
            "FLOPs from | T4 fp16 bound | T4 fp32 bound | given s / window |",
            "|---|---|" + "---:|" * len(STAGES) + "---:|---:|---:|---|---:|---:|---:|",
        ]
        for m in self.members:
            b16, b32 = m.bound_s(T4_PEAK_FLOPS["fp16"]), m.bound_s(T4_PEAK_FLOPS["fp32"])
            lines.append(
                f"| {m.name} | {m.kind} | " + " | ".join(f"{m.stage_s.get(s, 0.0):.2f}" for s in STAGES)
                + f" | {m.member_s:.2f} | {m.windows} | "
                + (f"{m.flops_per_window / 1e9:,.4g}" if m.flops_per_window is not None else "n/a")
                + f" | {m.flops_source} | " + (f"{b16:.3g}" if b16 is not None else "n/a") + " | "
                + (f"{b32:.3g}" if b32 is not None else "n/a") + " | "
                + (f"{m.gpu_s_per_window:g}" if m.gpu_s_per_window is not None else "-") + " |")
        lines += [
            "",
            "Shared stages (once per tomogram, measured, scaled): "
            + ", ".join(f"{k} {v:.2f} s" for k, v in self.shared_s.items()),
            "",
            f"## Projection: {n} tomograms on {g} device(s)",
            "",
            "| scenario | what | s / tomogram | hours | vs 9 h |",
            "|---|---|---:|---:|---|",
        ]
        for sc in self.scenarios():
            h = self.hours(sc)
            verdict = "fits" if h <= KAGGLE_LIMIT_H else f"over by {h / KAGGLE_LIMIT_H:.1f}x"
            lines.append(f"| {sc.name} | {sc.what} | {sc.per_tomogram_s:.3g} | {h:.3g} | {verdict} |")
        lines += ["", "## Measured runs (unscaled, this machine)", "",
                  "| member | tomo_id | shape | spacing (Å) | seconds |", "|---|---|---|---:|---:|"]
        for mm in self.measured:
            for t in mm.tomograms:
                lines.append(f"| {mm.name} | {t.tomo_id} | {'x'.join(map(str, t.shape))} | {t.spacing:g} | "
                             f"{sum(t.seconds.values()):.2f} |")
        if png_name:
            lines += ["", f"![profile]({png_name})"]
        return "\n".join(lines) + "\n"

    def plot(self, path: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        scenarios = self.scenarios()
        keys: list[str] = []
        for sc in scenarios:
            keys += [k for k in sc.segments if k not in keys]
        fig, ax = plt.subplots(figsize=(9, 5))
        hours = [self.hours(sc) for sc in scenarios]
        positive = [h for h in hours if h > 0]
        log = bool(positive) and max(positive + [KAGGLE_LIMIT_H]) / min(positive + [KAGGLE_LIMIT_H]) > 50
        cmap = plt.get_cmap("tab10")
        bottoms = [0.0] * len(scenarios)
        for ki, key in enumerate(keys):
            vals = [projection_hours(sc.segments.get(key, 0.0), self.n_tomograms, self.gpus) for sc in scenarios]
            ax.bar(range(len(scenarios)), vals, bottom=bottoms, label=key, color=cmap(ki % 10))
            bottoms = [b + v for b, v in zip(bottoms, vals)]
        ax.axhline(KAGGLE_LIMIT_H, color="red", linestyle="--", label=f"Kaggle limit {KAGGLE_LIMIT_H:g} h")
        for i, h in enumerate(hours):
            ax.text(i, h, f"{h:.3g} h", ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(scenarios)))
        ax.set_xticklabels([sc.name for sc in scenarios], fontsize=8)
        title = "motorfinder run time: measured (CPU, here) vs T4 FLOPs bound / projection"
        if log:
            ax.set_yscale("log")
            title += " (log scale)"
            ax.set_ylim(bottom=min(positive + [KAGGLE_LIMIT_H]) / 3, top=max(positive + [KAGGLE_LIMIT_H]) * 3)
        ax.set_ylabel(f"hours for {self.n_tomograms} tomograms on {self.gpus} device(s)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def reference_windows(member, target_spacing: float, shape: Sequence[int] = MEDIAN_SHAPE,
                      spacing: float = MEDIAN_SPACING_A) -> int:
    """Windows (summed over the member's TTA transforms) on a tomogram of ``shape`` at ``spacing`` Å."""
    from inference import tta as tta_mod
    from inference.predictor import member_geometry
    from inference.windows import count_windows

    g = member_geometry(member, target_spacing)
    res = tuple(int(math.floor((n - 1) * spacing / s)) + 1 for n, s in zip(shape, g.spacings))
    grid = tuple(math.ceil(n / st) * st for n, st in zip(res, g.strides))
    n_axes = len(member.spatial_axes)
    total = 0
    for name in member.tta:
        t = tta_mod.parse_tta(name, member.spatial_axes)
        perm3 = tuple(range(3 - n_axes)) + tuple(3 - n_axes + p for p in t.perm)
        total += count_windows(tuple(grid[p] for p in perm3), g.patch, tuple(g.strides[p] for p in perm3),
                               tuple(g.overlap[p] for p in perm3))
    return total


def scale_stages(seconds: dict[str, float], *, windows_ratio: float, voxel_ratio: float,
                 resampled_ratio: float) -> dict[str, float]:
    """Stage seconds measured on one tomogram -> on the reference tomogram (see ProfileReport.markdown)."""
    out = {}
    for k, v in seconds.items():
        if k in ("engine", "stitch"):
            out[k] = v * windows_ratio
        elif k == "read":
            out[k] = v * voxel_ratio
        else:
            out[k] = v * resampled_ratio
    return out


def parse_flops_md(path: Path) -> dict[str, tuple[tuple[int, ...], float]]:
    """``bench/results/flops.md``: member -> ((C, *patch), FLOPs per window)."""
    table: dict[str, tuple[tuple[int, ...], float]] = {}
    if not path.is_file():
        return table
    header: list[str] | None = None
    for line in path.read_text().splitlines():
        if not line.startswith("|"):
            header = None if not line.strip() else header
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
            continue
        if set("".join(cells)) <= set("-: "):
            continue
        row = dict(zip(header, cells))
        try:
            shape = tuple(int(v) for v in row["input (C x patch)"].split("x"))
            gflops = float(row["GFLOPs / window"].replace(",", ""))
        except (KeyError, ValueError):
            continue
        table[row.get("member", "")] = (shape, gflops * 1e9)
    return table


def onnx_flops(path: Path, input_shape: Sequence[int]) -> float | None:
    """FLOPs of one window through an ONNX model: Conv, ConvTranspose, MatMul, Gemm at 2 per multiply-add
    (element-wise ops not counted, as in export/flops.py); None where a shape cannot be inferred."""
    import numpy as np
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        return None
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != len(input_shape):
        return None
    for d, v in zip(dims, input_shape):
        d.ClearField("dim_param")
        d.dim_value = int(v)
    try:
        inferred = shape_inference.infer_shapes(model)
    except (shape_inference.InferenceError, ValueError):
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        d = vi.type.tensor_type.shape.dim
        if d and all(x.HasField("dim_value") for x in d):
            shapes[vi.name] = tuple(x.dim_value for x in d)
    for name, init in inits.items():
        shapes[name] = tuple(init.dims)
    total = 0.0
    for node in inferred.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            continue
        ins = [shapes.get(n) for n in node.input[:2]]
        out = shapes.get(node.output[0])
        if out is None or any(s is None for s in ins):
            return None
        if node.op_type == "Conv":
            w = ins[1]
            total += 2.0 * float(np.prod(out)) * w[1] * float(np.prod(w[2:]))
        elif node.op_type == "ConvTranspose":
            w = ins[1]
            total += 2.0 * float(np.prod(ins[0])) * w[1] * float(np.prod(w[2:]))
        elif node.op_type == "MatMul":
            total += 2.0 * float(np.prod(out)) * ins[0][-1]
        else:
            trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
            k = ins[0][0] if trans_a else ins[0][-1]
            total += 2.0 * float(np.prod(out)) * k
    return total


def member_flops(member, flops_table: dict) -> tuple[float | None, str]:
    """FLOPs per window: the flops.md row of the member (same input), else counted from its ONNX."""
    want = (member.channels, *member.patch)
    row = flops_table.get(member.name)
    if row is not None and tuple(row[0]) == tuple(want):
        return row[1], "flops.md"
    if member.model.suffix.lower() == ".onnx" and member.model.is_file():
        count = onnx_flops(member.model, (1, *want))
        if count is not None:
            return count, "ONNX count"
    return None, "n/a"


def parse_gpu_seconds(values: Sequence[str], names: Sequence[str]) -> dict[str, float]:
    """``--gpu-seconds-per-window`` values ``S`` (every member) or ``NAME=S`` -> member -> seconds."""
    out: dict[str, float] = {}
    for v in values:
        name, sep, num = v.rpartition("=")
        try:
            sec = float(num)
        except ValueError:
            sec = -1.0
        if not sec > 0 or not math.isfinite(sec):
            raise InputError(None, f"--gpu-seconds-per-window {v!r} is not S or NAME=S with S > 0",
                             "pass e.g. --gpu-seconds-per-window x3d_m=0.05")
        if sep and name not in names:
            raise InputError(None, f"--gpu-seconds-per-window names {name!r}, not a member",
                             f"use one of: {', '.join(names)}")
        for n in ([name] if sep else names):
            out[n] = sec
    return out


def measure_members(manifest, data_dir: Path, work: Path, *, spacing_csv: Path | None = None,
                    progress: bool = False) -> tuple[MemberMeasure, ...]:
    """Each member alone through ``run_predict`` (in this process) over the tomograms of ``data_dir``."""
    from inference.runner import PredictConfig, run_predict

    measures = []
    for m in manifest.members:
        sub = replace(manifest, members=(m,))
        logger.info("profiling %s", m.name)
        res = run_predict(PredictConfig(manifest=sub, input_dir=data_dir, output=work / m.name / "submission.csv",
                                        spacing_csv=spacing_csv, progress=progress, workers=0,
                                        work_dir=work / m.name / "work", restart=True))
        if res.failures:
            raise BuildError(f"profiling {m.name} failed on {len(res.failures)} tomogram(s): "
                             + "; ".join(f"{t}: {e}" for t, e in sorted(res.failures.items())[:3]))
        tomos = tuple(TomoMeasure(tomo_id=t, shape=tuple(r.shape), spacing=float(r.spacing),
                                  seconds={k: float(v) for k, v in r.seconds.items()})
                      for t, r in sorted(res.results.items()))
        measures.append(MemberMeasure(name=m.name, tomograms=tomos))
    return tuple(measures)


def _machine() -> str:
    return f"{platform.machine()} {os.cpu_count()} CPU core(s), {platform.system()}, Python {platform.python_version()}"


def profile_report(manifest, measured: Sequence[MemberMeasure], *, n_tomograms: int = HIDDEN_TEST_TOMOGRAMS,
                   gpus: int = 2, gpu_seconds: dict[str, float] | None = None,
                   flops_table: dict | None = None, machine: str | None = None) -> ProfileReport:
    """Scale the measurement to the reference tomogram and attach windows and FLOPs (pure: no runs)."""
    gpu_seconds = gpu_seconds or {}
    flops_table = flops_table or {}
    t = manifest.target_spacing
    ref_vox = math.prod(MEDIAN_SHAPE)
    ref_res = math.prod(n * MEDIAN_SPACING_A / t for n in MEDIAN_SHAPE)
    by_name = {mm.name: mm for mm in measured}
    members, shared_acc = [], {k: [] for k in SHARED_STAGES}
    for m in manifest.members:
        mm = by_name.get(m.name)
        if mm is None or not mm.tomograms:
            raise BuildError(f"no measurement for member {m.name}")
        w_ref = reference_windows(m, t)
        scaled = []
        for tomo in mm.tomograms:
            w = reference_windows(m, t, tomo.shape, tomo.spacing)
            scaled.append(scale_stages(
                tomo.seconds, windows_ratio=w_ref / w, voxel_ratio=ref_vox / math.prod(tomo.shape),
                resampled_ratio=ref_res / math.prod(n * tomo.spacing / t for n in tomo.shape)))
        keys = sorted({k for s in scaled for k in s})
        stage_s = {k: sum(s.get(k, 0.0) for s in scaled) / len(scaled) for k in keys}
        for k in SHARED_STAGES:
            shared_acc[k].append(stage_s.get(k, 0.0))
        flops, source = member_flops(m, flops_table)
        members.append(MemberProfile(name=m.name, kind=m.kind, windows=w_ref, flops_per_window=flops,
                                     flops_source=source, stage_s=stage_s, gpu_s_per_window=gpu_seconds.get(m.name)))
    shared = {k: (sum(v) / len(v) if v else 0.0) for k, v in shared_acc.items()}
    ref = (f"{'x'.join(map(str, MEDIAN_SHAPE))} voxels at {MEDIAN_SPACING_A} Å, resampled to {t:g} Å")
    return ProfileReport(members=tuple(members), shared_s=shared, n_tomograms=n_tomograms, gpus=gpus,
                         reference=ref, measured=tuple(measured), machine=machine or _machine())


@dataclass(frozen=True)
class ProfileResult:
    report: ProfileReport
    markdown: Path
    png: Path
    json: Path
    seconds: float

    def render(self) -> str:
        lines = ["profile (CPU measured here; T4 = FLOPs lower bound unless s/window was given)"]
        for sc in self.report.scenarios():
            h = self.report.hours(sc)
            lines.append(f"  {sc.name:<20}: {sc.per_tomogram_s:9.3g} s/tomogram -> {h:9.3g} h for "
                         f"{self.report.n_tomograms} on {self.report.gpus} device(s)"
                         f" ({'fits' if h <= KAGGLE_LIMIT_H else 'over'} {KAGGLE_LIMIT_H:g} h)")
        lines += [f"  table               : {self.markdown}", f"  plot                : {self.png}"]
        return "\n".join(lines)


def run_profile(manifest_path: Path, out: Path, *, n_tomograms: int = HIDDEN_TEST_TOMOGRAMS, gpus: int = 2,
                profile_tomograms: int = 2, scale: float = 1.0, seed: int = 11, gpu_seconds: Sequence[str] = (),
                flops_md: Path | None = None, progress: bool = False,
                measure: Callable[..., tuple[MemberMeasure, ...]] | None = None) -> ProfileResult:
    """Synthetic tomograms -> per-member measurement -> report, table and plot under ``out``."""
    from inference import synth

    t0 = time.perf_counter()
    if n_tomograms < 1 or gpus < 1 or profile_tomograms < 1:
        raise InputError(None, "--test-tomograms, --gpus and --profile-tomograms must be >= 1",
                         "pass e.g. --test-tomograms 900 --gpus 2 --profile-tomograms 2")
    manifest, _ = read_members(manifest_path)
    names = [m.name for m in manifest.members]
    overrides = parse_gpu_seconds(gpu_seconds, names)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="motorfinder-profile-") as tmp:
        data = Path(tmp) / "data"
        synth.generate(data, profile_tomograms, seed, split="test", scale=scale, progress=progress)
        measured = (measure or measure_members)(manifest, data / "test", Path(tmp) / "runs",
                                                spacing_csv=data / "test_labels.csv", progress=progress)
    table = parse_flops_md(flops_md if flops_md is not None else REPO_ROOT / "bench" / "results" / "flops.md")
    report = profile_report(manifest, measured, n_tomograms=n_tomograms, gpus=gpus, gpu_seconds=overrides,
                            flops_table=table)
    png = report.plot(out / "profile.png")
    md = out / "profile.md"
    md.write_text(f"- command: `{' '.join(['python', 'build_submission.py', *sys.argv[1:]])}`\n"
                  f"- manifest: {manifest_path}; {profile_tomograms} synthetic tomogram(s) at scale {scale:g}\n\n"
                  + report.markdown(png.name))
    js = out / "profile.json"
    js.write_text(json.dumps({
        "n_tomograms": n_tomograms, "gpus": gpus, "reference": report.reference, "machine": report.machine,
        "members": [{"name": m.name, "windows": m.windows, "flops_per_window": m.flops_per_window,
                     "flops_source": m.flops_source, "stage_s": m.stage_s, "gpu_s_per_window": m.gpu_s_per_window}
                    for m in report.members],
        "shared_s": report.shared_s,
        "scenarios": [{"name": sc.name, "what": sc.what, "segments": sc.segments,
                       "per_tomogram_s": sc.per_tomogram_s, "hours": report.hours(sc)}
                      for sc in report.scenarios()],
    }, indent=2) + "\n")
    return ProfileResult(report=report, markdown=md, png=png, json=js, seconds=time.perf_counter() - t0)


# -------------------------------------------------------------------------------------- demo
@dataclass(frozen=True)
class DemoSummary:
    data_dir: Path
    manifest: Path
    submission: Path
    candidates_dir: Path
    score: dict
    threshold: str
    seconds: dict
    build: BuildResult | None = None
    dry_run: DryRunResult | None = None
    profile: ProfileResult | None = None

    def render(self) -> str:
        s = self.score
        lines = [
            "demo summary",
            f"  synthetic test data : {self.data_dir}",
            f"  manifest (demo)     : {self.manifest}",
            f"  candidates          : {self.candidates_dir}",
            f"  submission          : {self.submission}",
            f"  threshold           : {self.threshold}",
            f"  score               : F2 {s['f2']:.3f}  precision {s['precision']:.3f}  recall {s['recall']:.3f}"
            f"  (tp {s['tp']} fp {s['fp']} fn {s['fn']} tn {s['tn']}; spacing from the labels)",
        ]
        if self.build is not None:
            b = self.build
            lines += [f"  kaggle dataset      : {b.dataset_dir}  (wheel {b.wheel.name}, no offline wheels)",
                      f"  kaggle notebook     : {b.notebook}"]
        if self.dry_run is not None:
            d = self.dry_run
            sc = f"F2 {d.score['f2']:.3f} at the assumed {MEDIAN_SPACING_A} Å" if d.score else "-"
            lines += [f"  notebook dry run    : {d.executed}",
                      f"  dry-run submission  : {d.submission}  ({d.n_tomograms} ids valid; {sc})"]
        if self.profile is not None:
            p = self.profile
            lines.append(f"  profile             : {p.markdown}  (+ {p.png.name})")
            for sc in p.report.scenarios():
                lines.append(f"    {sc.name:<18}: {p.report.hours(sc):9.3g} h for {p.report.n_tomograms} tomograms "
                             f"on {p.report.gpus} device(s) (limit {KAGGLE_LIMIT_H:g} h)")
        lines.append("  time                : " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()))
        return "\n".join(lines)


def run_demo(out: Path, *, n: int = 24, seed: int = 2025, scale: float | None = None,
             progress: bool = True, submission_kit: bool = False, dry_run_n: int = 3,
             profile_scale: float | None = None) -> DemoSummary:
    """Synthetic data -> demo detectors (3d + 2d, fused) -> predict -> score, under ``out/demo``.

    ``submission_kit=True`` (what ``--demo`` does) adds: build the Kaggle dataset and notebook
    (``out/demo/kaggle``, no offline wheels), execute the notebook on the CPU in a simulated Kaggle tree
    (``out/demo/dryrun``, ``dry_run_n`` tomograms) and a quick profile of the demo members at demo scale
    (``out/demo/profile``).
    """
    from inference import scoring, synth
    from inference.demo_models import write_demo_models
    from inference.manifest import load_manifest
    from inference.runner import PredictConfig, run_predict

    root = Path(out) / "demo"
    seconds = {}
    t0 = time.perf_counter()
    data = root / "data"
    kw = {} if scale is None else {"scale": scale}
    if (data / "test").exists():
        logger.info("reusing synthetic data in %s", data)
    else:
        synth.generate(data, n, seed, split="test", progress=progress, **kw)
    seconds["synth"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    manifest_path = write_demo_models(root / "models", with_2d=True)
    seconds["models"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    submission = root / "submission.csv"
    cands = root / "candidates"
    result = run_predict(PredictConfig(
        manifest=load_manifest(manifest_path), input_dir=data / "test", output=submission,
        spacing_csv=data / "test_labels.csv",  # synthetic spacings are known; Kaggle's test set assumes 13.1
        candidates_dir=cands, sample_submission=data / "sample_submission.csv", progress=progress,
        restart=True,
    ))
    seconds["predict"] = time.perf_counter() - t0

    score = scoring.score_files(data / "test_labels.csv", submission)
    built = dried = profiled = None
    if submission_kit:
        t0 = time.perf_counter()
        built = build(BuildConfig(manifest=manifest_path, out=root / "kaggle"))
        seconds["build"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        dried = dry_run(built, root / "dryrun", n=dry_run_n, seed=seed + 1,
                        scale=scale if scale is not None else synth.DEFAULT_SCALE, progress=progress)
        seconds["dry run"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        pscale = profile_scale if profile_scale is not None else (scale if scale is not None else synth.DEFAULT_SCALE)
        profiled = run_profile(manifest_path, root / "profile", profile_tomograms=2, scale=pscale, seed=seed + 2,
                               progress=False)
        seconds["profile"] = time.perf_counter() - t0
    summary = DemoSummary(data_dir=data, manifest=manifest_path, submission=submission, candidates_dir=cands,
                          score=score.as_dict(), threshold=result.decision.describe(), seconds=seconds,
                          build=built, dry_run=dried, profile=profiled)
    (root / "summary.json").write_text(json.dumps({**summary.score, "seconds": seconds}, indent=2))
    return summary


# ---------------------------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python build_submission.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = p.add_argument_group("mode (default: build)")
    mode.add_argument("--demo", action="store_true", help="the whole mission on synthetic data with the demo detectors "
                      "(CPU): predict, score, build, notebook dry run, quick profile, summary")
    mode.add_argument("--dry-run", action="store_true", help="build, then execute the notebook with nbclient in a "
                      "simulated Kaggle tree (KAGGLE_ROOT) on synthetic test tomograms, on the CPU, and check its "
                      "submission.csv")
    mode.add_argument("--profile", action="store_true", help="per-member, per-stage run time on synthetic tomograms, "
                      "projected to the hidden test set against the 9 h limit (build/profile/)")

    b = p.add_argument_group("build")
    b.add_argument("--manifest", type=Path, default=REPO_ROOT / MANIFEST_NAME, help="the ensemble's manifest; its "
                   "member files must exist (default: the shipped weights_manifest.yaml, whose members come from "
                   "python -m export all)")
    b.add_argument("--out", type=Path, default=Path("build"), help="output folder (default build/): dataset/, "
                   "notebook/, dryrun/, profile/, demo/")
    b.add_argument("--dataset-id", default=f"{PLACEHOLDER_USER}/{DEFAULT_DATASET_SLUG}", help="Kaggle dataset "
                   f"USER/SLUG (default {PLACEHOLDER_USER}/{DEFAULT_DATASET_SLUG}; the notebook reads "
                   "/kaggle/input/SLUG)")
    b.add_argument("--kernel-id", default=f"{PLACEHOLDER_USER}/{DEFAULT_KERNEL_SLUG}", help="Kaggle notebook "
                   f"USER/SLUG (default {PLACEHOLDER_USER}/{DEFAULT_KERNEL_SLUG})")
    b.add_argument("--title", default=DEFAULT_DATASET_TITLE, help=f"dataset title, 6-50 characters (default "
                   f"'{DEFAULT_DATASET_TITLE}')")
    b.add_argument("--kernel-title", default=None, help="notebook title (default: the kernel slug with spaces; "
                   "Kaggle requires the slug to be the title lowercased with dashes)")
    b.add_argument("--license", default="other", help="dataset license, one of Kaggle's names (default 'other', "
                   "described as MIT in the dataset description)")
    b.add_argument("--engines", action="store_true", help="ship TensorRT engines found next to the ONNX files "
                   "(M*.engine with a sidecar built from that ONNX), named by GPU and TensorRT version; without "
                   "any, the notebook builds them at run time")
    b.add_argument("--fp32-engines", action="store_true", help="the notebook builds fp32 TensorRT engines "
                   "(default fp16: T4 tensor cores)")
    b.add_argument("--wheels", action="store_true", help="download offline wheels of what the Kaggle image lacks "
                   "(KAGGLE_WHEELS: mrcfile, simplejpeg, onnxruntime-gpu) for CPython 3.11 manylinux x86_64 into "
                   "dataset/wheels")
    b.add_argument("--with-tensorrt", action="store_true", help="also the TensorRT 10 wheels (implies --wheels; "
                   f"needs --pip-extra-index-url {NVIDIA_INDEX_HINT})")
    b.add_argument("--pip-extra-index-url", action="append", default=[], metavar="URL", help="extra package "
                   "index for the wheel downloads (repeatable)")
    b.add_argument("--gpus", type=int, default=2, help="GPUs the notebook's predict uses (--devices 0..G-1) and the "
                   "profile projects to (default 2: Kaggle's T4 x2)")
    b.add_argument("--budget-h", type=float, default=NOTEBOOK_BUDGET_H, help="hours the notebook may take in all: "
                   f"predict's --deadline-h is this minus the time already spent (default {NOTEBOOK_BUDGET_H})")
    b.add_argument("--public", action="store_true", help="make the notebook public (default private)")

    d = p.add_argument_group("dry run")
    d.add_argument("--dry-run-tomograms", type=int, default=3, help="synthetic test tomograms (default 3)")
    d.add_argument("--dry-run-scale", type=float, default=0.2, help="their shape scale (default 0.2)")
    d.add_argument("--cell-timeout", type=int, default=900, help="seconds one notebook cell may run (default 900)")

    f = p.add_argument_group("profile")
    f.add_argument("--test-tomograms", type=int, default=HIDDEN_TEST_TOMOGRAMS, help="tomograms to project to "
                   f"(default {HIDDEN_TEST_TOMOGRAMS}: \"~900 tomograms in the hidden test set\")")
    f.add_argument("--profile-tomograms", type=int, default=2, help="synthetic tomograms measured (default 2)")
    f.add_argument("--profile-scale", type=float, default=1.0, help="their shape scale (default 1.0: real sizes; "
                   "smaller is faster, the measurement is scaled up to the real median tomogram)")
    f.add_argument("--gpu-seconds-per-window", action="append", default=[], metavar="[NAME=]S", help="a measured "
                   "GPU time per window (all members, or NAME=S for one; repeatable): adds a 'T4 projected' row")
    f.add_argument("--flops-md", type=Path, default=None, help="FLOPs per window table (default "
                   "bench/results/flops.md; members not in it are counted from their ONNX)")

    g = p.add_argument_group("demo")
    g.add_argument("--n", type=int, default=24, help="--demo: synthetic test tomograms (default 24)")
    g.add_argument("--seed", type=int, default=2025, help="--demo: synthetic data seed (default 2025)")
    g.add_argument("--scale", type=float, default=None, help="--demo: shape scale of the synthetic tomograms "
                   "(default: inference.synth's)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def config_from_args(args) -> BuildConfig:
    return BuildConfig(
        manifest=args.manifest, out=args.out, dataset_id=args.dataset_id, kernel_id=args.kernel_id, title=args.title,
        kernel_title=args.kernel_title, license=args.license, engines=args.engines,
        wheels=args.wheels or args.with_tensorrt, tensorrt_wheels=args.with_tensorrt,
        extra_index_urls=tuple(args.pip_extra_index_url), gpus=args.gpus, budget_h=args.budget_h,
        fp16_engines=not args.fp32_engines, private=not args.public,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    progress = not args.no_progress
    try:
        if args.demo:
            print(run_demo(args.out, n=args.n, seed=args.seed, scale=args.scale, progress=progress,
                           submission_kit=True).render())
            return 0
        cfg = config_from_args(args)
        if args.profile and not args.dry_run:
            res = run_profile(args.manifest, args.out / "profile", n_tomograms=args.test_tomograms, gpus=args.gpus,
                              profile_tomograms=args.profile_tomograms, scale=args.profile_scale,
                              gpu_seconds=args.gpu_seconds_per_window, flops_md=args.flops_md, progress=progress)
            print(res.render())
            return 0
        built = build(cfg)
        print(built.render())
        if args.dry_run:
            dried = dry_run(built, args.out / "dryrun", n=args.dry_run_tomograms, scale=args.dry_run_scale,
                            timeout_s=args.cell_timeout, progress=progress)
            print(dried.render())
        if args.profile:
            res = run_profile(args.manifest, args.out / "profile", n_tomograms=args.test_tomograms, gpus=args.gpus,
                              profile_tomograms=args.profile_tomograms, scale=args.profile_scale,
                              gpu_seconds=args.gpu_seconds_per_window, flops_md=args.flops_md, progress=progress)
            print(res.render())
    except (InputError, EngineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
