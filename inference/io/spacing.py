"""Voxel spacing (Å) per tomogram: a spacing CSV first, then the MRC header, then the default.

:func:`resolve_spacing` picks, per tomogram, the first that applies: the spacing CSV
(:func:`load_spacing_table`), the MRC header, the default of 13.1 Å (the spacing the BYU test set
is assumed to have). Every spacing must lie in :data:`SPACING_RANGE_A` (1-100 Å): a CSV row or a
default outside it is an :class:`InputError` before any work; a header outside it is ignored with a
WARNING (many writers put placeholders there).
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path

from inference.common.errors import InputError

logger = logging.getLogger(__name__)

#: Spacing (Å) used when neither a CSV nor an MRC header gives one: the BYU test-set assumption.
DEFAULT_SPACING_A = 13.1
#: Spacings (Å) a tomogram may have; anything else is a unit mistake (nm, m) or a placeholder.
SPACING_RANGE_A = (1.0, 100.0)


def spacing_problem(value) -> str | None:
    """Why ``value`` is not a usable voxel spacing in Å, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"{value!r} is not a number"
    lo, hi = SPACING_RANGE_A
    if not lo <= value <= hi:
        return f"{value:g} Å is outside {lo:g}-{hi:g} Å"
    return None


def check_spacing(value, what: str, path=None, fix: str = "pass the spacing in Å, e.g. 13.1") -> float:
    """``value`` as a float, or an InputError saying ``what`` is not a usable spacing."""
    problem = spacing_problem(value)
    if problem:
        raise InputError(path, f"{what}: {problem}", fix)
    return float(value)


def _norm_column(name: str) -> str:
    return re.sub(r"[\s_]+", "_", str(name).strip().lower())


def load_spacing_table(csv_path: str | Path) -> dict[str, float]:
    """Voxel spacing (Å) per tomo_id from a CSV.

    Accepted: the competition's ``train_labels.csv`` (columns ``tomo_id`` and ``Voxel spacing``,
    one row per motor, so several rows per tomogram) or a file with columns
    ``tomo_id,voxel_spacing``. Column names are matched ignoring case, spaces and underscores.
    Rows of one tomo_id must agree.
    """
    import pandas as pd  # imported here so importing this module stays cheap

    csv_path = Path(csv_path)
    fix = "give a CSV with columns tomo_id,voxel_spacing (one row per tomogram, spacing in Å)"
    if not csv_path.is_file():
        raise InputError(csv_path, "spacing CSV does not exist" if not csv_path.exists() else
                         "spacing CSV is not a file", "check the path")
    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise InputError(csv_path, "spacing CSV is empty", fix) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(csv_path, f"cannot parse spacing CSV ({str(exc).strip()})", fix) from None
    except OSError as exc:
        raise InputError(csv_path, f"cannot read spacing CSV ({exc.strerror or exc})", fix) from None

    columns = {_norm_column(c): c for c in frame.columns}
    id_col, spacing_col = columns.get("tomo_id"), columns.get("voxel_spacing")
    missing = [name for name, col in (("tomo_id", id_col), ("voxel_spacing", spacing_col)) if col is None]
    if missing:
        raise InputError(csv_path, f"spacing CSV lacks column(s) {', '.join(missing)} "
                         f"(has: {', '.join(map(str, frame.columns))})", fix)
    if frame.empty:
        raise InputError(csv_path, "spacing CSV has no rows", fix)

    table: dict[str, float] = {}
    first_line: dict[str, int] = {}
    for index, (tomo_id, raw) in enumerate(zip(frame[id_col], frame[spacing_col])):
        line = index + 2  # 1-based, after the header line
        tomo_id = str(tomo_id).strip()
        if not tomo_id:
            raise InputError(csv_path, f"line {line}: empty tomo_id", fix)
        try:
            spacing = float(str(raw).strip())
        except ValueError:
            raise InputError(csv_path, f"line {line} ({tomo_id}): voxel spacing {raw!r} is not a number", fix) from None
        if not math.isfinite(spacing) or spacing <= 0:
            raise InputError(csv_path, f"line {line} ({tomo_id}): voxel spacing {raw!r} is not a positive number",
                             fix)
        problem = spacing_problem(spacing)
        if problem:
            raise InputError(csv_path, f"line {line} ({tomo_id}): voxel spacing {problem}",
                             "give spacings in Å (not nm), one row per tomogram")
        if tomo_id in table and not math.isclose(table[tomo_id], spacing, rel_tol=1e-6):
            raise InputError(
                csv_path,
                f"line {line} ({tomo_id}): voxel spacing {spacing:g} disagrees with {table[tomo_id]:g} "
                f"on line {first_line[tomo_id]}",
                "give one spacing per tomogram",
            )
        if tomo_id not in table:
            table[tomo_id] = spacing
            first_line[tomo_id] = line
    logger.info("spacing CSV %s: %d tomograms", csv_path, len(table))
    return table


def resolve_spacing(
    tomo_id: str,
    *,
    table: dict[str, float] | None,
    header_spacing: float | None,
    default: float = DEFAULT_SPACING_A,
    log: bool = True,
) -> tuple[float, str]:
    """Voxel spacing (Å) of a tomogram and where it came from: "csv", "header" or "default".

    The first that applies wins: the spacing CSV, the MRC header, ``default`` (13.1 Å). ``log=False``: a CSV
    that disagrees with the header is a debug line, not a warning (a check before the run, which reads the
    tomogram later and warns then).
    """
    check_spacing(default, "default voxel spacing", fix="pass a spacing in Å such as 13.1")
    if table is not None and tomo_id in table:
        spacing, source = table[tomo_id], "csv"
        if header_spacing is not None and not math.isclose(spacing, header_spacing, rel_tol=0.01):
            logger.log(logging.WARNING if log else logging.DEBUG,
                       "%s: spacing CSV says %.4g Å but the MRC header says %.4g Å; using the CSV",
                       tomo_id, spacing, header_spacing)
    elif header_spacing is not None and spacing_problem(header_spacing) is None:
        spacing, source = float(header_spacing), "header"
    else:
        spacing, source = float(default), "default"
    if table is not None and source != "csv":
        logger.debug("%s: not in the spacing CSV", tomo_id)
    logger.debug("%s: voxel spacing %.4g Å (from %s)", tomo_id, spacing, source)
    return spacing, source
