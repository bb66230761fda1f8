"""The tomogram progress bar (tqdm when it is there and wanted; else nothing), for every backend."""

from __future__ import annotations


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, done: int, enabled: bool):
    """A bar over ``total`` tomograms starting at ``done`` (resumed ones), or a stand-in without output."""
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, initial=done, desc="tomograms", unit="tomo")
