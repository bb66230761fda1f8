"""Helpers of the Kaggle builder's tests: ids, configs, stand-in wheels, a wheel repacked from this environment."""

from __future__ import annotations

import sys
import zipfile
from importlib.metadata import distribution
from pathlib import Path

from kaggle_builder.config import BuildConfig
from kaggle_builder.wheels import ShippedWheel

DATASET_ID = "alice/motor-offline"
KERNEL_ID = "alice/motor-submission"


def cfg(manifest: Path, out: Path, **kw) -> BuildConfig:
    return BuildConfig(manifest=manifest, out=out, dataset_id=DATASET_ID, kernel_id=KERNEL_ID, **kw)


def fake_wheel(dest: Path) -> Path:
    """A stand-in for the package wheel (tests that never install it)."""
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "motorfinder-0.1.0-py3-none-any.whl"
    path.write_bytes(b"not a real wheel")
    return path


def fake_source(tmp: Path, per_group: dict[str, list[str]] | None = None):
    """A wheel source shipping stand-in files: group -> project names (default: what the real one ships)."""
    per_group = per_group or {"motorfinder": ["mrcfile", "simplejpeg"], "onnxruntime-gpu": ["onnxruntime-gpu"]}
    calls = []

    def source(package_wheel, groups):
        calls.append((Path(package_wheel).name, [g.name for g in groups]))
        out = []
        for group, names in per_group.items():
            for name in names:
                path = tmp / f"{name.replace('-', '_')}-1.0-py3-none-any.whl"
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(b"wheel")
                out.append(ShippedWheel(group, name, "1.0", path))
        return out

    source.calls = calls
    return source


def repack(name: str, dest: Path) -> Path:
    """A wheel of the installed distribution ``name`` (its files and dist-info, as installed): a real,
    installable wheel without network. Pure-Python distributions only."""
    dist = distribution(name)
    site = Path(dist.locate_file(""))
    files = [f for f in dist.files if not str(f).startswith("..") and not str(f).endswith(".pyc")]
    wheel_meta = next(f for f in files if str(f).endswith(".dist-info/WHEEL")).read_text()
    tags = [ln.split(":", 1)[1].strip() for ln in wheel_meta.splitlines() if ln.startswith("Tag:")]
    tag = next(t for t in tags if t.startswith("py3"))
    assert tag.endswith("none-any"), f"{name} is not pure Python ({tag})"
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in files:
            if (site / f).is_file():
                zf.write(site / f, str(f))
    return path


def install_fake_python(tmp_path: Path, monkeypatch, script: str) -> Path:
    """``script`` (a stand-in interpreter's source with ``{python}`` for its shebang) as the notebook's
    ``MOTORFINDER_PYTHON``, on the CPU; returns the log it appends each command line to (``FAKE_LOG``)."""
    fake = tmp_path / "python"
    fake.write_text(script.format(python=sys.executable))
    fake.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("MOTORFINDER_PYTHON", str(fake))
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("MOTORFINDER_DEVICE", "cpu")
    return log
