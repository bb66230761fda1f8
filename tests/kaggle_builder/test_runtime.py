"""kaggle_builder.runtime: what the notebook runs on Kaggle, around a stand-in interpreter and TensorRT."""

from __future__ import annotations

import json
import sys
import textwrap
import types
from pathlib import Path

import pytest

import export.tensorrt as trt_mod
import export.tensorrt_cache as cache_mod
from inference.engines.tensorrt_sidecar import RuntimeEnv
from inference.manifest.parse import load_manifest
from kaggle_builder import runtime, submission_check
from kaggle_builder.target import BYU, RECORD_NAME, STATUS_NAME
from tests.kaggle_builder.kaggle_helpers import install_fake_python

HEADER = "tomo_id,Motor axis 0,Motor axis 1,Motor axis 2\n"
PIP_MISSING = ("Looking in links: /kaggle/input/x/wheels/motorfinder\n"
               "Processing /kaggle/input/x/motorfinder-0.1.0-py3-none-any.whl\n"
               "\x1b[31mERROR: Could not find a version that satisfies the requirement mrcfile>=1.4 (from motorfinder) "
               "(from versions: none)\x1b[0m\n"
               "\x1b[31mERROR: No matching distribution found for mrcfile>=1.4\x1b[0m\n")


def test_pip_problem_names_the_missing_requirement():
    assert runtime.pip_problem(PIP_MISSING) == "no wheel of mrcfile>=1.4 (needed by motorfinder)"
    conflict = ("ERROR: Cannot install motorfinder==0.1.0 because these package versions have conflicting "
                "dependencies.\nThe conflict is caused by:\n    motorfinder 0.1.0 depends on numpy>=3\n"
                "    The user requested (constraint) numpy==1.26.4\nERROR: ResolutionImpossible: for help visit x\n")
    assert runtime.pip_problem(conflict) == ("conflicting requirements: motorfinder 0.1.0 depends on numpy>=3; "
                                             "The user requested (constraint) numpy==1.26.4")
    assert runtime.pip_problem("ERROR: something else\n") == "ERROR: something else"
    assert runtime.pip_problem("") == "pip failed without a message"


def test_submission_problems_and_repair(tmp_path):
    sample = tmp_path / "s.csv"
    sample.write_text(HEADER + "a,-1,-1,-1\nb,-1,-1,-1\nc,-1,-1,-1\n")
    good = tmp_path / "g.csv"
    good.write_text(HEADER + "a,1,2,3\nb,-1,-1,-1\nc,0,0,0\n")
    assert submission_check.submission_problems(good, sample) == []
    bad = tmp_path / "b.csv"
    bad.write_text(HEADER + "b,1,-1,3\na,nan,2,3\na,1,2,3\n")
    problems = " ".join(submission_check.submission_problems(bad, sample))
    assert "tomo_ids differ" in problems and "'c'" in problems and "'a'" in problems  # missing c, duplicated a
    assert "2 row(s) without finite coordinates" in problems
    # b (partial) and c (missing) become -1; a's valid row stays
    assert submission_check.repair_submission(bad, sample) == 2
    assert bad.read_text() == HEADER + "a,1,2,3\nb,-1,-1,-1\nc,-1,-1,-1\n"
    assert submission_check.submission_problems(bad, sample) == []
    cols = tmp_path / "c.csv"
    cols.write_text("id,x\n")
    assert "columns" in submission_check.submission_problems(cols, sample)[0]


# --------------------------------------------------------------------------- a run


FAKE_PYTHON = '''\
#!{python}
"""A stand-in interpreter: records its command line; pip and predict act as FAKE_* variables say."""
import json, os, sys
from pathlib import Path
with open(os.environ["FAKE_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
if args[:2] == ["-m", "pip"]:
    sys.stdout.write(os.environ.get("FAKE_PIP_OUT", "Successfully installed motorfinder-0.1.0\\n"))
    sys.exit(int(os.environ.get("FAKE_PIP_RC", "0")))
if args[:3] == ["-m", "inference", "doctor"]:
    device = args[args.index("--device") + 1]
    if device == "cuda" and os.environ.get("FAKE_DOCTOR") == "no-gpu":
        sys.stdout.write("cupy 13.3.0: CUDA runtime 12050, no GPU visible\\n")
        sys.stdout.write("error: --device cuda cannot be used: no GPU is visible. Fix: run with --device cpu\\n")
        sys.exit(2)
    sys.stdout.write("--device " + device + ": usable\\n")
    sys.exit(0)
if args[:3] == ["-m", "inference", "predict"]:
    if "--devices" in args and os.environ.get("FAKE_PREDICT") == "gpu-fails":
        sys.stdout.write("error: no worker could start on GPUs 0, 1\\n")
        sys.exit(1)
    out = Path(args[args.index("--output") + 1])
    sample = Path(args[args.index("--sample-submission") + 1]).read_text().splitlines()
    if os.environ.get("FAKE_PREDICT") == "partial":
        out.write_text(sample[0] + "\\n" + sample[1].split(",")[0] + ",10,20,30\\n")
        sys.exit(1)
    out.write_text(sample[0] + "\\n" + "".join(r.split(",")[0] + ",1,2,3\\n" for r in sample[1:]))
    sys.exit(0)
sys.exit(3)
'''


@pytest.fixture
def kaggle(tmp_path, monkeypatch):
    """A Kaggle tree with a dataset (record only), a competition folder and a stand-in interpreter."""
    root = tmp_path / "kaggle"
    ds = root / "input" / "motor-offline"
    (ds / "wheels" / "motorfinder").mkdir(parents=True)
    (ds / "wheels" / "onnxruntime-gpu").mkdir(parents=True)
    record = {"wheel": "motorfinder-0.1.0-py3-none-any.whl", "manifest": "weights_manifest.yaml",
              "wheel_groups": ["motorfinder", "onnxruntime-gpu"], "requirements": ["onnxruntime-gpu>=1.20,<1.27"],
              "image": {"numpy": "0.0.1"}, "engine_members": {}, "version": "0.1.0"}
    (ds / RECORD_NAME).write_text(json.dumps(record))
    comp = root / "input" / BYU.competition
    (comp / "test").mkdir(parents=True)
    (comp / "sample_submission.csv").write_text(HEADER + "tomo_a,-1,-1,-1\ntomo_b,-1,-1,-1\n")
    log = install_fake_python(tmp_path, monkeypatch, FAKE_PYTHON)
    settings = {"competition": BYU.competition, "task": "motors", "test_input": "test",
                "sample_submission": "sample_submission.csv", "devices": "all", "budget_h": 8.5, "fp16_engines": True}
    return types.SimpleNamespace(root=root, ds=ds, comp=comp, log=log, settings=settings,
                                 calls=lambda: [json.loads(ln) for ln in log.read_text().splitlines()])


def test_install_is_pip_offline_with_the_wheel_folders(kaggle):
    run = runtime.Run(kaggle.root, kaggle.ds, kaggle.settings)
    assert run.install() is True
    (cmd,) = kaggle.calls()
    assert cmd[:4] == ["-m", "pip", "install", "--no-index"]
    links = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--find-links"]
    assert links == [str(kaggle.ds / "wheels" / "motorfinder"), str(kaggle.ds / "wheels" / "onnxruntime-gpu")]
    assert cmd[-2:] == [str(kaggle.ds / "motorfinder-0.1.0-py3-none-any.whl"), "onnxruntime-gpu>=1.20,<1.27"]
    status = json.loads((kaggle.root / "working" / STATUS_NAME).read_text())
    assert status["steps"]["install"]["ok"] is True


def test_a_failed_install_is_named_and_the_run_still_ends_valid(kaggle, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_PIP_OUT", PIP_MISSING)
    monkeypatch.setenv("FAKE_PIP_RC", "1")
    run = runtime.Run(kaggle.root, kaggle.ds, kaggle.settings)
    assert run.install() is False
    assert run.build_engines() == kaggle.ds / "weights_manifest.yaml"
    assert run.predict() is False
    assert run.check_submission() == ["no submission"]
    out = capsys.readouterr().out
    assert "install FAILED: no wheel of mrcfile>=1.4 (needed by motorfinder)" in out
    assert (kaggle.root / "working" / "submission.csv").read_text() == HEADER + "tomo_a,-1,-1,-1\ntomo_b,-1,-1,-1\n"
    steps = json.loads((kaggle.root / "working" / STATUS_NAME).read_text())["steps"]
    assert [k for k, v in steps.items() if not v["ok"]] == ["install", "predict", "submission"]
    assert len(kaggle.calls()) == 1  # nothing ran after the failed install


@pytest.mark.parametrize("device,flags", [("cpu", ["--device", "cpu", "--workers", "1"]), ("cuda", ["--devices", "all"])])
def test_predict_command_and_deadline(kaggle, monkeypatch, device, flags):
    monkeypatch.setenv("MOTORFINDER_DEVICE", device)
    run = runtime.Run(kaggle.root, kaggle.ds, kaggle.settings)
    run.t0 -= 1800  # half an hour already spent
    run.install()
    assert run.predict() is True
    cmd = kaggle.calls()[-1]
    assert cmd[:3] == ["-m", "inference", "predict"]
    assert cmd[cmd.index("--manifest") + 1] == str(kaggle.ds / "weights_manifest.yaml")
    assert cmd[cmd.index("--input") + 1] == str(kaggle.comp / "test")
    assert float(cmd[cmd.index("--deadline-h") + 1]) == pytest.approx(8.0, abs=0.01)
    i = cmd.index("--output") + 2
    assert cmd[i:i + len(flags)] == flags
    assert run.check_submission() == []


def test_a_predict_that_dies_keeps_what_it_wrote(kaggle, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_PREDICT", "partial")
    run = runtime.Run(kaggle.root, kaggle.ds, kaggle.settings)
    run.install()
    assert run.predict() is False
    assert run.check_submission()  # repaired
    assert (kaggle.root / "working" / "submission.csv").read_text() == HEADER + "tomo_a,10,20,30\ntomo_b,-1,-1,-1\n"
    assert "predict FAILED: exit code 1" in capsys.readouterr().out


def test_doctor_runs_first_and_an_unusable_gpu_moves_the_run_to_the_cpu(kaggle, monkeypatch, capsys):
    monkeypatch.setenv("MOTORFINDER_DEVICE", "cuda")
    monkeypatch.setenv("FAKE_DOCTOR", "no-gpu")
    run = runtime.Run(kaggle.root, kaggle.ds, kaggle.settings)
    run.install()
    assert run.check_device() is False
    out = capsys.readouterr().out
    assert "WARNING: device cuda cannot be used (error: --device cuda cannot be used: no GPU is visible." in out
    assert run.device == "cpu"
    doctor = kaggle.calls()[-1]
    assert doctor[:3] == ["-m", "inference", "doctor"] and doctor[doctor.index("--device") + 1] == "cuda"
    assert doctor[doctor.index("--manifest") + 1] == str(kaggle.ds / "weights_manifest.yaml")
    assert run.build_engines() == kaggle.ds / "weights_manifest.yaml"  # no engines on the CPU
    assert run.predict() is True
    predict = kaggle.calls()[-1]
    assert predict[predict.index("--device") + 1] == "cpu" and "--devices" not in predict
    assert run.check_submission() == []
    status = json.loads((kaggle.root / "working" / STATUS_NAME).read_text())
    assert status["device"] == "cpu (fallback)" and status["steps"]["doctor"]["ok"] is False


def test_a_usable_device_passes_the_doctor(kaggle, monkeypatch):
    monkeypatch.setenv("MOTORFINDER_DEVICE", "cuda")
    run = runtime.Run(kaggle.root, kaggle.ds, kaggle.settings)
    run.install()
    assert run.check_device() is True and run.device == "cuda"


def test_a_gpu_predict_that_fails_runs_again_on_the_cpu(kaggle, monkeypatch, capsys):
    monkeypatch.setenv("MOTORFINDER_DEVICE", "cuda")
    monkeypatch.setenv("FAKE_PREDICT", "gpu-fails")
    run = runtime.Run(kaggle.root, kaggle.ds, kaggle.settings)
    run.install()
    assert run.predict() is True
    gpu, cpu = kaggle.calls()[-2:]
    assert gpu[gpu.index("--devices") + 1] == "all"
    assert cpu[cpu.index("--device") + 1] == "cpu"
    assert "WARNING: predict on cuda failed (exit code 1: error: no worker could start on GPUs 0, 1)" in \
        capsys.readouterr().out
    assert run.check_submission() == []


def test_environment_is_reported_by_the_target_interpreter(kaggle, monkeypatch, capsys):
    monkeypatch.setenv("MOTORFINDER_PYTHON", sys.executable)
    run = runtime.Run(kaggle.root, kaggle.ds, kaggle.settings)
    env = run.print_environment()
    assert env["python"] == sys.version.split()[0] and env["executable"] == sys.executable
    assert env["packages"]["numpy"] and "onnxruntime" in env["packages"]
    out = capsys.readouterr().out
    assert "the image differs from kaggle_image_packages.txt: numpy" in out and "(the build assumed 0.0.1)" in out


def test_environment_main_prints_json(capsys):
    assert runtime.main(["--environment", '["numpy", "not-a-package-xyz"]']) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["packages"]["not-a-package-xyz"] is None and report["packages"]["numpy"]
    assert runtime.main([]) == 2


# --------------------------------------------------------------------------- engines


@pytest.fixture
def engine_run(kaggle, monkeypatch, demo_manifest):
    """A run on 'cuda' whose dataset holds the demo members, with a stand-in TensorRT."""
    import shutil

    for p in demo_manifest.parent.iterdir():
        shutil.copy2(p, kaggle.ds / ("weights_manifest.yaml" if p.suffix == ".yaml" else p.name))
    record = json.loads((kaggle.ds / RECORD_NAME).read_text())
    record["engine_members"] = {"demo3d": {"onnx": "demo3d.onnx", "batch": [1, 2, 2], "engines": []},
                                "demo2d": {"onnx": "demo2d.onnx", "batch": [1, 8, 8], "engines": []}}
    (kaggle.ds / RECORD_NAME).write_text(json.dumps(record))
    monkeypatch.setenv("MOTORFINDER_DEVICE", "cuda")
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setattr(trt_mod, "runtime_env", lambda device_id=0: RuntimeEnv("10.7.0", "Tesla T4", "7.5"))
    run = runtime.Run(kaggle.root, kaggle.ds, kaggle.settings)
    run.install()
    return run



def test_engines_are_built_and_predict_uses_them(engine_run, monkeypatch):
    asked = []

    def ensure(onnx_path, engine_path, cache_dir, *, fp16, batch, **kw):
        asked.append((Path(onnx_path).name, engine_path, fp16, str(batch)))
        path = Path(cache_dir) / (Path(onnx_path).stem + "-k.engine")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"engine")
        return cache_mod.EnsureResult(path, True, "built: test")

    monkeypatch.setattr(cache_mod, "ensure_engine", ensure)
    derived = engine_run.build_engines()
    assert derived == engine_run.working / "engines" / "weights_manifest.engines.yaml"
    assert [x.model.name for x in load_manifest(derived).members] == ["demo3d-k.engine", "demo2d-k.engine"]
    assert asked == [("demo3d.onnx", None, True, "1:2:2"), ("demo2d.onnx", None, True, "1:8:8")]
    engine_run.predict()
    assert engine_run.manifest == derived


def test_an_engine_failure_or_no_tensorrt_falls_back_to_onnx(engine_run, monkeypatch, capsys):
    def broken(*a, **k):
        raise RuntimeError("builder exploded")

    monkeypatch.setattr(cache_mod, "ensure_engine", broken)
    assert engine_run.build_engines() == engine_run.dataset / "weights_manifest.yaml"
    assert "the engine build failed (RuntimeError: builder exploded)" in capsys.readouterr().out
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    assert engine_run.build_engines() == engine_run.dataset / "weights_manifest.yaml"
    assert "TensorRT is not importable" in capsys.readouterr().out
    assert engine_run.ok("engines")  # never fails the notebook


def test_the_runtime_imports_only_the_standard_library():
    code = textwrap.dedent("""
        import sys
        before = set(sys.modules)
        import kaggle_builder.runtime
        ours = sorted(m for m in set(sys.modules) - before if m.split('.')[0] in ('export', 'inference', 'kernels', 'kaggle_builder'))
        heavy = sorted(m for m in set(sys.modules) - before if m.split('.')[0] in ('numpy', 'pandas', 'yaml', 'onnx'))
        print(ours, heavy)
    """)
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ("['kaggle_builder', 'kaggle_builder.runtime', 'kaggle_builder.submission_check', "
                           "'kaggle_builder.target'] []")
