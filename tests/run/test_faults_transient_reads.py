"""Fault suite: a read that fails with an error that can pass by itself (EIO, a timeout, a dropped
connection) is read again within the run, a bounded number of times (``read_retries``), before the
tomogram counts as failed (docs/RELIABILITY.md)."""

from __future__ import annotations

import errno
import logging
from dataclasses import replace

from inference.io import readers
from inference.run.runner import run_predict
from tests.run.fault_helpers import assert_valid, cfg, lines, no_traceback, tomograms


def _flaky_reads(monkeypatch, victim: str, failures: int) -> list[str]:
    """The first ``failures`` reads of ``victim`` raise EIO (like a network file system); the calls are listed."""
    real, calls = readers.read_volume, []

    def read_volume(source, **kw):
        calls.append(str(source))
        if victim in str(source) and calls.count(str(source)) <= failures:
            raise OSError(errno.EIO, "Input/output error", str(source))
        return real(source, **kw)

    monkeypatch.setattr(readers, "read_volume", read_volume)
    return calls


def _outputs(out) -> bytes:
    return (out / "sub.csv").read_bytes()


def test_a_transient_read_error_is_read_again_and_the_result_is_the_clean_one(models, tmp_path, monkeypatch, caplog):
    ids = tomograms(tmp_path / "in", 3)
    run_predict(cfg(models, tmp_path / "in", tmp_path / "clean" / "sub.csv"))
    caplog.set_level(logging.DEBUG)
    calls = _flaky_reads(monkeypatch, "tomo_1", failures=2)
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "flaky" / "sub.csv"))
    assert calls.count(str(tmp_path / "in" / "tomo_1.npy")) == 3 and len(calls) == 5
    r = res.results["tomo_1"]
    assert r.status == "ok" and r.read_retries == 2 and r.attempts == 1 and not res.failures
    assert [res.results[t].read_retries for t in ids] == [0, 2, 0]
    assert _outputs(tmp_path / "flaky") == _outputs(tmp_path / "clean")
    assert len(lines(caplog, logging.DEBUG, "tomo_1.npy: read failed (OSError: [Errno 5] Input/output error", "retry")) == 2
    assert lines(caplog, logging.INFO, "reads retried after a transient error: 2 time(s) on 1 tomogram(s): tomo_1")
    assert not lines(caplog, logging.WARNING, "tomo_1")
    no_traceback(caplog)


def test_a_read_that_keeps_failing_fails_its_tomogram_in_one_line_and_a_rerun_reads_it_again(models, tmp_path,
                                                                                           monkeypatch, caplog):
    ids = tomograms(tmp_path / "in", 3)
    calls = _flaky_reads(monkeypatch, "tomo_1", failures=3)
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv", read_retries=2))
    assert calls.count(str(tmp_path / "in" / "tomo_1.npy")) == 3  # read once, then again twice
    r = res.results["tomo_1"]
    assert r.status == "failed" and r.read_retries == 2 and "read failed 3 time(s)" in r.error
    (msg,) = lines(caplog, logging.ERROR, "tomo_1")
    assert msg == (f"tomogram tomo_1 is written as -1: {tmp_path / 'in' / 'tomo_1.npy'}: read failed 3 time(s) with an "
                   "error that can pass by itself, the last: OSError: [Errno 5] Input/output error: "
                   f"'{tmp_path / 'in' / 'tomo_1.npy'}'. Fix: check the file system or the network; the same command "
                   "run again reads it again (failed tomograms are tried again)")
    sub = assert_valid(tmp_path / "sub.csv", ids)
    assert (sub.loc["tomo_1"] == -1).all()
    assert all(res.results[t].status == "ok" for t in ("tomo_0", "tomo_2"))
    no_traceback(caplog)
    monkeypatch.undo()  # the file system is back: the rerun reads it
    again = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    assert again.results["tomo_1"].status == "ok" and not again.failures


def test_no_read_retries_fails_at_the_first_error(models, tmp_path, monkeypatch):
    tomograms(tmp_path / "in", 2)
    calls = _flaky_reads(monkeypatch, "tomo_1", failures=1)
    base = cfg(models, tmp_path / "in", tmp_path / "sub.csv")
    res = run_predict(replace(base, read_retries=0))
    assert calls.count(str(tmp_path / "in" / "tomo_1.npy")) == 1
    assert res.results["tomo_1"].status == "failed" and "read failed 1 time(s)" in res.results["tomo_1"].error
