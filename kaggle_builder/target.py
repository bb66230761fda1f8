"""Facts about the Kaggle targets: one frozen :class:`Target` per competition, and Kaggle's own formats.

``build_submission.py --target byu|czii`` picks one (:data:`TARGETS`; ``byu`` is the default). Every place
that depends on the competition (config defaults and checks, the notebook's text and settings, the dataset
record, the profile's reference tomogram, hidden-set size and limit, the dry run, the demo) reads it from
the chosen target; nothing else holds a competition's numbers. Standard library only: the notebook's
runtime imports this module before anything is installed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """One Kaggle code competition, as the builder needs it."""

    name: str                          # --target
    competition: str                   # the competition's slug: /kaggle/input/<slug>
    title: str                         # the competition's title
    task: str                          # the manifest's task its members must be for
    heading: str                       # what the notebook's title calls the run
    test_input: str                    # predict's --input, relative to the competition folder
    sample_submission: str | None      # predict's --sample-submission, relative; None: no sample (from the runs)
    submission_header: tuple[str, ...]
    hidden_test_tomograms: int
    hidden_test_source: str            # where that number comes from (quoted in the profile)
    limit_h: float                     # the notebook's run-time limit
    budget_h: float                    # what the whole notebook may use by default (margin under the limit)
    median_shape: tuple[int, int, int]  # the real median test tomogram (voxels, z y x) ...
    median_spacing_A: float            # ... and the spacing the notebook reads it at
    dataset_slug: str
    kernel_slug: str
    dataset_title: str
    dry_run_tomograms: int             # synthetic test tomograms of --dry-run
    dry_run_scale: float               # their shape scale (inference.synth's meaning for the task)
    demo_tomograms: int                # synthetic test tomograms of --demo
    demo_dir: str                      # --demo's folder under --out


BYU = Target(
    name="byu",
    competition="byu-locating-bacterial-flagellar-motors-2025",
    title="BYU - Locating Bacterial Flagellar Motors 2025",
    task="motors",
    heading="BYU flagellar motors",
    test_input="test",
    sample_submission="sample_submission.csv",
    submission_header=("tomo_id", "Motor axis 0", "Motor axis 1", "Motor axis 2"),
    # The competition's data description: "~900 tomograms in the hidden test set".
    hidden_test_tomograms=900,
    hidden_test_source="competition data description: \"~900 tomograms in the hidden test set\"",
    limit_h=9.0,
    budget_h=8.5,
    # Real median tomogram and the spacing Kaggle's test set is assumed to have (it has none).
    median_shape=(300, 960, 928),
    median_spacing_A=13.1,
    dataset_slug="motorfinder-byu-offline",
    kernel_slug="motorfinder-byu-submission",
    dataset_title="motorfinder BYU offline package",
    dry_run_tomograms=3,
    dry_run_scale=0.2,
    demo_tomograms=24,
    demo_dir="demo",
)

CZII = Target(
    name="czii",
    competition="czii-cryo-et-object-identification",
    title="CZII - CryoET Object Identification",
    task="particles",
    heading="CZII particles",
    # test/static/ExperimentRuns/<run>/VoxelSpacing10.000/denoised.zarr: a copick static root
    test_input="test/static",
    sample_submission=None,  # predict lists the experiments from the runs
    submission_header=("id", "experiment", "particle_type", "x", "y", "z"),
    # The 1st place's write-up (BloodAxe/Kaggle-2024-CryoET WRITEUP.md): 12 h for ~500 test tomograms on 2 T4s.
    hidden_test_tomograms=500,
    hidden_test_source="1st place write-up: \"12 h for ~500 test tomograms\"",
    limit_h=12.0,
    budget_h=11.5,
    # OME-Zarr level 0 of every run: (184, 630, 630) at 10.012 Å (its multiscales scale; the folder says 10.000).
    median_shape=(184, 630, 630),
    median_spacing_A=10.012,
    dataset_slug="motorfinder-czii-offline",
    kernel_slug="motorfinder-czii-submission",
    dataset_title="motorfinder CZII offline package",
    dry_run_tomograms=3,
    dry_run_scale=0.25,
    demo_tomograms=8,
    demo_dir="demo-czii",
)

TARGETS = {t.name: t for t in (BYU, CZII)}

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

MANIFEST_NAME = "weights_manifest.yaml"     # the manifest's name inside the dataset
RECORD_NAME = "MOTORFINDER.json"            # the build record inside the dataset (the notebook reads it)
WHEELS_DIR = "wheels"                       # dataset/wheels/<group>/*.whl
STATUS_NAME = "motorfinder-run.json"        # what the notebook did, in /kaggle/working (the dry run reads it)
