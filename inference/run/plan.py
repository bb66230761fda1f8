"""How much of the ensemble a tomogram gets: the plan a backend hands each tomogram (the deadline
guard lowers it, :mod:`inference.run.deadline`), and ``STOP``: start no more tomograms."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """How much of the ensemble a tomogram gets (the deadline guard lowers it): the members to
    run (None: all) and at most ``tta_limit`` TTA transforms each (None: all)."""

    active: tuple[str, ...] | None = None
    tta_limit: int | None = None
    level: int = 0


FULL = Plan()


class Stop:
    def __repr__(self) -> str:
        return "STOP"


STOP = Stop()  # a planner's answer: start no more tomograms (the deadline is spent)
