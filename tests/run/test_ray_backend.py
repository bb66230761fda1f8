"""predict --backend ray on a local Ray cluster: identical output to the local runner, actor deaths, resume."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from inference.manifest.parse import load_manifest
from inference.run.runner import PredictConfig, run_predict
from inference.synth.demo_models import write_demo_models
from inference.synth.generate import generate

REPO = Path(__file__).resolve().parents[2]


def test_backend_ray_without_ray_is_one_line(tmp_path):
    """Runs everywhere: where Ray is missing (simulated here) --backend ray says so in one line."""
    code = ("import sys; sys.modules['ray'] = None; from inference.cli.main import main; sys.exit(main(sys.argv[1:]))")
    np_path = tmp_path / "t.npy"
    import numpy as np

    np.save(np_path, np.zeros((4, 4, 4), np.uint8))
    manifest = write_demo_models(tmp_path / "models")
    proc = subprocess.run([sys.executable, "-c", code, "-q", "predict", "--manifest", str(manifest), "--input",
                           str(np_path), "--output", str(tmp_path / "s.csv"), "--backend", "ray", "--no-progress"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: --backend ray needs Ray, which is not installed. Fix: pip install 'motorfinder[ray]', or run with "
        "--backend local"]
    assert not (tmp_path / "s.csv").exists()  # refused before anything is written, like a bad option


# ------------------------------------------------------------------------------- on a local Ray


@pytest.fixture(scope="module")
def ray():
    ray = pytest.importorskip("ray", reason="the Ray backend tests need Ray: pip install 'motorfinder[ray]'")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the hooks below run on the actors
    ray.init(address="local", num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False,
             logging_level=logging.WARNING)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("raydata")
    generate(root / "data", 6, 31, split="test", scale=0.12, progress=False)
    return root, write_demo_models(root / "models", with_2d=True)


def config(data, out: Path, **kw) -> PredictConfig:
    root, manifest = data
    return PredictConfig(manifest=load_manifest(manifest), input_dir=root / "data" / "test",
                         output=out / "submission.csv", spacing_csv=root / "data" / "test_labels.csv",
                         candidates_dir=out / "cands", progress=False, write_every_s=0.0, **kw)


def outputs(out: Path) -> dict[str, bytes]:
    got = {p.name: p.read_bytes() for p in (out / "cands").iterdir()}
    got["submission.csv"] = (out / "submission.csv").read_bytes()
    return got


@pytest.fixture(scope="module")
def local(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    run_predict(config(data, out, workers=0))
    return outputs(out)


def ids(data) -> list[str]:
    return sorted(p.name for p in (data[0] / "data" / "test").iterdir())


@pytest.mark.parametrize("workers", [1, 2])
def test_ray_output_is_identical_to_the_local_runner(ray, data, local, tmp_path, workers):
    res = run_predict(config(data, tmp_path, backend="ray", workers=workers))
    assert outputs(tmp_path) == local
    assert set(local) == {"demo3d.csv", "demo2d.csv", "fused.csv", "submission.csv"}
    assert all(r.status == "ok" and r.attempts == 1 for r in res.results.values())
    assert ray.is_initialized()  # a Ray started by the caller is left running
    assert not [n for n in ray.util.list_named_actors() if n.startswith("motorfinder-")]  # actors are gone


def test_particle_picks_on_ray_are_identical_to_the_local_runner(ray, tmp_path):
    """task: particles (a copick project; each task carries its run's name) on two actors."""
    from inference.synth.particle_demo_model import write_particle_demo_models
    from inference.synth.particle_project import generate_particles

    generate_particles(tmp_path / "proj", 3, 5, progress=False)
    manifest = load_manifest(write_particle_demo_models(tmp_path / "models"))
    got = {}
    for name, kw in {"local": {"workers": 0}, "ray": {"backend": "ray", "workers": 2}}.items():
        out = tmp_path / name
        run_predict(PredictConfig(manifest=manifest, input_dir=tmp_path / "proj", output=out / "submission.csv",
                                  candidates_dir=out / "cands", progress=False, **kw))
        got[name] = outputs(out)
    assert got["ray"] == got["local"] and set(got["local"]) == {"candidates.csv", "submission.csv"}
    assert got["local"]["submission.csv"].startswith(b"id,experiment,particle_type,x,y,z\n0,")


def crash_hook(tomo_id: str, attempt: int) -> None:
    """On the actor, before the engines: die like kill -9 on the victim (only its first attempt when
    CRASH_ONCE; every attempt otherwise)."""
    victim, once = os.environ["CRASH_ON"], os.environ.get("CRASH_ONCE") == "1"
    if tomo_id == victim and (attempt == 0 or not once):
        os.kill(os.getpid(), signal.SIGKILL)


def hold_hook(tomo_id: str, attempt: int) -> None:
    """On the actor: the victim's first attempt says where it runs (a marker file) and waits to be killed."""
    if tomo_id == os.environ["HOLD_ON"] and attempt == 0:
        import ray as ray_

        marker = Path(os.environ["HOLD_MARKER"])
        marker.write_text(f"{os.getpid()} {ray_.get_runtime_context().get_actor_name()}")
        time.sleep(60)


@pytest.mark.parametrize("once", [True, False])
def test_actor_dying_on_a_tomogram_is_retried_once_then_written_as_minus_one(ray, data, local, tmp_path, once):
    victim = ids(data)[2]
    hook = _env_hook(crash_hook, CRASH_ON=victim, CRASH_ONCE="1" if once else "0")
    res = run_predict(config(data, tmp_path, backend="ray", workers=2), actor_hook=hook)
    sub = pd.read_csv(tmp_path / "submission.csv")
    assert sorted(sub.tomo_id) == ids(data)
    r = res.results[victim]
    if once:
        assert r.status == "ok" and r.attempts == 2 and outputs(tmp_path) == local
    else:
        assert r.status == "failed" and "Ray actor died" in r.error and "2 time(s)" in r.error
        assert (sub.set_index("tomo_id").loc[victim] == -1).all()
    assert all(res.results[t].status == "ok" for t in ids(data) if t != victim)


@pytest.mark.parametrize("how", ["ray.kill", "os.kill"])
def test_actor_killed_from_outside_mid_run(ray, data, local, tmp_path, how):
    victim = ids(data)[1]
    marker = tmp_path / "running"
    hook = _env_hook(hold_hook, HOLD_ON=victim, HOLD_MARKER=str(marker))

    def killer():
        t0 = time.monotonic()
        while not marker.exists() or not marker.read_text():
            if time.monotonic() - t0 > 120:
                return
            time.sleep(0.02)
        pid, name = marker.read_text().split()
        if how == "ray.kill":
            ray.kill(ray.get_actor(name), no_restart=True)
        else:
            os.kill(int(pid), signal.SIGKILL)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    res = run_predict(config(data, tmp_path, backend="ray", workers=2), actor_hook=hook)
    thread.join(timeout=5)
    assert res.results[victim].attempts == 2 and res.results[victim].status == "ok"
    assert outputs(tmp_path) == local


def test_a_linked_source_keeps_its_own_name_on_the_actors(ray, data, local, tmp_path):
    """Sources that are links to folders of other names: a task carries the link's path (absolute, not
    resolved), so each tomogram keeps its tomo_id and the output is the local runner's."""
    import shutil

    root, _ = data
    (tmp_path / "in").mkdir()
    for t in ids(data):
        shutil.copytree(root / "data" / "test" / t, tmp_path / "elsewhere" / f"copy_of_{t}")
        (tmp_path / "in" / t).symlink_to(Path("..") / "elsewhere" / f"copy_of_{t}", target_is_directory=True)
    res = run_predict(replace(config(data, tmp_path, backend="ray", workers=1), input_dir=tmp_path / "in"))
    assert sorted(res.results) == ids(data) and not res.failures
    assert outputs(tmp_path) == local


def test_no_actor_can_start_is_an_error_with_a_complete_submission(ray, data, tmp_path):
    import shutil

    from inference.common.errors import EngineError

    root, manifest = data
    models = tmp_path / "models"
    shutil.copytree(manifest.parent, models)
    (models / "demo2d.onnx").write_bytes(b"not an onnx model")  # the driver does not load models; actors do
    cfg = replace(config(data, tmp_path, backend="ray", workers=2), manifest=load_manifest(models / "manifest.yaml"))
    # every actor gives the same reason, which carries a Fix: that one line (the ledger's decision 1;
    # different reasons are listed, tests/run/test_ledger.py)
    with pytest.raises(EngineError, match=r"^\S*/models/demo2d\.onnx: ONNX Runtime cannot load the model \(.*\)\. "
                                          r"Fix: re-export it \(python -m export onnx\) or check the file is complete$"):
        run_predict(cfg)
    sub = pd.read_csv(tmp_path / "submission.csv")
    assert sorted(sub.tomo_id) == ids(data) and (sub.drop(columns="tomo_id") == -1).all().all()


def _env_hook(hook, **env):
    """``hook`` with env vars set on the actor first (the actors do not see the test's environment)."""

    def run(tomo_id, attempt):
        os.environ.update(env)
        hook(tomo_id, attempt)
    return run


# ----------------------------------------------------------------------------------- CLI resume


@pytest.mark.slow
def test_cli_ray_resumes_after_a_killed_run(data, tmp_path):
    pytest.importorskip("ray", reason="the Ray backend tests need Ray: pip install 'motorfinder[ray]'")
    root, manifest = data
    out = tmp_path / "submission.csv"
    cmd = [sys.executable, "-m", "inference", "-q", "predict", "--manifest", str(manifest), "--input",
           str(root / "data" / "test"), "--output", str(out), "--spacing-csv", str(root / "data" / "test_labels.csv"),
           "--backend", "ray", "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True)
    work = tmp_path / "submission.csv.work" / "tomograms"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 180 and len(list(work.glob("*.json"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started (one process group)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in work.glob("*.json")}
    assert 2 <= len(done) < len(ids(data)), "kill the run part-way"
    killed = pd.read_csv(out)
    assert sorted(killed.tomo_id) == ids(data) and killed.notna().all().all()
    assert subprocess.run(cmd).returncode == 0
    after = {p.name: p.stat().st_mtime_ns for p in work.glob("*.json")}
    assert {k: after[k] for k in done} == done  # no finished tomogram redone
    assert len(after) == len(ids(data))
    fresh = tmp_path / "fresh.csv"  # the resumed run equals a fresh local one
    local = cmd[: cmd.index("--backend")] + ["--workers", "0", "--no-progress"]
    subprocess.run([str(fresh) if a == str(out) else a for a in local], check=True)
    assert fresh.read_bytes() == out.read_bytes()
