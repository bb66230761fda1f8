"""Tests of the synthetic CZII particles: shapes, scenes, rendering and the copick project (inference.synth.particle_*)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import zarr

from inference.cli.main import main
from inference.common.errors import InputError
from inference.io.copick_project import open_project, run_tomograms
from inference.manifest.particle_classes import CZII_CLASSES, CZII_SPACING_A
from inference.synth.particle_project import LABEL_COLUMNS, SUBMISSION_COLUMNS, generate_particles
from inference.synth.particle_render import draw_run, render_particle_tomogram
from inference.synth.particle_scene import FULL_SHAPE, NEAR_GAP_A, particle_counts, place_particles, run_shape
from inference.synth.particle_shapes import EDGE_A, class_shape, outer_radius, particle_density, random_rotation

SCALE = 0.2  # (92, 126, 126) runs
RADII = {c.name: c.radius_A for c in CZII_CLASSES}


def _grid(radius_A: float, step_A: float = 4.0):
    o = np.arange(-(radius_A + 12.0), radius_A + 12.0 + 1e-9, step_A)
    zz, yy, xx = np.meshgrid(o, o, o, indexing="ij")
    return o, np.sqrt(zz**2 + yy**2 + xx**2), (zz, yy, xx)


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(RADII))
def test_every_shape_reaches_exactly_its_class_radius(name):
    parts = class_shape(name)
    assert outer_radius(parts) == pytest.approx(1.0, abs=1e-4)
    # the farthest surface point of the union of ellipsoids |c| + max(a) bounds it from above
    assert max(math.dist(p.c, (0, 0, 0)) + max(p.a) for p in parts) >= 1.0 - 1e-4
    radius = RADII[name]
    o, r, _ = _grid(radius)
    far = 0.0
    for seed in range(2):
        dens = particle_density(parts, radius, random_rotation(np.random.default_rng(seed)), o, o, o)
        assert dens.max() <= 1.0 and dens.min() >= 0.0
        assert dens[r > radius + 3 * EDGE_A].max() < 0.05  # nothing beyond the radius but the soft edge
        far = max(far, float(r[dens >= 0.5].max()))
    assert radius - 4.0 * math.sqrt(3) <= far <= radius  # reached within one grid step


def test_hollow_and_solid_centres_as_the_complexes():
    eye = np.eye(3)
    zero = np.zeros(1)
    centre = {n: float(particle_density(class_shape(n), RADII[n], eye, zero, zero, zero)[0, 0, 0]) for n in RADII}
    assert centre["apo-ferritin"] < 0.01 and centre["virus-like-particle"] < 0.01  # cage and capsid: empty inside
    assert centre["beta-amylase"] > 0.99 and centre["ribosome"] > 0.99  # compact tetramer, large subunit
    # apo-ferritin: a 40-60 Å shell (cavity 80 Å across)
    shell = particle_density(class_shape("apo-ferritin"), 60.0, eye, np.array([50.0]), zero, zero)
    assert shell[0, 0, 0] > 0.9
    assert class_shape("apo-ferritin")[0].hollow == pytest.approx(2 / 3)


def test_elongated_classes_are_elongated():
    """Principal extents of the density: thyroglobulin and beta-galactosidase are long, apo-ferritin round."""
    def ratio(name):
        o, _, (zz, yy, xx) = _grid(RADII[name], 5.0)
        d = particle_density(class_shape(name), RADII[name], np.eye(3), o, o, o).astype(float)
        pts = np.stack([zz, yy, xx], -1).reshape(-1, 3)
        w = d.ravel() / d.sum()
        cov = (pts * w[:, None]).T @ pts - np.outer(w @ pts, w @ pts)
        ev = np.linalg.eigvalsh(cov)
        return math.sqrt(ev[-1] / ev[0])

    assert ratio("thyroglobulin") > 2.0
    assert ratio("beta-galactosidase") > 1.3
    assert ratio("apo-ferritin") < 1.05


def test_random_rotation_is_a_rotation_and_seeded():
    a = random_rotation(np.random.default_rng(5))
    assert np.allclose(a @ a.T, np.eye(3)) and np.linalg.det(a) == pytest.approx(1.0)
    assert np.array_equal(a, random_rotation(np.random.default_rng(5)))


# --------------------------------------------------------------------------------------------
# Scene
# --------------------------------------------------------------------------------------------
def test_run_shape_is_a_crop_of_the_real_tomogram():
    assert run_shape(1.0) == FULL_SHAPE == (184, 630, 630)
    assert run_shape(0.25) == (92, 158, 158)  # z keeps half of its 184
    assert run_shape(0.6) == (110, 378, 378)
    assert run_shape(0.01) == (92, 40, 40)
    for bad in (0, 1.5, -1, True):
        with pytest.raises(InputError):
            run_shape(bad)


def test_counts_scale_with_the_volume_and_never_drop_a_class():
    small = particle_counts(np.random.default_rng(0), (92, 40, 40), CZII_CLASSES)
    assert len(small) == 6 and min(small) >= 1
    full = particle_counts(np.random.default_rng(0), FULL_SHAPE, CZII_CLASSES)
    assert min(full) >= 30  # several tens of each class in a full-size run


def test_placement_inside_without_overlap_and_some_touching():
    shape = run_shape(0.25)
    rng = np.random.default_rng(3)
    counts = [12, 6, 6, 8, 8, 6]
    placed = place_particles(rng, shape, CZII_SPACING_A, CZII_CLASSES, counts)
    assert len(placed) == sum(counts)
    assert [sum(p.cls == k for p in placed) for k in range(6)] == counts
    c = np.array([p.zyx for p in placed])
    r = np.array([CZII_CLASSES[p.cls].radius_A for p in placed])
    rv = r[:, None] / CZII_SPACING_A
    assert (c >= rv).all() and (c <= np.asarray(shape) - 1 - rv).all()
    d = np.linalg.norm(c[:, None] - c[None], axis=-1) * CZII_SPACING_A
    sum_r = r[:, None] + r[None]
    off = ~np.eye(len(c), dtype=bool)
    assert (d[off] >= sum_r[off] - 1e-6).all()
    touching = (d[off] <= sum_r[off] + NEAR_GAP_A[1] + 1e-6).sum() // 2
    assert touching >= 5  # pairs a watershed has to split


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------
def test_particles_are_darker_than_the_background_and_render_is_seeded():
    shape = (64, 96, 96)
    particles, vol = draw_run(np.random.default_rng(8), shape, CZII_SPACING_A, CZII_CLASSES)
    assert vol.dtype == np.float32 and vol.shape == shape
    _, again = draw_run(np.random.default_rng(8), shape, CZII_SPACING_A, CZII_CLASSES)
    assert np.array_equal(vol, again)
    clean = render_particle_tomogram(np.random.default_rng(1), shape, CZII_SPACING_A, particles, CZII_CLASSES,
                                     noise=False, blobs=False)
    assert clean.max() <= 0.0 and clean.min() < -0.8  # minus the blurred density: matter is dark
    inside = clean < -0.5
    assert vol[inside].mean() < vol[~inside].mean() - 0.5 * vol.std()


# --------------------------------------------------------------------------------------------
# The copick project
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def project(tmp_path_factory):
    out = tmp_path_factory.mktemp("czii")
    labels = generate_particles(out, 2, 11, scale=SCALE, progress=False)
    return out, labels


def test_project_layout_config_and_csvs(project):
    out, labels = project
    assert (out / "copick_config.json").is_file()
    cfg = json.loads((out / "copick_config.json").read_text())
    assert cfg["config_type"] == "filesystem"
    assert cfg["overlay_root"].startswith("local://")
    objs = {o["name"]: o for o in cfg["pickable_objects"]}
    assert list(objs) == [c.name for c in CZII_CLASSES]
    assert [o["label"] for o in objs.values()] == [1, 2, 3, 4, 5, 6]
    assert [o["pdb_id"] for o in objs.values()] == ["4V1W", "1FA2", "6X1Q", "6EK0", "6SCJ", "6N4V"]
    for c in CZII_CLASSES:
        o = objs[c.name]
        assert o["radius"] == c.radius_A and o["is_particle"] is True
        assert len(o["color"]) == 4 and all(0 <= v <= 255 for v in o["color"])
    runs = sorted(p.name for p in (out / "ExperimentRuns").iterdir())
    assert len(runs) == 2 and all(pd.Series(runs).str.fullmatch(r"TS_\d+_\d"))
    for run in runs:
        assert sorted(p.name for p in (out / "ExperimentRuns" / run).iterdir()) == ["Picks", "VoxelSpacing10.000"]
        assert sorted(p.name for p in (out / "ExperimentRuns" / run / "Picks").iterdir()) == sorted(
            f"curation_0_{c.name}.json" for c in CZII_CLASSES)
    on_disk = pd.read_csv(out / "labels.csv")
    assert list(on_disk.columns) == LABEL_COLUMNS
    assert sorted(set(on_disk.experiment)) == runs
    pd.testing.assert_frame_equal(on_disk, labels.reset_index(drop=True), check_dtype=False)
    sub = pd.read_csv(out / "sample_submission.csv")
    assert list(sub.columns) == SUBMISSION_COLUMNS and len(sub) == 0
    proj = open_project(out / "copick_config.json")  # the project reader sees the runs and their tomograms
    assert [t.experiment for t in run_tomograms(proj)] == runs


def test_zarr_level0_is_10_012_A_in_the_10_000_folder(project):
    out, _ = project
    shape = run_shape(SCALE)
    for path in sorted((out / "ExperimentRuns").glob("*/VoxelSpacing10.000/denoised.zarr")):
        group = zarr.open_group(str(path), mode="r")
        ms = group.attrs["multiscales"][0]
        scales = [d["coordinateTransformations"][0]["scale"] for d in ms["datasets"]]
        assert scales == [[10.012] * 3, [20.024] * 3, [40.048] * 3]
        assert [a["unit"] for a in ms["axes"]] == ["angstrom"] * 3
        assert group["0"].shape == shape and group["0"].dtype == np.float32
        assert group["1"].shape == tuple(n // 2 for n in shape)
        assert group["2"].shape == tuple(n // 4 for n in shape)


def test_picks_are_the_labels_inside_the_volume_and_apart(project):
    out, labels = project
    shape = np.asarray(run_shape(SCALE))
    for run, g in labels.groupby("experiment"):
        centres, radii = [], []
        for c in CZII_CLASSES:
            doc = json.loads((out / "ExperimentRuns" / run / "Picks" / f"curation_0_{c.name}.json").read_text())
            assert (doc["pickable_object_name"], doc["user_id"], doc["session_id"], doc["run_name"]) == (
                c.name, "curation", "0", run)
            xyz = np.array([[p["location"][a] for a in "xyz"] for p in doc["points"]]).reshape(-1, 3)
            rows = g[g.particle_type == c.name][["x", "y", "z"]].to_numpy()
            assert np.allclose(xyz, rows)
            assert len(xyz) >= 1
            zyx = xyz[:, ::-1] / CZII_SPACING_A  # Å -> level-0 voxel index, x/y/z -> z/y/x
            rv = c.radius_A / CZII_SPACING_A
            assert (zyx >= rv - 1e-3).all() and (zyx <= shape - 1 - rv + 1e-3).all()
            centres += list(xyz)
            radii += [c.radius_A] * len(xyz)
        c = np.array(centres)
        r = np.array(radii)
        d = np.linalg.norm(c[:, None] - c[None], axis=-1) + np.eye(len(c)) * 1e9
        assert (d >= r[:, None] + r[None] - 0.01).all()


def test_project_is_deterministic_and_runs_do_not_depend_on_n(project, tmp_path):
    out, labels = project
    first = generate_particles(tmp_path / "one", 1, 11, scale=SCALE, progress=False)
    run = first.experiment.iloc[0]
    pd.testing.assert_frame_equal(first, labels[labels.experiment == run].reset_index(drop=True))
    a = zarr.open_group(str(out / "ExperimentRuns" / run / "VoxelSpacing10.000" / "denoised.zarr"), mode="r")
    b = zarr.open_group(str(tmp_path / "one" / "ExperimentRuns" / run / "VoxelSpacing10.000" / "denoised.zarr"),
                        mode="r")
    assert np.array_equal(a["0"][...], b["0"][...])
    other = generate_particles(tmp_path / "other", 1, 12, scale=SCALE, progress=False)
    assert not other[["x", "y", "z"]].equals(first[["x", "y", "z"]])


def test_project_refuses_a_non_empty_folder_unless_overwrite(tmp_path):
    out = tmp_path / "p"
    generate_particles(out, 1, 0, scale=0.05, progress=False)
    (out / "mine.txt").write_text("keep")
    with pytest.raises(InputError, match="not empty"):
        generate_particles(out, 1, 0, scale=0.05, progress=False)
    labels = generate_particles(out, 1, 1, scale=0.05, progress=False, overwrite=True)
    assert (out / "mine.txt").read_text() == "keep"
    assert sorted(p.name for p in (out / "ExperimentRuns").iterdir()) == sorted(set(labels.experiment))
    with pytest.raises(InputError):
        generate_particles(tmp_path / "q", 0, 0)


def test_cli_synth_particles_and_motor_only_flags(tmp_path, capsys):
    assert main(["-q", "synth", "--task", "particles", "--out", str(tmp_path / "d"), "--n", "1", "--seed", "2",
                 "--scale", "0.05", "--no-progress"]) == 0
    line = capsys.readouterr().out
    assert line.startswith("synth: 1 particle runs") and "copick_config.json" in line
    assert (tmp_path / "d" / "labels.csv").is_file()
    assert main(["-q", "synth", "--task", "particles", "--out", str(tmp_path / "e"), "--split", "test"]) != 0
    assert "--split is for --task motors only" in capsys.readouterr().err
