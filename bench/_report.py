"""What every benchmark report holds and how it is written: command, date, machine, versions and the
machine's load; Markdown tables; the medians and spreads as JSON beside the report; and the sections of
docs/BENCHMARKS.md that ``bench/run_all.py`` fills from the reports (between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->``; everything outside the markers is kept as written).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import shlex
import sys
from importlib import metadata
from pathlib import Path
from typing import Sequence

from _measure import Spread, spread

RUN_ALL_ENV = "MOTORFINDER_BENCH_RUN_ALL"  # set by run_all.py: the command that ran this script
BASE_PACKAGES = ("numpy", "onnxruntime")


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """``python bench/<script> <args>``."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", f"bench/{script}", shlex.join(args)]).strip()


def versions(packages: Sequence[str] = ()) -> str:
    """``Python 3.11.7, numpy 2.4.6, ...``: the installed version of each package (absent ones skipped)."""
    out = [f"Python {platform.python_version()}"]
    for name in dict.fromkeys([*BASE_PACKAGES, *packages]):
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(out)


def machine() -> str:
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.platform()}, {os.cpu_count()} CPUs, {mem:.0f} GiB"


def provenance(command: str, packages: Sequence[str] = ()) -> list[str]:
    """The report's command (and the run_all command that ran it), UTC date, machine and versions lines."""
    via = os.environ.get(RUN_ALL_ENV)
    return [
        f"- command: `{command}`" + (f" (run by `{via}`)" if via else ""),
        f"- date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
        f"- machine: {machine()}",
        f"- versions: {versions(packages)}",
    ]


def load_line(loads: Sequence[float], cores: int | None = None) -> tuple[str, bool]:
    """The load bullet and whether the machine was under load: the median 1-minute load average above the
    core count means other jobs were competing with the benchmark's own processes."""
    cores = cores or os.cpu_count() or 1
    s = spread(loads)
    busy = s.median > cores
    text = (f"- load: 1-minute load average when each run started {s.fmt(1)} on {cores} cores (the benchmark's own "
            "processes included)")
    if busy:
        text += f"; **under load**: other jobs shared the cores (median above {cores})"
    return text, busy


def metric_kind(key: str, value: Spread) -> str:
    """``count`` (one value that does not vary: F2, FLOPs), ``time`` (seconds, rates: they follow the machine's
    load), ``cpu ratio`` (a comparison of CPU time within the same rounds, key ending in ``(CPU)``) or ``ratio``
    (of wall time, within the same rounds: a gain from a second core depends on the other jobs' load)."""
    if value.n == 1 and value.lo == value.hi:
        return "count"
    if re.search(r"( s| ms| ms per \w+| MB/s| GiB)$", key):
        return "time"
    return "cpu ratio" if key.endswith("(CPU)") else "ratio"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> list[str]:
    """A Markdown table; ``align`` is one letter per column (``l`` or ``r``), default: first left, rest right."""
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header) or any(len(r) != len(header) for r in rows):
        raise ValueError("every row and the alignment need one entry per column")
    cell = lambda v: str(v).replace("|", "/").replace("\n", " ")  # noqa: E731
    return ["| " + " | ".join(map(cell, header)) + " |",
            "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|",
            *("| " + " | ".join(map(cell, r)) + " |" for r in rows)]


class Report:
    """One benchmark's report: ``bench/results/<name>.md`` and its medians and spreads as ``<name>.json``."""

    def __init__(self, script: str, title: str, argv: Sequence[str] | None = None, packages: Sequence[str] = ()):
        self.title, self.command = title, command_line(script, argv)
        self.packages = tuple(packages)
        self.body: list[str] = []
        self.metrics: dict[str, Spread] = {}
        self.loads: list[float] = []

    def add(self, *lines: str) -> None:
        self.body.extend(lines)

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> None:
        self.body += markdown_table(header, rows, align) + [""]

    def metric(self, key: str, value: Spread) -> Spread:
        """Record a median and spread (for the JSON and the run-to-run comparison); returns it."""
        self.metrics[key] = value
        return value

    def record_loads(self, loads: Sequence[float]) -> None:
        self.loads.extend(loads)

    def render(self) -> tuple[str, dict]:
        head = provenance(self.command, self.packages)
        busy = False
        if self.loads:
            line, busy = load_line(self.loads)
            head.append(line)
        text = "\n".join([f"# {self.title}", "", *head, "", *self.body]).rstrip() + "\n"
        data = {"title": self.title, "command": self.command, "date": head[1].split(": ", 1)[1],
                "machine": machine(), "versions": versions(self.packages),
                "load": spread(self.loads).as_dict() if self.loads else None, "under_load": busy,
                "metrics": {k: {**v.as_dict(), "kind": metric_kind(k, v)} for k, v in self.metrics.items()}}
        return text, data

    def write(self, out: Path) -> str:
        """Print the report, write it to ``out`` and its data to ``out`` with suffix ``.json``."""
        text, data = self.render()
        print(text)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
        return text


# ---------------------------------------------------------------- docs/BENCHMARKS.md sections


def markers(name: str) -> tuple[str, str]:
    return f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"


def section_names(text: str) -> list[str]:
    """The generated sections of a document, in order (markers alone on their line)."""
    return re.findall(r"^<!-- bench:([\w-]+) -->$", text, flags=re.M)


def replace_section(text: str, name: str, body: str) -> str:
    """``text`` with the lines between the markers of section ``name`` (each alone on its line) replaced by
    ``body``."""
    start, end = (re.compile(rf"^{re.escape(m)}$", re.M) for m in markers(name))
    starts, ends = list(start.finditer(text)), list(end.finditer(text))
    if len(starts) != 1 or len(ends) != 1 or ends[0].start() < starts[0].end():
        raise ValueError(f"section {name!r}: expected one line '{markers(name)[0]}' followed by one line "
                         f"'{markers(name)[1]}'")
    return text[:starts[0].end()] + "\n" + body.strip("\n") + "\n" + text[ends[0].start():]


def doc_body(report_md: str, shift: int = 2) -> str:
    """A report as a doc section: without its title line, its headings ``shift`` levels deeper."""
    lines = report_md.strip("\n").splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    out = [("#" * shift + ln) if ln.startswith("#") else ln for ln in lines]
    return "\n".join(out).strip("\n")
