"""End to end on a tiny synthetic set: synth -> demo-models -> predict -> score, through the CLI."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from inference.cli.main import build_parser, main


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    assert main(["-q", "synth", "--out", str(root / "data"), "--n", "6", "--seed", "5", "--split", "test",
                 "--scale", "0.15", "--no-progress"]) == 0
    assert main(["-q", "demo-models", "--out", str(root / "models")]) == 0
    return root


def run_predict(world, out, *extra):
    return main(["-q", "predict", "--manifest", str(world / "models" / "manifest.yaml"),
                 "--input", str(world / "data" / "test"), "--output", str(out),
                 "--spacing-csv", str(world / "data" / "test_labels.csv"), "--no-progress", *extra])


def test_predict_writes_submission_candidates_and_scores(world, capsys):
    sub = world / "sub.csv"
    cands = world / "cands"
    assert run_predict(world, sub, "--candidates-dir", str(cands),
                       "--sample-submission", str(world / "data" / "sample_submission.csv")) == 0
    df = pd.read_csv(sub)
    sample = pd.read_csv(world / "data" / "sample_submission.csv")
    assert df.tomo_id.tolist() == sample.tomo_id.tolist()
    assert list(df.columns) == ["tomo_id", "Motor axis 0", "Motor axis 1", "Motor axis 2"]
    c = pd.read_csv(cands / "demo3d.csv")
    assert list(c.columns) == ["tomo_id", "z", "y", "x", "conf", "voxel_spacing"]
    labels = pd.read_csv(world / "data" / "test_labels.csv")
    assert set(c.tomo_id) <= set(labels.tomo_id)
    # every motor of the tiny set is the top candidate of its tomogram
    for _, row in labels[labels["Motor axis 0"] >= 0].iterrows():
        top = c[c.tomo_id == row.tomo_id].sort_values("conf").iloc[-1]
        d = np.linalg.norm(top[["z", "y", "x"]].to_numpy(float)
                           - row[["Motor axis 0", "Motor axis 1", "Motor axis 2"]].to_numpy(float))
        assert d * row["Voxel spacing"] < 1000
    capsys.readouterr()
    assert main(["score", "--labels", str(world / "data" / "test_labels.csv"), "--submission", str(sub),
                 "--json"]) == 0
    score = json.loads(capsys.readouterr().out)
    assert score["fn"] == 0


def test_bad_tomogram_is_written_as_minus_one_and_run_goes_on(world, tmp_path):
    data = tmp_path / "test"
    shutil.copytree(world / "data" / "test", data)
    victim = sorted(p for p in data.iterdir())[0]
    (victim / "slice_0003.jpg").write_bytes(b"not a jpeg at all")
    sub = tmp_path / "sub.csv"
    assert main(["-q", "predict", "--manifest", str(world / "models" / "manifest.yaml"), "--input", str(data),
                 "--output", str(sub), "--no-progress"]) == 0
    df = pd.read_csv(sub).set_index("tomo_id")
    assert len(df) == len(list(data.iterdir()))
    assert (df.loc[victim.name] == -1).all()


def test_input_errors_are_one_line(world, tmp_path, capsys):
    rc = main(["predict", "--manifest", str(tmp_path / "none.yaml"), "--input", str(world / "data" / "test"),
               "--output", str(tmp_path / "s.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and "manifest not found" in err and "Traceback" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    rc = main(["predict", "--manifest", str(world / "models" / "manifest.yaml"), "--input", str(empty),
               "--output", str(tmp_path / "s.csv")])
    assert rc == 2 and "error: " in capsys.readouterr().err


def test_every_option_is_documented():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    assert {"synth", "score", "predict", "fuse", "submit", "show", "demo-models"} <= set(sub.choices)
    for name, p in sub.choices.items():
        for action in p._actions:
            if action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help"


def test_module_entry_point_help():
    out = subprocess.run([sys.executable, "-m", "inference", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("synth", "score", "predict", "demo-models"):
        assert cmd in out.stdout
    out = subprocess.run([sys.executable, "-m", "inference", "predict", "--help"], capture_output=True, text=True,
                         check=True)
    assert "--candidates-dir" in out.stdout and "--sample-submission" in out.stdout


def test_inference_never_imports_torch():
    code = ("import sys, inference.cli, inference.run.runner, inference.synth.demo_models, inference.engines.onnxruntime; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
