"""Per-stage wall-clock timing with exclusive nesting.

``with timer.stage("stitch"): ... with timer.stage("engine"): ...`` books the engine's time to
``engine`` only: a nested stage pauses its parent, so stage totals add up to the wall time.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager

STAGE_ORDER = ("read", "resample", "engine", "stitch", "decode", "fusion", "write")


class StageTimer:
    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self.totals: dict[str, float] = defaultdict(float)
        self._stack: list[list] = []  # [name, started_at]

    @contextmanager
    def stage(self, name: str):
        now = self.clock()
        if self._stack:
            parent = self._stack[-1]
            self.totals[parent[0]] += now - parent[1]
        self._stack.append([name, now])
        try:
            yield
        finally:
            end = self.clock()
            top = self._stack.pop()
            self.totals[top[0]] += end - top[1]
            if self._stack:
                self._stack[-1][1] = end

    def add(self, other: "StageTimer") -> None:
        for k, v in other.totals.items():
            self.totals[k] += v

    def ordered(self) -> list[tuple[str, float]]:
        known = [(k, self.totals[k]) for k in STAGE_ORDER if k in self.totals]
        rest = sorted((k, v) for k, v in self.totals.items() if k not in STAGE_ORDER)
        return known + rest

    def summary(self) -> str:
        items = self.ordered()
        total = sum(v for _, v in items) or 1.0
        return ", ".join(f"{k} {v:.2f}s ({100 * v / total:.0f}%)" for k, v in items)
