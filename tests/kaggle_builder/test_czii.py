"""The czii target (CZII - CryoET Object Identification) beside byu: its facts, the build (metadata, record,
notebook, wheels), the manifest/target mismatch, the profile's reference, the dry run; and byu unchanged."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nbformat
import pytest
import tomllib

import build_submission as bs
from inference.manifest.parse import load_manifest
from inference.synth.particle_demo_model import write_particle_demo_models
from inference.synth.particle_project import SPACING_FOLDER, SUBMISSION_COLUMNS
from kaggle_builder.build import build
from kaggle_builder.config import BuildConfig
from kaggle_builder.cost import reference_windows
from kaggle_builder.dataset import dataset_metadata
from kaggle_builder.notebook import kernel_metadata, notebook_cells
from kaggle_builder.profile import MemberMeasure, TomoMeasure, profile_report
from kaggle_builder.profile_render import markdown
from kaggle_builder.target import BYU, CZII, RECORD_NAME, TARGETS
from kaggle_builder.wheels import ONNXRUNTIME_GPU, PARTICLES
from tests.kaggle_builder.kaggle_helpers import DATASET_ID, cfg, fake_source, fake_wheel

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["apo-ferritin", "beta-amylase", "beta-galactosidase", "ribosome", "thyroglobulin", "virus-like-particle"]


@pytest.fixture(scope="module")
def particle_manifest(tmp_path_factory) -> Path:
    return write_particle_demo_models(tmp_path_factory.mktemp("particle-models"))



@pytest.fixture(scope="module")
def czii_built(particle_manifest, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("czii")
    groups = {"motorfinder": ["mrcfile"], "particles": ["zarr", "numcodecs"], "onnxruntime-gpu": ["onnxruntime-gpu"]}
    source = fake_source(tmp / "wheels", groups)
    built = build(cfg(particle_manifest, tmp / "out", target=CZII), wheel_source=source, wheel_builder=fake_wheel)
    return built, source


def test_the_targets_facts():
    assert TARGETS == {"byu": BYU, "czii": CZII}
    assert (CZII.competition, CZII.task, CZII.test_input, CZII.sample_submission) == (
        "czii-cryo-et-object-identification", "particles", "test/static", None)
    assert (CZII.hidden_test_tomograms, CZII.limit_h, CZII.median_shape, CZII.median_spacing_A) == (
        500, 12.0, (184, 630, 630), 10.012)
    assert 0 < CZII.budget_h < CZII.limit_h and list(CZII.submission_header) == SUBMISSION_COLUMNS
    assert (CZII.dataset_slug, CZII.kernel_slug) == ("motorfinder-czii-offline", "motorfinder-czii-submission")
    # byu: today's values
    assert (BYU.competition, BYU.task, BYU.test_input, BYU.sample_submission, BYU.hidden_test_tomograms, BYU.limit_h,
            BYU.budget_h, BYU.median_shape, BYU.median_spacing_A) == (
        "byu-locating-bacterial-flagellar-motors-2025", "motors", "test", "sample_submission.csv", 900, 9.0, 8.5,
        (300, 960, 928), 13.1)
    assert BuildConfig(Path("m"), Path("o")).target is BYU


def test_the_config_takes_the_targets_defaults():
    c = BuildConfig(Path("m"), Path("o"), target=CZII)
    assert (c.dataset_id, c.kernel_id, c.title, c.budget_h) == (
        "your-username/motorfinder-czii-offline", "your-username/motorfinder-czii-submission",
        "motorfinder CZII offline package", 11.5)
    b = BuildConfig(Path("m"), Path("o"))
    assert (b.dataset_id, b.kernel_id, b.title, b.budget_h) == (
        "your-username/motorfinder-byu-offline", "your-username/motorfinder-byu-submission",
        "motorfinder BYU offline package", 8.5)


def test_the_czii_build(czii_built):
    czii_built, source = czii_built
    meta = json.loads((czii_built.notebook_dir / "kernel-metadata.json").read_text())
    assert meta["competition_sources"] == [CZII.competition] and meta["dataset_sources"] == [DATASET_ID]
    assert meta["machine_shape"] == "NvidiaTeslaT4" and meta["enable_internet"] is False
    ds_meta = json.loads((czii_built.dataset_dir / "dataset-metadata.json").read_text())
    assert ds_meta["description"].startswith("Offline package for the Kaggle competition CZII - CryoET Object "
                                             "Identification: ")
    record = json.loads((czii_built.dataset_dir / RECORD_NAME).read_text())
    assert record["task"] == "particles" and record["particle_types"] == CLASSES
    assert record["members"] == {"seg": "seg.onnx"} and (czii_built.dataset_dir / "seg.onnx").is_file()
    # the particles group: zarr (OME-Zarr runs) and the decoders' extras, asked for by the install
    assert source.calls[0][1] == ["motorfinder", "particles", "onnxruntime-gpu"]
    assert record["wheel_groups"] == ["motorfinder", "particles", "onnxruntime-gpu"]
    assert record["requirements"] == [*PARTICLES, ONNXRUNTIME_GPU]
    assert czii_built.target is CZII


def test_the_czii_notebook(czii_built):
    nb = nbformat.read(str(czii_built[0].notebook), as_version=4)
    nbformat.validate(nb)
    intro = nb.cells[0].source
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert intro.startswith("# motorfinder: CZII particles, offline submission") and "limit is 12 h" in intro
    assert "`id,experiment,particle_type,x,y,z`" in intro
    assert len(code) == 7 and all(len(src.splitlines()) <= 14 for src in code)
    ns = {}
    exec(code[1].split("RUN = ")[0], ns)  # the settings literal, without the runtime
    assert ns["SETTINGS"] == {"competition": CZII.competition, "task": "particles", "test_input": "test/static",
                              "sample_submission": None, "devices": "all", "budget_h": 11.5, "fp16_engines": True}
    assert "Kaggle's limit: 12 h" in code[1] and "RUN.check_submission()" in code[6]


def test_byu_builds_are_todays():
    """The byu notebook and metadata for fixed inputs, byte for byte: today's, plus the settings the czii target
    added (task, test_input, sample_submission and their comment line)."""
    c = BuildConfig(manifest=Path("m.yaml"), out=Path("o"), dataset_id="alice/motor-offline",
                    kernel_id="alice/motor-submission")
    now = {"cells": notebook_cells(c, "motorfinder-0.1.0-py3-none-any.whl", ["demo3d", "demo2d"], [], ["a.whl"]),
           "kernel": kernel_metadata(c, "x.ipynb"), "dataset": dataset_metadata(c)}
    golden = json.loads((Path(__file__).parent / "data" / "byu_notebook.json").read_text())
    assert json.loads(json.dumps(now)) == golden


def test_byu_record_keys(demo_manifest, tmp_path):
    res = build(cfg(demo_manifest, tmp_path / "out"), wheel_source=fake_source(tmp_path / "w"),
                wheel_builder=fake_wheel)
    record = json.loads((res.dataset_dir / RECORD_NAME).read_text())
    assert record["task"] == "motors" and record["particle_types"] == []
    assert record["wheel_groups"] == ["motorfinder", "onnxruntime-gpu"] and record["requirements"] == [ONNXRUNTIME_GPU]


def test_the_particles_wheels_are_the_packages_extras():
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(PARTICLES) == {r for r in extras["zarr"] if not r.startswith("fsspec")} | set(extras["particles"])


@pytest.mark.parametrize("target,other", [(CZII, "byu"), (BYU, "czii")])
def test_a_manifest_of_the_other_task_is_an_error_before_writing(target, other, particle_manifest, demo_manifest,
                                                                 tmp_path):
    from inference.common.errors import InputError

    manifest = demo_manifest if target is CZII else particle_manifest
    with pytest.raises(InputError) as err:
        build(cfg(manifest, tmp_path / "out", target=target), wheel_source=fake_source(tmp_path / "w"),
              wheel_builder=fake_wheel)
    msg = str(err.value)
    assert msg.startswith(f"{manifest}: is a task: {load_manifest(manifest).task} manifest; --target {target.name}")
    assert f"Fix: pass --target {other} " in msg and f"demo-models --task {target.task}" in msg
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("mode", [[], ["--profile"]])
def test_the_mismatch_is_one_line_on_the_command_line(mode, demo_manifest, tmp_path, capsys):
    rc = bs.main(["--target", "czii", *mode, "--manifest", str(demo_manifest), "--out", str(tmp_path / "o"), "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"error: {demo_manifest}: is a task: motors manifest")
    assert "--target byu" in err[0] and not (tmp_path / "o").exists()


def test_czii_with_the_shipped_byu_manifest_says_the_task_not_the_missing_files(tmp_path, capsys):
    rc = bs.main(["--target", "czii", "--out", str(tmp_path / "o"), "-q"])  # --manifest: weights_manifest.yaml
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == [err[0]] and "is a task: motors manifest; --target czii" in err[0]


def test_the_czii_profile_projects_the_real_run_to_500_tomograms_in_12_h(particle_manifest):
    manifest = load_manifest(particle_manifest)
    seconds = {"read": 1.0, "resample": 0.5, "engine": 8.0, "stitch": 2.0, "decode": 4.0}
    small = (92, 158, 158)
    measured = [MemberMeasure("seg", (TomoMeasure("TS_1_1", small, 10.012, seconds),))]
    rep = profile_report(manifest, measured, target=CZII, machine="test")
    (seg,) = rep.members
    m = manifest.member("seg")
    w_ref, w = (reference_windows(m, 10.012, s, 10.012) for s in ((184, 630, 630), small))
    vox = math.prod((184, 630, 630)) / math.prod(small)
    # particles: read and the ensemble's decode run once per tomogram, the rest per member
    assert rep.shared_s == pytest.approx({"read": vox, "decode": 4.0 * vox})
    assert seg.member_s == pytest.approx(0.5 * vox + (8.0 + 2.0) * w_ref / w) and w_ref > w
    cpu = rep.scenarios()[0]
    assert rep.n_tomograms == 500 and rep.budget_h == 11.5
    assert rep.hours(cpu) == pytest.approx((seg.member_s + 5.0 * vox) * 500 / 3600)
    md = markdown(rep)
    assert "184x630x630 voxels at 10.012 Å" in md and "~500 tomograms" in md and "| vs 12 h |" in md


def test_dry_run_defaults_and_the_simulated_test_set(tmp_path):
    """The czii test set as Kaggle lays it out: runs under test/static (no picks), the truth outside it."""
    from kaggle_builder.simulated_test import write_test_set

    comp = tmp_path / "kaggle" / "input" / CZII.competition
    truth = write_test_set(CZII, tmp_path, comp, n=2, seed=3, scale=0.2)
    runs = sorted(p.name for p in (comp / "test" / "static" / "ExperimentRuns").iterdir())
    assert len(runs) == 2 and runs == sorted(p.name for p in (truth / "ExperimentRuns").iterdir())
    for run in runs:
        assert [p.name for p in (comp / "test" / "static" / "ExperimentRuns" / run).iterdir()] == [SPACING_FOLDER]
        assert (comp / "test" / "static" / "ExperimentRuns" / run / SPACING_FOLDER / "denoised.zarr").is_dir()
    assert not any("Picks" in p.parts for p in comp.rglob("*"))  # the truth stays outside the input
    sample = (comp / "sample_submission.csv").read_text().splitlines()
    assert sample[0] == ",".join(SUBMISSION_COLUMNS) and len(sample) == 4 and sample[1].startswith(f"0,{runs[0]},")
    assert truth.parent == tmp_path and (truth / "labels.csv").is_file()


def test_the_czii_notebook_runs_offline_and_its_submission_scores(particle_manifest, tmp_path):
    """The czii build's notebook executed as on Kaggle (local seed: this environment's zarr, scikit-image, cc3d
    stand in for shipped wheels; mrcfile ships), on two small runs; the submission is checked and scored."""
    from kaggle_builder.dry_run import dry_run
    from kaggle_builder.wheels import ShippedWheel
    from tests.kaggle_builder.kaggle_helpers import repack
    from tests.kaggle_builder.test_dry_run import local_image, outputs

    mrcfile = repack("mrcfile", tmp_path / "repacked")
    built = build(cfg(particle_manifest, tmp_path / "out", target=CZII),
                  wheel_source=lambda wheel, groups: [ShippedWheel("motorfinder", "mrcfile", "x", mrcfile)])
    res = dry_run(built, tmp_path / "out" / "dryrun", n=2, seed=5, scale=0.2, env_seed="local",
                  image=local_image("simplejpeg", "onnxruntime", "zarr", "scikit-image", "connected-components-3d"))
    assert res.n_tomograms == 2 and res.target is CZII
    assert res.submission.read_text().startswith(",".join(SUBMISSION_COLUMNS) + "\n0,")
    assert 0 < res.score["score"] <= 1 and set(res.score["per_class"]) == set(CLASSES)
    text = outputs(res.executed)
    assert f"--input {res.root / 'input' / CZII.competition / 'test' / 'static'}" in text
    assert "--sample-submission" not in text and "of 2 test runs" in text
    assert "score " in res.render() and "weighted F4" in res.render()


def test_the_czii_demo_summary(tmp_path):
    from types import SimpleNamespace

    from kaggle_builder.demo import DemoSummary

    per_class = {c: {"tp": 1, "fp": 0, "fn": 0, "precision": 1.0, "recall": 1.0, "fbeta": 1.0} for c in CLASSES}
    dry = SimpleNamespace(executed=tmp_path / "x.ipynb", submission=tmp_path / "s.csv", n_tomograms=3,
                          contents="9 picks in 3 experiment(s) (of 3 test runs): ribosome 9", headline="score 0.500",
                          score={"score": 0.5, "per_class": per_class})
    text = DemoSummary(data_dir=tmp_path / "data", manifest=tmp_path / "models" / "manifest.yaml",
                       submission=tmp_path / "submission.csv", candidates_dir=tmp_path / "candidates",
                       score={"score": 0.75, "per_class": per_class}, threshold="per class: ...",
                       seconds={"synth": 1.0}, dry_run=dry, target=CZII).render()
    assert text.splitlines()[0] == "demo summary (--target czii: CZII - CryoET Object Identification)"
    assert "score               : 0.750  (the competition's weighted F4; per class: apo-ferritin 1.00" in text
    assert "(9 picks in 3 experiment(s) (of 3 test runs): ribosome 9; valid; score 0.500;" in text
    assert "13.1" not in text and "why the F2 differs" not in text


@pytest.mark.slow
def test_czii_dry_run_of_the_default_bundle_on_the_image(particle_manifest, tmp_path):
    """The default czii build (real wheels for CPython 3.11 manylinux: zarr, scikit-image, cc3d, onnxruntime-gpu)
    installed offline into the image stand-in and run on three small runs."""
    from kaggle_builder.dry_run import dry_run
    from tests.kaggle_builder.test_dry_run import outputs

    built = build(cfg(particle_manifest, tmp_path / "out", target=CZII))
    res = dry_run(built, tmp_path / "out" / "dryrun")
    text = outputs(res.executed)
    assert "zarr-3" in text and "scikit_image" in text and "Successfully installed" in text
    assert res.n_tomograms == CZII.dry_run_tomograms and res.score["score"] > 0
