"""predict with ``task: particles`` end to end: synth --task particles -> demo-models --task particles ->
predict -> score, for each decoder; workers and resume; copick output; bad input in one line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from inference.cli.main import main
from inference.io.copick_config import read_config
from inference.io.copick_picks import read_picks
from inference.synth.particle_demo_model import DECODERS, write_particle_demo_models
from inference.synth.particle_project import generate_particles

SUBMISSION_HEADER = ["id", "experiment", "particle_type", "x", "y", "z"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("particles")
    generate_particles(root / "proj", 3, 3, progress=False)
    write_particle_demo_models(root / "models")
    return root


def predict(project, out: Path, *args, manifest="manifest.yaml", code=0):
    rc = main(["-q", "predict", "--manifest", str(project / "models" / manifest), "--input", str(project / "proj"),
               "--output", str(out), "--no-progress", *args])
    assert rc == code
    return out


def score(project, submission: Path, capsys) -> dict:
    capsys.readouterr()
    assert main(["score", "--labels", str(project / "proj" / "labels.csv"), "--submission", str(submission),
                 "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("method", list(DECODERS))
def test_each_decoder_scores_the_synthetic_project(project, tmp_path, capsys, method):
    sub = predict(project, tmp_path / "sub.csv", "--candidates-dir", str(tmp_path / "cands"),
                  manifest=DECODERS[method])
    df = pd.read_csv(sub)
    assert list(df.columns) == SUBMISSION_HEADER and df["id"].tolist() == list(range(len(df)))
    assert set(df["experiment"]) <= {p.name for p in (project / "proj" / "ExperimentRuns").iterdir()}
    got = score(project, sub, capsys)
    assert set(got) == {"score", "per_class"} and got["score"] > 0.8, got  # measured 0.94 on seed 3's runs
    cands = pd.read_csv(tmp_path / "cands" / "candidates.csv")
    assert list(cands.columns) == ["experiment", "particle_type", "x", "y", "z", "conf"]
    assert len(cands) >= len(df) and cands["conf"].min() >= 0.05  # down to the candidate floor


def test_workers_give_the_same_files_and_a_rerun_resumes(project, tmp_path, caplog):
    one = predict(project, tmp_path / "a" / "sub.csv", "--workers", "0", "--candidates-dir", str(tmp_path / "ca"))
    two = predict(project, tmp_path / "b" / "sub.csv", "--workers", "2", "--candidates-dir", str(tmp_path / "cb"))
    assert one.read_bytes() == two.read_bytes()
    assert (tmp_path / "ca" / "candidates.csv").read_bytes() == (tmp_path / "cb" / "candidates.csv").read_bytes()
    caplog.clear()
    with caplog.at_level("INFO"):
        assert main(["predict", "--manifest", str(project / "models" / "manifest.yaml"), "--input",
                     str(project / "proj"), "--output", str(one), "--workers", "0", "--no-progress"]) == 0
    assert "resuming: 3 of 3 tomograms already done" in caplog.text
    assert one.read_bytes() == two.read_bytes()


def test_copick_out_writes_one_picks_file_per_class_and_run(project, tmp_path):
    sub = predict(project, tmp_path / "sub.csv", "--copick-out", str(tmp_path / "cp"))
    df = pd.read_csv(sub)
    classes = [c["name"] for c in yaml.safe_load((project / "models" / "manifest.yaml").read_text())["classes"]]
    runs = sorted(p.name for p in (project / "proj" / "ExperimentRuns").iterdir())
    for run in runs:
        for name in classes:
            picks = read_picks(tmp_path / "cp" / "ExperimentRuns" / run / "Picks" / f"motorfinder_0_{name}.json")
            assert picks.object_name == name and picks.run_name == run
            assert len(picks.xyz_A) == ((df["experiment"] == run) & (df["particle_type"] == name)).sum()
    config = read_config(tmp_path / "cp" / "copick_config.json")
    assert [o.name for o in config.objects] == classes
    assert [o.radius for o in config.objects] == [60.0, 65.0, 90.0, 150.0, 130.0, 135.0]


def bad_project(project, tmp_path) -> Path:
    """The project with a run holding another tomogram type only, and a run whose zarr lost its metadata."""
    proj = tmp_path / "proj"
    shutil.copytree(project / "proj", proj)
    runs = sorted((proj / "ExperimentRuns").iterdir())
    (runs[0] / "VoxelSpacing10.000" / "denoised.zarr").rename(runs[0] / "VoxelSpacing10.000" / "wbp.zarr")
    zarr = runs[1] / "VoxelSpacing10.000" / "denoised.zarr"
    for meta in ("zarr.json", ".zattrs"):
        if (zarr / meta).is_file():
            doc = json.loads((zarr / meta).read_text())
            doc.get("attributes", doc).get("ome", doc.get("attributes", doc)).pop("multiscales", None)
            doc.pop("multiscales", None)
            (zarr / meta).write_text(json.dumps(doc))
    return proj


def test_a_run_without_the_type_and_a_zarr_without_multiscales_fail_alone(project, tmp_path, caplog):
    proj = bad_project(project, tmp_path)
    runs = sorted(p.name for p in (proj / "ExperimentRuns").iterdir())
    with caplog.at_level("ERROR"):
        rc = main(["-q", "predict", "--manifest", str(project / "models" / "manifest.yaml"), "--input", str(proj),
                   "--output", str(tmp_path / "sub.csv"), "--no-progress", "--workers", "0"])  # its log here
    assert rc == 0
    lines = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert all("\n" not in ln for ln in lines)
    assert any(f"run '{runs[0]}' has no denoised.zarr" in ln and "wbp" in ln and "--tomo-type" in ln
               and "gets no picks" in ln for ln in lines), lines
    assert any(runs[1] in ln and "multiscales" in ln and "gets no picks" in ln for ln in lines), lines
    df = pd.read_csv(tmp_path / "sub.csv")
    assert set(df["experiment"]) == {runs[2]}  # the third run still ran
    # the other type, asked for: that run runs
    assert main(["-q", "predict", "--manifest", str(project / "models" / "manifest.yaml"), "--input", str(proj),
                 "--output", str(tmp_path / "wbp.csv"), "--tomo-type", "wbp", "--no-progress"]) == 0
    assert set(pd.read_csv(tmp_path / "wbp.csv")["experiment"]) == {runs[0]}


def test_outputs_that_do_not_match_the_model_are_one_line_at_load(project, tmp_path, capsys):
    doc = yaml.safe_load((project / "models" / "manifest.yaml").read_text())
    doc["classes"] = [c for c in doc["classes"] if c["name"] != "beta-amylase"]
    doc["members"][0]["outputs"] = [n for n in doc["members"][0]["outputs"] if n != "beta-amylase"]
    doc["members"][0]["model"] = str(project / "models" / "seg.onnx")
    manifest = tmp_path / "six.yaml"
    manifest.write_text(yaml.safe_dump(doc))
    rc = main(["-q", "predict", "--manifest", str(manifest), "--input", str(project / "proj"), "--output",
               str(tmp_path / "sub.csv"), "--no-progress", "--workers", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert "gives 7 output channels" in err[0] and "outputs name 6" in err[0] and "Fix:" in err[0]


def test_show_draws_a_runs_picks_per_class(project, tmp_path, capsys):
    sub = predict(project, tmp_path / "sub.csv")
    run = sorted(p.name for p in (project / "proj" / "ExperimentRuns").iterdir())[0]
    out = tmp_path / "view.png"
    assert main(["-q", "show", "--tomogram", str(project / "proj"), "--tomo-id", run, "--candidates", str(sub),
                 "--labels", str(project / "proj" / "labels.csv"), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert main(["-q", "show", "--tomogram", str(project / "proj"), "--candidates", str(sub), "--out",
                 str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds 3 tomograms" in err[0] and "--tomo-id" in err[0]
