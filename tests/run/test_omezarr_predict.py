"""predict over OME-Zarr tomograms: the same submission as the JPEG slices; levels; bad stores; copick picks."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from inference.io.readers import read_slices
from inference.manifest.parse import load_manifest
from inference.run.runner import PredictConfig, run_predict
from inference.synth.demo_models import write_demo_models
from inference.synth.generate import generate

pytest.importorskip("zarr", minversion="3", reason="the OME-Zarr reader needs zarr >= 3 (Python >= 3.11)")

from inference.synth.omezarr_write import write_omezarr


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """5 synthetic test tomograms as JPEG slice folders, and the same volumes as OME-Zarr (levels 0/1/2, Å)."""
    root = tmp_path_factory.mktemp("zarrpredict")
    labels = generate(root / "jpeg", 5, 33, split="test", scale=0.12, progress=False)
    spacing = labels.groupby("tomo_id")["Voxel spacing"].first()
    for folder in sorted((root / "jpeg" / "test").iterdir()):
        write_omezarr(root / "zarr" / f"{folder.name}.zarr", read_slices(folder), float(spacing[folder.name]),
                      levels=3, chunks=(16, 32, 32))
    return root, write_demo_models(root / "models", with_2d=True), labels


def config(data, out, **kw) -> PredictConfig:
    root, manifest, _ = data
    kw = {"input_dir": root / "jpeg" / "test", **kw}
    return PredictConfig(manifest=load_manifest(manifest), output=out / "submission.csv", candidates_dir=out / "cands",
                         progress=False, write_every_s=0.0, **kw)


def files(out) -> dict[str, bytes]:
    got = {p.name: p.read_bytes() for p in (out / "cands").iterdir()}
    got["submission.csv"] = (out / "submission.csv").read_bytes()
    return got


def test_zarr_gives_the_same_submission_as_jpeg_slices_with_a_spacing_csv(data, tmp_path):
    root = data[0]
    jpeg = run_predict(config(data, tmp_path / "jpeg", spacing_csv=root / "jpeg" / "test_labels.csv"))
    # no spacing CSV: the spacing comes from each store's level-0 scale; a worker process reads them
    zarr = run_predict(config(data, tmp_path / "zarr", input_dir=root / "zarr", workers=1))
    assert files(tmp_path / "zarr") == files(tmp_path / "jpeg")
    assert {r.spacing_source for r in zarr.results.values()} == {"header"}
    assert {r.spacing_source for r in jpeg.results.values()} == {"csv"}
    assert len(zarr.results) == 5 and not zarr.failures


def test_auto_level_reports_level0_voxels(data, tmp_path):
    """A tomogram with a motor, upsampled 2x (np.repeat) and declared at half its spacing: level 1 of its
    pyramid IS the original volume at the original spacing, so ``auto`` (16 Å target) reads level 1 and must
    report the original run's points as level-0 voxels, ``2 i + 0.5`` (level 1's voxel i is the centre of
    level-0 voxels 2i and 2i+1), at the declared spacing."""
    root, _, labels = data
    motor = labels[labels["Number of motors"] > 0].iloc[0]
    t, s = motor["tomo_id"], float(motor["Voxel spacing"])
    vol = read_slices(root / "jpeg" / "test" / t)
    write_omezarr(tmp_path / "orig" / f"{t}.zarr", vol, s, levels=1)
    up = vol.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    write_omezarr(tmp_path / "up" / f"{t}.zarr", up, s / 2, levels=3)
    orig = run_predict(config(data, tmp_path / "o", input_dir=tmp_path / "orig"))
    auto = run_predict(config(data, tmp_path / "a", input_dir=tmp_path / "up", zarr_level="auto"))
    a, o = auto.results[t], orig.results[t]
    assert o.fused, "the fixture's motor tomogram should give candidates"
    assert a.spacing == s / 2 and a.shape == list(up.shape)
    assert a.fused == [[2 * z + 0.5, 2 * y + 0.5, 2 * x + 0.5, c] for z, y, x, c in o.fused]
    for name in o.members:
        assert a.members[name] == [[2 * z + 0.5, 2 * y + 0.5, 2 * x + 0.5, c] for z, y, x, c in o.members[name]]
    assert set(auto.fused["voxel_spacing"]) == {s / 2}
    # the Å positions agree up to the half coarse voxel the block centre sits at
    assert np.allclose(np.array(a.fused)[:, :3] * (s / 2), np.array(o.fused)[:, :3] * s + s / 4)


def test_a_bad_store_is_written_as_minus_one_and_the_run_goes_on(data, tmp_path):
    root = data[0]
    stores = sorted((root / "zarr").iterdir())
    bad = tmp_path / "input"
    bad.mkdir()
    for store in stores[1:]:
        (bad / store.name).symlink_to(store, target_is_directory=True)
    first = stores[0]
    broken = bad / first.name
    broken.mkdir()
    (broken / ".zgroup").write_text('{"zarr_format": 2}')
    (broken / ".zattrs").write_text('{"multiscales": [{"axes": ["z", "y"]}]}')
    res = run_predict(config(data, tmp_path / "out", input_dir=bad))
    victim = first.name[:-5]
    assert set(res.failures) == {victim} and "multiscales[0].axes must list 3 to 5 axes" in res.failures[victim]
    sub = pd.read_csv(tmp_path / "out" / "submission.csv").set_index("tomo_id")
    assert len(sub) == 5 and (sub.loc[victim] == -1).all()


def test_copick_picks_are_the_fused_points_in_angstrom(data, tmp_path):
    root = data[0]
    res = run_predict(config(data, tmp_path, input_dir=root / "zarr", copick_out=tmp_path / "copick"))
    for t, r in res.results.items():
        doc = json.loads((tmp_path / "copick" / "ExperimentRuns" / t / "Picks" /
                          "motorfinder_0_flagellar-motor.json").read_text())
        assert doc["pickable_object_name"] == "flagellar-motor" and doc["session_id"] == "0" and doc["run_name"] == t
        assert doc["unit"] == "angstrom" and doc["voxel_spacing"] == r.spacing
        got = [[p["location"]["z"], p["location"]["y"], p["location"]["x"], p["score"]] for p in doc["points"]]
        assert got == [[z * r.spacing, y * r.spacing, x * r.spacing, c] for z, y, x, c in r.fused]
    config_json = json.loads((tmp_path / "copick" / "copick_config.json").read_text())
    assert config_json["pickable_objects"][0]["name"] == "flagellar-motor"
    assert config_json["overlay_root"] == f"local://{(tmp_path / 'copick').resolve()}"


def test_zarr_level_is_part_of_the_run_key(data, tmp_path, caplog):
    root = data[0]
    cfg = config(data, tmp_path, input_dir=root / "zarr")
    run_predict(cfg)
    with caplog.at_level(logging.INFO):
        run_predict(cfg)
        assert "resuming: 5 of 5" in caplog.text and "computed again" not in caplog.text
        caplog.clear()
        run_predict(replace(cfg, zarr_level=1))  # another level, other results: recomputed, not reused
    assert "5 stored result(s) were computed from other inputs" in caplog.text


def test_cli_listing_auto_level_and_copick(data, tmp_path):
    import subprocess
    import sys

    root, manifest, _ = data
    listing = tmp_path / "sources.txt"
    listing.write_text("# OME-Zarr stores\n" + "\n".join(str(p) for p in sorted((root / "zarr").iterdir())) + "\n")
    out = tmp_path / "sub.csv"
    proc = subprocess.run([sys.executable, "-m", "inference", "-q", "predict", "--manifest", str(manifest), "--input",
                           str(listing), "--output", str(out), "--zarr-level", "auto", "--copick-out",
                           str(tmp_path / "copick"), "--workers", "0", "--no-progress"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_csv(out)) == 5 and len(list((tmp_path / "copick" / "ExperimentRuns").iterdir())) == 5
    bad = subprocess.run([sys.executable, "-m", "inference", "predict", "--manifest", str(manifest), "--input",
                          str(listing), "--output", str(out), "--zarr-level", "coarse"], capture_output=True, text=True)
    assert bad.returncode == 2 and "expected 'auto' or a level index 0, 1, ..., got 'coarse'" in bad.stderr
