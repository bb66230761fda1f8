"""Regenerate every benchmark table: bench/results/<name>.md (+ .json) and the sections of docs/BENCHMARKS.md
(and of the other documents a table names, e.g. docs/RELIABILITY.md's chaos run).

    python bench/run_all.py [--quick] [--only NAME ...] [--python GROUP=PATH ...] [--list]

Each table is one script of bench/ run in its own process, one after the other (never two at once: they
time each other otherwise). Its report replaces the text between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->`` in its document (docs/BENCHMARKS.md unless the table names another); the prose
outside the markers is kept.

* ``--quick``: smaller inputs, the same number of repeats (at least 5): under 10 minutes on 2 cores. A table
  too long for it (``full_only``: the chaos run) is left out, its section kept as the last full run wrote it.
* Libraries: the tables run on ``.[cpu,dev,bench]``; those of the ``export`` group need the ``[export]``
  extra (torch 2.14.1 + torchvision 0.29.1 + timm), ``ray`` needs ``[ray]`` and zarr. Where the interpreter
  of a group lacks them, the table is not rerun and its section says so (with the last report run_all
  wrote, if any). ``--python export=/path/to/.venv-export/bin/python`` runs that group's tables with
  another interpreter, so one command regenerates everything on a machine with both environments.
* Reproducibility: each table's medians are compared with the previous run's of the same command (each
  median within the other run's min-max); the result is the section ``consistency`` (a run with ``--only``
  prints its comparison and leaves that section as it is).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _measure import Spread, consistent  # noqa: E402
from _report import RUN_ALL_ENV, command_line, doc_body, markdown_table, provenance, replace_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "BENCHMARKS.md"
DOCS = ROOT / "docs"
GROUPS = {
    "bench": ("the `[cpu,dev,bench]` extras (MONAI and torch, CPU build)", ()),
    "export": ("the `[export]` extra (torch 2.14.1 + torchvision 0.29.1 + timm that load together)",
               ("torch", "torchvision", "timm")),
    "ray": ("the `[ray]` and `[zarr]` extras", ("ray", "zarr")),
}


@dataclass(frozen=True)
class Table:
    name: str
    script: str
    full: tuple[str, ...] = ()
    quick: tuple[str, ...] = ()
    group: str = "bench"
    needs: tuple[str, ...] = ()  # modules imported by the script (besides the package)
    minutes: float = 1.0  # rough --quick time on 2 cores (a full_only table: its full time), for --list
    doc: str | None = None  # the document (in docs/) holding its section; None: docs/BENCHMARKS.md (--doc)
    full_only: bool = False  # too long for --quick: run only by the full run

    def modules(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*GROUPS[self.group][1], *self.needs)))


# In run order: flops before the projections that read bench/results/flops.md.
TABLES = (
    Table("decoders", "bench_decoders.py", ("--slices", "64"), ("--slices", "24"), needs=("cv2", "simplejpeg"),
          minutes=0.3),
    Table("ensemble", "bench_ensemble.py", (), ("--sets", "99:24"), minutes=0.7),
    Table("sliding_window", "bench_sliding_window.py", (), (), needs=("torch", "monai"), minutes=0.3),
    Table("fusion", "bench_fusion.py", ("--iou",), ("--tomograms", "50", "--iou"), needs=("ensemble_boxes",),
          minutes=0.3),
    Table("runner", "bench_runner.py", ("--big",), ("--n", "4", "--scale", "0.15"),
          needs=("torch", "monai"),
          minutes=1.5),
    Table("kernels", "bench_kernels.py", (), ("--shape", "100", "480", "464"), minutes=0.2),
    Table("flops", "bench_flops.py", (), (), group="export", minutes=0.2),
    Table("export_parity", "bench_export_parity.py", (), ("--skip-full",), group="export", minutes=1.5),
    Table("particle_decoders", "bench_particle_decoders.py", (), (), needs=("cc3d", "skimage"), minutes=2.0),
    Table("particle_accuracy", "bench_particle_accuracy.py", (), ("--sets", "1:4"), minutes=0.3),
    Table("recipe", "bench_recipe.py", (), ("--n", "4"), minutes=1.0),
    Table("run_checks", "bench_run_checks.py", (), ("--n", "20", "--slices", "100"), minutes=0.4),
    Table("scale", "bench_scale.py", (), ("--n", "2", "--scale", "0.1"), group="ray", minutes=1.5),
    Table("portal", "project_portal.py", (), (), minutes=0.1),
    Table("chaos", "chaos.py", (), (), group="ray", doc="RELIABILITY.md", full_only=True, minutes=8.0),
)


@dataclass
class Outcome:
    table: Table
    status: str  # "ok", "not rerun", "failed"
    detail: str = ""
    seconds: float = 0.0
    previous: dict | None = None
    current: dict | None = None
    checks: list = field(default_factory=list)


_IMPORTABLE: dict[tuple[str, str], bool] = {}


def missing_modules(python: str, modules) -> list[str]:
    """The modules ``python`` cannot import (each tried once per interpreter, in a child process: a torch
    next to a torchvision built for another one fails on import, which only an import shows)."""
    todo = [m for m in modules if (python, m) not in _IMPORTABLE]
    if todo:
        code = ("import importlib, sys\nfor m in sys.argv[1:]:\n    try:\n        importlib.import_module(m)\n"
                "    except Exception:\n        print(m)\n")
        proc = subprocess.run([python, "-c", code, *todo], capture_output=True, text=True, cwd=ROOT)
        failed = set(todo) if proc.returncode != 0 else set(proc.stdout.split())
        _IMPORTABLE.update({(python, m): m not in failed for m in todo})
    return [m for m in modules if not _IMPORTABLE[(python, m)]]


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def compare(previous: dict | None, current: dict | None) -> list[tuple[str, Spread, Spread, bool, str]]:
    """Per metric in both runs: (key, previous, current, consistent, kind)."""
    if not previous or not current:
        return []
    out = []
    for key, now in current.get("metrics", {}).items():
        before = previous.get("metrics", {}).get(key)
        if before is None:
            continue
        a = Spread(before["median"], before["min"], before["max"], before["n"])
        b = Spread(now["median"], now["min"], now["max"], now["n"])
        out.append((key, a, b, consistent(a, b), now.get("kind", "ratio")))
    return out


def same_command(a: dict | None, b: dict | None) -> bool:
    return bool(a and b and a.get("command") == b.get("command"))


def run_table(t: Table, python: str, quick: bool, via: str) -> Outcome:
    out = RESULTS / f"{t.name}.md"
    previous = read_json(out.with_suffix(".json"))
    lacking = missing_modules(python, t.modules())
    if lacking:
        what = GROUPS[t.group][0] if t.group != "bench" else f"the module(s) {', '.join(lacking)}"
        return Outcome(t, "not rerun", f"needs {what}: {', '.join(lacking)} cannot be imported by `{python}`"
                       + (f" (run with `--python {t.group}=PATH`)" if t.group != "bench" else ""), previous=previous)
    cmd = [python, f"bench/{t.script}", *(t.quick if quick else t.full), "--out", str(out.relative_to(ROOT))]
    print(f"== {t.name}: {shlex.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, RUN_ALL_ENV: via}, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    log = RESULTS / "logs" / f"{t.name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["?"])[-1]
        return Outcome(t, "failed", f"exit {proc.returncode}: {last} (log: {log.relative_to(ROOT)})", seconds, previous)
    current = read_json(out.with_suffix(".json"))
    checks = compare(previous, current) if same_command(previous, current) else []
    print(f"   {seconds:.0f} s", flush=True)
    return Outcome(t, "ok", "", seconds, previous, current, checks)


def section(o: Outcome) -> str:
    """The doc section of one table."""
    report = RESULTS / f"{o.table.name}.md"
    if o.status == "ok":
        return doc_body(report.read_text())
    head = f"**Not rerun by the last `python bench/run_all.py`**: {o.detail}." if o.status == "not rerun" \
        else f"**Failed in the last `python bench/run_all.py`**: {o.detail}."
    if report.is_file() and o.previous:
        return head + " The report below is the previous one:\n\n" + doc_body(report.read_text())
    return head


def consistency(outcomes: list[Outcome], command: str, total: float) -> str:
    lines = ["# Run to run", "", *provenance(command),
             f"- took {total:.0f} s in all: " + ", ".join(f"{o.table.name} {o.seconds:.0f} s" for o in outcomes
                                                           if o.status == "ok"), "",
             "Each table's medians against the previous run of the same command: consistent when each median lies "
             "within the other run's min-max. Ratios compare variants within the same rounds: of CPU time (the work "
             "done, steady when other jobs come and go) or of wall time (a gain from overlap or a second core needs "
             "that core free, so it moves with the other jobs' load); times and rates follow the machine's load from "
             "run to run; counts (F2, FLOPs, parity) must be equal. Each table states its load.", ""]
    rows, bad = [], []
    for o in outcomes:
        if o.status != "ok":
            rows.append([o.table.name, o.status, "", "", "", "", ""])
            continue
        if not o.checks:
            why = "no previous run of this command" if not same_command(o.previous, o.current) else "no shared metric"
            rows.append([o.table.name, why, "", "", "", "", ""])
            continue
        cells = []
        for kind in ("cpu ratio", "ratio", "time", "count"):
            mine = [c for c in o.checks if c[4] == kind]
            cells.append(f"{sum(c[3] for c in mine)} of {len(mine)}" if mine else "-")
        rows.append([o.table.name, *cells, o.previous.get("date", "?"), o.current.get("date", "?")])
        bad += [(o.table.name, *c) for c in o.checks if not c[3]]
    lines += markdown_table(["table", "CPU-time ratios within", "wall-time ratios within", "times within",
                             "counts equal", "previous run", "this run"], rows, "lrrrrll")
    if bad:
        lines += ["", "Not within each other's spread:", ""]
        lines += markdown_table(["table", "metric", "kind", "previous median (min-max)", "this run"],
                                [[t, k, kind, a.fmt(3), b.fmt(3)] for t, k, a, b, _, kind in bad], "lllrr")
    return "\n".join(lines) + "\n"


def doc_of(t: Table, default: Path = DOC) -> Path:
    """The document holding ``t``'s section: ``docs/<t.doc>``, or ``default`` (docs/BENCHMARKS.md, ``--doc``)."""
    return DOCS / t.doc if t.doc else default


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="tables: " + ", ".join(t.name for t in TABLES))
    ap.add_argument("--quick", action="store_true", help="smaller inputs (under 10 minutes on 2 cores)")
    ap.add_argument("--only", nargs="+", metavar="NAME", help="only these tables (the others' sections are kept)")
    ap.add_argument("--python", action="append", default=[], metavar="GROUP=PATH",
                    help=f"the interpreter for a group of tables ({', '.join(GROUPS)}); default: this one")
    ap.add_argument("--doc", type=Path, default=DOC, help="the document whose sections are replaced (tables that "
                    "name another document, e.g. the chaos run's docs/RELIABILITY.md, write there)")
    ap.add_argument("--list", action="store_true", help="list the tables and exit")
    args = ap.parse_args(argv)
    pythons = {g: sys.executable for g in GROUPS}
    for item in args.python:
        group, _, path = item.partition("=")
        if group not in GROUPS or not path:
            ap.error(f"--python {item}: expected GROUP=PATH with GROUP one of {', '.join(GROUPS)}")
        if not Path(path).is_file():
            ap.error(f"--python {item}: {path} is not a file")
        pythons[group] = path
    names = {t.name for t in TABLES}
    if args.only and not set(args.only) <= names:
        ap.error(f"--only: unknown table(s) {', '.join(sorted(set(args.only) - names))}; known: {', '.join(names)}")
    if args.list:
        for t in TABLES:
            when = "full run only" if t.full_only else "quick"
            print(f"{t.name:15s} {t.group:7s} ~{t.minutes:.1f} min {when}  bench/{t.script} "
                  f"{shlex.join(t.quick if args.quick else t.full)}")
        return 0
    chosen = [t for t in TABLES if not args.only or t.name in args.only]
    if args.quick:
        for t in (t for t in chosen if t.full_only):
            print(f"== {t.name}: a full-run table (~{t.minutes:.0f} min): not run by --quick; its section is kept")
        chosen = [t for t in chosen if not t.full_only]
    for t in chosen:
        doc_of(t, args.doc).read_text()  # fail early on a missing document
    command = command_line("run_all.py", argv)
    outcomes, t0 = [], time.perf_counter()
    for t in chosen:
        outcomes.append(run_table(t, pythons[t.group], args.quick, command))
        # read again and written after every table: prose edited meanwhile is kept, an interrupted run keeps
        # the tables it finished
        doc = doc_of(t, args.doc)
        doc.write_text(replace_section(doc.read_text(), t.name, section(outcomes[-1])))
    total = time.perf_counter() - t0
    report = consistency(outcomes, command, total)
    print(report)
    if not args.only:  # the section is about whole runs: --only prints its comparison and keeps the section
        (RESULTS / "consistency.md").write_text(report)
        args.doc.write_text(replace_section(args.doc.read_text(), "consistency", doc_body(report)))
    for o in outcomes:
        if o.status != "ok":
            print(f"{o.table.name}: {o.status}: {o.detail}", file=sys.stderr)
    return 1 if any(o.status == "failed" for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
