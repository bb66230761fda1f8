"""Per-tomogram results on disk: written atomically as they finish, read back to resume.

A run's work folder holds ``run.json`` (what the results depend on: manifest, model files,
spacing settings) and ``tomograms/<tomo_id>.json``, one :class:`TomoResult` each. A rerun with the
same work folder and the same run key skips every tomogram that has a result; a different key is
refused (``--restart`` clears the folder). Floats go through JSON's shortest round-trip repr, so
a result read back is bit-identical to the one written.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from inference.errors import InputError

FORMAT = 1


@dataclass
class TomoResult:
    """What one tomogram produced: every fusion input's candidates (a member, or ``<member>@<tta>``
    with separate TTAs), the fused points, timings (``member_seconds`` per member)."""

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
        data = json.loads(text)
        data.pop("format", None)
        return TomoResult(**data)


def run_key(manifest_path: Path, model_paths: list[Path], spacing_csv: Path | None, default_spacing: float) -> str:
    """A digest of everything a stored result depends on (model files by size and mtime)."""
    h = hashlib.sha256()
    h.update(Path(manifest_path).read_bytes())
    for p in model_paths:
        st = Path(p).stat()
        h.update(f"{Path(p).name}:{st.st_size}:{st.st_mtime_ns}".encode())
    if spacing_csv is not None:
        h.update(Path(spacing_csv).read_bytes())
    h.update(repr(float(default_spacing)).encode())
    return h.hexdigest()


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class ResultStore:
    """The work folder of one run."""

    def __init__(self, work_dir: str | Path, key: str, *, restart: bool = False):
        self.dir = Path(work_dir)
        self.key = key
        meta = self.dir / "run.json"
        if restart and self.dir.exists():
            shutil.rmtree(self.dir / "tomograms", ignore_errors=True)
            meta.unlink(missing_ok=True)
        if meta.exists():
            try:
                stored = json.loads(meta.read_text()).get("key")
            except (OSError, json.JSONDecodeError) as exc:
                raise InputError(meta, f"unreadable run record ({exc})", "pass --restart to start over") from None
            if stored != key:
                raise InputError(self.dir, "this work folder holds results of a different run (manifest, models "
                                 "or spacing changed)", "pass --restart to discard them, or another --work-dir")
        (self.dir / "tomograms").mkdir(parents=True, exist_ok=True)
        write_text_atomic(meta, json.dumps({"format": FORMAT, "key": key}))

    def path(self, tomo_id: str) -> Path:
        return self.dir / "tomograms" / f"{tomo_id}.json"

    def write(self, result: TomoResult) -> None:
        write_text_atomic(self.path(result.tomo_id), result.to_json())

    def load(self, tomo_ids: list[str]) -> dict[str, TomoResult]:
        """Stored results of these tomograms; a half-written or unreadable file counts as absent."""
        out = {}
        for t in tomo_ids:
            p = self.path(t)
            if p.exists():
                try:
                    out[t] = TomoResult.from_json(p.read_text())
                except (OSError, ValueError, TypeError):
                    continue
        return out
