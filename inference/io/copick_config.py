"""copick project configs (the JSON ``copick.from_file`` opens), read and written without the copick package.

A filesystem config (copick/copick ``src/copick/impl/filesystem.py``, ``CopickConfigFSSpec``; the
fields of ``CopickConfig`` and ``PickableObject`` in ``src/copick/models.py``)::

    {"config_type": "filesystem", "name": str, "description": str, "version": str,
     "pickable_objects": [{"name", "is_particle", "label", "color", "emdb_id", "pdb_id", "identifier",
                           "map_threshold", "radius"}, ...],
     "overlay_root": URL, "static_root": URL | null, "overlay_fs_args": {...}, "static_fs_args": {...}}

``config_type`` defaults to ``filesystem`` (copick warns and does the same); the portal and croissant
types are refused. Roots follow copick, which hands them to fsspec: ``local://`` or ``file://`` URLs or
plain paths, ``~`` expanded, a relative path relative to the *current folder* (fsspec's
``make_path_posix``), not to the config's; another protocol (``s3://``, ``ssh://``) is refused. No
``static_root``: the overlay root holds the static data too (``CopickRootFSSpec``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from inference.common.atomic import write_text_atomic
from inference.common.errors import InputError
from inference.io.json_file import read_json

_FIX = ("write a copick filesystem config: {\"config_type\": \"filesystem\", \"overlay_root\": \"local:///...\", "
        "\"static_root\": \"local:///...\", \"pickable_objects\": [...]}")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_LOCAL_PREFIXES = ("local://", "file://", "local:", "file:")


@dataclass(frozen=True)
class PickableObject:
    """copick's ``PickableObject``, its fields and defaults: ``label`` (unique, not 0), ``color`` RGBA 0..255,
    ``radius`` in Å."""

    name: str
    is_particle: bool = True
    label: int | None = 1
    color: tuple[int, int, int, int] | None = (100, 100, 100, 255)
    emdb_id: str | None = None
    pdb_id: str | None = None
    identifier: str | None = None
    map_threshold: float | None = None
    radius: float | None = None

    def as_json(self) -> dict:
        """The object as copick's ``model_dump`` writes it (every field, in the model's order)."""
        out = asdict(self)
        out["color"] = None if self.color is None else list(self.color)
        return out


@dataclass(frozen=True)
class CopickConfig:
    """A filesystem config: its file, the roots resolved to folders, the pickable objects."""

    path: Path
    name: str | None
    overlay_root: Path
    static_root: Path | None
    objects: tuple[PickableObject, ...]


def root_folder(url, path: Path, key: str) -> Path:
    """The folder of a config's root URL, as copick (fsspec) resolves it; InputError for other file systems."""
    if not isinstance(url, str) or not url.strip():
        raise InputError(path, f"{key!r} is {json.dumps(url)}, not a path or local:// URL", _FIX)
    text = url.strip()
    for prefix in _LOCAL_PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix):]
            break
    else:
        scheme = _SCHEME.match(text)
        if scheme:
            raise InputError(path, f"{key!r} is on {scheme.group(1)}://, which is not read here",
                             "copy the project to a local folder and point the root at it (local:///path)")
    return Path(os.path.abspath(os.path.expanduser(text)))


def _object(raw, i: int, path: Path) -> PickableObject:
    where = f"pickable_objects[{i}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise InputError(path, f"{where} has no 'name'", _FIX)
    known = set(PickableObject.__dataclass_fields__)
    values = {k: v for k, v in raw.items() if k in known}
    if "go_id" in raw and "identifier" not in raw:  # copick's alias
        values["identifier"] = raw["go_id"]
    if "color" in values and values["color"] is not None:
        color = values["color"]
        if not isinstance(color, list) or len(color) != 4 or not all(
                isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in color):
            raise InputError(path, f"{where}.color is {json.dumps(color)}, not 4 integers 0..255 (RGBA)", _FIX)
        values["color"] = tuple(color)
    radius = values.get("radius")
    if radius is not None and (isinstance(radius, bool) or not isinstance(radius, (int, float)) or radius <= 0):
        raise InputError(path, f"{where}.radius is {json.dumps(radius)}, not a positive number (Å)", _FIX)
    return PickableObject(**values)


def parse_config(doc, path: str | Path) -> CopickConfig:
    """Validate a decoded config (``path`` names it in errors and is the config's file)."""
    path = Path(path)
    if not isinstance(doc, dict):
        raise InputError(path, "a copick config holds one JSON object", _FIX)
    kind = doc.get("config_type", "filesystem")
    if kind != "filesystem":
        raise InputError(path, f"config_type {kind!r}: only 'filesystem' projects are read here",
                         "download the runs to a local copick project and pass its filesystem config")
    if doc.get("overlay_root") is None:
        raise InputError(path, "no 'overlay_root' (copick's filesystem config requires it)", _FIX)
    overlay = root_folder(doc["overlay_root"], path, "overlay_root")
    static = None if doc.get("static_root") is None else root_folder(doc["static_root"], path, "static_root")
    objects = doc.get("pickable_objects") or []
    if not isinstance(objects, list):
        raise InputError(path, "'pickable_objects' is not a list", _FIX)
    name = doc.get("name")
    return CopickConfig(path=path, name=name if isinstance(name, str) else None, overlay_root=overlay,
                        static_root=static, objects=tuple(_object(o, i, path) for i, o in enumerate(objects)))


def read_config(path: str | Path) -> CopickConfig:
    """Read and validate a copick filesystem config file."""
    path = Path(path)
    doc = read_json(path, "copick config", _FIX)
    return parse_config(doc, path)


def looks_like_config(path: str | Path) -> bool:
    """A file whose first non-blank character is ``{`` (a JSON object): what a copick config is."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with path.open("rb") as fh:
            head = fh.read(4096).lstrip()
    except OSError:
        return False
    return head.startswith(b"{")


def config_document(objects, *, overlay_root: str | Path, static_root: str | Path | None = None,
                    name: str = "motorfinder", description: str = "", version: str = "1.0.0") -> dict:
    """A filesystem config over ``overlay_root`` (and ``static_root``), roots written as absolute
    ``local://`` URLs, the overlay with ``auto_mkdir`` (copick's ``new_config`` does the same)."""
    doc = {"config_type": "filesystem", "name": name, "description": description, "version": version,
           "pickable_objects": [o.as_json() for o in objects],
           "overlay_root": f"local://{Path(overlay_root).resolve()}", "overlay_fs_args": {"auto_mkdir": True}}
    if static_root is not None:
        doc["static_root"] = f"local://{Path(static_root).resolve()}"
    return doc


def write_config(path: str | Path, objects, *, overlay_root: str | Path, static_root: str | Path | None = None,
                 name: str = "motorfinder", description: str = "", version: str = "1.0.0") -> Path:
    """Write :func:`config_document` to ``path`` (atomically, indented); returns the path.

    ``objects``: :class:`PickableObject` s with unique names and labels (ValueError otherwise).
    """
    objects = tuple(objects)
    names = [o.name for o in objects]
    labels = [o.label for o in objects if o.label is not None]
    if len(set(names)) != len(names) or len(set(labels)) != len(labels) or 0 in labels:
        raise ValueError(f"pickable objects need unique names and unique labels other than 0: {objects}")
    doc = config_document(objects, overlay_root=overlay_root, static_root=static_root, name=name,
                          description=description, version=version)
    write_text_atomic(Path(path), json.dumps(doc, indent=2))
    return Path(path)
