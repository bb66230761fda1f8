"""Names read from the outside cannot forge log lines: a newline, a tab, a quote and ANSI escapes in tomo_ids,
paths and experiments come out escaped on stderr and in the summary; the CSV keeps the real value."""

from __future__ import annotations

import csv
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.common.log_format import LineFormatter, traceback_lines
from inference.common.names import escaped, name_list
from inference.synth.demo_models import write_demo_models

REPO = Path(__file__).resolve().parents[2]
BAD = ["tomo_nl\nx", "tomo_tab\tx", "tomo_\x1b[31mred", 'tomo_q"uote']
LINE = re.compile(r"^((DEBUG|INFO|WARNING|ERROR|CRITICAL) (worker\d+ )?[\w.]+: |error: |\s)")


def test_escaped_writes_control_characters_as_escapes_and_leaves_the_rest():
    assert escaped("tomo_nl\nx") == "tomo_nl\\nx" and escaped("a\tb") == "a\\tb"
    assert escaped("\x1b[31mred\x1b[0m") == "\\x1b[31mred\\x1b[0m"
    assert escaped('q"uote\'') == 'q"uote\'' and escaped("Å é 中") == "Å é 中" and escaped(Path("/a b/c")) == "/a b/c"
    assert escaped("C:\\d\\f") == "C:\\d\\f"            # no control character: a backslash stays one
    assert escaped("\\\n") == "\\\\\\n"                  # with one: a backslash doubles, so it reads back
    assert escaped("x\u2028y\x85z") == "x\\u2028y\\x85z"   # the separators some readers break lines on
    assert escaped(escaped("a\nb")) == escaped("a\nb")   # escaping twice changes nothing
    assert name_list(["a\nb", "c"]) == "a\\nb, c"


def test_the_formatter_keeps_one_line_per_record_and_tracebacks_in_their_forms():
    fmt = LineFormatter()
    record = logging.LogRecord("inference.x", logging.WARNING, __file__, 1, "skipped %s: %s", ("tomo\nEVIL", 3), None)
    assert fmt.format(record) == "WARNING inference.x: skipped tomo\\nEVIL: 3"
    assert record.getMessage() == "skipped tomo\nEVIL: 3"  # the record itself is left as it was
    try:
        raise ValueError("bad tomo_nl\nERROR forged: line")
    except ValueError:
        record = logging.LogRecord("inference.x", logging.DEBUG, __file__, 1, "traceback", (), sys.exc_info())
    lines = fmt.format(record).split("\n")
    assert lines[0] == "DEBUG inference.x: traceback" and lines[1] == "Traceback (most recent call last):"
    assert lines[-2:] == ["ValueError: bad tomo_nl", "    ERROR forged: line"]  # a continuation, indented
    assert all(LINE.match(ln) or ln.startswith("Traceback") or ln.startswith("ValueError") for ln in lines)
    assert traceback_lines("Traceback (most recent call last):\n  File x\nE: a\tb") == \
        "Traceback (most recent call last):\n  File x\nE: a\\tb"


def test_names_with_control_characters_never_reach_stderr_raw(tmp_path):
    data = tmp_path / "in"
    data.mkdir()
    names = ["tomo_ok", *BAD]
    for name in names:
        np.save(data / f"{name}.npy", np.full((16, 32, 32), 100, np.uint8))
    sample = tmp_path / "sample.csv"
    with sample.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["tomo_id", "Motor axis 0", "Motor axis 1", "Motor axis 2"])
        for name in [*names, "tomo_missing\nERROR forged: line"]:
            w.writerow([name, -1, -1, -1])
    manifest = write_demo_models(tmp_path / "models")
    out = tmp_path / "sub\x1b[2Jout.csv"
    proc = subprocess.run([sys.executable, "-m", "inference", "predict", "--manifest", str(manifest), "--input",
                           str(data), "--output", str(out), "--sample-submission", str(sample), "--no-progress",
                           "--workers", "1"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    for stream in (proc.stderr, proc.stdout):
        assert "\x1b" not in stream and "\t" not in stream
        for line in stream.splitlines():
            assert not line.startswith("ERROR forged"), line
    for line in proc.stderr.splitlines():
        assert LINE.match(line), line
    assert "tomo_nl\\nx" in proc.stderr and "tomo_\\x1b[31mred" in proc.stderr   # named, escaped
    assert "tomo_missing\\nERROR forged: line" in proc.stderr
    assert proc.stdout.startswith("wrote ") and "sub\\x1b[2Jout.csv" in proc.stdout
    with out.open(newline="") as fh:  # the CSV keeps every name as it is
        rows = list(csv.reader(fh))
    assert [r[0] for r in rows[1:]] == [*names, "tomo_missing\nERROR forged: line"]


def test_an_error_line_with_a_bad_name_stays_one_line(tmp_path):
    bad = tmp_path / "no\nERROR such: file"
    proc = subprocess.run([sys.executable, "-m", "inference", "score", "--labels", str(bad), "--submission",
                           str(bad)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no\\nERROR such: file" in lines[0]


@pytest.mark.parametrize("name", BAD)
def test_one_line_escapes_our_errors_and_cuts_others(name):
    from inference.common.errors import InputError, one_line

    text = one_line(InputError(f"/data/{name}", "cannot read", "fix it"))
    assert "\n" not in text and "\x1b" not in text and "\t" not in text and text.endswith("Fix: fix it")
    assert one_line(ValueError(f"first {name} line\nsecond")).startswith("ValueError: first ")
