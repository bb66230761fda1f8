"""What a build is asked to do (:class:`BuildConfig`) and the checks Kaggle imposes on it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from inference.common.errors import InputError
from kaggle_builder.target import BYU, KAGGLE_LICENSES, PLACEHOLDER_USER, TARGETS, Target


@dataclass(frozen=True)
class BuildConfig:
    """``dataset_id``, ``kernel_id``, ``title`` and ``budget_h`` left at None take the target's defaults."""

    manifest: Path
    out: Path
    dataset_id: str | None = None        # None: PLACEHOLDER_USER/<the target's dataset slug>
    kernel_id: str | None = None         # None: PLACEHOLDER_USER/<the target's kernel slug>
    title: str | None = None             # None: the target's dataset title
    kernel_title: str | None = None      # None: derived from the kernel slug
    license: str = "other"
    engines: bool = False
    wheels: bool = True                  # ship what the image lacks (False: --no-wheels)
    tensorrt_wheels: bool = False
    extra_index_urls: tuple[str, ...] = ()
    gpus: int = 2
    budget_h: float | None = None        # None: the target's notebook budget
    fp16_engines: bool = True
    private: bool = True
    target: Target = BYU

    def __post_init__(self) -> None:
        t = self.target
        defaults = {"dataset_id": f"{PLACEHOLDER_USER}/{t.dataset_slug}",
                    "kernel_id": f"{PLACEHOLDER_USER}/{t.kernel_slug}", "title": t.dataset_title,
                    "budget_h": t.budget_h}
        for name, value in defaults.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)

    @property
    def index_urls(self) -> tuple[str, ...]:
        """Extra package indexes for the downloads: the ones given, else NVIDIA's where TensorRT ships (PyPI
        has ``tensorrt-cu12-libs`` only as a stub that downloads at install time)."""
        if self.extra_index_urls or not self.tensorrt_wheels:
            return self.extra_index_urls
        from kaggle_builder.wheels import NVIDIA_INDEX

        return (NVIDIA_INDEX,)

    @property
    def dataset_slug(self) -> str:
        return self.dataset_id.split("/", 1)[1]

    @property
    def kernel_slug(self) -> str:
        return self.kernel_id.split("/", 1)[1]

    @property
    def kernel_title_or_default(self) -> str:
        return self.kernel_title if self.kernel_title is not None else self.kernel_slug.replace("-", " ")

    @property
    def uses_placeholder_user(self) -> bool:
        return any(i.startswith(PLACEHOLDER_USER + "/") for i in (self.dataset_id, self.kernel_id))


_USER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,48}[a-z0-9]$")


def slug_of_title(title: str) -> str:
    """Kaggle's kernel slug of a title: lowercased, runs of other characters -> one dash."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _check_id(value: str, what: str, option: str, example: str) -> None:
    user, sep, slug = value.partition("/")
    if not sep or not _USER_RE.match(user) or not _SLUG_RE.match(slug):
        raise InputError(None, f"{option} {value!r} is not USER/SLUG with a slug of 3-50 lowercase letters, digits "
                         f"and dashes ({what})", f"pass e.g. {option} {PLACEHOLDER_USER}/{example}")


def validate_config(cfg: BuildConfig) -> None:
    """Every problem of the options as one InputError, before anything is read or written."""
    _check_id(cfg.dataset_id, "the Kaggle dataset", "--dataset-id", cfg.target.dataset_slug)
    _check_id(cfg.kernel_id, "the Kaggle notebook", "--kernel-id", cfg.target.kernel_slug)
    if not 6 <= len(cfg.title) <= 50:
        raise InputError(None, f"--title {cfg.title!r} has {len(cfg.title)} characters; Kaggle wants 6 to 50",
                         "pass a dataset title of 6-50 characters")
    ktitle = cfg.kernel_title_or_default
    if slug_of_title(ktitle) != cfg.kernel_slug:
        raise InputError(None, f"--kernel-title {ktitle!r} gives the slug {slug_of_title(ktitle)!r}, not the "
                         f"--kernel-id slug {cfg.kernel_slug!r} (Kaggle links a notebook's title and slug)",
                         "make the title the slug with spaces for dashes, or leave --kernel-title out")
    if cfg.license not in KAGGLE_LICENSES:
        raise InputError(None, f"--license {cfg.license!r} is not one of Kaggle's dataset licenses",
                         f"use one of: {', '.join(KAGGLE_LICENSES)}")
    if cfg.gpus < 1:
        raise InputError(None, f"--gpus {cfg.gpus} must be >= 1", "pass --gpus 2 (Kaggle's T4 x2)")
    limit = cfg.target.limit_h
    if not 0 < cfg.budget_h <= limit:
        raise InputError(None, f"--budget-h {cfg.budget_h} must be in (0, {limit:g}] (--target {cfg.target.name}: "
                         f"Kaggle's limit is {limit:g} h)", f"pass e.g. {cfg.target.budget_h:g}")
    if cfg.tensorrt_wheels and not cfg.wheels:
        raise InputError(None, "--with-tensorrt and --no-wheels contradict each other", "drop one of them")


def check_task(manifest_path: Path, task: str, target: Target) -> None:
    """The manifest's ``task`` must be the target's (motors for byu, particles for czii)."""
    if task == target.task:
        return
    other = next((t for t in TARGETS.values() if t.task == task), None)
    switch = f"pass --target {other.name} (the {other.title} competition), or " if other else "pass "
    raise InputError(manifest_path, f"is a task: {task} manifest; --target {target.name} ({target.title}) needs "
                     f"task: {target.task}", f"{switch}a task: {target.task} manifest (demo members: python -m "
                     f"inference demo-models --task {target.task} --out models, then --manifest models/manifest.yaml)")
