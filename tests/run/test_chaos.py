"""The chaos run's short form (the long one is ``bench/chaos.py``, its table in docs/RELIABILITY.md): a dozen
tomograms with 2 workers, 3 worker kills at random moments, 3 reads failing transiently, one SIGKILL of the
main process and the same command again; the submission and every candidate file byte-identical to a clean
run's. The fault injector is a test hook (``bench/_chaos_hooks.py``), run through its launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import pytest

from tests.bench.bench_modules import load

N, SEED = 12, 7


@pytest.fixture(scope="module")
def chaos():
    return load("_chaos_run")


@pytest.fixture(scope="module")
def inputs(chaos, tmp_path_factory):
    return chaos.make_inputs(tmp_path_factory.mktemp("chaos"), N, SEED, 0.06)


def test_the_plan_is_the_same_for_the_same_seed_and_keeps_every_tomogram_recoverable(chaos, tmp_path):
    plan = chaos.make_plan(SEED, 200, kills=12, fail_reads=12, slices=30, read_retries=2, state=tmp_path)
    assert plan == chaos.make_plan(SEED, 200, kills=12, fail_reads=12, slices=30, read_retries=2, state=tmp_path)
    assert plan != chaos.make_plan(SEED + 1, 200, kills=12, fail_reads=12, slices=30, read_retries=2, state=tmp_path)
    kills = [e for e in plan["events"] if e["kind"] == "kill"]
    reads = [e for e in plan["events"] if e["kind"] == "fail_read"]
    assert sorted(e["phase"] for e in kills) == sorted(["read", "engines", "between"] * 4)  # each phase in turn
    assert all(0 <= e["after"] < 160 for e in plan["events"])  # in the first 80 %: each has tasks left to hit
    assert all(1 <= e["times"] <= 2 and 0 <= e["at"] < 30 for e in reads)  # within --read-retries 2: recovers
    assert all(e["at"] in (1, 2) for e in kills if e["phase"] == "engines")
    assert 70 <= plan["main_kill_at"] <= 120
    assert len({e["id"] for e in plan["events"]}) == 24


def _chaos(chaos, inputs, tmp_path, backend):
    manifest, data, slices = inputs
    plan = chaos.make_plan(SEED, N, kills=3, fail_reads=3, slices=slices, read_retries=2, state=tmp_path / "state",
                           span=0.5)
    o = chaos.chaos_run(backend, manifest, data, tmp_path, plan, read_retries=2)
    assert o.codes == (-9, 0), (o.codes, (tmp_path / f"{backend}-chaos" / "resumed.log").read_text())
    assert o.saved_at_main_kill is not None and 0 < o.saved_at_main_kill < N  # the main process died mid-run
    assert o.total_kills == 3 and o.kills_missed == 0, o.kills
    assert o.failed_reads == o.failed_reads_planned >= 3
    assert o.read_retries <= o.failed_reads
    assert not o.failed
    assert o.identical, o.differing
    return o


def test_local_workers_survive_kills_failed_reads_and_a_killed_run_with_identical_outputs(chaos, inputs, tmp_path):
    _chaos(chaos, inputs, tmp_path, "local")


@pytest.mark.slow
def test_ray_actors_survive_ray_kill_failed_reads_and_a_killed_driver_with_identical_outputs(chaos, inputs, tmp_path):
    pytest.importorskip("ray", reason="the Ray backend tests need Ray: pip install 'motorfinder[ray]'")
    _chaos(chaos, inputs, tmp_path, "ray")


def test_a_claim_left_by_a_process_that_died_before_logging_its_event_is_taken_over(chaos, tmp_path):
    hooks = load("_chaos_hooks")
    plan = chaos.make_plan(SEED, N, kills=3, fail_reads=0, slices=10, read_retries=2, state=tmp_path)
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    events = plan["events"]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / f"claim-{events[0]['id']}").write_text(str(dead_pid))  # died before logging: stale
    (tmp_path / f"claim-{events[1]['id']}").write_text(str(dead_pid))  # died after logging it: fired
    (tmp_path / "events.log").write_text(f"kill {events[1]['id']} between tomo_x 0 pid {dead_pid}\n")
    (tmp_path / f"claim-{events[2]['id']}").write_text(str(os.getppid()))  # alive: fires it or has
    inj = hooks.Injector(tmp_path / "plan.json", "self")
    assert [inj.claimed(e) for e in events] == [False, True, True]
    assert inj.claim(events[0]) and (tmp_path / f"claim-{events[0]['id']}").read_text() == str(os.getpid())
    assert not hooks.Injector(tmp_path / "plan.json", "self").claim(events[0])  # now held by a live process
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".", "stale"))) == \
        [f"stale-{events[0]['id']}-{os.getpid()}"]


def test_a_fail_read_event_under_way_goes_on_in_the_next_process_and_fails_exactly_its_reads(chaos, tmp_path):
    hooks = load("_chaos_hooks")
    events = [{"id": "r00", "kind": "fail_read", "after": 0, "at": 3, "times": 2},
              {"id": "r01", "kind": "fail_read", "after": 0, "at": 5, "times": 1}]
    (tmp_path / "plan.json").write_text(json.dumps({"state": str(tmp_path), "events": events}))
    task = types.SimpleNamespace(tomo_id="tomo_a", index=0, attempt=0)
    first = hooks.Injector(tmp_path / "plan.json", "self")
    with pytest.raises(OSError):
        first.at("read", task, 3)  # r00: the first of its two failed reads; then this process dies
    second = hooks.Injector(tmp_path / "plan.json", "self")  # the task again, in another process
    second.at("read", task, 0)
    with pytest.raises(OSError):
        second.at("read", task, 3)  # r00's second failed read
    second.at("read", task, 3)  # r00 is done
    second.at("read", task, 5)  # r01 is for another tomogram: one fail_read event per tomogram
    with pytest.raises(OSError):
        second.at("read", types.SimpleNamespace(tomo_id="tomo_b", index=1, attempt=0), 5)
    log = [line.split()[:2] for line in (tmp_path / "events.log").read_text().splitlines()]
    assert log == [["failread", "r00"], ["failread", "r00"], ["failread", "r01"]]
