"""The fault suite (issue 15), part 4 of docs/RELIABILITY.md's table: the work folder (corrupt results and
records, reruns, locks, killed runs, --restart).

Each case asserts the message (one line, naming the file, no traceback at default verbosity) and, where
a run happens, the submission (valid: the columns, every tomo_id once, each row all -1 or a finite
point). Tomograms are tiny uint8/float volumes built here; the models are the demo detectors (and a few
hand-made ONNX files with the wrong shapes). Most runs are in-process; a few go through the command
line where the exit code and stderr are the point. Helpers: tests/run/fault_helpers.py.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest

from inference.common.errors import InputError
from inference.run import runner
from inference.run.runner import run_predict
from tests.run.fault_helpers import (
    REPO,
    assert_valid,
    cfg,
    error_line,
    lines,
    run_cli,
    stored_results,
    tomograms,
    variant,
    volume,
)


@pytest.mark.parametrize("damage,needle", [
    (lambda p: p.write_text('{"tomo_id": "tomo_1"'), "corrupt result (Expecting"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "fused": "oops"})), "field 'fused' is 'oops'"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "status": "maybe"})), "status 'maybe'"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "tomo_id": "tomo_0"})), "the result of 'tomo_0'"),
    (lambda p: p.write_bytes(b"\xff\xfe\x00garbage"), "corrupt result"),
])
def test_a_corrupt_result_is_recomputed_with_a_warning(models, tmp_path, caplog, damage, needle):
    ids = tomograms(tmp_path / "in", 3)
    first = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    damage(stored_results(tmp_path) / "tomo_1.json")
    again = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.WARNING, str(stored_results(tmp_path) / "tomo_1.json"), needle, "computed again")
    assert again.submission.equals(first.submission) and again.results["tomo_1"].status == "ok"
    assert_valid(tmp_path / "sub.csv", ids)


@pytest.mark.parametrize("record", ["garbage", "[1, 2]", '{"format": 1}'])
def test_a_corrupt_run_record_stops_in_one_line_suggesting_restart(models, tmp_path, record):
    tomograms(tmp_path / "in", 2)
    run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (tmp_path / "sub.csv.work" / "run.json").write_text(record)
    with pytest.raises(InputError) as err:
        run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    assert str(tmp_path / "sub.csv.work" / "run.json") in str(err.value) and "--restart" in str(err.value)
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv", restart=True))
    assert not res.failures


def test_a_failed_tomogram_is_retried_on_the_rerun(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)

    def flaky(member):  # the second tomogram's engine call fails this time (out of memory, say)
        from inference.engines.registry import load_engine

        real, calls = load_engine(member.model), {"n": 0}

        def engine(batch):
            calls["n"] += 1
            if calls["n"] == 3:
                raise MemoryError()
            return real(batch)
        return engine

    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"), engine_factory=flaky)
    assert set(res.failures) == {"tomo_1"} and "MemoryError" in res.failures["tomo_1"]
    caplog.set_level(logging.INFO)
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    assert lines(caplog, logging.INFO, "resuming: 1 of 2", "1 that failed before are tried again")
    assert not res.failures and res.results["tomo_1"].status == "ok"
    assert_valid(tmp_path / "sub.csv", ids)


def test_a_broken_source_fixed_after_the_run_is_run_again(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)
    (tmp_path / "in" / "tomo_1.npy").write_bytes(b"\x93NUMPY truncated")
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    assert set(res.failures) == {"tomo_1"}
    np.save(tmp_path / "in" / "tomo_1.npy", volume(seed=1))  # fixed
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    assert not res.failures and res.results["tomo_1"].status == "ok"
    assert_valid(tmp_path / "sub.csv", ids)


def test_a_changed_source_is_recomputed(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)
    first = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    time.sleep(0.01)
    np.save(tmp_path / "in" / "tomo_0.npy", volume(seed=42))
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.WARNING, "1 stored result(s) were computed from other inputs", "tomo_0")
    assert res.results["tomo_1"].fused == first.results["tomo_1"].fused
    fresh = run_predict(cfg(models, tmp_path / "in", tmp_path / "fresh" / "sub.csv"))
    assert res.results["tomo_0"].fused == fresh.results["tomo_0"].fused
    assert_valid(tmp_path / "sub.csv", ids)


def test_a_changed_model_file_is_recomputed(models, tmp_path, caplog):
    tomograms(tmp_path / "in", 2)
    manifest = variant(models, tmp_path / "m")
    run_predict(cfg(manifest, tmp_path / "in", tmp_path / "sub.csv"))
    model = onnx.load(tmp_path / "m" / "demo3d.onnx")
    model.doc_string = "retrained"  # same size class, different content
    onnx.save(model, tmp_path / "m" / "demo3d.onnx")
    run_predict(cfg(manifest, tmp_path / "in", tmp_path / "sub.csv"))
    assert lines(caplog, logging.WARNING, "2 stored result(s) were computed from other inputs")


def test_a_second_live_run_on_the_same_output_stops_in_one_line(models, tmp_path):
    ids = tomograms(tmp_path / "in", 2)
    first = runner.Run(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))  # holds the work folder
    try:
        with pytest.raises(InputError) as err:
            run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
        text = str(err.value)
        assert text.startswith(str(tmp_path / "sub.csv.work")) and f"another predict run (pid {os.getpid()})" in text
    finally:
        first.close()
    run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))  # free again
    assert_valid(tmp_path / "sub.csv", ids)


def test_a_killed_runs_lock_never_blocks_its_rerun(models, tmp_path):
    ids = tomograms(tmp_path / "in", 2)
    work = tmp_path / "sub.csv.work"
    code = ("import sys, time; from pathlib import Path; from inference.run.workdir import RunLock; "
            f"RunLock(Path({str(work)!r})); print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(InputError, match=f"another predict run \\(pid {holder.pid}\\)"):
        run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))  # the pid is still in the file: no matter
    assert_valid(tmp_path / "sub.csv", ids)


def test_workers_end_quietly_when_the_dispatcher_is_killed(models, tmp_path):
    """kill -9 of the dispatcher mid-run: its worker ends on its own, without a BrokenPipe traceback."""
    big = tmp_path / "in"
    big.mkdir()
    for i in range(6):
        np.save(big / f"tomo_{i}.npy", volume((64, 160, 160), seed=i))
    err = tmp_path / "stderr.txt"
    with open(err, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "inference", "-q", "predict", "--manifest", str(models),
                                 "--input", str(big), "--output", str(tmp_path / "sub.csv"), "--workers", "1",
                                 "--no-progress"], stderr=fh, cwd=REPO)
        results_dir = stored_results(tmp_path)
        t0 = time.monotonic()
        while time.monotonic() - t0 < 60 and not list(results_dir.glob("*.json")):
            time.sleep(0.05)
        children = _children(proc.pid)
        assert children, "the worker process is running"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        t0 = time.monotonic()
        while time.monotonic() - t0 < 20 and any(_alive(c) for c in children):
            time.sleep(0.1)
    assert not any(_alive(c) for c in children), "the worker outlived its dispatcher"
    assert "Traceback" not in err.read_text() and "BrokenPipe" not in err.read_text()
    assert_valid(tmp_path / "sub.csv", [f"tomo_{i}" for i in range(6)])


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def test_restart_on_a_foreign_folder_deletes_nothing(models, tmp_path):
    tomograms(tmp_path / "in", 1)
    mine = tmp_path / "mydata"
    (mine / "tomograms").mkdir(parents=True)
    (mine / "tomograms" / "cell.json").write_text('{"my": "data"}')
    (mine / "notes.txt").write_text("keep me")
    rc, err = run_cli("predict", "--manifest", str(models), "--input", str(tmp_path / "in"), "--output",
                      str(tmp_path / "sub.csv"), "--work-dir", str(mine), "--restart", "--workers", "0")
    assert rc == 2
    error_line(err, str(mine), "not a motorfinder work folder", "nothing was changed")
    assert (mine / "tomograms" / "cell.json").read_text() == '{"my": "data"}'
    assert (mine / "notes.txt").read_text() == "keep me"


def test_restart_removes_only_what_the_run_wrote(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)
    run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    work = tmp_path / "sub.csv.work"
    (work / "README").write_text("my notes on this run")
    (work / "tomograms" / "plot.png").write_bytes(b"png")
    caplog.set_level(logging.INFO)
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv", restart=True))
    assert lines(caplog, logging.INFO, "--restart: removed 3 file(s)")  # run.json and two results
    assert (work / "README").read_text() == "my notes on this run" and (work / "tomograms" / "plot.png").exists()
    assert not lines(caplog, logging.INFO, "resuming") and len(res.results) == 2
    assert_valid(tmp_path / "sub.csv", ids)


def test_a_work_dir_that_is_a_file_is_one_line(models, tmp_path):
    tomograms(tmp_path / "in", 1)
    (tmp_path / "work").write_text("x")
    with pytest.raises(InputError, match="the work folder is a file"):
        run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv", work_dir=tmp_path / "work"))
    assert (tmp_path / "work").read_text() == "x"


def test_a_member_without_a_peak_on_a_tomogram_is_no_candidate_not_a_failure(models, tmp_path):
    ids = tomograms(tmp_path / "in", 2)  # noise: no peak above min_conf
    manifest = variant(models, tmp_path / "m", decode={"nms_kernel": 3, "min_conf": 0.99, "top_k": 5,
                                                       "nms_radius_A": 1000.0})
    res = run_predict(cfg(manifest, tmp_path / "in", tmp_path / "sub.csv"))
    assert not res.failures and all(r.fused == [] for r in res.results.values())
    assert_valid(tmp_path / "sub.csv", ids)


@pytest.mark.parametrize("target", ["sample", "manifest", "tomogram"])
def test_an_output_that_is_an_input_is_refused_before_anything_is_written(models, tmp_path, target):
    ids = tomograms(tmp_path / "in", 2)
    sample = tmp_path / "sample.csv"
    sample.write_text("tomo_id,Motor axis 0,Motor axis 1,Motor axis 2\ntomo_0,0,0,0\ntomo_1,0,0,0\n")
    manifest = variant(models, tmp_path / "m")
    out = {"sample": sample, "manifest": manifest, "tomogram": tmp_path / "in" / "tomo_1.npy"}[target]
    before = out.read_bytes()
    with pytest.raises(InputError, match="writing the submission there would destroy it"):
        run_predict(cfg(manifest, tmp_path / "in", out, sample_submission=sample))
    assert out.read_bytes() == before and len(ids) == 2
