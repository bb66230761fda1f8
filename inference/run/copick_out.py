"""``predict --copick-out DIR``: every tomogram's fused points as copick picks, for viewers.

copick's on-disk layout (a filesystem project's overlay root), written without the copick package by
:mod:`inference.io.copick_picks` and :mod:`inference.io.copick_config`:
``DIR/ExperimentRuns/<tomo_id>/Picks/<user_id>_0_<object>.json``, one ``CopickPicksFile`` each:
locations in Å (``x = x_voxel * spacing``, voxel i at ``i * spacing``, copick's convention), the fused
conf as ``score``, identity transforms (no orientation: ``trust_orientation`` false), session ``"0"``
(copick's mark of a tool's picks). Every fused point is written, not only the thresholded one: a viewer
filters by score. ``DIR/copick_config.json`` (a filesystem project over DIR with the object) is written
when DIR has none, so ``copick.from_file(DIR/copick_config.json)`` opens the picks; an existing config
is left alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inference.common.errors import InputError
from inference.io.copick_config import PickableObject, write_config
from inference.io.copick_picks import name_problem, write_picks
from inference.run.results import TomoResult


def check_name(value: str, what: str) -> str:
    """``value`` when it is a copick name we write (``what``: "object" or "user"); InputError otherwise."""
    problem = name_problem(value)
    if problem:
        raise InputError(None, f"copick {what} {problem}",
                         f"pass e.g. --copick-{what.replace('_', '-')} flagellar-motor")
    return value


def write_copick(out_dir: str | Path, results: dict[str, TomoResult], *, object_name: str = "flagellar-motor",
                 user_id: str = "motorfinder", classes=None) -> int:
    """Write the picks of every successful tomogram (failed ones get none); returns how many. ``classes``
    (task particles: the manifest's): one picks file per class per run, its picks at the class's threshold,
    and every class in the config (with its radius); ``object_name`` is then not used."""
    out_dir = Path(out_dir)
    check_name(object_name, "object")
    check_name(user_id, "user")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(out_dir, "exists and is not a folder", "pass a folder for --copick-out")
    n = 0
    for tomo_id, result in sorted(results.items()):
        if result.status != "ok":
            continue
        s = float(result.spacing)
        if classes is None:
            points = {object_name: result.fused}
        else:
            points = {c.name: [p for p in result.picks.get(c.name, []) if p[3] >= c.threshold] for c in classes}
        for name, pts in points.items():
            pts = np.asarray(pts, dtype=np.float64).reshape(-1, 4)
            write_picks(out_dir, tomo_id, name, pts[:, [2, 1, 0]] * s, pts[:, 3], user_id=user_id, voxel_spacing=s)
        n += 1
    config = out_dir / "copick_config.json"
    if not config.exists():
        if classes is None:
            objects = [PickableObject(object_name, is_particle=True, label=1, color=(255, 64, 0, 255), radius=225.0)]
        else:
            objects = [PickableObject(c.name, is_particle=True, label=i + 1, color=_PALETTE[i % len(_PALETTE)],
                                      radius=float(c.radius_A)) for i, c in enumerate(classes)]
        what = "fused candidate points" if classes is None else "particle picks at each class's threshold"
        write_config(config, objects, overlay_root=out_dir, name="motorfinder picks",
                     description=f"{what} written by motorfinder predict --copick-out")
    return n


_PALETTE = ((0, 117, 220, 255), (153, 63, 0, 255), (76, 0, 92, 255), (0, 92, 49, 255), (43, 206, 72, 255),
            (255, 204, 153, 255), (148, 255, 181, 255), (143, 124, 0, 255))
