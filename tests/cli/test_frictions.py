"""What a new user met, mended: exit codes, the spacing shown, a fresh --restart, a CSV as --manifest, an
--output that is no submission, a TIFF volume, a .map file."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from inference.cli.main import main
from inference.cli.predict import EXIT_ALL_FAILED
from inference.synth.demo_models import write_demo_models


@pytest.fixture
def models(tmp_path):
    return write_demo_models(tmp_path / "models")


def good(folder, n=2):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        np.save(folder / f"tomo_{i}.npy", rng.integers(90, 110, (16, 64, 64), dtype=np.uint8))


def bad(folder, n=2):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"tomo_b{i}.npy").write_bytes(b"not an array")


def predict(models, inp, out, *extra):
    return main(["predict", "--manifest", str(models), "--input", str(inp), "--output", str(out), "--no-progress",
                 "--workers", "0", *extra])


def test_every_tomogram_failing_exits_3_with_the_submission_written(models, tmp_path, capsys, caplog):
    bad(tmp_path / "in")
    with caplog.at_level(logging.INFO):
        rc = predict(models, tmp_path / "in", tmp_path / "sub.csv")
    assert rc == EXIT_ALL_FAILED == 3
    assert (tmp_path / "sub.csv").read_text().splitlines() == [
        "tomo_id,Motor axis 0,Motor axis 1,Motor axis 2", "tomo_b0,-1.0,-1.0,-1.0", "tomo_b1,-1.0,-1.0,-1.0"]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert sum("tomo_b0" in e for e in errors) == 1 and sum("tomo_b1" in e for e in errors) == 1
    out = capsys.readouterr().out
    assert "every tomogram failed" in out and "stages:" not in out
    assert not any("spacing" in r.getMessage() or "stage times" in r.getMessage() for r in caplog.records)


def test_one_success_is_exit_0_and_a_deadline_that_stops_everything_first_is_no_failure(models, tmp_path):
    good(tmp_path / "in", 1)
    bad(tmp_path / "in", 1)
    assert predict(models, tmp_path / "in", tmp_path / "sub.csv") == 0
    good(tmp_path / "in2", 2)
    assert predict(models, tmp_path / "in2", tmp_path / "late.csv", "--deadline-h", "1e-9") == 0


def test_the_spacing_used_is_shown_with_its_values_and_a_fresh_restart_says_nothing(models, tmp_path, caplog):
    good(tmp_path / "in", 2)
    with caplog.at_level(logging.INFO):
        assert predict(models, tmp_path / "in", tmp_path / "sub.csv", "--restart") == 0
    messages = [r.getMessage() for r in caplog.records]
    assert "spacing: default 2 (13.1 Å)" in messages
    assert not any("--restart: removed" in m for m in messages)


def test_a_csv_given_as_manifest_says_so(tmp_path, capsys):
    table = tmp_path / "labels.csv"
    table.write_text("tomo_id,Voxel spacing\ntomo_0,13.1\n")
    good(tmp_path / "in", 1)
    assert predict(table, tmp_path / "in", tmp_path / "sub.csv") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {table}: is a CSV table, not a manifest. Fix: pass --manifest with a weights_manifest."
                   "yaml (keys target_spacing, members, threshold); a voxel-spacing table goes to --spacing-csv"]


def test_an_output_that_is_no_submission_is_refused_and_a_submission_is_overwritten(models, tmp_path, capsys):
    good(tmp_path / "in", 1)
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    assert predict(models, tmp_path / "in", notes) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--output exists and is no submission" in err[0] and "'my notes'" in err[0]
    assert notes.read_text() == "my notes\n"
    assert predict(models, tmp_path / "in", tmp_path / "sub.csv") == 0
    assert predict(models, tmp_path / "in", tmp_path / "sub.csv", "--restart") == 0  # its own submission: rewritten


def test_a_tiff_volume_is_named_with_a_hint(models, tmp_path, caplog):
    good(tmp_path / "in", 1)
    (tmp_path / "in" / "vol.tif").write_bytes(b"II*\x00")
    with caplog.at_level(logging.WARNING):
        assert predict(models, tmp_path / "in", tmp_path / "sub.csv") == 0
    (msg,) = [r.getMessage() for r in caplog.records if "vol.tif" in r.getMessage()]
    assert "multi-page TIFF volume is not read" in msg and "vol.npy" in msg and "slice_NNNN.tif" in msg
