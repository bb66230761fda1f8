"""The fault suite (issue 15), part 5 of docs/RELIABILITY.md's table: quiet fallbacks (spacing, the sample
submission, memory).

Each case asserts the message (one line, naming the file, no traceback at default verbosity) and, where
a run happens, the submission (valid: the columns, every tomo_id once, each row all -1 or a finite
point). Tomograms are tiny uint8/float volumes built here; the models are the demo detectors (and a few
hand-made ONNX files with the wrong shapes). Most runs are in-process; a few go through the command
line where the exit code and stderr are the point. Helpers: tests/run/fault_helpers.py.
"""

from __future__ import annotations

import logging

import pytest

from inference.common.errors import InputError
from inference.manifest.parse import load_manifest
from inference.run import preflight
from inference.run.runner import run_predict
from tests.run.fault_helpers import assert_valid, cfg, error_line, lines, run_cli, tomograms, volume, write_mrc


def test_tomograms_missing_from_the_spacing_csv_are_named(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 3)
    (tmp_path / "spacing.csv").write_text("tomo_id,voxel_spacing\ntomo_0,16.0\n")
    run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv", spacing_csv=tmp_path / "spacing.csv"))
    (msg,) = lines(caplog, logging.WARNING, "2 of 3 tomogram(s) are not in the spacing CSV", "tomo_1, tomo_2",
                   "13.1 Å")
    assert_valid(tmp_path / "sub.csv", ids)


def test_duplicate_ids_in_the_sample_submission_are_named_and_written_once(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)
    sample = tmp_path / "sample.csv"
    sample.write_text("\ufefftomo_id,Motor axis 0,Motor axis 1,Motor axis 2\ntomo_1,0,0,0\ntomo_0,0,0,0\n"
                      "tomo_1,0,0,0\n,0,0,0\n")
    run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv", sample_submission=sample))
    (msg,) = lines(caplog, logging.WARNING, str(sample), "lists 1 tomo_id(s) more than once", "tomo_1")
    (blank,) = lines(caplog, logging.WARNING, str(sample), "without a tomo_id", "line(s) 5")
    assert sorted(ids) == ["tomo_0", "tomo_1"]
    assert_valid(tmp_path / "sub.csv", ["tomo_1", "tomo_0"])


@pytest.mark.parametrize("args,needle", [
    (["--default-spacing", "500"], "--default-spacing: 500 Å is outside 1-100 Å"),
    (["--default-spacing", "0.13"], "--default-spacing: 0.13 Å is outside 1-100 Å"),
    (["--spacing-csv", "{spacing}"], "line 3 (tomo_1): voxel spacing 0.5 Å is outside 1-100 Å"),
])
def test_a_spacing_outside_1_to_100_is_an_error_before_any_work(models, tmp_path, args, needle):
    tomograms(tmp_path / "in", 2)
    spacing = tmp_path / "spacing.csv"
    spacing.write_text("tomo_id,voxel_spacing\ntomo_0,16\ntomo_1,0.5\n")
    rc, err = run_cli("predict", "--manifest", str(models), "--input", str(tmp_path / "in"), "--output",
                      str(tmp_path / "sub.csv"), "--workers", "0", *[a.format(spacing=spacing) for a in args])
    assert rc == 2
    error_line(err, needle, "Fix:")
    assert not (tmp_path / "sub.csv").exists() and not (tmp_path / "sub.csv.work").exists()


def test_a_header_spacing_outside_1_to_100_is_ignored_with_a_warning(models, tmp_path, caplog):
    (tmp_path / "in").mkdir()
    write_mrc(tmp_path / "in" / "tomo_h.mrc", volume(), voxel=0.448)
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.WARNING, "tomo_h.mrc", "ignoring the MRC header's voxel size", "outside 1-100")
    assert res.results["tomo_h"].spacing_source == "default" and res.results["tomo_h"].spacing == 13.1


def test_a_spacing_csv_that_disagrees_with_the_header_is_one_warning_per_tomogram(models, tmp_path, caplog):
    (tmp_path / "in").mkdir()
    write_mrc(tmp_path / "in" / "tomo_h.mrc", volume(), voxel=10.0)
    (tmp_path / "spacing.csv").write_text("tomo_id,voxel_spacing\ntomo_h,16.0\n")
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv", spacing_csv=tmp_path / "spacing.csv"))
    (msg,) = lines(caplog, logging.WARNING, "tomo_h: spacing CSV says 16 Å but the MRC header says 10 Å")
    assert res.results["tomo_h"].spacing_source == "csv" and res.results["tomo_h"].spacing == 16.0


def test_a_resample_that_cannot_fit_in_memory_is_an_error_before_any_work(models, tmp_path, monkeypatch):
    tomograms(tmp_path / "in", 2)
    monkeypatch.setattr(preflight, "machine_memory", lambda: 2**20)  # 1 MiB
    with pytest.raises(InputError) as err:
        run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv", default_spacing=100.0))
    text = str(err.value)
    assert text.startswith(str(tmp_path / "in" / "tomo_0.npy")) and "at 100 Å (from the default)" in text
    assert "more than this machine's 0.0 GiB of memory" in text and "Å, not nm" in text
    assert not (tmp_path / "sub.csv").exists()
    manifest = load_manifest(models)
    assert preflight.estimate_bytes((500, 1000, 1000), 100.0, 1, manifest) > 100 * 2**30  # 100 Å: ~6x per axis
    # the largest BYU tomogram at 13.1 Å fits a 29 GiB Kaggle machine; given 90 Å (a typo) it cannot fit any
    assert preflight.estimate_bytes((500, 1912, 1847), 13.1, 1, manifest) < 20 * 2**30
    assert preflight.estimate_bytes((500, 1912, 1847), 90.0, 1, manifest) > 1000 * 2**30
    assert preflight.estimate_bytes((500, 1912, 1847), 90.0, 1, manifest, on_gpu=True) < 2 * 2**30  # host part
