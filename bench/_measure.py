"""How every benchmark measures: variants interleaved round by round, repeated after a warm-up, each
run's wall and CPU time and the machine's load recorded; medians with min and max; a ratio is the
median of per-round ratios.

    runs = measure({"ours": ours, "monai": monai}, repeats=7)
    runs.wall("ours")                       # Spread(median, lo, hi, n) of seconds
    runs.speedup("monai", "ours")           # monai's time / ours, per round: Spread of ratios

Round ``r`` runs the variants in the order rotated by ``r`` (``a b c``, ``b c a``, ``c a b``, ...): a
slow phase of a shared machine falls on every variant alike, and no variant always runs first.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence


@dataclass(frozen=True)
class Spread:
    """The median of ``n`` values with their min (``lo``) and max (``hi``)."""

    median: float
    lo: float
    hi: float
    n: int

    def fmt(self, digits: int = 2, suffix: str = "") -> str:
        """``1.23 (1.10-1.31)`` (with ``suffix`` after each number: ``1.23x (1.10x-1.31x)``)."""
        f = f"{{:.{digits}f}}{suffix}"
        return f"{f.format(self.median)} ({f.format(self.lo)}-{f.format(self.hi)})"

    def scaled(self, factor: float) -> "Spread":
        """Every value times ``factor`` (seconds -> ms per item, ...)."""
        return Spread(self.median * factor, self.lo * factor, self.hi * factor, self.n)

    def contains(self, value: float) -> bool:
        return self.lo <= value <= self.hi

    def as_dict(self) -> dict:
        return {"median": self.median, "min": self.lo, "max": self.hi, "n": self.n}


def spread(values: Sequence[float]) -> Spread:
    """Median, min and max of ``values`` (at least one)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("spread of no values")
    return Spread(statistics.median(values), min(values), max(values), len(values))


def exact(value: float) -> Spread:
    """A value that does not vary (a count, an F2, a FLOPs figure): median = min = max."""
    return Spread(float(value), float(value), float(value), 1)


def ratios(num: Sequence[float], den: Sequence[float]) -> Spread:
    """The median (min, max) of the per-round ratios ``num[i] / den[i]``."""
    if len(num) != len(den):
        raise ValueError(f"per-round ratios need paired rounds: {len(num)} vs {len(den)} values")
    return spread([a / b for a, b in zip(num, den)])


def consistent(a: Spread, b: Spread) -> bool:
    """Two runs agree when each one's median lies within the other's [min, max]."""
    return a.contains(b.median) and b.contains(a.median)


def rotated(names: Sequence[str], r: int) -> list[str]:
    """The order of round ``r``: ``names`` rotated left by ``r``."""
    k = r % len(names) if names else 0
    return list(names[k:]) + list(names[:k])


def load_average() -> float:
    """The 1-minute load average (runnable processes, ours included)."""
    return os.getloadavg()[0]


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process, every thread (``time.process_time``: nanosecond clock), plus
    those of its reaped children (worker processes)."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


@dataclass
class Sample:
    """One run of one variant: wall and CPU seconds, the load average when it started, what it returned."""

    wall: float
    cpu: float
    load: float
    value: Any = None


@dataclass
class Runs:
    """Samples per variant, in round order (``samples[name][r]`` is round r's run)."""

    names: list[str]
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # every timed run, in the order it ran

    def values(self, name: str, key: str | Callable[[Sample], float] = "wall") -> list[float]:
        get = key if callable(key) else (lambda s: getattr(s, key))
        return [float(get(s)) for s in self.samples[name]]

    def wall(self, name: str) -> Spread:
        return spread(self.values(name, "wall"))

    def cpu(self, name: str) -> Spread:
        return spread(self.values(name, "cpu"))

    def speedup(self, slower: str, faster: str, key: str | Callable[[Sample], float] = "wall") -> Spread:
        """``slower``'s time over ``faster``'s, per round (> 1: ``faster`` is faster)."""
        return ratios(self.values(slower, key), self.values(faster, key))

    def loads(self) -> list[float]:
        return [s.load for name in self.names for s in self.samples[name]]


def measure(variants: dict[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1,
            clock: Callable[[], float] = time.perf_counter, cpu_clock: Callable[[], float] = _cpu_seconds,
            load: Callable[[], float] = load_average, progress: Callable[[str], None] | None = None) -> Runs:
    """Run every variant ``warmup`` times (not recorded), then ``repeats`` interleaved rounds."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    runs = Runs(names, {n: [None] * repeats for n in names})
    for r in range(repeats):
        for name in rotated(names, r):
            start_load = load()
            c0, t0 = cpu_clock(), clock()
            value = variants[name]()
            t1, c1 = clock(), cpu_clock()
            runs.samples[name][r] = Sample(t1 - t0, c1 - c0, start_load, value)
            runs.order.append(name)
            if progress:
                progress(f"round {r + 1}/{repeats}: {name}: {t1 - t0:.3f} s")
    return runs
