"""What the notebook runs ON KAGGLE: find the dataset, install offline, print the environment, build
engines, predict within the deadline, check the submission (:mod:`kaggle_builder.submission_check`).

The notebook puts the dataset's package wheel on ``sys.path`` (a pure-Python wheel imports as a zip)
and imports this module before anything is installed, so it needs the standard library only. Each
notebook cell is one call on :class:`Run`. The settings (notebook cell 2) say the competition, the task
(motors: BYU; particles: CZII), the test input under the competition's folder (``test``;
``test/static``, a copick static root) and the sample submission predict orders its rows by (particles:
none, the experiments come from the runs). A run always ends with a valid ``submission.csv``: a step
that fails is reported (on screen and in ``working/motorfinder-run.json``) and the submission falls
back to what could be predicted (motors: -1 for the rest; particles: the valid picks, or the header
alone). No cell raises (a notebook that throws is no submission at all): every step catches what goes
wrong, says it in one line and returns.

Two environment variables let the same notebook run elsewhere (the local dry run sets both):
``MOTORFINDER_DEVICE=cpu`` (predict on the CPU) and ``MOTORFINDER_PYTHON`` (the interpreter to install
into and to predict with; default: the notebook's own).
"""

from __future__ import annotations

import csv
import functools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from kaggle_builder.submission_check import (
    motor_coords,
    particle_problems,
    particle_summary,
    repair_particles,
    repair_submission,
    submission_problems,
)
from kaggle_builder.target import MANIFEST_NAME, RECORD_NAME, STATUS_NAME, WHEELS_DIR


def pip_problem(output: str) -> str:
    """The reason in pip's output, e.g. ``no wheel of mrcfile>=1.4 (needed by motorfinder)``."""
    lines = re.sub(r"\x1b\[[0-9;]*m", "", output).splitlines()  # pip colours its errors on some terminals
    for ln in lines:
        m = re.search(r"No matching distribution found for (\S+)", ln)
        if m:
            need = next((re.search(r"requirement \S+ \(from ([^)]+)\)", x) for x in lines
                         if "satisfies the requirement " + m[1] in x), None)
            return f"no wheel of {m[1]}" + (f" (needed by {need[1].split('==')[0]})" if need else "")
    if any("ResolutionImpossible" in ln or "conflicting dependencies" in ln for ln in lines):
        cause = [ln.strip() for ln in lines if " depends on " in ln or "The user requested" in ln]
        return "conflicting requirements: " + "; ".join(cause[:4])
    errors = [ln.strip() for ln in lines if ln.startswith("ERROR")]
    return " ".join(errors[-2:]) or (lines[-1].strip() if lines else "pip failed without a message")


def environment_report(names: list[str]) -> dict:
    """Python, platform, GPUs, versions of ``names`` and the ONNX Runtime providers of THIS interpreter."""
    import platform
    import shutil
    from importlib.metadata import PackageNotFoundError, version

    def ver(name):
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    report = {"python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform(),
              "packages": {n: ver(n) for n in names}, "onnxruntime_providers": None, "gpus": []}
    try:
        import onnxruntime
        report["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    if shutil.which("nvidia-smi"):
        proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        report["gpus"] = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    return report


def _step(name: str, failed):
    """A cell's method never raises: anything it did not foresee is reported as that step's failure, and
    ``failed(run)`` is returned instead."""
    def wrap(method):
        @functools.wraps(method)
        def guarded(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - a notebook that throws is no submission at all
                self._note(name, False, f"{type(exc).__name__}: {exc}")
                return failed(self)
        return guarded
    return wrap


class Run:
    """One notebook run: the cells call :meth:`install`, :meth:`print_environment`, :meth:`check_device`,
    :meth:`build_engines`, :meth:`predict`, :meth:`check_submission` in this order."""

    def __init__(self, kaggle_root: str | Path, dataset: str | Path, settings: dict):
        self.t0 = time.time()
        self.root, self.dataset, self.settings = Path(kaggle_root), Path(dataset), dict(settings)
        self.python = os.environ.get("MOTORFINDER_PYTHON") or sys.executable
        self.device = os.environ.get("MOTORFINDER_DEVICE", "cuda")
        self.competition = self.root / "input" / str(self.settings.get("competition", ""))
        self.task = str(self.settings.get("task", "motors"))
        self.test_input = self.competition / str(self.settings.get("test_input", "test"))
        sample = self.settings.get("sample_submission", "sample_submission.csv")
        self.sample = self.competition / str(sample) if sample else None
        self.working = self.root / "working"
        self.submission = self.working / "submission.csv"
        self.status: dict = {"dataset": str(self.dataset), "device": self.device, "steps": {}}
        try:
            self.working.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"\n*** working folder FAILED: {exc}\n", flush=True)
        try:
            self.record = json.loads((self.dataset / RECORD_NAME).read_text())
            if not isinstance(self.record, dict):
                raise ValueError(f"{RECORD_NAME} is not a JSON object")
        except (OSError, ValueError) as exc:
            self.record = {}
            self._note("dataset", False, f"{self.dataset / RECORD_NAME}: {exc} (attach the dataset the build wrote)")
        self.manifest = self.dataset / str(self.record.get("manifest", MANIFEST_NAME))
        print(f"motorfinder {self.record.get('version', '?')} | dataset {self.dataset} | device {self.device} | "
              f"python {self.python} | runtime {__file__}", flush=True)

    # ------------------------------------------------------------------------------ plumbing
    def _note(self, step: str, ok: bool, detail: str) -> None:
        self.status["steps"][step] = {"ok": ok, "detail": detail, "at_s": round(time.time() - self.t0, 1)}
        try:
            (self.working / STATUS_NAME).write_text(json.dumps(self.status, indent=2) + "\n")
        except OSError as exc:  # a full disk must not stop the notebook: the screen still says it
            print(f"(cannot write {self.working / STATUS_NAME}: {exc})", flush=True)
        if not ok:
            print(f"\n*** {step} FAILED: {detail}\n", flush=True)

    def ok(self, step: str) -> bool:
        return bool(self.status["steps"].get(step, {}).get("ok"))

    def _sh(self, cmd: list, env: dict | None = None) -> tuple[int, str]:
        """Run a command, streaming its output into the notebook; (exit code, output)."""
        cmd = [str(c) for c in cmd]
        print("$", " ".join(cmd), flush=True)
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                bufsize=1)
        out = []
        for line in proc.stdout:
            print(line, end="", flush=True)
            out.append(line)
        return proc.wait(), "".join(out)

    # ---------------------------------------------------------------------------------- cells
    @_step("install", lambda run: False)
    def install(self) -> bool:
        """pip, offline: the package wheel and the shipped requirements, dependencies resolved from the
        dataset's wheel folders and what the image has."""
        if not self.record.get("wheel"):
            self._note("install", False, f"no package wheel named in {self.dataset / RECORD_NAME}")
            return False
        folders = [self.dataset / WHEELS_DIR / g for g in self.record.get("wheel_groups", [])]
        cmd = [self.python, "-m", "pip", "install", "--no-index", "--disable-pip-version-check", "--no-input"]
        for f in folders:
            if f.is_dir():
                cmd += ["--find-links", f]
        cmd += [self.dataset / self.record["wheel"], *self.record.get("requirements", [])]
        rc, out = self._sh(cmd)
        self._note("install", rc == 0, "ok" if rc == 0 else pip_problem(out))
        return rc == 0

    @_step("environment", lambda run: None)
    def print_environment(self) -> dict | None:
        """Versions as installed, the GPUs, ONNX Runtime's providers; and where the image differs from what
        the build assumed (``kaggle_image_packages.txt``)."""
        image = self.record.get("image", {})
        asked = {re.split(r"[<>=!~;\[ ]", str(r), maxsplit=1)[0] for r in self.record.get("requirements", [])}
        names = sorted({*image, "onnxruntime", "onnxruntime-gpu", "cupy-cuda12x", "tensorrt", "tensorrt-cu12",
                        "tensorrt-cu12-libs", "mrcfile", "simplejpeg", *asked})
        # this module from the wheel file: the report works even when the install did not
        env = dict(os.environ, PYTHONPATH=str(self.dataset / self.record["wheel"]))
        proc = subprocess.run([self.python, "-m", "kaggle_builder.runtime", "--environment", json.dumps(names)],
                              capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            self._note("environment", False, (proc.stderr.strip().splitlines() or ["no output"])[-1])
            return None
        env = json.loads(proc.stdout)
        print(f"python {env['python']} on {env['platform']}; GPUs: {'; '.join(env['gpus']) or 'none'}")
        print("onnxruntime providers:", ", ".join(env["onnxruntime_providers"] or ["(no onnxruntime)"]))
        print("packages:", ", ".join(f"{n} {v}" for n, v in env["packages"].items() if v))
        differ = [f"{n} {env['packages'].get(n)} (the build assumed {v})" for n, v in image.items()
                  if v and env["packages"].get(n) != v]
        if differ:
            print("the image differs from kaggle_image_packages.txt:", "; ".join(differ))
        self._note("environment", True, f"python {env['python']}; {len(differ)} difference(s) from the image list")
        return env

    @_step("engines", lambda run: run.manifest)
    def build_engines(self) -> Path:
        """TensorRT engines for the members in working/engines where TensorRT imports (reused when the dataset
        ships ones for this GPU and version); any problem leaves predict on the ONNX files (ONNX Runtime)."""
        members = self.record.get("engine_members", {})
        if not self.ok("install"):
            why = "the install failed"
        elif self.device != "cuda":
            why = f"device {self.device}"
        elif not members:
            why = "the members are not all ONNX files"
        else:
            try:
                import tensorrt  # noqa: F401
            except ImportError as exc:
                why = f"TensorRT is not importable ({exc})"
            else:
                try:
                    self.manifest = self._build_engines(members)
                    self._note("engines", True, f"manifest {self.manifest}")
                    return self.manifest
                except Exception as exc:  # noqa: BLE001 - an engine problem must not cost the submission
                    why = f"the engine build failed ({type(exc).__name__}: {exc})"
        print(f"no TensorRT engines: {why}; predict runs the ONNX files on ONNX Runtime")
        self._note("engines", True, f"skipped: {why}")
        return self.manifest

    def _build_engines(self, members: dict) -> Path:
        import yaml

        from export.tensorrt import runtime_env
        from export.tensorrt_cache import ensure_engine
        from inference.engines.tensorrt_sidecar import BatchProfile, read_sidecar

        env = runtime_env(0)
        print(f"TensorRT {env.tensorrt_version} on {env.gpu_name} (sm {env.compute_capability})")
        raw = yaml.safe_load(self.manifest.read_text())
        out = self.working / "engines"
        for member in raw["members"]:
            spec = members[member["name"]]
            given = None  # a shipped engine built for this GPU and TensorRT version
            for rel in spec["engines"]:
                sc = read_sidecar(self.dataset / rel)
                if (sc.tensorrt_version, sc.compute_capability, sc.gpu_name) == (
                        env.tensorrt_version, env.compute_capability, env.gpu_name):
                    given = self.dataset / rel
            t = time.time()
            fp16 = member.get("fp16")  # the manifest's key wins; else the notebook's setting
            fp16 = bool(self.settings["fp16_engines"]) if fp16 is None else bool(fp16)
            res = ensure_engine(self.dataset / spec["onnx"], given, out, fp16=fp16,
                                batch=BatchProfile(*spec["batch"]))
            print(f"{member['name']}: {res.path.name} ({res.reason}; {time.time() - t:.0f} s)", flush=True)
            member["model"] = str(res.path)
        derived = out / "weights_manifest.engines.yaml"
        derived.write_text(yaml.safe_dump(raw, sort_keys=False))
        return derived

    @_step("doctor", lambda run: run.fall_back_to_cpu("the device check failed"))
    def check_device(self) -> bool:
        """``python -m inference doctor`` for the run's device, printed; a GPU that cannot be used (no CuPy, a
        CUDA provider that does not load, no GPU) moves the run to the CPU with a warning, never ends it."""
        if not self.ok("install"):
            self._note("doctor", False, "skipped: the install failed")
            return False
        cmd = [self.python, "-m", "inference", "doctor", "--device", self.device, "--manifest", self.manifest]
        rc, out = self._sh(cmd)
        if rc == 0:
            self._note("doctor", True, f"device {self.device} usable")
            return True
        reason = ([ln for ln in out.splitlines() if ln.startswith("error:")] or
                  [ln for ln in out.splitlines() if ln.strip()][-1:] or [f"exit code {rc}"])[0]
        self._note("doctor", False, reason)
        return self.fall_back_to_cpu(f"device {self.device} cannot be used ({reason})")

    def fall_back_to_cpu(self, why: str) -> bool:
        """Move the rest of the run to the CPU with a warning (nothing to do on the CPU already); False."""
        if self.device != "cpu":
            print(f"WARNING: {why}; predict falls back to the CPU: the deadline guard degrades the ensemble and "
                  "writes -1 for what it cannot reach", flush=True)
            self.device = "cpu"
            self.status["device"] = "cpu (fallback)"
        return False

    @_step("predict", lambda run: False)
    def predict(self) -> bool:
        """``python -m inference predict`` over the test set on every visible GPU (``devices`` in the settings);
        the deadline guard gets what is left of the notebook's budget (it degrades the ensemble, then writes
        -1 for tomograms it cannot reach). A GPU run that fails is run once more on the CPU."""
        if not self.ok("install"):
            self._note("predict", False, "skipped: the install failed")
            return False
        rc, detail = self._predict_on(self.device)
        if rc != 0 and self.device != "cpu":
            self.fall_back_to_cpu(f"predict on {self.device} failed ({detail})")
            rc, detail = self._predict_on("cpu")
        self._note("predict", rc == 0, "ok" if rc == 0 else detail)
        return rc == 0

    def _predict_on(self, device: str) -> tuple[int, str]:
        left_h = max(0.1, float(self.settings["budget_h"]) - (time.time() - self.t0) / 3600.0)
        if device == "cpu":
            flags = ["--device", "cpu", "--workers", "1"]
        else:
            flags = ["--devices", str(self.settings.get("devices", "all"))]
        sample = ["--sample-submission", self.sample] if self.sample is not None else []
        cmd = [self.python, "-m", "inference", "predict", "--manifest", self.manifest, "--input", self.test_input,
               *sample, "--output", self.submission, *flags, "--deadline-h", f"{left_h:.3f}",
               "--work-dir", self.working / "work", "--no-progress"]
        rc, out = self._sh(cmd, env=dict(os.environ, PYTHONUNBUFFERED="1"))
        tail = [ln for ln in out.splitlines() if ln.strip()][-1:] or [""]
        return rc, f"exit code {rc}: {tail[0]}"

    @_step("submission", lambda run: ["the check failed: see above"])
    def check_submission(self) -> list[str]:
        """Motors: every sample id once, the sample's columns, valid numbers; anything else is repaired (-1).
        Particles: the header, ids 0..n-1, the manifest's particle types, finite x y z; invalid rows dropped."""
        return self._check_particles() if self.task == "particles" else self._check_motors()

    def _checked(self, problems: list[str]) -> list[str]:
        self._note("submission", not problems, "valid" if not problems else "repaired: " + "; ".join(problems))
        return problems

    def _check_motors(self) -> list[str]:
        sample = self.sample or self.competition / "sample_submission.csv"
        if not sample.is_file():
            self._note("submission", False, f"{sample} is missing: cannot check or repair the submission")
            return [f"no {sample.name}"]
        problems = submission_problems(self.submission, sample) if self.submission.is_file() else ["no submission"]
        if problems:
            fixed = repair_submission(self.submission, sample)
            print(f"submission repaired ({'; '.join(problems)}): {fixed} tomogram(s) written as -1")
        with open(self.submission, newline="") as f:
            rows = list(csv.reader(f))[1:]
        motors = sum(1 for r in rows if r and motor_coords(r[1:]) not in (None, [-1.0] * 3))
        print(f"submission OK: {len(rows)} tomograms, {motors} with a motor, {len(rows) - motors} without; "
              f"{(time.time() - self.t0) / 60:.1f} min in total")
        return self._checked(problems)

    def _check_particles(self) -> list[str]:
        types = [str(t) for t in self.record.get("particle_types", [])]
        problems = particle_problems(self.submission, types)
        if problems:
            dropped = repair_particles(self.submission, types)
            print(f"submission repaired ({'; '.join(problems)}): {dropped} invalid row(s) dropped")
        runs_dir = self.test_input / "ExperimentRuns"
        runs = sorted(p.name for p in runs_dir.iterdir() if p.is_dir()) if runs_dir.is_dir() else []
        print(f"submission OK: {particle_summary(self.submission, runs)}; "
              f"{(time.time() - self.t0) / 60:.1f} min in total")
        return self._checked(problems)


def main(argv: list[str] | None = None) -> int:
    """``python -m kaggle_builder.runtime --environment '["numpy", ...]'``: :func:`environment_report` as JSON."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] != "--environment":
        print("usage: python -m kaggle_builder.runtime --environment JSON_LIST_OF_PACKAGE_NAMES", file=sys.stderr)
        return 2
    print(json.dumps(environment_report(json.loads(argv[1]))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
