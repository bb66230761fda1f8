"""Checks before any tomogram runs: spacings, memory, the spacing CSV's coverage.

* Every voxel spacing lies in 1-100 Å (:mod:`inference.io.spacing`): a CSV row or a default outside it
  stops the run with one line before any work; a header outside it is ignored with a WARNING.
* Every tomogram's resample must fit in memory: from its header (MRC, ``.npy``) or its slice count
  and first slice, and its spacing (CSV > header > default), :func:`estimate_bytes` adds the volume
  as read, every distinct member geometry's resampled volume and the largest member's working copies
  (normalised, padded, 2d channels); on a GPU run only the volume as read stays on the host. A
  tomogram needing more than this machine's memory (all of it: the check is for impossible
  resamples, a spacing in nm or a wrong target spacing, not for a busy machine) stops the run with
  one line naming it before any work. A source whose header cannot be read is left to the read,
  which fails it with its own line. The GPU's own memory is not checked here.
* Tomograms missing from a given spacing CSV are named in one WARNING (they use the MRC header or
  the default spacing).
* The output is not one of the run's inputs (a tomogram, the manifest, a model, the spacing CSV, the
  sample submission): writing the submission there would destroy it.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from inference.common.errors import InputError
from inference.common.names import name_list
from inference.io import readers
from inference.io.sources import tomo_id_of
from inference.io.spacing import resolve_spacing
from inference.predict.geometry import member_geometry
from inference.predict.resample import resampled_shape

logger = logging.getLogger(__name__)

GiB = 2**30


def machine_memory() -> int | None:
    """Bytes of physical memory of this machine (cgroup limit when lower, as in a container), or None."""
    total = None
    try:
        import os

        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        pass
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and (total is None or int(text) < total):
            total = int(text)
    return total


def estimate_bytes(shape: tuple[int, ...], spacing: float, itemsize: int, manifest, on_gpu: bool = False) -> int:
    """Peak host bytes to load and prepare one tomogram of ``shape`` at ``spacing`` (the module docstring)."""
    voxels = math.prod(shape)
    per_geometry: dict[tuple, int] = {}
    working = 0
    for m in manifest.members:
        g = member_geometry(m, manifest.target_spacing)
        n = math.prod(resampled_shape(shape, spacing, g.spacings, m.resample.grid))
        per_geometry[(g.spacings, m.resample.grid)] = n
        working = max(working, n * 4 * (2 + (m.channels if m.kind == "2d" else 1)))
    if on_gpu:  # uploaded once; mapped, resampled and windowed on the device
        return voxels * itemsize
    as_read = voxels * itemsize + (voxels * 4 if itemsize > 1 else 0)  # a float volume mapped to 0..255
    return as_read + sum(4 * n for n in per_geometry.values()) + working


#: The first line of a submission this package writes (motors, particles): an existing --output may be one.
SUBMISSION_HEADERS = ("tomo_id,Motor axis 0,Motor axis 1,Motor axis 2", "id,experiment,particle_type,x,y,z")


def check_output(output: Path, sources: list[Path], manifest, tables: list[Path]) -> None:
    """InputError when ``output`` is one of the run's input files, or an existing file that is no submission
    (a rerun overwrites its own submission; an empty file may be overwritten too)."""
    inputs = {"a tomogram source": list(sources), "the manifest": [manifest.path],
              "a member's model": [m.model for m in manifest.members], "an input table": list(tables)}
    target = Path(output).resolve()
    for what, paths in inputs.items():
        if any(Path(p).resolve() == target for p in paths):
            raise InputError(output, f"--output is {what}; writing the submission there would destroy it",
                             "write the submission to another file, e.g. submission.csv")
    output = Path(output)
    if output.is_dir():
        raise InputError(output, "--output is a folder", "pass a file name, e.g. submission.csv")
    if output.is_file() and output.stat().st_size:
        try:
            with output.open(encoding="utf-8-sig", errors="replace") as fh:
                first = fh.readline().strip()
        except OSError:
            return  # the submission's write says what is wrong with it
        if first not in SUBMISSION_HEADERS:
            raise InputError(output, f"--output exists and is no submission (its first line: {first[:60]!r}); "
                             "writing the submission there would destroy it",
                             "pass another file name, or delete the file first")


def check_inputs(sources: list[Path], manifest, table: dict[str, float] | None, default: float,
                 memory: int | None = None, on_gpu: bool = False, ids: list[str] | None = None) -> None:
    """The checks of the module docstring over every source; InputError for the first that fails. ``ids``:
    the sources' tomo_ids when not their own names (a copick run's)."""
    memory = machine_memory() if memory is None else memory
    ids = ids if ids is not None else [tomo_id_of(s) for s in sources]
    if table is not None:
        missing = [t for t in ids if t not in table]
        if missing:
            logger.warning("%d of %d tomogram(s) are not in the spacing CSV and use the MRC header's voxel size or "
                           "the default %.4g Å: %s", len(missing), len(ids), default, name_list(missing, 20))
    if memory is None:
        return
    for source, tomo_id in zip(sources, ids):
        try:
            shape, header, itemsize = readers.peek_volume(source)
        except (InputError, OSError, ValueError):
            continue  # the read reports it, and that tomogram alone fails
        spacing, how = resolve_spacing(tomo_id, table=table, header_spacing=header, default=default,
                                               log=False)
        need = estimate_bytes(shape, spacing, itemsize, manifest, on_gpu)
        if need > memory:
            raise InputError(source, f"at {spacing:.4g} Å (from the {'spacing CSV' if how == 'csv' else how}) its "
                             f"{'x'.join(map(str, shape))} voxels resample to the members' spacing in about "
                             f"{need / GiB:.1f} GiB, more than this machine's {memory / GiB:.1f} GiB of memory",
                             "check its voxel spacing (Å, not nm) and the manifest's target_spacing, or run on a "
                             "machine with more memory")
