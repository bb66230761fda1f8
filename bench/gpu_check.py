"""One-command GPU acceptance: what runs on this GPU, what it gives, how fast.

    python bench/gpu_check.py --out DIR [--budget-s 240] [--manifest weights_manifest.yaml]

At most ``--budget-s`` seconds (default 4 minutes) on one GPU; it runs whatever the machine has and
reports each missing runtime as "not available here":

1. doctor (``python -m inference doctor``'s report: libraries, loadable providers, GPUs);
2. kernel parity on the device (the ``-m gpu`` tests: kernels vs NumPy, CuPy vs CPU member candidates);
3. the CuPy pipeline vs the CPU path on the demo ensemble (synthetic tomograms): candidates equal;
4. where installed, candidates through ONNX Runtime's CUDA provider, its TensorRT provider (fp16)
   and native TensorRT engines (fp16; built here: build, load, run), each against the CPU path:
   positions equal, conf within 1e-3;
5. end to end: our runner (CuPy, decode and resample overlapping the engine) vs the straightforward
   pipeline (host decode, zoom and windows) on the same CUDA engine (``bench/_e2e.py`` ``gpu_section``);
6. throughput (windows/s, fp32 and fp16) and peak memory of each member of the shipped recipe at its
   patch: through TensorRT or ONNX Runtime where they and the exported members are present, else
   through export's torch modules (random weights; labelled so);
7. a projection of the engine hours for ~900 tomograms on 2 T4s, scaled by the ratio of this GPU's
   and the T4's peak FLOPs (labelled a projection);
8. the particle decoders (issue 22) on the GPU (CuPy, cuCIM) vs the CPU on a synthetic CZII-sized stack:
   picks equal, seconds per tomogram of each (``bench/_gpu_particles.py``).

Writes ``DIR/report.md`` and ``DIR/report.json``. Without a GPU it exits 2 at once with one line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]  # run from a checkout: the package need not be installed

import _e2e as E2E  # noqa: E402
import _gpu_particles as P  # noqa: E402
import _gpu_sections as S  # noqa: E402
from _report import provenance  # noqa: E402

DEFAULT_BUDGET_S = 240.0


class Budget:
    def __init__(self, seconds: float, clock=time.monotonic):
        self.clock, self.end = clock, clock() + seconds

    def left(self) -> float:
        return self.end - self.clock()


def find_gpu() -> str | None:
    """None when a GPU is usable (CuPy, else torch), else one line saying why not; imports nothing heavy first."""
    from inference.engines import gpus

    status = gpus.probe()
    if status.ok:
        return None
    torch_problem = S.torch_cuda_problem()
    if torch_problem is None:
        return None
    return f"no GPU here (cupy: {status.problem}; {torch_problem})"


def default_sections(manifest_path: Path) -> dict:
    """name -> fn(capabilities, out, budget): a Section or a list of them, in the report's order."""
    return {
        "kernel parity on the device": lambda c, o, b: S.kernels_on_device(c, o, max(30.0, min(150.0, b.left() - 90))),
        "candidates": candidate_sections,
        "end to end vs the straightforward pipeline (GPU)": lambda c, o, b: E2E.gpu_section(c, o, b),
        "throughput": lambda c, o, b: throughput_section(c, o, b, manifest_path),
        "particle decoders": P.particles_section,
    }


def run_sections(caps: S.Capabilities, out: Path, budget: Budget, first: S.Section, fns: dict) -> list[S.Section]:
    """Every section in order, each within what is left of the budget."""
    results = [first]
    for name, fn in fns.items():
        if budget.left() < 10:
            results.append(S.Section(name, "skipped", "time budget spent"))
            continue
        t0 = time.perf_counter()
        try:
            got = fn(caps, out, budget)
        except Exception as exc:  # a section's failure is reported, never the end of the run
            got = S.Section(name, "failed", f"{type(exc).__name__}: {exc}")
        for sec in got if isinstance(got, list) else [got]:
            sec.seconds = sec.seconds or time.perf_counter() - t0
            results.append(sec)
    return results


def candidate_sections(caps: S.Capabilities, out: Path, budget: Budget) -> list[S.Section]:
    from inference.engines.base import EngineOptions
    from inference.engines.registry import load_engine

    holder = {}

    def workspace():
        if "ws" not in holder:
            holder["ws"] = S.Workspace(Path(tempfile.mkdtemp(prefix="gpu-check-", dir=out)))
        return holder["ws"]

    cpu_engine = lambda m: load_engine(m.model, EngineOptions(device="cpu"))  # noqa: E731
    trt_cache = out / "trt-cache"
    return [
        S.candidates_section("CuPy pipeline vs CPU path (demo ensemble, ONNX Runtime CPU engines)", caps.cupy,
                             workspace, lambda ws: ws.predict("cupy", device="cuda", engine_factory=cpu_engine), 1e-4),
        S.candidates_section("ONNX Runtime CUDA provider vs CPU path", caps.cupy or caps.ort_cuda, workspace,
                             lambda ws: ws.predict("ort-cuda", device="cuda"), 1e-3),
        S.candidates_section("ONNX Runtime TensorRT provider (fp16) vs CPU path", caps.cupy or caps.ort_trt, workspace,
                             lambda ws: ws.predict("ort-trt", device="cuda", ort_provider="tensorrt", fp16=True,
                                                   cache_dir=trt_cache), 1e-3),
        S.candidates_section("native TensorRT engines (fp16; built here) vs CPU path", caps.cupy or caps.tensorrt,
                             workspace, S.native_tensorrt_run, 1e-3),
    ]


def throughput_rows(caps: S.Capabilities, manifest_path: Path, budget: Budget) -> list[dict]:
    """Per member and precision: through TensorRT (ONNX Runtime's provider) or ONNX Runtime's CUDA
    provider (fp32) where they and the exported member are present, else export's torch module."""
    from inference.engines.base import EngineOptions
    from inference.manifest.parse import load_manifest

    manifest = load_manifest(manifest_path, check_files=False)
    rows = []
    for member in manifest.members:
        mine = {p: {"member": member.name, "precision": p, "patch": list(member.patch), "batch": member.batch_size,
                    "windows_per_tomogram": S.windows_per_tomogram(member)} for p in ("fp32", "fp16")}
        rows += mine.values()
        if budget.left() < 20:
            for r in mine.values():
                r["error"] = "not measured: time budget spent"
            continue
        exported = Path(member.model).is_file() and not caps.cupy
        try:
            for p, r in mine.items():
                if exported and not caps.ort_trt:
                    r.update(S.engine_throughput(member, EngineOptions(device="cuda", ort_provider="tensorrt",
                                                                       fp16=p == "fp16")))
                elif exported and not caps.ort_cuda and p == "fp32":
                    r.update(S.engine_throughput(member, EngineOptions(device="cuda")))
            todo = [p for p, r in mine.items() if "windows_per_s" not in r]
            if todo and not caps.torch_cuda:
                measured = S.torch_throughput(member, seconds=min(4.0, budget.left() / 25))
                for p in todo:
                    mine[p].update(measured[p])
            elif todo:
                for p in todo:
                    mine[p]["error"] = f"{S.NA}: no exported member for an engine, and {caps.torch_cuda}"
        except Exception as exc:  # out of memory, a missing timm model, ...: this member's result
            for r in mine.values():
                r.setdefault("error", f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    return rows


def throughput_section(caps: S.Capabilities, out: Path, budget: Budget, manifest_path: Path) -> list:
    rows = throughput_rows(caps, manifest_path, budget)
    table = ["| member | precision | patch x batch | windows/s | peak GiB | windows / tomogram | backend |",
             "|---|---|---|---:|---:|---:|---|"]
    for r in rows:
        rate = f"{r['windows_per_s']:.2f}" if "windows_per_s" in r else r.get("error", "-")
        peak = f"{r['peak_gib']:.2f}" if "peak_gib" in r else "-"
        table.append(f"| {r['member']} | {r['precision']} | {'x'.join(map(str, r['patch']))} x {r['batch']} | {rate} "
                     f"| {peak} | {r['windows_per_tomogram']:.0f} | {r.get('backend', '-')} |")
    measured = [r for r in rows if "windows_per_s" in r]
    status = "ok" if len(measured) == len(rows) else ("failed" if measured else S.NA)
    sec = S.Section("throughput and peak memory per member (shipped recipe, its patch)", status,
                    f"{len(measured)} of {len(rows)} member x precision rows measured", details=table,
                    data={"rows": rows})
    proj = S.projected_hours(rows, caps.gpu_name)
    lines = [f"- {p}: {v['hours']:.2f} h for 900 tomograms on 2 T4s ({v['seconds_per_tomogram_t4']:.1f} s of engine "
             f"time per tomogram; this GPU's peak FLOPs / T4's = {v['flops_ratio']:.1f})"
             for p, v in proj.items() if isinstance(v, dict)]
    note = ("PROJECTION, not a measurement: engine time only (reading, resampling and stitching overlap it), "
            "measured per window here and scaled by the ratio of peak FLOPs; real T4 throughput is lower where "
            "a layer is memory-bound, and TensorRT is faster than torch eager")
    psec = S.Section("projected hours: ~900 tomograms on 2 T4s", "ok" if lines else "failed",
                     proj.get("error", "") or ("; ".join(f"{p} {v['hours']:.2f} h" for p, v in proj.items())
                                               or "no precision measured for every member"),
                     details=lines + [f"- {note}"], data=proj)
    return [sec, psec]


def write_report(sections: list[S.Section], out: Path, command: str, gpu: str | None) -> Path:
    lines = ["# GPU acceptance (bench/gpu_check.py)", "", *provenance(command), f"- GPU: {gpu or '?'}", "",
             "| check | status | result | s |", "|---|---|---|---:|"]
    lines += [f"| {s.name} | {s.status} | {s.summary.replace('|', '/')} | {s.seconds:.0f} |" for s in sections]
    for s in sections:
        if s.details:
            lines += ["", f"## {s.name}", "", *s.details]
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(json.dumps({"gpu": gpu, "sections": [asdict(s) for s in sections]}, indent=2,
                                                default=str) + "\n")
    return out / "report.md"


def main(argv: list[str] | None = None, *, find=find_gpu, sections: dict | None = None, collect=None,
         clock=time.monotonic) -> int:
    """``find``, ``sections`` (name -> fn, replacing the defaults), ``collect`` (the doctor) are for tests."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="folder for report.md, report.json and scratch files")
    ap.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="time budget in seconds (default 240)")
    ap.add_argument("--manifest", type=Path, default=HERE.parent / "weights_manifest.yaml",
                    help="the recipe whose members are timed (default: the shipped weights_manifest.yaml)")
    args = ap.parse_args(argv)
    budget = Budget(args.budget_s, clock)
    problem = find()
    if problem:
        print(f"gpu_check: {problem}. Fix: run it on a machine with an NVIDIA GPU", file=sys.stderr)
        return 2
    from inference.run import doctor

    report = (collect or doctor.collect)()  # the device only: the recipe's member files need not exist here
    caps = S.capabilities(report, S.torch_cuda_problem())
    verdict = doctor.verdict(report, "cuda")
    doc = S.Section("doctor", "ok" if verdict is None else "failed",
                    "--device cuda usable" if verdict is None else f"{verdict[0]}. Fix: {verdict[1]}",
                    details=["```", *report.lines(), "```"], data=report.to_dict())
    args.out.mkdir(parents=True, exist_ok=True)
    fns = {**default_sections(args.manifest), **(sections or {})}
    results = run_sections(caps, args.out, budget, doc, fns)
    path = write_report(results, args.out, "python bench/gpu_check.py " + " ".join(argv or sys.argv[1:]),
                        caps.gpu_name)
    print(path.read_text())
    return 0 if all(s.status in ("ok", S.NA) for s in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
