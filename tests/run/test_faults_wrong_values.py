"""The fault suite (issue 15), part 2 of docs/RELIABILITY.md's table: silently wrong values (non-finite voxels,
volumes that are not 8-bit, NaN models).

Each case asserts the message (one line, naming the file, no traceback at default verbosity) and, where
a run happens, the submission (valid: the columns, every tomo_id once, each row all -1 or a finite
point). Tomograms are tiny uint8/float volumes built here; the models are the demo detectors (and a few
hand-made ONNX files with the wrong shapes). Most runs are in-process; a few go through the command
line where the exit code and stderr are the point. Helpers: tests/run/fault_helpers.py.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from inference.common.errors import InputError
from inference.manifest.parse import load_manifest
from inference.run.runner import run_predict
from tests.run.fault_helpers import assert_valid, cfg, lines, no_traceback, tomograms, variant, volume, write_mrc


def test_nan_and_inf_voxels_are_replaced_with_a_warning(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)
    vol = volume(seed=5).astype(np.float32)
    vol[3, 4, 5], vol[6, 7, 8], vol[1, 1, 1] = np.nan, np.inf, -np.inf
    np.save(tmp_path / "in" / "tomo_nan.npy", vol)
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.WARNING, str(tmp_path / "in" / "tomo_nan.npy"), "3 voxel(s) are NaN or infinite",
                   "replaced by")
    assert res.results["tomo_nan"].status == "ok"
    assert all(np.isfinite(p).all() for p in res.results["tomo_nan"].fused)
    assert_valid(tmp_path / "sub.csv", sorted(ids + ["tomo_nan"]))


def test_a_volume_without_one_finite_voxel_fails_alone(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)
    np.save(tmp_path / "in" / "tomo_void.npy", np.full((8, 16, 16), np.nan, np.float32))
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.ERROR, "tomo_void.npy", "every voxel is NaN or infinite", "written as -1")
    sub = assert_valid(tmp_path / "sub.csv", sorted(ids + ["tomo_void"]))
    assert (sub.loc["tomo_void"] == -1).all() and set(res.failures) == {"tomo_void"}


@pytest.fixture(scope="module")
def motor(tmp_path_factory):
    """A full-range uint8 tomogram with a dark blob, and an affine member tuned to it (mean/std for 0..255)."""
    root = tmp_path_factory.mktemp("motor")
    vol8 = volume((48, 96, 96), seed=11, blob=(24, 40, 56))
    lo, hi = np.percentile(vol8, [0.5, 99.5])
    vol8 = np.clip(np.rint((vol8 - lo) * 255 / (hi - lo)), 0, 255).astype(np.uint8)  # spans 0..255
    return root, vol8, {"mean": round(float(vol8.mean()), 3), "std": round(float(vol8.std()), 3)}


def _top(res, tomo_id):
    return max(res.results[tomo_id].fused, key=lambda p: p[3])


def test_a_16bit_or_float_volume_reaches_an_affine_member_as_0_255(models, motor, tmp_path, caplog):
    root, vol8, norm = motor
    manifest = variant(models, tmp_path / "m", normalize=norm)
    caplog.set_level(logging.INFO)
    (tmp_path / "u8").mkdir()
    np.save(tmp_path / "u8" / "tomo_m.npy", vol8)
    ref = run_predict(cfg(manifest, tmp_path / "u8", tmp_path / "u8.csv", default_spacing=16.0))
    (tmp_path / "f32").mkdir()
    np.save(tmp_path / "f32" / "tomo_m.npy", (vol8.astype(np.uint16) * 200 + 1000))  # 16-bit counts
    got = run_predict(cfg(manifest, tmp_path / "f32", tmp_path / "f32.csv", default_spacing=16.0))
    (msg,) = lines(caplog, logging.INFO, "tomo_m: float32 voxels 1000..52000 mapped to 0..255 by the 0.5/99.5 "
                   "percentiles")
    assert "for demo3d" in msg and got.results["tomo_m"].intensity
    a, b = _top(ref, "tomo_m"), _top(got, "tomo_m")
    assert b[3] > 0.5 and np.allclose(a[:3], b[:3], atol=2.0) and abs(a[3] - b[3]) < 0.05
    # before the rule the member saw raw counts: the same volume with intensity: raw misses the motor
    raw = variant(models, tmp_path / "raw", normalize=norm, intensity="raw")
    miss = run_predict(cfg(raw, tmp_path / "f32", tmp_path / "raw.csv", default_spacing=16.0))
    assert not miss.results["tomo_m"].fused or _top(miss, "tomo_m")[3] < 0.5


def test_a_float_volume_of_whole_0_255_values_is_8bit_data_bit_for_bit(models, motor, tmp_path, caplog):
    root, vol8, norm = motor
    manifest = variant(models, tmp_path / "m", normalize=norm)
    caplog.set_level(logging.INFO)
    for name, arr in (("u8", vol8), ("f32", vol8.astype(np.float32))):
        (tmp_path / name).mkdir()
        np.save(tmp_path / name / "tomo_m.npy", arr)
    a = run_predict(cfg(manifest, tmp_path / "u8", tmp_path / "a.csv", default_spacing=16.0))
    b = run_predict(cfg(manifest, tmp_path / "f32", tmp_path / "b.csv", default_spacing=16.0))
    assert a.results["tomo_m"].fused == b.results["tomo_m"].fused
    assert not lines(caplog, logging.INFO, "mapped to 0..255")


def test_16bit_png_slices_reach_an_affine_member_as_0_255(models, motor, tmp_path, caplog):
    from PIL import Image

    root, vol8, norm = motor
    manifest = variant(models, tmp_path / "m", normalize=norm)
    caplog.set_level(logging.INFO)
    folder = tmp_path / "in" / "tomo_p"
    folder.mkdir(parents=True)
    for z, plane in enumerate(vol8.astype(np.uint16) * 257):  # 0..65535
        Image.fromarray(plane).save(folder / f"slice_{z:04d}.png")
    res = run_predict(cfg(manifest, tmp_path / "in", tmp_path / "sub.csv", default_spacing=16.0))
    assert lines(caplog, logging.INFO, "tomo_p: float32 voxels 0..65535 mapped to 0..255")
    assert _top(res, "tomo_p")[3] > 0.5
    assert_valid(tmp_path / "sub.csv", ["tomo_p"])


def test_a_float_mrc_with_minmax_rule_is_mapped_and_logged(models, motor, tmp_path, caplog):
    root, vol8, norm = motor
    manifest = variant(models, tmp_path / "m", normalize=norm, intensity={"rule": "minmax"})
    caplog.set_level(logging.INFO)
    (tmp_path / "in").mkdir()
    write_mrc(tmp_path / "in" / "tomo_m.mrc", vol8.astype(np.float32) / 255.0 - 0.5)
    res = run_predict(cfg(manifest, tmp_path / "in", tmp_path / "sub.csv"))
    (msg,) = lines(caplog, logging.INFO, "tomo_m: float32 voxels -0.5..0.5 mapped to 0..255 by min/max")
    assert _top(res, "tomo_m")[3] > 0.5
    assert_valid(tmp_path / "sub.csv", ["tomo_m"])


@pytest.mark.parametrize("intensity,needle", [
    ({"rule": "percentiles", "low": 60, "high": 40}, "low 60 must be below high 40"),
    ({"rule": "minmax", "low": 1}, "low/high go with rule: percentiles"),
    ("stretch", "'stretch' is not one of percentiles, minmax, raw"),
])
def test_a_bad_intensity_key_is_one_manifest_error(models, tmp_path, intensity, needle):
    manifest = variant(models, tmp_path / "m", intensity=intensity)
    with pytest.raises(InputError) as err:
        load_manifest(manifest)
    assert str(manifest) in str(err.value) and needle in str(err.value) and "\n" not in str(err.value)


class _NaNOnSpikes:
    """The real engine, but NaN out for windows whose input has a value above 8 (a z-scored spike)."""

    def __init__(self, member):
        from inference.engines.registry import load_engine

        self.engine = load_engine(member.model)

    def __call__(self, batch):
        out = self.engine(batch)
        return np.full_like(out, np.nan) if float(np.max(batch)) > 8 else out


def test_a_model_giving_nan_fails_that_tomogram_naming_the_member(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)
    spiky = volume(seed=9)
    spiky[10:14, 22:26, 22:26] = 255  # z-scored: far above 8
    np.save(tmp_path / "in" / "tomo_spike.npy", spiky)
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"), engine_factory=_NaNOnSpikes)
    (msg,) = lines(caplog, logging.ERROR, "tomo_spike", "member demo3d", "NaN value(s)", "written as -1")
    assert res.results["tomo_spike"].status == "failed" and "member demo3d" in res.failures["tomo_spike"]
    assert all(res.results[t].status == "ok" for t in ids)
    sub = assert_valid(tmp_path / "sub.csv", sorted(ids + ["tomo_spike"]))
    assert (sub.loc["tomo_spike"] == -1).all()
    no_traceback(caplog)


def test_a_model_always_nan_warns_at_load_and_every_tomogram_fails(models, tmp_path, caplog):
    ids = tomograms(tmp_path / "in", 2)
    res = run_predict(cfg(models, tmp_path / "in", tmp_path / "sub.csv"),
                      engine_factory=lambda m: (lambda b: np.full((len(b), 1, 4, 8, 8), np.nan, np.float32)))
    assert lines(caplog, logging.WARNING, "member demo3d", "output on a window of zeros is not finite")
    assert set(res.failures) == set(ids)
    assert_valid(tmp_path / "sub.csv", ids)
