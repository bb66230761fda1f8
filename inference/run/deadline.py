"""The deadline guard: degrade the ensemble for the remaining tomograms when the projected finish
would pass the time budget, and stop dispatching when the budget is spent.

Degradation order (the ladder, :func:`ladder`), each level keeping everything the next drops:

0. the full ensemble, every TTA transform;
1. one TTA transform per member (the first listed);
2. … then drop the lowest-weight member (ties: the later one in the manifest), one per level,
   while two or more remain;
last. the single fastest member (by measured seconds per transform), one transform.

Task particles: a member is dropped only while the others still output every class, and the last level
is the fastest member that outputs them all (none: no such level), so no class loses its picks.

Projection: the guard learns, from finished tomograms, each member's seconds per TTA transform
and a calibration factor (observed wall time per tomogram x parallel workers over the modelled
time, which absorbs reading, resampling and overlap). At every dispatch it picks the lowest level
whose projection ``elapsed + remaining x cost(level) x calibration / workers`` fits the budget;
levels only go up. Once the budget is spent it returns :data:`STOP`: the runner gives out no more
tomograms and writes -1 for them. The clock is injectable (tests use a fake one).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from inference.manifest.types import Manifest
from inference.run.plan import STOP, Plan, Stop
from inference.run.results import TomoResult

logger = logging.getLogger(__name__)


def ladder(manifest: Manifest, seconds_per_tta: dict[str, float] | None = None) -> list[Plan]:
    """The degradation levels for ``manifest`` (see the module docstring)."""
    members = list(manifest.members)
    names = tuple(m.name for m in members)
    plans = [Plan(active=None, tta_limit=None, level=0)]
    if any(len(m.tta) > 1 for m in members):
        plans.append(Plan(active=names, tta_limit=1))
    classes = set(manifest.particles.names) if manifest.particles is not None else set()

    def covers(group) -> bool:  # every class still output (always, for motors)
        return classes <= {n for m in group for n in m.outputs}

    keep = list(members)
    while len(keep) > 2:
        # lowest weight first; among equal weights the later one in the manifest
        droppable = [m for m in reversed(keep) if covers([k for k in keep if k is not m])]
        if not droppable:
            break
        keep.remove(min(droppable, key=lambda m: m.weight))
        plans.append(Plan(active=tuple(m.name for m in keep), tta_limit=1))
    alone = [m for m in members if covers([m])]
    if len(members) > 1 and alone:
        speed = seconds_per_tta or {}
        order = {m.name: i for i, m in enumerate(members)}
        fastest = min(alone, key=lambda m: (speed.get(m.name, float("inf")), -order[m.name]))
        plans.append(Plan(active=(fastest.name,), tta_limit=1))
    return [Plan(active=p.active, tta_limit=p.tta_limit, level=i) for i, p in enumerate(plans)]


@dataclass
class _MemberStats:
    seconds: float = 0.0
    transforms: int = 0


class DeadlineGuard:
    """Chooses a :class:`Plan` per tomogram against a time budget. Thread-safe."""

    def __init__(self, manifest: Manifest, budget_s: float, total: int, *, workers: int = 1,
                 clock: Callable[[], float] = time.monotonic, margin: float = 0.95):
        self.manifest = manifest
        self.budget_s = float(budget_s)
        self.total = int(total)
        self.workers = max(1, int(workers))
        self.clock = clock
        self.margin = margin  # plan to finish by margin x budget
        self.start = clock()
        self.level = 0
        self.done = 0
        self._stats = {m.name: _MemberStats() for m in manifest.members}
        self._modelled_done = 0.0
        self._lock = threading.Lock()
        self._dispatched = 0

    # -- learning ----------------------------------------------------------------------------
    def observe(self, result: TomoResult) -> None:
        """A finished tomogram (any level); failed ones count as done but teach nothing."""
        with self._lock:
            self.done += 1
            if result.status != "ok":
                return
            plans = ladder(self.manifest)
            plan = plans[min(result.degrade, len(plans) - 1)]
            modelled = 0.0
            for m in self.manifest.members:
                if m.name not in result.member_seconds:
                    continue
                n = len(m.tta) if plan.tta_limit is None else min(plan.tta_limit, len(m.tta))
                st = self._stats[m.name]
                st.seconds += result.member_seconds[m.name]
                st.transforms += n
                modelled += result.member_seconds[m.name]
            self._modelled_done += modelled

    def seconds_per_tta(self) -> dict[str, float]:
        return {k: v.seconds / v.transforms for k, v in self._stats.items() if v.transforms}

    def cost(self, plan: Plan) -> float | None:
        """Modelled seconds of one tomogram at ``plan`` (None until every member needed was seen)."""
        spt = self.seconds_per_tta()
        total = 0.0
        for m in self.manifest.members:
            if plan.active is not None and m.name not in plan.active:
                continue
            if m.name not in spt:
                return None
            n = len(m.tta) if plan.tta_limit is None else min(plan.tta_limit, len(m.tta))
            total += spt[m.name] * n
        return total

    # -- deciding ----------------------------------------------------------------------------
    def projection(self, plan: Plan) -> float | None:
        """Projected total seconds if every remaining tomogram ran at ``plan``."""
        elapsed = self.clock() - self.start
        cost = self.cost(plan)
        if cost is None or self.done == 0:
            return None
        calib = max(1.0, (elapsed * self.workers / self.done) / max(self._modelled_done / self.done, 1e-9))
        remaining = max(0, self.total - self.done)
        return elapsed + remaining * cost * calib / self.workers

    def __call__(self) -> Plan | Stop:
        """The plan for the next tomogram handed out, or STOP once the budget is spent."""
        with self._lock:
            elapsed = self.clock() - self.start
            if elapsed >= self.budget_s:
                if self.level != -1:
                    logger.warning("deadline: %.0f s of %.0f s spent; no more tomograms are started (the rest "
                                   "are written as -1)", elapsed, self.budget_s)
                    self.level = -1
                return STOP
            plans = ladder(self.manifest, self.seconds_per_tta())
            level = self.level
            while level < len(plans) - 1:
                proj = self.projection(plans[level])
                if proj is None or proj <= self.margin * self.budget_s:
                    break
                level += 1
            if level != self.level:
                p = plans[level]
                logger.warning("deadline: projected %.0f s > %.0f s budget; degrading to level %d (%s)",
                               self.projection(plans[self.level]) or 0.0, self.budget_s, level, describe(p))
                self.level = level
            self._dispatched += 1
            return plans[self.level]


def describe(plan: Plan) -> str:
    members = "all members" if plan.active is None else ", ".join(plan.active)
    tta = "all TTA" if plan.tta_limit is None else f"{plan.tta_limit} TTA"
    return f"{members}, {tta}"
