"""Tests of the synthetic tomogram generator (inference.synth)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from inference.cli import synth as cli_synth
from inference.common.errors import InputError
from inference.synth.generate import LABEL_COLUMNS, SUBMISSION_COLUMNS, generate
from inference.synth.reference import load_reference, scaled_shape
from inference.synth.render import render_motor, render_tomogram
from inference.synth.scene import (
    MOTOR_DIAMETER_A,
    MOTOR_MIN_SEPARATION_A,
    draw_cells,
    motor_radius_voxels,
    place_motors,
)

SCALE = 0.12


def _load(out: Path, split: str, tomo_id: str) -> np.ndarray:
    files = sorted((out / split / tomo_id).glob("slice_*.jpg"))
    return np.stack([np.asarray(Image.open(f)) for f in files])


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    out = tmp_path_factory.mktemp("train")
    labels = generate(out, 10, 0, split="train", scale=SCALE, progress=False)
    return out, labels


def test_layout_and_csv_columns(train):
    out, labels = train
    on_disk = pd.read_csv(out / "train_labels.csv")
    assert list(on_disk.columns) == LABEL_COLUMNS
    assert list(labels.columns) == LABEL_COLUMNS
    assert on_disk["row_id"].tolist() == list(range(len(on_disk)))
    ids = sorted(on_disk["tomo_id"].unique())
    assert len(ids) == 10
    assert all(re.fullmatch(r"tomo_[0-9a-f]{6}", t) for t in ids)
    assert sorted(p.name for p in (out / "train").iterdir()) == ids

    sub = pd.read_csv(out / "sample_submission.csv")
    assert list(sub.columns) == SUBMISSION_COLUMNS
    assert sub["tomo_id"].tolist() == ids
    assert (sub[SUBMISSION_COLUMNS[1:]] == -1).all().all()

    for tomo_id, g in on_disk.groupby("tomo_id"):
        shape = tuple(int(g[f"Array shape (axis {k})"].iloc[0]) for k in range(3))
        names = sorted(p.name for p in (out / "train" / tomo_id).iterdir())
        assert names == [f"slice_{z:04d}.jpg" for z in range(shape[0])]
        img = Image.open(out / "train" / tomo_id / names[0])
        assert img.mode == "L" and img.format == "JPEG"
        assert img.size == (shape[2], shape[1])  # PIL: (width, height)
        n = int(g["Number of motors"].iloc[0])
        assert (g["Number of motors"] == n).all()
        if n == 0:
            assert len(g) == 1
            assert (g[["Motor axis 0", "Motor axis 1", "Motor axis 2"]] == -1).all().all()
        else:
            assert len(g) == n


def test_spacing_groups_all_present(train):
    _, labels = train
    ref = load_reference()
    per_tomo = labels.drop_duplicates("tomo_id")
    assert set(per_tomo["Voxel spacing"]) == set(ref["voxel_spacing"])
    assert len(set(ref["voxel_spacing"])) == 10


def test_motors_inside_volume_on_a_dark_motor_and_apart(train):
    out, labels = train
    motors = labels[labels["Number of motors"] > 0]
    assert len(motors) > 0
    for tomo_id, g in motors.groupby("tomo_id"):
        vol = _load(out, "train", tomo_id).astype(np.float64)
        shape = np.array(vol.shape)
        spacing = float(g["Voxel spacing"].iloc[0])
        zyx = g[["Motor axis 0", "Motor axis 1", "Motor axis 2"]].to_numpy(float)
        assert (zyx >= 0).all() and (zyx <= shape - 1).all()
        if len(zyx) > 1:
            dist = np.linalg.norm(zyx[:, None] - zyx[None], axis=-1) * spacing
            assert dist[~np.eye(len(zyx), dtype=bool)].min() >= MOTOR_MIN_SEPARATION_A - 1
        median = np.median(vol)
        r = max(1.5, 0.25 * motor_radius_voxels(spacing))
        zz, yy, xx = np.indices(vol.shape)
        for c in zyx:
            ball = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r
            assert vol[ball].mean() < median - 10, (tomo_id, c)
        # gold beads, not motors, hold the darkest voxel: a raw argmin is wrong
        amin = np.array(np.unravel_index(np.argmin(vol), vol.shape))
        assert np.linalg.norm(zyx - amin, axis=1).min() > motor_radius_voxels(spacing)


def test_clean_render_draws_the_motor():
    shape, spacing = (40, 96, 96), 16.8
    cells = draw_cells(np.random.default_rng(1), shape, spacing)
    motors = place_motors(np.random.default_rng(2), shape, spacing, 1, cells)
    assert len(motors) == 1
    kw = dict(cells=cells, noise=False, distractors=False)
    with_motor = render_tomogram(np.random.default_rng(3), shape, spacing, motors, **kw).astype(int)
    without = render_tomogram(np.random.default_rng(3), shape, spacing, np.zeros((0, 3)), **kw).astype(int)
    z, y, x = np.round(motors[0]).astype(int)
    assert with_motor[z, y, x] < without[z, y, x] - 20
    r = int(2 * motor_radius_voxels(spacing))
    far = np.ones(shape, dtype=bool)
    far[max(0, z - r) : z + r, max(0, y - r) : y + r, max(0, x - r) : x + r] = False
    assert np.array_equal(with_motor[far], without[far])


def test_determinism_and_prefix_independence(train, tmp_path):
    out, labels = train
    again = tmp_path / "again"
    generate(again, 10, 0, split="train", scale=SCALE, progress=False)
    assert (again / "train_labels.csv").read_bytes() == (out / "train_labels.csv").read_bytes()
    assert (again / "sample_submission.csv").read_bytes() == (out / "sample_submission.csv").read_bytes()
    for tomo_id in labels["tomo_id"].unique()[:3]:
        for name in ("slice_0000.jpg", "slice_0010.jpg"):
            assert (again / "train" / tomo_id / name).read_bytes() == (out / "train" / tomo_id / name).read_bytes()

    short = generate(tmp_path / "short", 2, 0, split="train", scale=SCALE, progress=False)
    for tomo_id in short["tomo_id"].unique():  # tomogram i does not depend on n
        a, b = tmp_path / "short" / "train" / tomo_id, out / "train" / tomo_id
        assert [p.read_bytes() for p in sorted(a.iterdir())] == [p.read_bytes() for p in sorted(b.iterdir())]

    other = generate(tmp_path / "other", 2, 1, split="train", scale=SCALE, progress=False)
    assert not set(other["tomo_id"]) & set(short["tomo_id"])


def test_test_split_has_zero_or_one_motor(tmp_path):
    labels = generate(tmp_path, 8, 3, split="test", scale=0.1, progress=False)
    assert set(labels["Number of motors"]) <= {0, 1}
    assert labels["tomo_id"].is_unique
    assert (tmp_path / "test_labels.csv").is_file()
    sub = pd.read_csv(tmp_path / "sample_submission.csv")
    assert sub["tomo_id"].tolist() == sorted(labels["tomo_id"])


def test_scale_changes_shape_not_spacing(tmp_path):
    small = generate(tmp_path / "a", 3, 7, scale=0.1, progress=False).drop_duplicates("tomo_id")
    big = generate(tmp_path / "b", 3, 7, scale=0.15, progress=False).drop_duplicates("tomo_id")
    assert small["tomo_id"].tolist() == big["tomo_id"].tolist()
    assert small["Voxel spacing"].tolist() == big["Voxel spacing"].tolist()
    cols = [f"Array shape (axis {k})" for k in range(3)]
    assert (big[cols].to_numpy() >= small[cols].to_numpy()).all()
    assert (big[cols].to_numpy() > small[cols].to_numpy()).any()
    assert scaled_shape((300, 960, 928), 0.25) == (75, 240, 232)
    assert scaled_shape((300, 960, 928), 0.01) == (32, 32, 32)


def test_motor_size_follows_spacing():
    assert motor_radius_voxels(13.1) * 13.1 == pytest.approx(MOTOR_DIAMETER_A / 2)
    assert motor_radius_voxels(6.5) / motor_radius_voxels(13.1) == pytest.approx(2.0, rel=0.01)
    # the drawn motor, too: its dark footprint (area in a clean slice) scales with 1/spacing^2
    areas = []
    for spacing in (6.5, 13.1):
        shape = (int(600 / spacing), int(900 / spacing), int(900 / spacing))
        vol = np.zeros(shape, np.float32)
        centre = (np.array(shape) - 1) / 2.0
        render_motor(vol, centre, np.array([1.0, 0.0, 0.0]), 1.0, spacing)
        areas.append((vol[int(round(centre[0]))] > 0.5).sum())
    assert areas[0] / areas[1] == pytest.approx((13.1 / 6.5) ** 2, rel=0.15)


def test_refuses_to_overwrite(tmp_path):
    generate(tmp_path, 1, 0, split="test", scale=0.1, progress=False)
    with pytest.raises(InputError) as err:
        generate(tmp_path, 1, 0, split="test", scale=0.1, progress=False)
    assert "overwrite" in str(err.value)
    assert Path(err.value.path) == tmp_path / "test"
    generate(tmp_path, 1, 1, split="test", scale=0.1, progress=False, overwrite=True)
    assert len(list((tmp_path / "test").iterdir())) == 1


@pytest.mark.parametrize(
    "kwargs",
    [dict(n=0), dict(split="val"), dict(scale=0.0), dict(scale=1.5), dict(jpeg_quality=0), dict(seed=-1)],
)
def test_bad_arguments(tmp_path, kwargs):
    args = dict(n=1, seed=0, split="train", scale=0.1, jpeg_quality=90) | kwargs
    n, seed = args.pop("n"), args.pop("seed")
    with pytest.raises(InputError):
        generate(tmp_path, n, seed, progress=False, **args)


def test_reference_csv(tmp_path):
    with pytest.raises(InputError):
        load_reference(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(InputError):
        load_reference(bad)
    kaggle = tmp_path / "kaggle.csv"
    pd.DataFrame(
        {
            "row_id": [0, 1, 2],
            "tomo_id": ["tomo_a", "tomo_b", "tomo_b"],
            "Motor axis 0": [-1.0, 10.0, 20.0],
            "Motor axis 1": [-1.0, 10.0, 20.0],
            "Motor axis 2": [-1.0, 10.0, 20.0],
            "Array shape (axis 0)": [300, 500, 500],
            "Array shape (axis 1)": [960, 924, 924],
            "Array shape (axis 2)": [928, 956, 956],
            "Voxel spacing": [15.6, 19.7, 19.7],
            "Number of motors": [0, 2, 2],
        }
    ).to_csv(kaggle, index=False)
    ref = load_reference(kaggle)
    assert len(ref) == 2 and sorted(ref["voxel_spacing"]) == [15.6, 19.7]


def test_cli(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="inference")
    sub = parser.add_subparsers(dest="command")
    synth_parser = cli_synth.add_cli(sub)
    for action in synth_parser._actions:
        assert action.help, action.dest
    args = parser.parse_args(
        ["synth", "--out", str(tmp_path), "--n", "2", "--seed", "4", "--split", "test", "--scale", "0.1", "--no-progress"]
    )
    assert args.func is cli_synth.run_cli
    assert args.func(args) == 0
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and "2 test tomograms" in line
    assert len(list((tmp_path / "test").iterdir())) == 2
    with pytest.raises(InputError):
        args.func(args)
    args.overwrite = True
    assert args.func(args) == 0
