"""The chaos run, measured (``bench/chaos.py``; its short form is ``tests/run/test_chaos.py``).

One chaos run of a backend: ``predict --workers 2`` run as a subprocess through the fault injector's
launcher (``bench/_chaos_hooks.py``: worker or actor kills, transient read failures, per a plan made by
:func:`make_plan` from a seed), SIGKILLed once mid-run when ``main_kill_at`` results are in its work
folder, then the same command again (it resumes). Its submission and every candidate file are compared
byte for byte with those of clean runs (the plain ``python -m inference predict``, same arguments); the
counts come from the injector's ``events.log`` and claim files and from the results in the work folder
(``attempts``, ``read_retries``), not from the logs.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
LAUNCHER = "import sys, _chaos_hooks; sys.exit(_chaos_hooks.main(sys.argv[1:]))"
PHASES = ("read", "engines", "between")


def make_plan(seed: int, n: int, *, kills: int, fail_reads: int, slices: int, read_retries: int, state: Path,
              span: float = 0.8) -> dict:
    """The events of a chaos run over ``n`` tomograms (``_chaos_hooks``), the same for the same arguments:
    ``kills`` worker kills, their phases in turn (read, engines, between) and shuffled, each at the first
    task from a random index in the first ``span`` of the run; ``fail_reads`` reads that fail 1 to
    ``read_retries`` times in a row at a random slice (of ``slices``, the fewest any tomogram has); the
    main kill when a random 35-60 % of the results are in."""
    rng = random.Random(seed)
    last = max(1, int(n * span))
    phases = [PHASES[i % len(PHASES)] for i in range(kills)]
    rng.shuffle(phases)
    events = []
    for i, (phase, after) in enumerate(zip(phases, sorted(rng.randrange(last) for _ in range(kills)))):
        at = rng.randrange(slices) if phase == "read" else rng.randint(1, 2) if phase == "engines" else 0
        events.append({"id": f"k{i:02d}", "kind": "kill", "phase": phase, "after": after, "at": at})
    for i, after in enumerate(sorted(rng.randrange(last) for _ in range(fail_reads))):
        events.append({"id": f"r{i:02d}", "kind": "fail_read", "after": after, "at": rng.randrange(slices),
                       "times": rng.randint(1, read_retries)})
    return {"seed": seed, "state": str(state), "events": events,
            "main_kill_at": max(1, rng.randint(int(0.35 * n), int(0.6 * n)))}


def make_inputs(root: Path, n: int, seed: int, scale: float) -> tuple[Path, Path, int]:
    """``n`` synthetic test tomograms (slice folders) and the demo pair of detectors, decoded down to a conf
    of 0.01 (up to 5 peaks, a 3-cell NMS) at any distance from the border, so every tomogram has candidates to
    compare: (manifest, data folder, the fewest slices a tomogram has)."""
    import yaml

    from inference.synth.demo_models import write_demo_models
    from inference.synth.generate import generate

    data = root / "data"
    generate(data, n, seed, split="test", scale=scale, progress=False)
    manifest = write_demo_models(root / "models", with_2d=True)
    spec = yaml.safe_load(manifest.read_text())
    for member in spec["members"]:
        member["decode"].update(min_conf=0.01, border_A=0.0, top_k=5, nms_kernel=3)
    manifest.write_text(yaml.safe_dump(spec, sort_keys=False))
    slices = min(sum(1 for _ in p.iterdir()) for p in (data / "test").iterdir())
    return manifest, data, slices


def predict_args(manifest: Path, data: Path, out: Path, backend: str, read_retries: int) -> list[str]:
    return ["-q", "predict", "--manifest", str(manifest), "--input", str(data / "test"), "--output",
            str(out / "submission.csv"), "--spacing-csv", str(data / "test_labels.csv"), "--candidates-dir",
            str(out / "cands"), "--workers", "2", "--backend", backend, "--read-retries", str(read_retries),
            "--no-progress"]


def child_env() -> dict:
    """This checkout's package and the injector for the subprocess, its workers and its Ray workers."""
    paths = [str(ROOT), str(BENCH)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "RAY_USAGE_STATS_ENABLED": "0"}


def results_dir(out: Path) -> Path:
    return out / "submission.csv.work" / "tomograms"


def _count(folder: Path) -> int:
    try:
        return sum(1 for p in folder.iterdir() if p.suffix == ".json")
    except FileNotFoundError:
        return 0


@dataclass
class Launch:
    wall: float
    code: int
    log: str
    saved_at_kill: int | None = None  # results in the work folder when the main process was killed


def launch(cmd: list[str], out: Path, name: str, kill_at: int | None = None, timeout: float = 1800) -> Launch:
    """Run ``cmd`` (its stderr to ``out/<name>.log``); with ``kill_at``, SIGKILL it once that many results are
    saved, wait up to 10 s for its workers to end by themselves, then end what is left of its process
    group (a local Ray's agents)."""
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"{name}.log"
    t0 = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, stdout=err, stderr=err, env=child_env(), cwd=ROOT, start_new_session=True)
        saved = None
        try:
            while kill_at is not None and proc.poll() is None:
                if _count(results_dir(out)) >= kill_at:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
                    saved = _count(results_dir(out))
                    break
                if time.perf_counter() - t0 > timeout:
                    break
                time.sleep(0.005)
            proc.wait(timeout=max(1.0, timeout - (time.perf_counter() - t0)))
        finally:
            _end_group(proc.pid)
    return Launch(time.perf_counter() - t0, proc.returncode, log.read_text(), saved)


def _end_group(pgid: int, wait_s: float = 10.0) -> None:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def outputs(out: Path) -> dict[str, bytes]:
    got = {p.name: p.read_bytes() for p in sorted((out / "cands").iterdir())}
    got["submission.csv"] = (out / "submission.csv").read_bytes()
    return got


@dataclass
class ChaosOutcome:
    """What one backend's chaos run did and cost."""

    backend: str
    n: int
    kills_planned: int
    kills: dict[str, int] = field(default_factory=dict)  # phase -> worker/actor kills done
    kills_missed: int = 0  # Ray: asked for, not done by the driver (the actor went on)
    failed_reads_planned: int = 0
    failed_reads: int = 0  # reads the injector failed
    read_retries: int = 0  # reads again in the results (inference.run.results.TomoResult.read_retries)
    charged: int = 0  # deaths a tomogram was charged with (attempts - 1 over the results)
    saved_at_main_kill: int | None = None
    failed: list[str] = field(default_factory=list)  # tomograms not ok in the end
    identical: bool = False
    differing: list[str] = field(default_factory=list)
    clean_walls: list[float] = field(default_factory=list)
    chaos_walls: tuple[float, float] = (0.0, 0.0)  # killed run, resumed run
    codes: tuple[int, int] = (0, 0)

    @property
    def recomputed(self) -> int | None:
        return None if self.saved_at_main_kill is None else self.n - self.saved_at_main_kill

    @property
    def total_kills(self) -> int:
        return sum(self.kills.values())


def chaos_run(backend: str, manifest: Path, data: Path, root: Path, plan: dict, *, read_retries: int,
              clean_repeats: int = 1, python: str = sys.executable) -> ChaosOutcome:
    """Clean runs, then the chaos run and its resumed run, of ``backend`` (the module docstring)."""
    n = sum(1 for p in (data / "test").iterdir() if p.is_dir())
    state = Path(plan["state"])
    state.mkdir(parents=True, exist_ok=True)
    plan_path = root / f"plan-{backend}.json"
    plan_path.write_text(json.dumps(plan, indent=1))
    events = plan["events"]
    o = ChaosOutcome(backend, n, kills_planned=sum(e["kind"] == "kill" for e in events),
                     failed_reads_planned=sum(e.get("times", 0) for e in events))
    clean = None
    for r in range(clean_repeats):
        out = root / f"{backend}-clean{r}"
        run = launch([python, "-m", "inference", *predict_args(manifest, data, out, backend, read_retries)], out, "run")
        if run.code != 0:
            raise RuntimeError(f"the clean {backend} run failed (exit {run.code}): {run.log[-2000:]}")
        o.clean_walls.append(run.wall)
        got = outputs(out)
        if clean is not None and got != clean:
            raise RuntimeError(f"two clean {backend} runs differ: the comparison means nothing")
        clean = got
    out = root / f"{backend}-chaos"
    cmd = [python, "-c", LAUNCHER, str(plan_path), *predict_args(manifest, data, out, backend, read_retries)]
    first = launch(cmd, out, "killed", kill_at=plan["main_kill_at"])
    second = launch(cmd, out, "resumed")
    o.chaos_walls, o.codes = (first.wall, second.wall), (first.code, second.code)
    o.saved_at_main_kill = first.saved_at_kill
    _count_events(o, state)
    for p in results_dir(out).glob("*.json"):
        r = json.loads(p.read_text())
        o.read_retries += r.get("read_retries", 0)
        o.charged += r["attempts"] - 1
        if r["status"] != "ok":
            o.failed.append(r["tomo_id"])
    got = outputs(out)
    o.differing = sorted(k for k in set(got) | set(clean) if got.get(k) != clean.get(k))
    o.identical = not o.differing and second.code == 0
    return o


def _count_events(o: ChaosOutcome, state: Path) -> None:
    log = (state / "events.log").read_text().splitlines() if (state / "events.log").exists() else []
    words = [line.split() for line in log]
    if o.backend == "ray":  # done by the driver: a killed-<id> file each
        done = {p.name.split("-", 1)[1] for p in state.glob("killed-*")}
        kills = [w for w in words if w[0] == "killreq" and w[1] in done]
    else:  # a worker logs its kill, then kills itself
        kills = [w for w in words if w[0] == "kill"]
    for w in kills:
        o.kills[w[2]] = o.kills.get(w[2], 0) + 1
    o.kills_missed = sum(w[0] == "killmissed" for w in words) + len(list(state.glob("killmissed-*")))
    o.failed_reads = sum(w[0] == "failread" for w in words)
