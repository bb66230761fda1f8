"""Execute the built notebook locally, as Kaggle would, in a simulated Kaggle tree, on the CPU.

The tree (``<root>/kaggle``): ``input/<competition>/`` with the target's synthetic test set in Kaggle's
layout and a sample submission (:mod:`kaggle_builder.simulated_test`; the truth stays outside the tree),
``input/<dataset slug>`` (a link to the built dataset), an empty ``working/``. The
notebook's kernel gets ``KAGGLE_ROOT`` pointing there, ``MOTORFINDER_DEVICE=cpu`` and
``MOTORFINDER_PYTHON``: a fresh environment that holds only the Kaggle image's packages, so its
offline install (pip with dependency resolution, ``--no-index``, the dataset's wheel folders) must find
every wheel in the dataset, as on Kaggle. pip's own configuration is hidden from it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kaggle_builder.build import BuildResult
from kaggle_builder.image import KaggleImage, load_image
from kaggle_builder.image_env import find_python, fresh_env, seed_from_environment, seed_from_image
from kaggle_builder.ownership import owned_dir
from kaggle_builder.simulated_test import judge, per_class, write_test_set
from kaggle_builder.target import BYU, RECORD_NAME, STATUS_NAME, Target
from kaggle_builder.wheels import Wheelhouse, isolated_pip_env

logger = logging.getLogger(__name__)
SEEDS = ("image", "local")


class DryRunError(RuntimeError):
    """The notebook failed, or ended with a submission that is not valid; the message says where to look."""


@dataclass(frozen=True)
class DryRunResult:
    root: Path
    executed: Path
    submission: Path
    sample: Path
    labels: Path                     # the truth: a labels CSV (byu) or a copick project (czii)
    n_tomograms: int
    contents: str                    # what the submission holds
    score: dict | None
    headline: str                    # the score in a few words
    seconds: float
    seed: str
    target: Target = BYU

    def render(self) -> str:
        if self.target.task == "particles":
            score = (f"{self.headline} (the competition's weighted F4 against the synthetic truth; per class: "
                     f"{per_class(self.score)})")
        else:
            score = f"{self.headline} (every tomogram read as {self.target.median_spacing_A} Å, as on Kaggle)"
        return "\n".join([
            f"dry run (the notebook executed with nbclient on the CPU; environment: {self.seed} seed)",
            f"  simulated Kaggle    : {self.root.resolve()}",
            f"  executed notebook   : {self.executed.resolve()}",
            f"  submission          : {self.submission.resolve()}  ({self.contents})",
            f"  score               : {score if self.score else '-'}",
            f"  time                : {self.seconds:.1f}s",
        ])


@contextmanager
def _environ(values: dict[str, str]):
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(old)


def image_seed(kind: str, root: Path, *, image: KaggleImage, python: Path | None = None,
               cache_dir: Path | None = None) -> tuple[Path, Path]:
    """``(seed site-packages, interpreter)`` for ``--dry-run-seed image|local``."""
    if kind == "image":
        py = find_python(image.python_version, python)
        return seed_from_image(image, Wheelhouse.in_cache(image, cache_dir), py, cache_dir), py
    if kind == "local":
        import sys

        return seed_from_environment([p.name for p in image.seed], root / "seed"), Path(python or sys.executable)
    raise ValueError(f"seed {kind!r} is not one of {SEEDS}")


def dry_run(result: BuildResult, root: Path, *, n: int | None = None, seed: int = 7, scale: float | None = None,
            timeout_s: int = 900, progress: bool = False, env_seed: str = "image", python: Path | None = None,
            image: KaggleImage | None = None, cache_dir: Path | None = None) -> DryRunResult:
    """Execute ``result``'s notebook under ``root`` (an owned folder) and check what it wrote. ``n`` test
    tomograms at ``scale`` (default: the target's ``dry_run_tomograms`` and ``dry_run_scale``)."""
    import nbformat
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    target = result.target
    n = target.dry_run_tomograms if n is None else n
    scale = target.dry_run_scale if scale is None else scale
    t0 = time.perf_counter()
    image = image or load_image()
    root = Path(root).resolve()  # the kernel runs in working/: every path it gets must be absolute
    slug = json.loads((result.notebook_dir / "kernel-metadata.json").read_text())["dataset_sources"][0].split("/")[1]
    with owned_dir(root):
        site, py = image_seed(env_seed, root, image=image, python=python, cache_dir=cache_dir)
        env_python = fresh_env(root / "env", site, py)
        kaggle = root / "kaggle"
        comp = kaggle / "input" / target.competition
        labels = write_test_set(target, root, comp, n=n, seed=seed, scale=scale, progress=progress)
        (kaggle / "input" / slug).symlink_to(result.dataset_dir.resolve(), target_is_directory=True)
        working = kaggle / "working"
        working.mkdir(parents=True)

        nb = nbformat.read(str(result.notebook), as_version=4)
        # the kernel talks over local sockets (IPC), not TCP: nothing leaves the machine, and the kernel has no
        # "running over TCP without encryption" warning to print
        km = KernelManager(kernel_name="python3", transport="ipc", ip=str(root / "kernel-ipc"))
        client = NotebookClient(nb, km=km, timeout=timeout_s, kernel_name="python3",
                                resources={"metadata": {"path": str(working)}})
        executed = root / f"executed-{result.notebook.name}"
        logger.info("executing %s in %s (KAGGLE_ROOT), CPU, installing into %s", result.notebook.name, kaggle,
                    env_python.parent.parent)
        kernel_env = dict(isolated_pip_env(), KAGGLE_ROOT=str(kaggle), MOTORFINDER_DEVICE="cpu",
                          MOTORFINDER_PYTHON=str(env_python), PYTHONUNBUFFERED="1")
        try:
            with _environ(kernel_env):
                client.execute(cleanup_kc=True)  # our km: nbclient shuts the kernel and its channels down only if asked
        except (CellExecutionError, CellTimeoutError) as exc:
            nbformat.write(nb, str(executed))
            first = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()  # no terminal colours
            raise DryRunError(f"the notebook failed in the dry run: {first[-1] if first else exc}; executed "
                              f"notebook with every output: {executed}") from None
        finally:
            shutil.rmtree(root / "env", ignore_errors=True)  # hundreds of MB (onnxruntime-gpu); the notebook says it all
        nbformat.write(nb, str(executed))
        status = json.loads((working / STATUS_NAME).read_text()) if (working / STATUS_NAME).is_file() else {}
        failed = {k: v["detail"] for k, v in status.get("steps", {}).items() if not v.get("ok")}
        if failed:
            step, detail = next(iter(failed.items()))
            fix = (" Fix: build without --no-wheels, or add the package to the bundle" if step == "install" else "")
            raise DryRunError(f"the notebook's {step} step failed in the dry run: {detail}.{fix} (executed notebook "
                              f"with every output: {executed})")
        submission, sample = working / "submission.csv", comp / "sample_submission.csv"
        record = json.loads((result.dataset_dir / RECORD_NAME).read_text())
        verdict = judge(target, submission, sample, labels, record.get("particle_types", []))
        if verdict.problems:
            raise DryRunError(f"the dry run's submission {submission} is not valid: {'; '.join(verdict.problems)}")
    return DryRunResult(root=kaggle, executed=executed, submission=submission, sample=sample, labels=labels,
                        n_tomograms=verdict.n_tomograms, contents=verdict.contents, score=verdict.score,
                        headline=verdict.headline, seconds=time.perf_counter() - t0, seed=env_seed, target=target)
