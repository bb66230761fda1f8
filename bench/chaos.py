"""A chaos run, measured: ``predict`` survives worker kills, transient read failures and a killed main process,
and writes the bytes of a clean run (issue 23; its table is a section of docs/RELIABILITY.md).

    python bench/chaos.py [--n 200] [--kills 12] [--fail-reads 12] [--seed 7] [--backends local ray] [--out FILE]

For each backend: ``--n`` tiny synthetic tomograms (slice folders) through the demo pair of detectors with
``--workers 2``; ``--clean-repeats`` clean runs (``python -m inference predict``), then the chaos run: the same
command through the fault injector (``bench/_chaos_hooks.py``, a test hook; the plan made from ``--seed`` by
``bench/_chaos_run.py``): ``--kills`` worker kills (local: the worker SIGKILLs itself; Ray: the driver
``ray.kill``\\ s the actor) at random moments (reading a slice, at an engine call, between tasks), ``--fail-reads``
reads failing with EIO 1 to ``--read-retries`` times in a row, and one SIGKILL of the main process when a random
35-60 % of the results are saved; then the same command again, which resumes. The submission and every
candidate file are compared byte for byte with the clean run's.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package, not an installed one

from _chaos_run import PHASES, ChaosOutcome, chaos_run, make_inputs, make_plan  # noqa: E402
from _measure import exact, load_average, spread  # noqa: E402
from _report import Report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def row(o: ChaosOutcome) -> list[str]:
    clean = statistics.median(o.clean_walls)
    chaos = sum(o.chaos_walls)
    phases = " / ".join(str(o.kills.get(p, 0)) for p in PHASES)
    main = (f"{o.saved_at_main_kill} saved / {o.recomputed} recomputed" if o.saved_at_main_kill is not None
            else "**not killed** (the run ended first)")
    return [o.backend, str(o.n), f"{o.total_kills} of {o.kills_planned} ({phases})", str(o.failed_reads),
            str(o.read_retries), str(o.charged), main, str(len(o.failed)),
            "**yes**" if o.identical else f"**NO**: {', '.join(o.differing) or 'exit codes ' + str(o.codes)}",
            f"{clean:.1f}", f"{o.chaos_walls[0]:.1f} + {o.chaos_walls[1]:.1f}", f"{chaos / clean:.2f}x"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="tomograms (default 200)")
    ap.add_argument("--kills", type=int, default=12, help="worker/actor kills planned (default 12)")
    ap.add_argument("--fail-reads", type=int, default=12, help="transient read failures planned (default 12 events)")
    ap.add_argument("--read-retries", type=int, default=2, help="predict --read-retries (default 2)")
    ap.add_argument("--seed", type=int, default=7, help="the plan's seed (default 7)")
    ap.add_argument("--scale", type=float, default=0.06, help="synthetic tomogram scale (default 0.06: ~32 slices)")
    ap.add_argument("--clean-repeats", type=int, default=3, help="clean runs per backend (default 3)")
    ap.add_argument("--backends", nargs="+", default=["local", "ray"], choices=["local", "ray"])
    ap.add_argument("--keep", type=Path, default=None, help="keep the runs' folders (logs, work folders) here")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "chaos.md")
    args = ap.parse_args(argv)

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-chaos-"))
    root.mkdir(parents=True, exist_ok=True)
    manifest, data, slices = make_inputs(root, args.n, args.seed, args.scale)
    outcomes, loads = [], []
    for backend in args.backends:
        plan = make_plan(args.seed, args.n, kills=args.kills, fail_reads=args.fail_reads, slices=slices,
                         read_retries=args.read_retries, state=root / f"state-{backend}")
        loads.append(load_average())
        o = chaos_run(backend, manifest, data, root, plan, read_retries=args.read_retries,
                      clean_repeats=args.clean_repeats)
        print(f"{backend}: {row(o)}", flush=True)
        outcomes.append(o)

    rep = Report("chaos.py", "A chaos run: kills, failed reads and a killed main process", argv,
                 packages=["ray"] if "ray" in args.backends else [])
    rep.record_loads(loads)
    rep.add(f"- data: {args.n} synthetic test tomograms (`synth --scale {args.scale}`, seed {args.seed}: slice folders "
            f"of {slices} or more JPEG slices), the demo pair of detectors (3d + 2d, fused) decoded down to a conf of "
            "0.01; `predict --workers 2 --read-retries "
            f"{args.read_retries}` (`--retries 1`, the default), `--backend local` and `--backend ray` (2 CPU actors)",
            f"- plan (seed {args.seed}, `bench/_chaos_run.py`): {args.kills} kills (reading a slice, at the 1st or 2nd "
            f"engine call of a tomogram, between tasks: in turn), {args.fail_reads} reads failing with EIO 1 to "
            f"{args.read_retries} times in a row, one SIGKILL of the main process when 35-60 % of the results are "
            "saved; then the same command again (it resumes). Local workers kill themselves (SIGKILL); Ray actors "
            "are ended by the driver with `ray.kill`",
            f"- clean: `python -m inference predict` with the same arguments, {args.clean_repeats} runs (median); "
            "chaos: one run, the killed run's wall time plus the resumed run's", "")
    rep.table(["backend", "tomograms", "worker kills survived (read / engines / between)", "reads failed (injected)",
               "reads retried (in the results)", "deaths charged to a tomogram", "main kill: results saved / "
               "recomputed after", "tomograms failed", "submission + candidates byte-identical to clean",
               "clean wall s", "chaos wall s (killed + resumed)", "wall-time cost"], [row(o) for o in outcomes])
    for o in outcomes:
        rep.metric(f"{o.backend}: worker kills survived", exact(o.total_kills))
        rep.metric(f"{o.backend}: reads failed", exact(o.failed_reads))
        rep.metric(f"{o.backend}: outputs identical", exact(float(o.identical)))
        rep.metric(f"{o.backend}: clean wall s", spread(o.clean_walls))
    rep.add("- reads failed vs retried: a read is retried within the run (0.2 s, then 0.4 s later); the retries a "
            "result records are those of the try that gave it, so a failed read whose tomogram was then lost (its "
            "worker killed, or the main process) and run again is counted as failed and not as retried",
            "- deaths charged: a death is charged to the tomogram its worker was running (the ledger's blame rule; "
            "a kill between tasks may find none running), then re-run once (`--retries 1`); counted in the final "
            "results, so a charge whose re-run was lost with the main process does not show. The injector kills only "
            "while every tomogram its worker holds is on its first try, so no tomogram is charged twice",
            "- recomputed: tomograms without a result in the work folder when the main process died (those in "
            "flight included); the resumed run reuses the others (`resuming: N of M`)",
            "- wall-time cost: each kill costs a worker start (spawn, imports, engines: a Ray actor's is slower) and "
            "the work lost; the main kill costs a second start of the run (and of Ray)")
    rep.write(args.out)
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if all(o.identical and o.saved_at_main_kill is not None for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
