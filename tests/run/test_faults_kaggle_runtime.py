"""The fault suite (issue 15), part 6 of docs/RELIABILITY.md's table: the Kaggle runtime and builds, signals,
options and OS errors on the command line.

Each case asserts the message (one line, naming the file, no traceback at default verbosity) and, where
a run happens, the submission (valid: the columns, every tomo_id once, each row all -1 or a finite
point). Tomograms are tiny uint8/float volumes built here; the models are the demo detectors (and a few
hand-made ONNX files with the wrong shapes). Most runs are in-process; a few go through the command
line where the exit code and stderr are the point. Helpers: tests/run/fault_helpers.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from inference.cli.main import main as cli_main
from inference.common.errors import InputError
from inference.ensemble.submission import SUBMISSION_COLUMNS
from tests.run.fault_helpers import REPO, assert_valid, stored_results, tomograms, volume


def _kaggle_tree(tmp_path, record: str | None) -> tuple[Path, Path]:
    root = tmp_path / "kaggle"
    ds = root / "input" / "motor-offline"
    ds.mkdir(parents=True)
    if record is not None:
        (ds / "motorfinder-build.json").write_text(record)
    comp = root / "input" / "byu-locating-bacterial-flagellar-motors-2025"
    (comp / "test").mkdir(parents=True)
    (comp / "sample_submission.csv").write_text(",".join(SUBMISSION_COLUMNS) + "\ntomo_a,-1,-1,-1\ntomo_b,-1,-1,-1\n")
    return root, ds


@pytest.mark.parametrize("record", [None, "not json", '{"wheel": ""}'])
def test_the_notebook_never_raises_and_ends_with_a_valid_submission(tmp_path, monkeypatch, capsys, record):
    from kaggle_builder import runtime
    from kaggle_builder.target import BYU, RECORD_NAME

    root, ds = _kaggle_tree(tmp_path, record)
    if record is not None:
        (ds / "motorfinder-build.json").rename(ds / RECORD_NAME)
    monkeypatch.setenv("MOTORFINDER_PYTHON", str(tmp_path / "no-such-python"))
    run = runtime.Run(root, ds, {"competition": BYU.competition, "gpus": 1, "budget_h": 8.5, "fp16_engines": False})
    assert run.install() is False and run.print_environment() is None
    run.build_engines()
    assert run.predict() is False
    assert run.check_submission() == ["no submission"]
    assert_valid(root / "working" / "submission.csv", ["tomo_a", "tomo_b"])
    assert "FAILED" in capsys.readouterr().out


def test_the_notebooks_predict_with_a_missing_interpreter_is_a_step_failure(tmp_path, monkeypatch, capsys):
    from kaggle_builder import runtime
    from kaggle_builder.target import BYU, RECORD_NAME

    root, ds = _kaggle_tree(tmp_path, None)
    (ds / RECORD_NAME).write_text(json.dumps({"wheel": "motorfinder-0.1.0-py3-none-any.whl"}))
    monkeypatch.setenv("MOTORFINDER_PYTHON", str(tmp_path / "no-such-python"))
    run = runtime.Run(root, ds, {"competition": BYU.competition, "gpus": 1, "budget_h": 8.5, "fp16_engines": False})
    run.status["steps"]["install"] = {"ok": True}  # as if installed: predict itself cannot start python
    assert run.predict() is False
    assert "predict FAILED: FileNotFoundError" in capsys.readouterr().out
    run.check_submission()
    assert_valid(root / "working" / "submission.csv", ["tomo_a", "tomo_b"])


def test_a_build_into_a_folder_with_user_files_is_refused_and_deletes_nothing(tmp_path):  # issue 11's guarantee
    from kaggle_builder import ownership

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("years of work")
    with pytest.raises(InputError) as err:
        ownership.check_writable(tmp_path / "out")
    assert str(tmp_path / "out") in str(err.value) and "\n" not in str(err.value)
    assert (tmp_path / "out" / "thesis.tex").read_text() == "years of work"


def test_sigterm_writes_the_submission_and_exits_143(models, tmp_path):
    big = tmp_path / "in"
    big.mkdir()
    for i in range(6):
        np.save(big / f"tomo_{i}.npy", volume((64, 160, 160), seed=i))
    proc = subprocess.Popen([sys.executable, "-m", "inference", "-q", "predict", "--manifest", str(models), "--input",
                             str(big), "--output", str(tmp_path / "sub.csv"), "--workers", "0", "--no-progress"],
                            stderr=subprocess.PIPE, text=True, cwd=REPO)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60 and not list(stored_results(tmp_path).glob("*.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("terminated (SIGTERM); what was done is saved")
    sub = assert_valid(tmp_path / "sub.csv", [f"tomo_{i}" for i in range(6)])
    assert len(sub) == 6


@pytest.mark.parametrize("option,needle", [
    (["--read-threads", "0"], "--read-threads 0 must be >= 1"),
    (["--threads", "-2"], "--threads -2 must be >= 1"),
    (["--decoder", "bogus"], "unknown slice decoder 'bogus'"),
    (["--deadline-h", "nan"], "--deadline-h nan must be a number of hours > 0"),
    (["--workers", "-1"], "--workers, --retries and --read-retries must be >= 0"),
    (["--read-retries", "-1"], "--workers, --retries and --read-retries must be >= 0"),
])
def test_an_option_that_would_fail_every_tomogram_is_one_line_before_any_work(models, tmp_path, capsys, option,
                                                                              needle):
    tomograms(tmp_path / "in", 1)
    rc = cli_main(["-q", "predict", "--manifest", str(models), "--input", str(tmp_path / "in"), "--output",
                   str(tmp_path / "sub.csv"), *option])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and needle in err and "Fix:" in err and err.count("\n") == 1
    assert not (tmp_path / "sub.csv").exists()


def test_an_os_error_outside_our_checks_is_one_line_naming_the_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    rc = cli_main(["-q", "synth", "--out", str(tmp_path / "file" / "data"), "--n", "1", "--scale", "0.05",
                   "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.startswith(f"error: {tmp_path / 'file' / 'data'}") and "Not a directory" in err and "Fix:" in err


def test_a_hostile_file_name_reaches_the_notebook_as_a_literal(tmp_path):
    import ast

    from kaggle_builder.config import BuildConfig
    from kaggle_builder.notebook import notebook_cells

    name = 'x"); import os; os.system("rm -rf ~"); ("'
    cells = notebook_cells(BuildConfig(manifest=tmp_path / "m.yaml", out=tmp_path / "b", dataset_id=f"me/{name}"),
                           wheel_name=name + ".whl", members=[name], engines=[], wheels=[])
    code = [src for kind, src in cells if kind == "code"]
    for src in code:
        tree = ast.parse(src)
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "system"]
        assert not calls, src
    assert repr(name + ".whl") in code[0]
