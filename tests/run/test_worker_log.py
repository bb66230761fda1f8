"""A worker's log lines are written by the dispatcher, through the progress bar: each on a line of its own."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.run.backends.worker_log import PipeLogHandler, relay
from inference.synth.demo_models import write_demo_models
from tests.run.fault_helpers import write_mrc

REPO = Path(__file__).resolve().parents[2]


def test_a_record_goes_over_the_pipe_and_comes_out_named_by_its_worker(caplog):
    sent = []
    handler = PipeLogHandler(3, sent.append)
    log = logging.getLogger("inference.io.mrc")
    try:
        raise ValueError("broken\nsecond line")
    except ValueError:
        record = log.makeRecord(log.name, logging.WARNING, __file__, 1, "tomo %s: odd", ("a\nb",), sys.exc_info())
    handler.emit(record)
    (message,) = sent
    assert message[:5] == ("log", 3, logging.WARNING, "inference.io.mrc", "tomo a\\nb: odd")
    assert message[5].startswith("Traceback") and message[5].endswith("ValueError: broken\n    second line")
    with caplog.at_level(logging.WARNING):
        relay(message)
    (got,) = caplog.records
    assert got.name == "worker3 inference.io.mrc" and got.getMessage() == "tomo a\\nb: odd" and got.exc_text
    caplog.clear()
    with caplog.at_level(logging.ERROR):  # below the dispatcher's level: dropped
        relay(message)
    assert not caplog.records


def test_worker_warnings_do_not_land_on_the_progress_bar(tmp_path):
    pytest.importorskip("mrcfile")
    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):  # a 1.0 Å header: a placeholder, warned about in the worker that reads it
        write_mrc(tmp_path / "in" / f"tomo_{i}.mrc", rng.integers(90, 110, (16, 64, 64), dtype=np.uint8), voxel=1.0)
    manifest = write_demo_models(tmp_path / "models")
    proc = subprocess.run([sys.executable, "-m", "inference", "predict", "--manifest", str(manifest), "--input",
                           str(tmp_path / "in"), "--output", str(tmp_path / "sub.csv"), "--workers", "1"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    shown = [line.split("\r")[-1] for line in proc.stderr.split("\n")]  # what a terminal shows of each line
    warnings = [s for s in shown if "WARNING" in s]
    assert len(warnings) == 3 and all(s.startswith("WARNING worker0 inference.io.mrc: ") for s in warnings), shown
    assert any("tomograms:" in line for line in proc.stderr.split("\n"))  # the bar was there
