"""The task ledger every backend shares: order, record once, the blame rule, the restart budget, start
failures, the live-worker count, the task's source. Driven directly with a stand-in run (no worker)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from inference.common.errors import EngineError
from inference.run.backends.ledger import Task, TaskLedger, restart_budget, task_source
from inference.run.plan import FULL, STOP, Plan
from inference.run.results import TomoResult


@dataclass
class _Cfg:
    retries: int = 1
    progress: bool = False


@dataclass
class _Run:
    """What the ledger reads of an :class:`inference.run.runner.Run`, and the results it was given."""

    ids: list[str]
    cfg: _Cfg = field(default_factory=_Cfg)
    recorded: list[TomoResult] = field(default_factory=list)
    done_before: int = 0  # the first ones: resumed

    @property
    def sources(self):
        return [Path("in") / f"{t}.npy" for t in self.ids]

    @property
    def pending(self) -> list[int]:
        return list(range(self.done_before, len(self.ids)))

    def record(self, result: TomoResult) -> None:
        self.recorded.append(result)


def ok(run: _Run, i: int) -> TomoResult:
    return TomoResult(tomo_id=run.ids[i], status="ok")


def ledger(n=4, retries=1, planner=lambda: FULL, **kw) -> tuple[_Run, TaskLedger]:
    run = _Run([f"t{i}" for i in range(n)], _Cfg(retries=retries))
    return run, TaskLedger(run, planner, workers=2, **kw)


def test_tasks_go_out_in_order_with_the_plan_chosen_as_each_goes_out():
    plans = iter([FULL, Plan(tta_limit=1, level=1), FULL])
    run, led = ledger(n=3, planner=lambda: next(plans))
    got = [led.next() for _ in range(4)]
    assert [t.index for t in got[:3]] == [0, 1, 2] and got[3] is None
    assert got[1].plan == Plan(tta_limit=1, level=1) and got[0].attempt == 0
    assert got[0].source == str((Path("in") / "t0.npy").absolute())


def test_resumed_tasks_are_not_given_out():
    run = _Run(["a", "b", "c"], done_before=2)
    led = TaskLedger(run, lambda: FULL, workers=1)
    assert led.next().index == 2 and led.next() is None


def test_stop_drops_every_task_not_given_out():
    answers = iter([FULL, STOP])
    run, led = ledger(n=4, planner=lambda: next(answers))
    first = led.next()
    assert led.next() is None and not led.pending
    assert not led.finished  # the one given out is still awaited
    led.done(first.index, ok(run, first.index))
    assert led.finished and [r.tomo_id for r in run.recorded] == ["t0"]


def test_a_result_is_recorded_once():
    run, led = ledger(n=2)
    t = led.next()
    led.done(t.index, ok(run, t.index))
    led.done(t.index, ok(run, t.index))  # a re-run's late reply
    assert [r.tomo_id for r in run.recorded] == ["t0"]


def test_the_first_open_task_a_dead_worker_held_is_charged_the_rest_requeued_uncharged(caplog):
    run, led = ledger(n=4, retries=1)
    a, b, c = led.next(), led.next(), led.next()
    led.started()
    led.done(a.index, ok(run, a.index))
    led.died("worker 0", "exit code -9", [a.index, b.index, c.index])  # a is done: b was running
    assert "worker 0 died (exit code -9) holding t1, t2" in caplog.text
    assert led.attempts == {b.index: 1}
    again = [led.next() for _ in range(3)]
    assert [t.index for t in again] == [1, 2, 3]  # back at the front, in their order
    assert again[0].attempt == 1 and again[1].attempt == 0


def test_a_task_charged_more_than_retries_times_is_recorded_as_failed():
    run, led = ledger(n=2, retries=1, kind="Ray actor")
    for death in (1, 2):
        t = led.next()
        assert t.index == 0 and t.attempt == death - 1
        led.started()
        led.died("CPU actor 0", "killed", [t.index])
    (failed,) = run.recorded
    assert failed.status == "failed" and failed.error == "Ray actor died (killed) 2 time(s)" and failed.attempts == 2
    assert led.next().index == 1


def test_a_death_known_to_run_nothing_charges_nobody():
    run, led = ledger(n=3)
    t = led.next()
    led.started()
    led.died("CPU actor 0", "killed", [t.index], running=False)
    assert led.attempts == {} and led.next() == Task(index=0, source=t.source, attempt=0, plan=FULL, tomo_id="t0")


def test_the_restart_budget_then_the_error_with_a_fix():
    assert restart_budget(2, 1) == 6 and restart_budget(0, 1) == 4 and restart_budget(3, 0) == 5
    run, led = ledger(n=1, retries=1)
    assert [led.restart("exit code -9", workers_left=0) for _ in range(6)] == [True] * 6
    assert led.restart("exit code -9", workers_left=1) is False  # others still work
    with pytest.raises(EngineError, match=r"^every worker died \(the last: exit code -9\) and the restart budget is "
                                          r"spent; the tomograms not done are written as -1\. Fix: see the warnings"):
        led.restart("exit code -9", workers_left=0)
    led.done(0, ok(run, 0))
    assert led.restart("exit code -9", workers_left=0) is False  # nothing left: no restart, no error


def test_a_result_fills_the_restart_budget_again_so_deaths_now_and_then_never_stop_a_run():
    run, led = ledger(n=30, retries=1)
    budget = restart_budget(2, 1)
    for _ in range(3 * budget):  # far more deaths than the budget, each followed by a result
        t = led.next()
        led.started()
        led.died("worker 0", "exit code -9", [t.index])
        assert led.restart("exit code -9", workers_left=0) is True
        again = led.next()
        assert again.index == t.index and again.attempt == 1
        led.done(again.index, ok(run, again.index))
        assert led.restarts_left == budget
    assert [r.status for r in run.recorded] == ["ok"] * 3 * budget


def test_a_tomogram_failed_by_deaths_is_no_result_for_the_budget():
    run, led = ledger(n=3, retries=0)
    t = led.next()
    led.started()
    led.died("worker 0", "exit code -9", [t.index])  # retries 0: failed at once, by the ledger itself
    assert run.recorded[-1].status == "failed" and "died" in run.recorded[-1].error
    assert led.restart("exit code -9", workers_left=0) is True
    assert led.restarts_left == led.budget - 1


def test_a_worker_that_cannot_start_is_one_warning_while_others_remain(caplog):
    seen = []
    run, led = ledger(n=2, on_workers=seen.append)
    led.started()
    led.start_failed(1, "GPU 1", "EngineError: broken (test)", workers_left=1)
    assert "GPU 1 could not start (EngineError: broken (test)); continuing on 1 other worker(s)" in caplog.text
    assert seen == [1, 1]


def test_no_worker_could_start_lists_the_reasons_with_the_backends_fix():
    run, led = ledger(n=2, start_fix="check the GPU")
    led.start_failed(0, "GPU 0", "broken GPU 0. Fix: replace it", workers_left=1)
    with pytest.raises(EngineError) as err:
        led.start_failed(1, "GPU 1", "broken GPU 1. Fix: replace it", workers_left=0)
    assert str(err.value) == ("no worker could start: GPU 0: broken GPU 0. Fix: replace it; GPU 1: broken GPU 1. "
                              "Fix: replace it. Fix: check the GPU")


def test_no_worker_could_start_for_one_reason_without_a_fix_is_listed():
    run, led = ledger(n=2, kind="Ray actor", start_fix="see above")
    led.start_failed(0, "CPU actor 0", "it died before it was ready (x)", workers_left=1)
    with pytest.raises(EngineError, match=r"^no Ray actor could start: CPU actor 0: it died before it was ready \(x\); "
                                          r"CPU actor 1: it died before it was ready \(x\)\. Fix: see above$"):
        led.start_failed(1, "CPU actor 1", "it died before it was ready (x)", workers_left=0)


def test_no_worker_could_start_for_one_reason_with_a_fix_is_that_line():
    run, led = ledger(n=2, start_fix="see above")
    why = "m.onnx: does not load. Fix: re-export it"
    led.start_failed(0, "CPU worker 0", why, workers_left=1)
    with pytest.raises(EngineError) as err:
        led.start_failed(1, "CPU worker 1", why, workers_left=0)
    assert str(err.value) == why


def test_start_failures_after_the_run_is_done_are_no_error():
    run, led = ledger(n=1)
    led.done(0, ok(run, 0))
    led.start_failed(0, "GPU 0", "broken", workers_left=0)  # nothing left to run: nothing to stop


def test_the_live_worker_count_is_told_on_every_start_start_failure_and_death(caplog):
    caplog.set_level(logging.WARNING)
    seen = []
    run, led = ledger(n=3, on_workers=seen.append)
    led.started()
    led.started()
    led.start_failed(2, "GPU 2", "broken", workers_left=2)
    led.died("worker 0", "exit code 1", [])
    led.started()
    assert seen == [1, 2, 2, 1, 2]


def test_a_task_source_is_absolute_not_resolved_and_a_url_as_it_is(tmp_path, monkeypatch):
    (tmp_path / "target_name").mkdir()
    (tmp_path / "tomo_a").symlink_to("target_name", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    assert task_source(Path("tomo_a")) == os.path.join(str(tmp_path), "tomo_a")
    assert task_source("s3://bucket/tomo_b.zarr") == "s3://bucket/tomo_b.zarr"
