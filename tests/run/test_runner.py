"""The runner: resume, crash isolation, 1 vs 2 workers, bounded prefetch."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from inference.manifest.parse import load_manifest
from inference.run.prefetch import prefetched
from inference.run.results import TomoResult
from inference.run.runner import PredictConfig, run_predict
from inference.synth.demo_models import write_demo_models
from inference.synth.generate import generate


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("runner")
    generate(root / "data", 6, 31, split="test", scale=0.12, progress=False)
    manifest = write_demo_models(root / "models", with_2d=True)
    return root, manifest


def config(data, tmp_path, **kw) -> PredictConfig:
    root, manifest = data
    return PredictConfig(manifest=load_manifest(manifest), input_dir=root / "data" / "test",
                         output=tmp_path / "submission.csv", spacing_csv=root / "data" / "test_labels.csv",
                         candidates_dir=tmp_path / "cands", progress=False, write_every_s=0.0, **kw)


def ids(data):
    return sorted(p.name for p in (data[0] / "data" / "test").iterdir())


def test_two_workers_byte_identical_to_one_and_to_in_process(data, tmp_path):
    outs = {}
    for workers in (0, 1, 2):
        d = tmp_path / f"w{workers}"
        run_predict(config(data, d, workers=workers))
        outs[workers] = {p.name: p.read_bytes() for p in (d / "cands").iterdir()}
        outs[workers]["submission.csv"] = (d / "submission.csv").read_bytes()
    assert outs[1] == outs[2]
    assert outs[0] == outs[1]
    assert set(outs[1]) == {"demo3d.csv", "demo2d.csv", "fused.csv", "submission.csv"}


def crash_on_victim(spec, settings, conn):
    """Worker entry that dies like kill -9 while running the tomogram named in CRASH_ON (once if CRASH_ONCE
    names a marker file that does not exist yet)."""
    import inference.run.tomogram as tomogram
    from inference.run.backends.local_worker import worker_main
    from inference.run.plan import FULL

    victim, marker = os.environ["CRASH_ON"], os.environ.get("CRASH_ONCE")
    real = tomogram.run_loaded

    def run_loaded(loaded, ctx, plan=FULL):
        if loaded.tomo_id == victim and not (marker and Path(marker).exists()):
            if marker:
                Path(marker).write_text("crashed once")
            os.kill(os.getpid(), signal.SIGKILL)
        return real(loaded, ctx, plan)

    tomogram.run_loaded = run_loaded
    worker_main(spec, settings, conn)


@pytest.mark.parametrize("once", [True, False])
def test_worker_crash_is_retried_once_then_failed(data, tmp_path, monkeypatch, once):
    victim = ids(data)[2]
    monkeypatch.setenv("CRASH_ON", victim)
    if once:
        monkeypatch.setenv("CRASH_ONCE", str(tmp_path / "marker"))
    else:
        monkeypatch.delenv("CRASH_ONCE", raising=False)
    res = run_predict(config(data, tmp_path, workers=2, retries=1), worker_entry=crash_on_victim)
    sub = pd.read_csv(tmp_path / "submission.csv")
    assert sorted(sub.tomo_id) == ids(data)  # complete and valid whatever happened
    r = res.results[victim]
    if once:
        assert r.status == "ok" and r.attempts == 2 and victim not in res.failures
    else:
        assert r.status == "failed" and "worker died" in r.error and victim in res.failures
        assert (sub.set_index("tomo_id").loc[victim] == -1).all()
    others = [t for t in ids(data) if t != victim]
    assert all(res.results[t].status == "ok" for t in others)


def test_resume_after_killed_run(data, tmp_path):
    root, manifest = data
    out = tmp_path / "submission.csv"
    cmd = [sys.executable, "-m", "inference", "-q", "predict", "--manifest", str(manifest), "--input",
           str(root / "data" / "test"), "--output", str(out), "--spacing-csv", str(root / "data" / "test_labels.csv"),
           "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True)
    work = tmp_path / "submission.csv.work" / "tomograms"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120 and len(list(work.glob("*.json"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the dispatcher and its worker, like a killed notebook
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in work.glob("*.json")}
    assert 2 <= len(done) < len(ids(data)), "kill the run part-way"
    killed = pd.read_csv(out)  # the killed run left a complete, valid submission
    assert sorted(killed.tomo_id) == ids(data) and killed.notna().all().all()
    assert subprocess.run(cmd).returncode == 0
    after = {p.name: p.stat().st_mtime_ns for p in work.glob("*.json")}
    assert {k: after[k] for k in done} == done          # no finished tomogram redone
    assert len(after) == len(ids(data))                 # none lost
    sub = pd.read_csv(out)
    assert sorted(sub.tomo_id) == ids(data)
    # and the resumed run equals a fresh one
    fresh = tmp_path / "fresh.csv"
    subprocess.run(cmd[:cmd.index("--output") + 1] + [str(fresh)] + cmd[cmd.index("--output") + 2:], check=True)
    assert fresh.read_bytes() == out.read_bytes()


def test_changed_options_recompute_the_stored_results(data, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    cfg = config(data, tmp_path, workers=0)
    run_predict(cfg)
    other = replace(cfg, default_spacing=10.0)
    res = run_predict(other)  # the run key covers the options: every result is computed again
    assert "computed from other inputs" in caplog.text
    assert all(r.status == "ok" for r in res.results.values()) and len(res.results) == len(ids(data))
    fresh = run_predict(replace(other, output=tmp_path / "fresh" / "submission.csv"))
    assert res.submission.equals(fresh.submission)
    caplog.clear()
    again = run_predict(other)  # and then resumed, nothing recomputed
    assert "computed from other inputs" not in caplog.text and "resuming: 6 of 6" in caplog.text
    assert again.submission.equals(fresh.submission)


def test_interrupt_still_writes_a_complete_submission(data, tmp_path):
    calls = {"n": 0}

    def planner():
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        from inference.run.plan import FULL
        return FULL

    with pytest.raises(KeyboardInterrupt):
        run_predict(config(data, tmp_path, workers=0), planner=planner)
    sub = pd.read_csv(tmp_path / "submission.csv")
    assert sorted(sub.tomo_id) == ids(data)


def test_prefetch_memory_is_bounded():
    live = {"now": 0, "max": 0}
    lock = threading.Lock()

    def load(i):
        with lock:
            live["now"] += 1
            live["max"] = max(live["max"], live["now"])
        return i

    for item, loaded, err in prefetched(range(20), load, depth=1):
        time.sleep(0.01)  # the consumer is the slow stage
        with lock:
            live["now"] -= 1
    # one being consumed, one waiting, one being loaded (blocked on the full queue) at most
    assert live["max"] <= 3


def test_worker_holds_at_most_two_tomograms(data, tmp_path):
    """Drive worker_main in a thread over a pipe: it asks for a new task only when at most one
    loaded tomogram waits beside the running one."""
    from multiprocessing import Pipe

    from inference.run.backends.ledger import Task
    from inference.run.backends.local_worker import WorkerSpec, worker_main

    cfg = config(data, tmp_path, workers=1)
    mine, theirs = Pipe(duplex=True)
    t = threading.Thread(target=worker_main, args=(WorkerSpec(0, "cpu", None, 1), cfg, theirs))
    t.start()
    sources = sorted((data[0] / "data" / "test").iterdir())
    given = done = held_max = 0
    while t.is_alive() or mine.poll():
        if not mine.poll(1.0):
            continue
        msg = mine.recv()
        if msg[0] == "ready":
            if given < len(sources):
                mine.send(Task(index=given, source=str(sources[given])))
                given += 1
            else:
                mine.send(None)
        elif msg[0] == "done":
            done += 1
            assert TomoResult.from_json(msg[3]).status == "ok"
        held_max = max(held_max, given - done)
    assert done == len(sources) and held_max <= 2


# ------------------------------------------------------------------------------ GPU workers


def three_gpus():
    from inference.engines.gpus import CudaStatus, Gpu

    return CudaStatus("13.3.0", "12.5", "12.8", tuple(Gpu(i, "Tesla T4", 15 * 2**30, "7.5") for i in range(3)))


def gpu1_cannot_start(spec, settings, conn):
    """Worker entry for 'GPU' workers on this CPU machine: GPU 1's engines do not load (it says so and
    exits), GPU 2 dies before it is ready, GPU 0 runs the real worker on the CPU."""
    from dataclasses import replace

    from inference.run.backends.local_worker import worker_main

    if spec.device_id == 1:
        conn.send(("fatal", spec.wid, "EngineError: CUDAExecutionProvider does not load (test)"))
        return
    if spec.device_id == 2:
        os._exit(3)
    worker_main(replace(spec, device="cpu", device_id=None, pin=None, threads=1), settings, conn)


def test_devices_worker_that_cannot_start_is_reported_and_the_run_finishes_on_the_others(
        data, tmp_path, monkeypatch, caplog):
    import inference.run.runner as runner

    monkeypatch.setattr(runner.gpus, "probe", three_gpus)
    res = run_predict(config(data, tmp_path, devices=(0, 1, 2)), worker_entry=gpu1_cannot_start)
    assert sorted(res.results) == ids(data) and not res.failures
    assert all(r.status == "ok" for r in res.results.values())
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "could not start" in r.getMessage()]
    assert any("GPU 1 could not start (EngineError: CUDAExecutionProvider does not load (test))" in w for w in warnings)
    assert any("GPU 2 could not start (it exited with code 3 before it was ready)" in w for w in warnings)
    # the same candidates as a plain CPU run
    ref = run_predict(config(data, tmp_path / "ref", workers=0))
    assert res.submission.equals(ref.submission)


def no_worker_starts(spec, settings, conn):
    conn.send(("fatal", spec.wid, f"EngineError: broken GPU {spec.device_id} (test)"))


def test_devices_no_worker_can_start_is_an_error_with_a_complete_submission(data, tmp_path, monkeypatch):
    import inference.run.runner as runner
    from inference.common.errors import EngineError

    monkeypatch.setattr(runner.gpus, "probe", three_gpus)
    with pytest.raises(EngineError, match=r"no worker could start: GPU 0: EngineError: broken GPU 0 \(test\); "
                                          r"GPU 1: EngineError: broken GPU 1 \(test\)"):
        run_predict(config(data, tmp_path, devices=(0, 1)), worker_entry=no_worker_starts)
    sub = pd.read_csv(tmp_path / "submission.csv")
    assert sorted(sub.tomo_id) == ids(data) and (sub.drop(columns="tomo_id") == -1).all().all()


def test_resolve_devices_counts_visible_gpus(monkeypatch):
    from inference.common.errors import InputError
    from inference.engines.gpus import CudaStatus, resolve_devices

    assert resolve_devices("all", probe_fn=three_gpus) == (0, 1, 2)
    assert resolve_devices((1, 0, 1), probe_fn=three_gpus) == (1, 0)
    with pytest.raises(InputError, match=r"GPU 5 is not visible; this process sees 3.*Fix: pass ids below 3"):
        resolve_devices((0, 5), probe_fn=three_gpus)
    none = lambda: CudaStatus(problem="not installed (No module named 'cupy')", fix="pip install cupy-cuda12x")  # noqa: E731
    with pytest.raises(InputError, match=r"--devices all: cupy: not installed.*Fix: pip install cupy-cuda12x"):
        resolve_devices("all", probe_fn=none)


def test_cli_devices_option():
    from inference.cli.main import build_parser

    parser = build_parser()
    base = ["predict", "--manifest", "m.yaml", "--input", "i", "--output", "o.csv"]
    assert parser.parse_args(base + ["--devices", "all"]).devices == "all"
    assert parser.parse_args(base + ["--devices", "AUTO"]).devices == "all"
    assert parser.parse_args(base + ["--devices", "0,1"]).devices == (0, 1)
    assert parser.parse_args(base + ["--gpu-mem-limit-gb", "11"]).gpu_mem_limit_gb == 11.0
    for bad in (["--devices", "x"], ["--gpu-mem-limit-gb", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(base + bad)
