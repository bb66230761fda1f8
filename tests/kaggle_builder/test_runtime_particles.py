"""kaggle_builder.runtime on the czii target: predict's input and flags, the particle submission's check, the
repair after a failed step, the CPU fallback; around a stand-in interpreter."""

from __future__ import annotations

import json
import types

import pytest

from kaggle_builder import runtime
from kaggle_builder.notebook import settings
from kaggle_builder.target import CZII, RECORD_NAME, STATUS_NAME
from tests.kaggle_builder.kaggle_helpers import cfg, install_fake_python

HEADER = "id,experiment,particle_type,x,y,z\n"
TYPES = ["apo-ferritin", "beta-amylase", "beta-galactosidase", "ribosome", "thyroglobulin", "virus-like-particle"]

FAKE_PYTHON = '''\
#!{python}
"""A stand-in interpreter: records its command line; predict writes picks as FAKE_PREDICT says."""
import json, os, sys
from pathlib import Path
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
if args[:2] == ["-m", "pip"]:
    sys.exit(0)
if args[:3] == ["-m", "inference", "doctor"]:
    sys.exit(0)
if args[:3] == ["-m", "inference", "predict"]:
    mode = os.environ.get("FAKE_PREDICT", "ok")
    if mode == "gpu-fails" and "--devices" in args:
        sys.stdout.write("error: no worker could start on GPUs 0, 1\\n")
        sys.exit(1)
    out = Path(args[args.index("--output") + 1])
    runs = sorted(p.name for p in (Path(args[args.index("--input") + 1]) / "ExperimentRuns").iterdir())
    rows = "".join(f"{{i}},{{run}},apo-ferritin,{{10 * i}},20,30\\n" for i, run in enumerate(runs))
    if mode == "bad-rows":  # a row with an unknown type and one without coordinates: predict died writing
        rows += f"{{len(runs)}},{{runs[0]}},flagellar-motor,1,2,3\\n{{len(runs) + 1}},{{runs[0]}},ribosome,,,\\n"
        out.write_text("id,experiment,particle_type,x,y,z\\n" + rows)
        sys.exit(1)
    out.write_text("id,experiment,particle_type,x,y,z\\n" + rows)
    sys.exit(0)
sys.exit(3)
'''


@pytest.fixture
def kaggle(tmp_path, monkeypatch):
    """A CZII Kaggle tree: the dataset's record, test/static/ExperimentRuns with two runs, a sample submission
    (the notebook must not use it), a stand-in interpreter."""
    root = tmp_path / "kaggle"
    ds = root / "input" / "czii-offline"
    ds.mkdir(parents=True)
    record = {"wheel": "motorfinder-0.1.0-py3-none-any.whl", "manifest": "weights_manifest.yaml", "task": "particles",
              "particle_types": TYPES, "wheel_groups": [], "requirements": [], "image": {}, "engine_members": {}}
    (ds / RECORD_NAME).write_text(json.dumps(record))
    comp = root / "input" / CZII.competition
    for run in ("TS_5_4", "TS_69_2"):
        (comp / "test" / "static" / "ExperimentRuns" / run / "VoxelSpacing10.000" / "denoised.zarr").mkdir(parents=True)
    (comp / "sample_submission.csv").write_text(HEADER + "0,TS_5_4,beta-amylase,2983.596,3154.13,764.124\n")
    log = install_fake_python(tmp_path, monkeypatch, FAKE_PYTHON)
    return types.SimpleNamespace(root=root, ds=ds, comp=comp, settings=settings(cfg(tmp_path / "m.yaml", tmp_path,
                                                                                    target=CZII)),
                                 submission=root / "working" / "submission.csv",
                                 calls=lambda: [json.loads(ln) for ln in log.read_text().splitlines()])


def test_the_settings_say_the_task_and_the_copick_input():
    s = settings(cfg("m.yaml", "o", target=CZII))
    assert s == {"competition": CZII.competition, "task": "particles", "test_input": "test/static",
                 "sample_submission": None, "devices": "all", "budget_h": 11.5, "fp16_engines": True}


@pytest.mark.parametrize("device,flags", [("cpu", ["--device", "cpu", "--workers", "1"]),
                                          ("cuda", ["--devices", "all"])])
def test_predict_reads_the_copick_static_root_without_a_sample(kaggle, monkeypatch, capsys, device, flags):
    monkeypatch.setenv("MOTORFINDER_DEVICE", device)
    run = runtime.Run(kaggle.root, kaggle.ds, kaggle.settings)
    run.t0 -= 3600  # an hour already spent: 10.5 h left of 11.5
    assert run.install() is True and run.predict() is True
    cmd = kaggle.calls()[-1]
    assert cmd[cmd.index("--input") + 1] == str(kaggle.comp / "test" / "static")
    assert "--sample-submission" not in cmd
    assert float(cmd[cmd.index("--deadline-h") + 1]) == pytest.approx(10.5, abs=0.01)
    i = cmd.index("--output") + 2
    assert cmd[i:i + len(flags)] == flags
    assert run.check_submission() == []
    out = capsys.readouterr().out
    assert "submission OK: 2 picks in 2 experiment(s) (of 2 test runs): apo-ferritin 2;" in out
    assert json.loads((kaggle.root / "working" / STATUS_NAME).read_text())["steps"]["submission"]["ok"] is True


def test_a_predict_that_dies_keeps_its_valid_picks(kaggle, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_PREDICT", "bad-rows")
    run = runtime.Run(kaggle.root, kaggle.ds, kaggle.settings)
    run.install()
    assert run.predict() is False
    problems = run.check_submission()
    assert len(problems) == 1 and problems[0].startswith("2 invalid row(s): row 3: particle_type 'flagellar-motor'")
    assert kaggle.submission.read_text() == HEADER + "0,TS_5_4,apo-ferritin,0,20,30\n1,TS_69_2,apo-ferritin,10,20,30\n"
    out = capsys.readouterr().out
    assert "predict FAILED: exit code 1" in out and "2 invalid row(s) dropped" in out
    steps = json.loads((kaggle.root / "working" / STATUS_NAME).read_text())["steps"]
    assert steps["submission"]["ok"] is False and steps["submission"]["detail"].startswith("repaired: 2 invalid")


def test_a_failed_install_ends_with_the_header_alone(kaggle, capsys):
    (kaggle.ds / RECORD_NAME).write_text("not json")  # the dataset is not the build's: nothing can be installed
    run = runtime.Run(kaggle.root, kaggle.ds, kaggle.settings)
    assert run.install() is False and run.predict() is False
    assert run.check_submission() == ["no submission"]
    assert kaggle.submission.read_text() == HEADER  # a valid, empty submission
    assert "submission OK: 0 picks in 0 experiment(s) (of 2 test runs): none" in capsys.readouterr().out
    assert not (kaggle.root.parent / "calls.jsonl").exists()  # nothing ran


def test_a_gpu_predict_that_fails_runs_again_on_the_cpu(kaggle, monkeypatch):
    monkeypatch.setenv("MOTORFINDER_DEVICE", "cuda")
    monkeypatch.setenv("FAKE_PREDICT", "gpu-fails")
    run = runtime.Run(kaggle.root, kaggle.ds, kaggle.settings)
    run.install()
    assert run.predict() is True
    gpu, cpu = kaggle.calls()[-2:]
    assert "--devices" in gpu and cpu[cpu.index("--device") + 1] == "cpu"
    assert all("--sample-submission" not in c for c in (gpu, cpu))
    assert run.check_submission() == []
