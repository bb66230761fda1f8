"""OME-Zarr tomograms, the CryoET Data Portal's format: OME-NGFF 0.4 multiscales on zarr v2, 0.5 on v3.

A ``*.zarr`` folder, or an fsspec URL of one, is one tomogram; its tomo_id is the name without
``.zarr``. The group's metadata (``.zattrs`` for zarr v2; ``zarr.json`` for v3, where 0.5 nests it
under ``ome``) lists the levels of a pyramid, each with a ``scale`` (and optionally a
``translation``) per axis; the axes' ``unit`` (angstrom or nanometer) turns scales into Å.

* Level: 0 by default. ``auto`` picks the coarsest level whose spacing is not coarser than the
  target (the finest spacing a member resamples to) by more than :data:`AUTO_TOLERANCE`: a member
  at 16 Å reads a 16.05 Å level, not the 8.02 Å one below it. With no spacing known it reads 0.
* Spacing: level 0's scale along x, in Å, is the tomogram's spacing (the role of an MRC header: a
  spacing CSV entry still wins, and is level 0's); a level-k voxel is ``scale_k / scale_0``
  level-0 voxels along each axis.
* Coordinates: whichever level is read, the pipeline reports level-0 voxel indices
  (:class:`LevelMap`), so candidates and submissions mean the same grid at every level.
* Reading: only the chosen level, chunk by chunk: zarr decodes each chunk straight into the
  output array (uint8 and float32 stores; other types go through float32 one slab of chunks at a
  time). Time and channel axes are allowed when they have size 1.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.common.errors import InputError
from inference.io.read_retry import is_transient

logger = logging.getLogger(__name__)

#: Å per unit of an axis (OME-NGFF uses UDUNITS-2 names).
UNITS_A = {"angstrom": 1.0, "nanometer": 10.0}
#: ``auto`` accepts a level this much coarser (relative) than the target spacing.
AUTO_TOLERANCE = 0.01
_ZYX = ("z", "y", "x")
_FIX_META = ("write OME-NGFF multiscales metadata: axes z, y, x with a unit (angstrom or nanometer) and one "
             "scale per level (inference.synth.omezarr_write.write_omezarr writes it)")
_FIX_DATA = "re-download or re-write this tomogram"


@dataclass(frozen=True)
class Level:
    """One dataset of the pyramid: its array path and its z, y, x scale and translation (axis units)."""

    path: str
    scale: tuple[float, float, float]
    translation: tuple[float, float, float]


@dataclass(frozen=True)
class LevelMap:
    """Voxel indices of a read level -> level-0 voxel indices, per axis: ``i0 = i * factor + offset``."""

    level: int
    factor: tuple[float, float, float]
    offset: tuple[float, float, float]
    base_shape: tuple[int, int, int]

    def to_base(self, zyx) -> np.ndarray:
        zyx = np.asarray(zyx, dtype=np.float64).reshape(-1, 3)
        return zyx * np.asarray(self.factor) + np.asarray(self.offset)


@dataclass(frozen=True)
class Store:
    """An opened OME-Zarr tomogram: its group, axes (array order) and levels (as listed)."""

    source: str
    group: object
    meta_file: str  # where the metadata lives, for messages
    axes: tuple[str, ...]
    levels: tuple[Level, ...]
    unit_A: tuple[float, float, float] | None  # Å per unit of z, y, x; None: the axes give no unit

    def spacing_A(self, k: int) -> float | None:
        """Level k's spacing along x in Å (None without a unit)."""
        return None if self.unit_A is None else self.levels[k].scale[2] * self.unit_A[2]


def read_omezarr(source: str | Path, *, level: int | str = 0, target_A: float | None = None,
                 spacing_A: float | None = None) -> tuple[np.ndarray, float | None, LevelMap | None]:
    """Read one level of an OME-Zarr tomogram: ((Z, Y, X) uint8/float32, level 0's spacing in Å or
    None, the map to level-0 voxels or None when level 0 is read).

    ``level``: an index or ``"auto"`` (``target_A``: the finest spacing a member needs;
    ``spacing_A``: level 0's spacing when known from elsewhere, the spacing CSV).
    """
    store = open_store(source)
    k = choose_level(store, level, target_A, spacing_A)
    data = read_level(store, k)
    return data, header_spacing(store), level_map(store, k, data.shape)


def _zarr(source):
    try:
        import zarr
    except ImportError:
        raise InputError(source, "reading OME-Zarr needs the zarr package (>= 3), which is not installed",
                         "pip install 'motorfinder[zarr]' (zarr >= 3 needs Python >= 3.11)") from None
    if int(zarr.__version__.split(".")[0]) < 3:
        raise InputError(source, f"reading OME-Zarr needs zarr >= 3; zarr {zarr.__version__} is installed",
                         "pip install -U 'zarr>=3' (Python >= 3.11)")
    return zarr


def open_store(source: str | Path) -> Store:
    """Open the group and parse its multiscales metadata (the first multiscale; nothing is read yet)."""
    from inference.io.listing_file import is_url

    zarr = _zarr(source)
    from zarr.errors import NodeNotFoundError

    where = str(source)
    if not is_url(source) and not Path(source).is_dir():
        what = "does not exist" if not Path(source).exists() else "is a file, not an OME-Zarr folder"
        raise InputError(source, f"OME-Zarr store {what}", "check the path")
    try:
        group = zarr.open_group(where, mode="r")
    except json.JSONDecodeError as exc:
        raise InputError(_bad_json_file(source), f"malformed JSON ({exc.msg}, line {exc.lineno} column {exc.colno})",
                         "repair or re-download the store's metadata") from None
    except NodeNotFoundError:
        raise InputError(source, "not a zarr group (no zarr.json or .zgroup)", "point at the OME-Zarr folder that "
                         "holds .zattrs/zarr.json and the level arrays 0, 1, ...") from None
    except ImportError as exc:
        raise InputError(source, f"cannot open the URL ({exc})",
                         "pip install fsspec (plus s3fs for s3://, gcsfs for gs://)") from None
    except (OSError, ValueError) as exc:
        if is_transient(exc):  # the read may pass when tried again (inference.io.read_retry)
            raise
        raise InputError(source, f"cannot open the zarr group ({type(exc).__name__}: {exc})",
                         "check the path or URL") from None
    meta_file = "zarr.json" if group.metadata.zarr_format == 3 else ".zattrs"
    meta_path = f"{where.rstrip('/')}/{meta_file}"
    attrs = group.attrs.asdict()
    multiscales = attrs.get("multiscales")
    if multiscales is None and isinstance(attrs.get("ome"), dict):
        multiscales = attrs["ome"].get("multiscales")
    if multiscales is None:
        missing = (meta_file == ".zattrs" and not attrs and not is_url(source)
                   and not (Path(source) / ".zattrs").exists())
        problem = ".zattrs is missing" if missing else f"no OME-NGFF 'multiscales' metadata in {meta_file}"
        raise InputError(meta_path, problem, _FIX_META)
    if not isinstance(multiscales, list) or not multiscales or not isinstance(multiscales[0], dict):
        raise InputError(meta_path, "'multiscales' is not a list of multiscale objects", _FIX_META)
    ms = multiscales[0]
    axes, units = _axes(ms.get("axes"), meta_path)
    levels = _levels(ms, len(axes), axes, meta_path)
    return Store(source=where, group=group, meta_file=meta_path, axes=axes, levels=levels, unit_A=units)


def _bad_json_file(source) -> str:
    """The metadata file that does not parse (local stores), else the store."""
    from inference.io.listing_file import is_url

    if not is_url(source):
        for name in ("zarr.json", ".zgroup", ".zattrs"):
            p = Path(source) / name
            if p.is_file():
                try:
                    json.loads(p.read_text())
                except (ValueError, OSError):
                    return str(p)
    return f"{source} (zarr.json, .zgroup or .zattrs)"


def _axes(raw, meta_path: str) -> tuple[tuple[str, ...], tuple[float, float, float] | None]:
    """Axis names (lower case, array order) and Å per unit of z, y, x."""
    if not isinstance(raw, list) or not 3 <= len(raw) <= 5:
        raise InputError(meta_path, f"multiscales[0].axes must list 3 to 5 axes, got {raw!r}", _FIX_META)
    names, units, kinds = [], {}, {}
    for a in raw:
        entry = {"name": a} if isinstance(a, str) else a  # OME-NGFF 0.3 lists bare names
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InputError(meta_path, f"axis {a!r} has no name", _FIX_META)
        name = entry["name"].lower()
        names.append(name)
        kinds[name] = entry.get("type")
        units[name] = entry.get("unit")
    if sorted(n for n in names if n in _ZYX) != sorted(_ZYX) or len(set(names)) != len(names):
        raise InputError(meta_path, f"axes are {names}; a tomogram needs the spatial axes z, y and x once each",
                         _FIX_META)
    for n in _ZYX:
        if kinds[n] not in (None, "space"):
            raise InputError(meta_path, f"axis {n!r} has type {kinds[n]!r}, not 'space'", _FIX_META)
    given = [n for n in _ZYX if units[n] is not None]
    if not given:
        return tuple(names), None
    if len(given) < 3:
        none = ", ".join(n for n in _ZYX if n not in given)
        raise InputError(meta_path, f"axes {', '.join(given)} have a unit but {none} has none", _FIX_META)
    factors = []
    for n in _ZYX:
        unit = str(units[n]).lower()
        if unit not in UNITS_A:
            raise InputError(meta_path, f"axis {n!r} has unit {units[n]!r}; the reader knows "
                             f"{' and '.join(UNITS_A)}", "write the scale in angstrom or nanometer")
        factors.append(UNITS_A[unit])
    return tuple(names), tuple(factors)


def _transforms(raw, ndim: int, what: str, meta_path: str, required: bool):
    """(scale, translation) of a coordinateTransformations list, each of ``ndim`` numbers."""
    if raw is None and not required:
        return [1.0] * ndim, [0.0] * ndim
    if not isinstance(raw, list):
        raise InputError(meta_path, f"{what}.coordinateTransformations is missing or not a list", _FIX_META)
    found = {}
    for t in raw:
        kind = t.get("type") if isinstance(t, dict) else None
        if kind not in ("scale", "translation") or kind in found:
            raise InputError(meta_path, f"{what}.coordinateTransformations: expected one 'scale' and at most one "
                             f"'translation', got {raw!r}", _FIX_META)
        values = t.get(kind)
        if (not isinstance(values, list) or len(values) != ndim
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
                or (kind == "scale" and not all(v > 0 for v in values))):
            need = "positive numbers" if kind == "scale" else "numbers"
            raise InputError(meta_path, f"{what} {kind} must be {ndim} {need} (one per axis), got {values!r}",
                             _FIX_META)
        found[kind] = [float(v) for v in values]
    if "scale" not in found:
        raise InputError(meta_path, f"{what}.coordinateTransformations has no 'scale'", _FIX_META)
    return found["scale"], found.get("translation", [0.0] * ndim)


def _levels(ms: dict, ndim: int, axes: tuple[str, ...], meta_path: str) -> tuple[Level, ...]:
    datasets = ms.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise InputError(meta_path, "multiscales[0].datasets lists no levels", _FIX_META)
    top_scale, top_shift = _transforms(ms.get("coordinateTransformations"), ndim, "multiscales[0]", meta_path,
                                       required=False)
    pick = [axes.index(n) for n in _ZYX]
    levels = []
    for i, d in enumerate(datasets):
        if not isinstance(d, dict) or not isinstance(d.get("path"), str) or not d["path"]:
            raise InputError(meta_path, f"datasets[{i}] has no path", _FIX_META)
        scale, shift = _transforms(d.get("coordinateTransformations"), ndim, f"datasets[{i}]", meta_path, required=True)
        # the multiscale's own transformations apply after the dataset's
        scale = [s * t for s, t in zip(scale, top_scale)]
        shift = [v * t + u for v, t, u in zip(shift, top_scale, top_shift)]
        levels.append(Level(path=d["path"], scale=tuple(scale[j] for j in pick),
                            translation=tuple(shift[j] for j in pick)))
    return tuple(levels)


def header_spacing(store: Store) -> float | None:
    """Level 0's spacing in Å along x (anisotropic voxels: warned, x used, as for MRC headers)."""
    if store.unit_A is None:
        logger.warning("%s: the axes give no unit, so no voxel spacing; the spacing CSV or the default applies",
                       store.meta_file)
        return None
    z, y, x = (s * u for s, u in zip(store.levels[0].scale, store.unit_A))
    if any(not math.isclose(x, v, rel_tol=1e-3) for v in (y, z)):
        logger.warning("%s: anisotropic voxels x=%.4g y=%.4g z=%.4g Å; using x", store.source, x, y, z)
    return x


def choose_level(store: Store, level: int | str, target_A: float | None, spacing_A: float | None) -> int:
    """The level to read: ``level`` itself, or for ``"auto"`` see the module docstring."""
    n = len(store.levels)
    if level == "auto":
        base = spacing_A if spacing_A is not None else store.spacing_A(0)
        if base is None or target_A is None:
            logger.warning("%s: no voxel spacing known for --zarr-level auto; reading level 0", store.source)
            return 0
        x0 = store.levels[0].scale[2]
        spacing = [base * lv.scale[2] / x0 for lv in store.levels]
        fit = [k for k in range(n) if spacing[k] <= target_A * (1 + AUTO_TOLERANCE)]
        k = max(fit, key=spacing.__getitem__) if fit else min(range(n), key=spacing.__getitem__)
        logger.debug("%s: level %d of %d (%.4g Å) for a %.4g Å target", store.source, k, n, spacing[k], target_A)
        return k
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < n:
        raise InputError(store.source, f"has {n} level(s) (0..{n - 1}); level {level!r} was asked",
                         f"pass --zarr-level 0..{n - 1} or auto")
    return level


def read_level(store: Store, k: int) -> np.ndarray:
    """Level k as a (Z, Y, X) array: uint8 stays uint8, everything else becomes float32."""
    from zarr.buffer import default_buffer_prototype

    from inference.io.memory import allocate

    lv = store.levels[k]
    try:
        arr = store.group[lv.path]
    except KeyError:
        raise InputError(store.source, f"level {k} (array {lv.path!r}) is listed in {store.meta_file} but missing",
                         _FIX_DATA) from None
    if not hasattr(arr, "dtype") or arr.ndim != len(store.axes):
        got = f"{arr.ndim} dimensions" if hasattr(arr, "ndim") else "a group"
        raise InputError(store.source, f"level {k} (array {lv.path!r}) is {got}, but the axes name "
                         f"{len(store.axes)}", _FIX_DATA)
    selection = []
    for name, size in zip(store.axes, arr.shape):
        if name in _ZYX:
            selection.append(slice(None))
        elif size != 1:
            raise InputError(store.source, f"axis {name!r} has {size} entries; a tomogram has one",
                             "store one volume per OME-Zarr (time and channel axes of size 1)")
        else:
            selection.append(0)
    order = [n for n in store.axes if n in _ZYX]  # spatial axes in array order
    shape = tuple(int(arr.shape[store.axes.index(n)]) for n in _ZYX)
    if 0 in shape:
        raise InputError(store.source, f"level {k} is empty (shape {shape})", _FIX_DATA)
    if np.dtype(arr.dtype).kind not in "biuf":
        raise InputError(store.source, f"level {k} has unsupported type {arr.dtype}", "store the tomogram as numbers")
    dtype = np.dtype(np.uint8) if np.dtype(arr.dtype) == np.uint8 else np.dtype(np.float32)
    out = allocate(shape, dtype, Path(store.source))
    view = out.transpose([_ZYX.index(n) for n in order])  # the output in the array's axis order
    try:
        if np.dtype(arr.dtype) == dtype:  # chunks decoded by zarr straight into the output
            arr.get_basic_selection(tuple(selection), out=default_buffer_prototype().nd_buffer.from_numpy_array(view))
        else:  # converted one slab of chunks (along the first spatial axis) at a time
            first = store.axes.index(order[0])
            step = int(arr.chunks[first])
            for start in range(0, view.shape[0], step):
                stop = min(view.shape[0], start + step)
                sel = list(selection)
                sel[first] = slice(start, stop)
                view[start:stop] = arr.get_basic_selection(tuple(sel))
    except (OSError, ValueError, RuntimeError) as exc:
        if is_transient(exc):  # the read may pass when tried again (inference.io.read_retry)
            raise
        raise InputError(store.source, f"cannot read level {k} ({type(exc).__name__}: {exc})", _FIX_DATA) from None
    return out


def level_map(store: Store, k: int, shape_read: tuple[int, ...]) -> LevelMap | None:
    """How level k's voxels sit on level 0's grid; None for level 0 itself."""
    if k == 0:
        return None
    base, lv = store.levels[0], store.levels[k]
    factor = tuple(s / s0 for s, s0 in zip(lv.scale, base.scale))
    offset = tuple((t - t0) / s0 for t, t0, s0 in zip(lv.translation, base.translation, base.scale))
    if any(not math.isclose(factor[2], f, rel_tol=1e-3) for f in factor[:2]):
        logger.warning("%s: level %d is scaled %.4g x %.4g x %.4g (z, y, x) from level 0: anisotropic voxels; the "
                       "pipeline uses x", store.source, k, *factor)
    try:
        arr0 = store.group[base.path]
    except KeyError:
        raise InputError(store.source, f"level 0 (array {base.path!r}) is listed in {store.meta_file} but missing",
                         _FIX_DATA) from None
    base_shape = tuple(int(arr0.shape[store.axes.index(n)]) for n in _ZYX)
    logger.debug("%s: level %d %s -> level 0 %s (factor %s, offset %s)", store.source, k, tuple(shape_read),
                 base_shape, factor, offset)
    return LevelMap(level=k, factor=factor, offset=offset, base_shape=base_shape)
