"""The progress bar (tqdm when it is there and wanted; else a stand-in that shows nothing): every backend's
over tomograms, and the synthetic data's."""

from __future__ import annotations


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, done: int, enabled: bool, desc: str = "tomograms", unit: str = "tomo"):
    """A bar over ``total`` items (tomograms by default) starting at ``done`` (resumed ones), or a stand-in
    without output."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, initial=done, desc=desc, unit=unit)
