"""The submission notebook: a few lines per cell, each calling :mod:`kaggle_builder.runtime` (tested code
shipped in the wheel). Every value the build writes into a cell is a Python literal made by ``repr``,
so no file name or id can inject code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from kaggle_builder.config import BuildConfig
from kaggle_builder.image import PYTHON_VERSION
from kaggle_builder.target import MACHINE_SHAPE_T4X2

# What the last cell checks, per task: in the introduction, and as the cell's comment.
CHECKS = {
    "motors": ("a check of the submission (repaired with -1 where a step failed).",
               "every sample tomo_id once, valid numbers (repaired with -1 if not)."),
    "particles": ("a check of the submission: the header `id,experiment,particle_type,x,y,z`, ids 0..n-1, the "
                  "manifest's particle types, finite coordinates in Å (invalid rows dropped; the header alone "
                  "where a step failed).",
                  "the header, ids 0..n-1, particle types, finite x y z (invalid rows dropped)."),
}


def _literal(values: dict) -> str:
    """A dict of plain values as Python source, one key per line."""
    return "{\n" + "".join(f"    {k!r}: {v!r},\n" for k, v in values.items()) + "}"


def settings(cfg: BuildConfig) -> dict:
    """The notebook's settings (cell 2): what :class:`kaggle_builder.runtime.Run` reads."""
    t = cfg.target
    return {"competition": t.competition, "task": t.task, "test_input": t.test_input,
            "sample_submission": t.sample_submission, "devices": "all", "budget_h": float(cfg.budget_h),
            "fp16_engines": bool(cfg.fp16_engines)}


def notebook_cells(cfg: BuildConfig, wheel_name: str, members: Sequence[str], engines: Sequence[str],
                   wheels: Sequence[str]) -> list[tuple[str, str]]:
    """The notebook as (cell type, source) pairs."""
    limit_h, (check_intro, check_comment) = cfg.target.limit_h, CHECKS[cfg.target.task]
    q = json.dumps  # values shown in the markdown: quoted, one line
    intro = (
        f"# motorfinder: {cfg.target.heading}, offline submission\n\n"
        f"Runs the ensemble of the dataset {q(cfg.dataset_id)} (members: {', '.join(q(m) for m in members)}) over "
        "the competition's test tomograms and writes `/kaggle/working/submission.csv`. Every cell calls "
        "`kaggle_builder.runtime` from the `motorfinder` wheel in the dataset.\n\n"
        "1. the wheel goes on `sys.path` (nothing is installed yet);\n"
        "2. the run's settings;\n"
        f"3. offline install with `pip --no-index` from the dataset ({len(wheels)} shipped wheel(s)), then the "
        "environment as installed;\n"
        "4. `python -m inference doctor`: the GPUs and the libraries that actually load; a GPU that cannot be used "
        "moves the run to the CPU with a warning;\n"
        f"5. TensorRT engines where TensorRT imports (shipped: {', '.join(q(e) for e in engines) or 'none'}); "
        "otherwise ONNX Runtime's CUDA provider;\n"
        f"6. `python -m inference predict` on every visible GPU with the deadline guard ({cfg.budget_h:g} h for the "
        f"notebook; Kaggle's limit is {limit_h:g} h);\n"
        f"7. {check_intro}\n\n"
        "To run it elsewhere: `KAGGLE_ROOT` (default `/kaggle`), `MOTORFINDER_DEVICE=cpu`, "
        "`MOTORFINDER_PYTHON` (the interpreter to install into)."
    )
    find = (
        "# 1. motorfinder from the attached dataset: its wheel on sys.path (a pure-Python wheel imports as a zip).\n"
        "import os\nimport sys\nfrom pathlib import Path\n\n"
        'KAGGLE_ROOT = Path(os.environ.get("KAGGLE_ROOT", "/kaggle"))  # the local dry run points this elsewhere\n'
        f"DATASET_SLUG, WHEEL = {cfg.dataset_slug!r}, {wheel_name!r}\n"
        'FOUND = [p for pattern in (DATASET_SLUG + "/", "*/", "*/*/", "*/*/*/")\n'
        '         for p in sorted((KAGGLE_ROOT / "input").glob(pattern + WHEEL))]\n'
        "if not FOUND:\n"
        '    raise FileNotFoundError(f"{WHEEL} is not under {KAGGLE_ROOT}/input: attach the dataset {DATASET_SLUG}")\n'
        "sys.path.insert(0, str(FOUND[0]))\n"
        "from kaggle_builder import runtime  # noqa: E402"
    )
    settings_cell = (
        "# 2. Settings, written by build_submission.py; edit them here for a run on Kaggle.\n"
        f"#    budget_h: hours for the whole notebook (Kaggle's limit: {limit_h:g} h); devices: predict's\n"
        "#    --devices ('all': every visible GPU, or e.g. '0'); test_input, sample_submission: predict's --input and\n"
        "#    --sample-submission under the competition's folder (None: none).\n"
        f"SETTINGS = {_literal(settings(cfg))}\n"
        "RUN = runtime.Run(KAGGLE_ROOT, FOUND[0].parent, SETTINGS)"
    )
    cells = [
        ("markdown", intro),
        ("code", find),
        ("code", settings_cell),
        ("code", "# 3. Offline install (no cell needs the internet), then the environment as installed.\n"
                 "INSTALLED = RUN.install()\nENVIRONMENT = RUN.print_environment()"),
        ("code", "# 4. What this machine can run (a GPU that cannot be used moves the run to the CPU).\n"
                 "DEVICE_OK = RUN.check_device()"),
        ("code", "# 5. TensorRT engines where TensorRT imports; otherwise predict runs the ONNX files.\n"
                 "MANIFEST = RUN.build_engines()"),
        ("code", "# 6. Predict every test tomogram within what is left of the budget.\n"
                 "PREDICTED = RUN.predict()"),
        ("code", f"# 7. Check the submission: {check_comment}\n"
                 "PROBLEMS = RUN.check_submission()"),
    ]
    return cells


def write_notebook(path: Path, cells: Sequence[tuple[str, str]]) -> None:
    import nbformat
    from nbformat import v4

    nb = v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python", "version": PYTHON_VERSION}
    # What `kaggle kernels pull` shows for a notebook on "GPU T4 x2", no internet (kernel-metadata.json
    # is what the push API reads; this mirrors it for the editor).
    nb.metadata["kaggle"] = {"accelerator": "nvidiaTeslaT4", "isGpuEnabled": True, "isInternetEnabled": False,
                             "language": "python", "sourceType": "notebook"}
    for kind, source in cells:
        nb.cells.append(v4.new_markdown_cell(source) if kind == "markdown" else v4.new_code_cell(source))
    nbformat.validate(nb)
    nbformat.write(nb, str(path))


def kernel_metadata(cfg: BuildConfig, code_file: str) -> dict:
    """Kaggle's kernel-metadata.json (Kaggle API docs, kernels_metadata.md; machine_shape: kaggle-cli)."""
    return {
        "id": cfg.kernel_id,
        "title": cfg.kernel_title_or_default,
        "code_file": code_file,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": bool(cfg.private),
        "enable_gpu": True,
        "enable_tpu": False,
        "enable_internet": False,
        "dataset_sources": [cfg.dataset_id],
        "competition_sources": [cfg.target.competition],
        "kernel_sources": [],
        "model_sources": [],
        "machine_shape": MACHINE_SHAPE_T4X2,
    }
