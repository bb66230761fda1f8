"""Errors of the export itself (as opposed to bad user input, which is :class:`inference.common.errors.InputError`)."""

from __future__ import annotations


class ExportError(RuntimeError):
    """The export cannot be done or verified: parity above tolerance, wrong output grid, a missing
    optional dependency (timm, TensorRT), a TensorRT build failure. The message says what to do."""
