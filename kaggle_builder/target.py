"""Facts about the Kaggle target: the competition, its limits, Kaggle's metadata formats."""

from __future__ import annotations

COMPETITION = "byu-locating-bacterial-flagellar-motors-2025"
# The competition's data description: "~900 tomograms in the hidden test set".
HIDDEN_TEST_TOMOGRAMS = 900
KAGGLE_LIMIT_H = 9.0           # notebook run-time limit of the competition
NOTEBOOK_BUDGET_H = 8.5        # what the whole notebook may use by default (margin under the limit)
# Real median tomogram (voxels, z y x) and the spacing Kaggle's test set is assumed to have.
MEDIAN_SHAPE = (300, 960, 928)
MEDIAN_SPACING_A = 13.1

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
RECORD_NAME = "MOTORFINDER.json"            # the build record inside the dataset (the notebook reads it)
WHEELS_DIR = "wheels"                       # dataset/wheels/<group>/*.whl
STATUS_NAME = "motorfinder-run.json"        # what the notebook did, in /kaggle/working (the dry run reads it)
