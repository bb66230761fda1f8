"""The fault suite (issue 15), part 1 of docs/RELIABILITY.md's table: input entries that are not used (not
tomograms, duplicates, names, unusable inputs).

Each case asserts the message (one line, naming the file, no traceback at default verbosity) and, where
a run happens, the submission (valid: the columns, every tomo_id once, each row all -1 or a finite
point). Tomograms are tiny uint8/float volumes built here; the models are the demo detectors (and a few
hand-made ONNX files with the wrong shapes). Most runs are in-process; a few go through the command
line where the exit code and stderr are the point. Helpers: tests/run/fault_helpers.py.
"""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest

from inference.common.errors import InputError
from inference.run.runner import run_predict
from tests.run.fault_helpers import assert_valid, cfg, error_line, lines, run_cli, tomograms, volume, write_mrc


@pytest.mark.parametrize("make,reason", [
    (lambda d: (d / "empty_dir").mkdir(), "empty folder"),
    (lambda d: ((d / "noslices").mkdir(), (d / "noslices" / "readme.md").write_text("x")), "no slice images"),
    (lambda d: (d / "notes.txt").write_text("x"), "unknown suffix '.txt'"),
    (lambda d: (d / "broken").symlink_to(d / "nowhere"), "a link that cannot be followed"),
    (lambda d: (d / "loop").symlink_to(d / "loop"), "a link that cannot be followed"),
    (lambda d: os.mkfifo(d / "fifo"), "neither a file nor a folder"),
    (lambda d: write_mrc(d / "tomo_m.img", volume()), "rename it to tomo_m.mrc"),
    (lambda d: np.save(d / ".tomo_hidden.npy", volume()), "hidden"),
])
def test_an_entry_that_is_not_a_tomogram_is_named_in_one_warning(models, tmp_path, caplog, make, reason):
    ids = tomograms(tmp_path / "in", 2)
    make(tmp_path / "in")
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.WARNING, "not a tomogram, not used", reason)
    assert str(tmp_path / "in") in msg
    assert_valid(tmp_path / "sub.csv", ids)
    assert not res.failures


def test_duplicate_sources_fail_that_tomogram_alone_and_a_rerun_after_the_fix_runs_it(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)
    (tmp_path / "in" / "tomo_0").mkdir()  # a slice folder with the id of tomo_0.npy
    from PIL import Image

    for z in range(24):
        Image.fromarray(volume(seed=0)[z]).save(tmp_path / "in" / "tomo_0" / f"slice_{z:04d}.png")
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.ERROR, "tomo_0/ and tomo_0.npy")
    assert "written as -1" in msg and "Fix:" in msg
    sub = assert_valid(tmp_path / "sub.csv", ids)
    assert (sub.loc["tomo_0"] == -1).all() and set(res.failures) == {"tomo_0"}
    assert res.results["tomo_1"].status == "ok"
    shutil.rmtree(tmp_path / "in" / "tomo_0")
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    assert not res.failures and res.results["tomo_0"].status == "ok"


def test_names_that_would_break_a_line_or_a_file_name(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 1)
    long_id = "tomo_" + "L" * 240  # its result file name is shortened with a hash; the submission keeps the id
    np.save(tmp_path / "in" / f"{long_id}.npy", volume(seed=2))
    np.save(tmp_path / "in" / "tomo_a\nb.npy", volume(seed=3))
    with open(os.fsencode(tmp_path / "in") + b"/tomo_\xff.npy", "wb") as fh:
        fh.write((tmp_path / "in" / "tomo_0.npy").read_bytes())
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    assert lines(caplog, logging.WARNING, "'" + str(tmp_path / "in" / "tomo_a\\nb.npy") + "'", "control character")
    assert lines(caplog, logging.WARNING, "not valid UTF-8")
    assert not res.failures and res.results[long_id].status == "ok"
    assert_valid(tmp_path / "sub.csv", sorted(ids + [long_id]))


def test_extra_files_in_a_slice_folder_are_named(models, tmp_path, caplog):
    from PIL import Image

    folder = tmp_path / "in" / "tomo_s"
    folder.mkdir(parents=True)
    for z in range(24):
        Image.fromarray(volume(seed=3)[z]).save(folder / f"slice_{z:04d}.png")
    (folder / "Thumbs.db").write_text("x")
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.WARNING, str(folder), "Thumbs.db", "not used")
    assert res.results["tomo_s"].status == "ok"
    assert_valid(tmp_path / "sub.csv", ["tomo_s"])


def test_input_one_level_too_high_says_where_the_tomograms_are(models, tmp_path, caplog):
    tomograms(tmp_path / "in" / "test", 1)
    (tmp_path / "in" / "test" / "tomo_0.npy").unlink()
    from PIL import Image

    (tmp_path / "in" / "test" / "tomo_a").mkdir()
    Image.fromarray(volume()[0]).save(tmp_path / "in" / "test" / "tomo_a" / "slice_0000.png")
    with pytest.raises(InputError, match="holds no tomograms"):
        run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.WARNING, "its sub-folders tomo_a are tomograms", "point the input at")


@pytest.mark.parametrize("make,needle", [
    (lambda d: d.mkdir(), "input folder is empty"),
    (lambda d: None, "input does not exist"),
    (lambda d: (d.mkdir(), (d / "a.txt").write_text("x")), "holds no tomograms"),
    (lambda d: d.symlink_to(d), "a link that cannot be followed"),
])
def test_an_unusable_input_is_one_error_line(models, tmp_path, make, needle):
    make(tmp_path / "in")
    rc, err = run_cli("predict", "--manifest", str(models), "--input", str(tmp_path / "in"), "--output",
                      str(tmp_path / "sub.csv"), "--workers", "0")
    assert rc == 2
    error_line(err, str(tmp_path / "in"), needle, "Fix:")
    assert not (tmp_path / "sub.csv").exists()
