"""Per-tomogram results on disk: written atomically as they finish, read back to resume.

A run's work folder (:mod:`inference.run.workdir`: layout, lock, keys, ``--restart``) holds ``run.json``
and ``tomograms/<tomo_id>.json``, one :class:`TomoResult` each. :class:`ResultStore` is the folder
for one run, usable by any backend: it checks and locks the folder, and :meth:`ResultStore.load`
returns the results a rerun may reuse: status ``ok`` and the key of the inputs they were computed
from equal to today's. Failed results are retried; results of changed inputs are recomputed;
a corrupt result (not JSON, wrong fields) is recomputed with a WARNING naming its file. Floats go
through JSON's shortest round-trip repr, so a result read back is bit-identical to the one written.
"""

from __future__ import annotations

import json
import logging
import numbers
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np

from inference.common.atomic import write_text_atomic
from inference.common.errors import write_error
from inference.run import workdir

logger = logging.getLogger(__name__)

FORMAT = 1  # of a result file (the run record has its own, workdir.FORMAT)


@dataclass
class TomoResult:
    """What one tomogram produced: every fusion input's candidates (a member, or ``<member>@<tta>``
    with separate TTAs), the fused points, timings (``member_seconds`` per member). Task particles:
    ``picks`` per class (at the class's threshold) and ``candidates`` per class (down to the manifest's
    ``candidate_floor``) instead. Points are ORIGINAL voxel indices with a conf. ``attempts``: the tries of
    the tomogram (a worker that died on it is one); ``read_retries``: the reads again of its source in the
    try that gave this result."""

    tomo_id: str
    status: str  # "ok" | "failed"
    error: str | None = None
    spacing: float | None = None
    spacing_source: str | None = None
    shape: list[int] | None = None
    members: dict[str, list[list[float]]] = field(default_factory=dict)  # input -> [[z, y, x, conf], ...]
    fused: list[list[float]] = field(default_factory=list)             # [[z, y, x, conf], ...]
    seconds: dict[str, float] = field(default_factory=dict)            # stage -> s
    member_seconds: dict[str, float] = field(default_factory=dict)     # member -> s (engine + stitch + decode)
    attempts: int = 1
    degrade: int = 0  # deadline guard level this tomogram ran at (0: full ensemble)
    key: str | None = None        # the key of the inputs it was computed from (workdir.result_key)
    intensity: str | None = None  # how a volume that is not 8-bit was mapped to 0..255
    picks: dict[str, list[list[float]]] = field(default_factory=dict)       # class -> [[z, y, x, conf], ...]
    candidates: dict[str, list[list[float]]] = field(default_factory=dict)  # class -> the same, down to the floor
    read_retries: int = 0  # times its source was read again after a transient failure (inference.io.read_retry)

    @staticmethod
    def points(zyx: np.ndarray, conf: np.ndarray) -> list[list[float]]:
        return [[float(a), float(b), float(c), float(d)] for (a, b, c), d in zip(np.asarray(zyx).reshape(-1, 3),
                                                                                np.asarray(conf).reshape(-1))]

    @staticmethod
    def failed(tomo_id: str, error: str, attempts: int = 1) -> "TomoResult":
        return TomoResult(tomo_id=tomo_id, status="failed", error=error, attempts=attempts)

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, **asdict(self)}, sort_keys=True)

    @staticmethod
    def from_json(text: str) -> "TomoResult":
        """Parse and validate; ValueError saying what is wrong (unknown fields are ignored)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {type(data).__name__}, not an object")
        known = {f.name for f in fields(TomoResult)}
        data = {k: v for k, v in data.items() if k in known}
        problem = _problem(data)
        if problem:
            raise ValueError(problem)
        return TomoResult(**data)


def _num(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _points_ok(v) -> bool:
    return isinstance(v, list) and all(isinstance(p, list) and len(p) == 4 and all(map(_num, p)) for p in v)


def _named_points_ok(v) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and _points_ok(p) for k, p in v.items())


def _problem(d: dict) -> str | None:
    """What makes ``d`` not a TomoResult's fields, or None."""
    if not isinstance(d.get("tomo_id"), str) or not d["tomo_id"]:
        return "no tomo_id"
    if d.get("status") not in ("ok", "failed"):
        return f"status {d.get('status')!r} is not ok or failed"
    if d["status"] == "ok" and not (_num(d.get("spacing")) and d["spacing"] > 0):
        return f"an ok result without a spacing ({d.get('spacing')!r:.40})"
    checks = {
        "error": lambda v: v is None or isinstance(v, str),
        "spacing": lambda v: v is None or (_num(v) and v > 0),
        "spacing_source": lambda v: v is None or isinstance(v, str),
        "shape": lambda v: v is None or (isinstance(v, list) and all(isinstance(n, int) for n in v)),
        "members": _named_points_ok,
        "picks": _named_points_ok,
        "candidates": _named_points_ok,
        "fused": _points_ok,
        "seconds": lambda v: isinstance(v, dict) and all(map(_num, v.values())),
        "member_seconds": lambda v: isinstance(v, dict) and all(map(_num, v.values())),
        "attempts": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "degrade": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "read_retries": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "key": lambda v: v is None or isinstance(v, str),
        "intensity": lambda v: v is None or isinstance(v, str),
    }
    for name, ok in checks.items():
        if name in d and not ok(d[name]):
            return f"field {name!r} is {d[name]!r:.60}"
    return None


class ResultStore:
    """The work folder of one run: checked (not another tool's folder), locked, cleaned on ``restart``.

    ``key`` is the options key (:func:`inference.run.workdir.options_key`). Call :meth:`close` at the end (it
    releases the lock; the kernel does it when the process dies).
    """

    def __init__(self, work_dir: str | Path, key: str, *, restart: bool = False):
        self.dir = Path(work_dir)
        self.key = key
        self.retrying: list[str] = []   # set by load(): failed before, run again
        self.stale: list[str] = []      # computed from other inputs, run again
        self.corrupt: list[str] = []    # unreadable result files, run again
        workdir.check_folder(self.dir, restart)
        self.lock = workdir.RunLock(self.dir)
        try:
            if restart:
                removed = workdir.clean(self.dir)
                if removed:  # a fresh folder has nothing to remove: no line
                    logger.info("--restart: removed %d file(s) a run wrote in %s", removed, self.dir)
            try:
                (self.dir / workdir.TOMOGRAMS).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise write_error(self.dir / workdir.TOMOGRAMS, exc, "cannot create the results folder") from None
            workdir.write_record(self.dir, key)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.lock.release()

    def path(self, tomo_id: str) -> Path:
        """``tomograms/<tomo_id>.json``; an id too long for a file name (with the temporary file's extra
        characters) is shortened and made unique with a hash of it."""
        return self.dir / workdir.TOMOGRAMS / f"{workdir.file_stem(tomo_id)}.json"

    def write(self, result: TomoResult) -> None:
        write_text_atomic(self.path(result.tomo_id), result.to_json())

    def load(self, tomo_ids: list[str], key_of: Callable[[str], str] | None = None) -> dict[str, TomoResult]:
        """The stored results a run may reuse: ``ok``, and (with ``key_of``) computed from the inputs
        ``key_of(tomo_id)`` names. The others are listed in :attr:`retrying`, :attr:`stale`, :attr:`corrupt`."""
        out: dict[str, TomoResult] = {}
        self.retrying, self.stale, self.corrupt = [], [], []
        for t in tomo_ids:
            p = self.path(t)
            if not p.exists():
                continue
            try:
                result = TomoResult.from_json(p.read_text())
                if result.tomo_id != t:
                    raise ValueError(f"it is the result of {result.tomo_id!r}")
            except (OSError, ValueError, TypeError, UnicodeDecodeError) as exc:
                logger.warning("%s: corrupt result (%s); %s is computed again", p, " ".join(str(exc).split()), t)
                self.corrupt.append(t)
                continue
            if key_of is not None and result.key != key_of(t):
                self.stale.append(t)
            elif result.status != "ok":
                self.retrying.append(t)
            else:
                out[t] = result
        return out
