"""What ``predict --input`` names, listed as tomograms: a copick project's runs, or tomogram sources.

A copick project (a static root, its ``ExperimentRuns/`` folder, or a copick config JSON:
:mod:`inference.io.copick_project`) gives one tomogram per run, named by the run (the experiment): its
``<tomo_type>.zarr`` in the ``VoxelSpacing<s>`` folder closest to the members' spacing. A run without
that tomogram fails alone (one ERROR line naming the run folder, the types found and the fix). Anything
else is a folder or list of sources (:func:`inference.io.sources.scan_sources`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from inference.common.errors import one_line
from inference.io.copick_project import DEFAULT_TOMO_TYPE, describe, is_copick_input, open_project, run_tomograms
from inference.io.sources import Listing, scan_sources

logger = logging.getLogger(__name__)


def list_input(source: str | Path, *, tomo_type: str = DEFAULT_TOMO_TYPE, target_A: float | None = None,
               report: bool = True) -> Listing:
    """The tomograms of ``source`` (the module docstring); ``report`` logs what is not used and why."""
    if not is_copick_input(source):
        return scan_sources(source, report=report)
    project = open_project(source)
    found = Listing()
    for run in run_tomograms(project, tomo_type, target_A):
        if run.path is None:
            found.unusable[run.experiment] = (run.run_dir, one_line(run.error()))
        else:
            found.sources.append(run.path)
            found.names[str(run.path)] = run.experiment
    if report:
        logger.info("%s; tomogram type %s", describe(project), tomo_type)
        for experiment, (_, problem) in found.unusable.items():
            logger.error("%s; it gets no picks", problem)
    return found
