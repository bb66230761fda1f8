"""Finding tomogram sources in an input folder, and saying what is not used and why.

A tomogram *source* is a folder named by its tomo_id holding ``slice_<number>.<ext>`` images (jpg,
jpeg, png, tif, tiff; any case), an ``.mrc``/``.rec``/``.npy`` file named by its tomo_id, or an
OME-Zarr ``<tomo_id>.zarr`` folder (or, listed in a text file given as the input, an fsspec URL of
one: :mod:`inference.io.listing_file`). :func:`scan_sources` sorts every entry of the input folder into

* ``sources``: one per tomo_id, sorted by tomo_id;
* ``duplicates``: tomo_ids claimed by two or more sources (``tomo_x/`` and ``tomo_x.npy``): none of
  them is used, the tomogram fails (written as -1) with one ERROR line, the others run;
* ``skipped``: entries that are not tomograms, each named in one WARNING with the reason: an empty
  folder, a folder without slice images, an unknown suffix, something that is neither a file nor a
  folder, a link that cannot be followed (broken, or a loop), a folder that cannot be listed.

Hidden entries (names starting with '.') are ignored without a word, like ``ls`` does, unless
they look like a source (then the WARNING says to rename them).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from inference.common.errors import InputError
from inference.common.names import name_list
from inference.io import listing_file

logger = logging.getLogger(__name__)

#: File suffixes that are tomogram sources by themselves (folders of slices are the other kind).
SOURCE_SUFFIXES: tuple[str, ...] = (".mrc", ".rec", ".map", ".npy")
MRC_SUFFIXES: tuple[str, ...] = (".mrc", ".rec", ".map")  # .map: EMDB's name for an MRC2014 map
#: Suffixes of slice images inside a tomogram folder.
SLICE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".tif", ".tiff")

SLICE_RE = re.compile(r"^slice_(\d+)\.(?:jpg|jpeg|png|tif|tiff)$", re.IGNORECASE)
FIX_SOURCE = ("point the input at folders of slice_NNNN.jpg images, .mrc/.rec/.map/.npy files, OME-Zarr .zarr folders, "
              "or a .txt file listing them")


def tomo_id_of(path: str | Path) -> str:
    """The tomo_id of a source: a folder's name, a file's or a ``.zarr`` store's (or URL's) name without its
    suffix."""
    if listing_file.is_url(path):
        return listing_file.url_id(path)
    path = Path(path)
    if is_zarr(path):
        return path.name[: -len(".zarr")]
    return path.name if path.is_dir() else path.stem


def is_zarr(path: Path) -> bool:
    """A ``.zarr`` name: an OME-Zarr store (its metadata is checked when it is read)."""
    return path.suffix.lower() == ".zarr"


@dataclass
class Listing:
    """What :func:`scan_sources` (or a copick project, :mod:`inference.io.input_listing`) found in an input.

    ``names``: a source's tomo_id where it is not the source's own name (a copick run's tomogram is
    ``.../<run>/VoxelSpacing10.000/denoised.zarr``, its tomo_id the run's name); ``unusable``: tomo_ids
    that cannot run, with the source to name and the one-line problem (a copick run without the
    tomogram type). Both, and ``duplicates``, fail their tomogram alone."""

    sources: list[Path] = field(default_factory=list)
    duplicates: dict[str, list[Path]] = field(default_factory=dict)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)  # str(source) -> tomo_id
    unusable: dict[str, tuple[Path, str]] = field(default_factory=dict)  # tomo_id -> (where, problem)

    def id_of(self, source) -> str:
        """A source's tomo_id: its name in ``names``, else its own (:func:`tomo_id_of`)."""
        return self.names.get(str(source)) or tomo_id_of(source)

    @property
    def ids(self) -> list[str]:
        """Every tomo_id of the input: the usable sources', the duplicated and the unusable ones, sorted."""
        return sorted([self.id_of(s) for s in self.sources] + list(self.duplicates) + list(self.unusable))

    def duplicate_problem(self, tomo_id: str) -> str:
        names = " and ".join(p.name + ("/" if p.is_dir() else "") for p in self.duplicates[tomo_id])
        return f"{len(self.duplicates[tomo_id])} sources have the tomo_id {tomo_id!r} ({names})"

    def failing(self) -> dict[str, tuple[Path, str]]:
        """The tomo_ids that fail before any work: ``{tomo_id: (a source to name, the problem)}``."""
        out = {t: (ps[0], self.duplicate_problem(t)) for t, ps in self.duplicates.items()}
        out.update(self.unusable)
        return out


_DUPLICATE_FIX = "keep one of them (move the others out of the input folder)"


def _sniff(path: Path) -> str | None:
    """What a file with an unknown suffix holds, when it is a kind we read: 'MRC' or '.npy'."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(224)
    except OSError:
        return None
    if head[:6] == b"\x93NUMPY":
        return ".npy"
    if len(head) >= 212 and head[208:211] == b"MAP":
        return "MRC"
    return None


def _folder_reason(folder: Path, nested: bool = True) -> str | None:
    """None when ``folder`` holds slice images; else why it is not a tomogram (``nested``: say when its
    sub-folders are tomograms, the input pointed one level too high)."""
    try:
        with os.scandir(folder) as it:
            entries = [e for e in it if not e.name.startswith(".")]
    except OSError as exc:
        return f"cannot list the folder ({exc.strerror or exc})"
    if not entries:
        return "empty folder"
    if any(SLICE_RE.match(e.name) and e.is_file() for e in entries):
        return None
    names = sorted(e.name for e in entries)
    inner = [e.name for e in entries if nested and e.is_dir() and _folder_reason(Path(e.path), False) is None]
    if inner:
        return (f"no slice images, but its sub-folders {name_list(sorted(inner))} are tomograms: point the input at "
                f"{folder} to use them")
    return f"no slice images named slice_<number>.jpg/.jpeg/.png/.tif/.tiff in the folder (found: {name_list(names)})"


def name_problem(name: str) -> str | None:
    """Why a tomo_id cannot be written as it is (a submission row, a log line, a file name), or None."""
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "its name holds a control character (a newline, a tab): rename it"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not valid UTF-8: rename it"
    return None


def shown(path: Path) -> str:
    """A path for a log line: as it is, or quoted with escapes when its name would break the line."""
    return repr(str(path)) if name_problem(path.name) else str(path)


def classify(path: Path) -> str | None:
    """None when ``path`` is a tomogram source; else the reason it is not used."""
    problem = name_problem(path.name)
    if problem:
        return problem
    if path.is_symlink() and not path.exists():
        return "a link that cannot be followed (its target is missing, or the links form a loop)"
    if path.is_dir():
        return None if is_zarr(path) else _folder_reason(path)
    if path.is_file():
        if path.suffix.lower() in SOURCE_SUFFIXES:
            return None
        kind = _sniff(path)
        suffix = f"suffix {path.suffix!r}" if path.suffix else "no suffix"
        if kind is not None:
            want = ".mrc" if kind == "MRC" else ".npy"
            return f"{suffix} (it holds {'an' if kind == 'MRC' else 'a'} {kind} volume: rename it to {path.stem}{want})"
        if path.suffix.lower() in (".tif", ".tiff"):
            return (f"{suffix}: a TIFF file is no tomogram source (a multi-page TIFF volume is not read: save it as "
                    f"{path.stem}.npy or .mrc, or as a folder {path.stem}/ of slice_NNNN.tif images, one per z)")
        return f"unknown {suffix} (tomograms are .mrc/.rec/.map/.npy files, folders of slice images or .zarr folders)"
    return "neither a file nor a folder"


def scan_sources(input_dir: str | Path, *, report: bool = True) -> Listing:
    """Sort the entries of ``input_dir`` (see the module docstring); ``report`` logs each unused entry
    (WARNING) and each duplicated tomo_id (ERROR) in one line.

    ``input_dir`` may itself be one source (a folder of slices, a ``.zarr`` store, a single source file) or a
    text file listing sources (:func:`inference.io.listing_file.read_listing`). An input that does not exist,
    cannot be listed or holds no tomogram at all is an :class:`InputError`.
    """
    input_dir = Path(input_dir)
    if not input_dir.exists():
        if input_dir.is_symlink():
            raise InputError(input_dir, "the input is a link that cannot be followed (broken, or a loop)",
                             "point --input at the folder itself")
        raise InputError(input_dir, "input does not exist", "check the path")
    if listing_file.is_listing(input_dir):
        return Listing(sources=listing_file.read_listing(input_dir, tomo_id_of))
    if is_zarr(input_dir) and input_dir.is_dir():
        return Listing(sources=[input_dir])
    if input_dir.is_file():
        reason = classify(input_dir)
        if reason is None:
            return Listing(sources=[input_dir])
        raise InputError(input_dir, f"not a tomogram source: {reason}", FIX_SOURCE)
    try:
        entries = sorted(input_dir.iterdir())
    except OSError as exc:
        raise InputError(input_dir, f"cannot list folder ({exc.strerror or exc})", "check permissions") from None

    found = Listing()
    for p in entries:
        reason = classify(p)
        if p.name.startswith("."):
            if reason is None:
                found.skipped.append((p, "hidden (its name starts with '.'): rename it to use it"))
            continue
        if reason is None:
            found.sources.append(p)
        else:
            found.skipped.append((p, reason))

    if not found.sources and _folder_reason(input_dir) is None:
        logger.info("%s holds slice images itself: reading it as one tomogram", input_dir)
        return Listing(sources=[input_dir])
    by_id: dict[str, list[Path]] = {}
    for p in found.sources:
        by_id.setdefault(tomo_id_of(p), []).append(p)
    found.duplicates = {t: ps for t, ps in sorted(by_id.items()) if len(ps) > 1}
    found.sources = sorted((ps[0] for ps in by_id.values() if len(ps) == 1), key=lambda p: (tomo_id_of(p), p.name))
    if report:
        for p, reason in found.skipped:
            logger.warning("not a tomogram, not used: %s: %s", shown(p), reason)
    if not found.sources and not found.duplicates:
        visible = [p for p in entries if not p.name.startswith(".")]
        what = "is empty" if not visible else f"holds no tomograms ({len(visible)} entries, none usable: see above)"
        raise InputError(input_dir, f"input folder {what}", FIX_SOURCE)
    if report:
        for tomo_id in found.duplicates:
            logger.error("%s: %s; it is written as -1. Fix: %s", input_dir, found.duplicate_problem(tomo_id),
                         _DUPLICATE_FIX)
    return found


def list_sources(input_dir: str | Path) -> list[Path]:
    """The usable tomogram sources in ``input_dir``, sorted by tomo_id (:func:`scan_sources`, logged).

    A tomo_id claimed by two sources is left out (its ERROR line says so); a run that must write
    it as -1 uses :func:`scan_sources` and its ``duplicates``.
    """
    return scan_sources(input_dir).sources


def slice_files(folder: str | Path, *, report: bool = True) -> list[Path]:
    """The slice images of a tomogram folder, ordered by slice number (the z index).

    The numbers must be exactly 0 .. Z-1: a folder whose first slice is not 0, with a gap or with a
    number used twice is rejected rather than renumbered (renumbering would shift every z the detector
    reports). Zero padding is optional; extensions may be mixed while the numbers are unique. Other
    files are not used, and one WARNING names them (``report=False``: no warning).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder of slice images", FIX_SOURCE)
    numbered: dict[int, list[Path]] = {}
    others: list[str] = []
    try:
        names = sorted(os.listdir(folder))
    except OSError as exc:
        raise InputError(folder, f"cannot list folder ({exc.strerror or exc})", "check permissions") from None
    for name in names:
        match = SLICE_RE.match(name)
        if match and (folder / name).is_file():
            numbered.setdefault(int(match.group(1)), []).append(folder / name)
        elif not name.startswith("."):
            others.append(name)

    if not numbered:
        problem = "folder is empty" if not names else (
            "no slice images named slice_<number>.jpg/.jpeg/.png/.tif/.tiff"
            + (f" (found: {name_list(others)})" if others else "")
        )
        raise InputError(folder, problem, "name the slices slice_0000.jpg, slice_0001.jpg, ... (one per z)")

    duplicates = [files for _, files in sorted(numbered.items()) if len(files) > 1]
    if duplicates:
        first = duplicates[0]
        raise InputError(
            folder,
            f"slice number {int(SLICE_RE.match(first[0].name).group(1))} appears "
            f"{len(first)} times ({', '.join(p.name for p in first)})"
            + (f"; {len(duplicates)} numbers are duplicated" if len(duplicates) > 1 else ""),
            "keep one file per slice number",
        )

    numbers = sorted(numbered)
    fix = "re-extract the tomogram so its slices are slice_0000 ... slice_<Z-1> with no gaps"
    if numbers[0] != 0:
        raise InputError(
            folder,
            f"slice numbers start at {numbers[0]} ({numbered[numbers[0]][0].name}), not 0; the slice "
            "number is the z index",
            fix,
        )
    if numbers[-1] != len(numbers) - 1:
        present = set(numbers)
        missing = [n for n in range(numbers[-1]) if n not in present]
        raise InputError(
            folder,
            f"{len(missing)} slice(s) missing between 0 and {numbers[-1]}: numbers {name_list(missing)}",
            fix,
        )
    if others and report:
        logger.warning("%s: %d entr%s that %s not slice images, not used: %s", folder, len(others),
                       "y" if len(others) == 1 else "ies", "is" if len(others) == 1 else "are", name_list(others))
    return [numbered[n][0] for n in numbers]
