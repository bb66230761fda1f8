"""The export's heavy libraries, imported on demand; a failure to load any of them is one
:class:`~export.errors.ExportError` line saying what failed and how to fix it, never a traceback.

torch, onnx and onnxruntime serve every member; timm (which imports torchvision) the 2d ones. A
torchvision built for another torch fails at import with a RuntimeError ("operator torchvision::nms
does not exist"), a broken CUDA wheel with an OSError: both are caught here with ImportError.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from export.errors import ExportError

LOAD_ERRORS = (ImportError, OSError, RuntimeError)
FIX = ("install the [export] extra, whose torch and torchvision load together: pip install -e '.[export]' "
       "(export/README.md says what it resolves to)")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def _torch_version() -> str:
    try:
        import torch
    except LOAD_ERRORS:
        return "torch not loadable"
    return f"torch {torch.__version__}"


def import_module(name: str, what: str) -> ModuleType:
    """``importlib.import_module(name)``; ``what`` says who needs it (in the error)."""
    try:
        return importlib.import_module(name)
    except LOAD_ERRORS as exc:
        raise ExportError(f"{what} cannot be loaded ({_describe(exc)}). Fix: {FIX}") from None


def import_timm() -> ModuleType:
    """``import timm`` (and torchvision inside it) for the 2d members."""
    try:
        return importlib.import_module("timm")
    except LOAD_ERRORS as exc:
        raise ExportError(f"2d members need timm, which imports torchvision, and that failed ({_describe(exc)}; "
                          f"{_torch_version()}). Fix: {FIX}") from None
