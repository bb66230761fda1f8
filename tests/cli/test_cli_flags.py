"""-v/-q before or after the subcommand; per-tomogram lines are DEBUG (shown with -v), not INFO."""

from __future__ import annotations

import subprocess
import sys

import pytest

from inference.cli.main import add_log_flags, build_parser, main


def parse(argv):
    parser = build_parser()
    add_log_flags(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("argv,verbose,quiet", [
    (["-q", "score", "--labels", "l", "--submission", "s"], False, True),
    (["score", "--labels", "l", "--submission", "s", "-q"], False, True),
    (["score", "-v", "--labels", "l", "--submission", "s"], True, False),
    (["score", "--labels", "l", "--submission", "s"], False, False),
])
def test_log_flags_anywhere(argv, verbose, quiet):
    args = parse(argv)
    assert (args.verbose, args.quiet) == (verbose, quiet)


def test_per_tomogram_lines_are_debug(tmp_path):
    assert main(["synth", "--out", str(tmp_path / "data"), "--n", "2", "--seed", "3", "--split", "test",
                 "--scale", "0.1", "--no-progress", "-q"]) == 0
    assert main(["demo-models", "--out", str(tmp_path / "models"), "-q"]) == 0
    cmd = [sys.executable, "-m", "inference", "predict", "--manifest", str(tmp_path / "models" / "manifest.yaml"),
           "--input", str(tmp_path / "data" / "test"), "--output", str(tmp_path / "s.csv")]
    plain = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    assert "INFO inference.run.runner" in plain and "voxel spacing" not in plain and "read tomo_" not in plain
    verbose = subprocess.run([*cmd, "--restart", "-v"], capture_output=True, text=True, check=True).stderr
    lines = [ln for ln in verbose.splitlines() if "inference.io.readers: read tomo_" in ln]
    assert len(lines) == 2 and all(ln.startswith("DEBUG ") for ln in lines) and "voxel spacing" in verbose
    assert "tomograms: 100%" in plain  # the progress bar
    quiet = subprocess.run([*cmd, "--restart", "-q"], capture_output=True, text=True, check=True).stderr
    assert "tomograms:" not in quiet and "INFO" not in quiet  # -q: warnings and errors only, no bar
