"""build_submission.py, the command line: one-line errors, documented options, the thin entry point."""

from __future__ import annotations

import sys
from pathlib import Path

import build_submission as bs
from kaggle_builder.demo import DemoSummary

REPO = Path(__file__).resolve().parents[2]


def test_bad_input_is_one_line(tmp_path, capsys):
    rc = bs.main(["--manifest", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: ") and "manifest not found" in err[-1]
    assert "Traceback" not in "".join(err) and not (tmp_path / "o").exists()


def test_an_out_folder_with_user_files_is_one_line_and_kept(tmp_path, capsys):
    from inference.synth.demo_models import write_demo_models

    manifest = write_demo_models(tmp_path / "models")
    (tmp_path / "o" / "notebook").mkdir(parents=True)
    (tmp_path / "o" / "notebook" / "mine.ipynb").write_text("{}")
    rc = bs.main(["--manifest", str(manifest), "--out", str(tmp_path / "o"), "--no-wheels", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith(f"error: {tmp_path / 'o' / 'notebook'} exists and is not empty") and "Fix:" in err[0]
    assert (tmp_path / "o" / "notebook" / "mine.ipynb").read_text() == "{}"


def test_a_missing_build_tool_is_one_line(tmp_path, capsys, monkeypatch):
    from inference.synth.demo_models import write_demo_models

    manifest = write_demo_models(tmp_path / "models")
    monkeypatch.setitem(sys.modules, "nbformat", None)  # import nbformat -> ModuleNotFoundError
    rc = bs.main(["--manifest", str(manifest), "--out", str(tmp_path / "o"), "--no-wheels", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err == ["error: build_submission.py needs nbformat, which is not installed. Fix: pip install -e "
                               "'.[cpu,dev]' (or pip install nbformat)"]


def test_help_documents_every_option():
    parser = bs.build_parser()
    for action in parser._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 10, action.option_strings
    text = parser.format_help()
    for opt in ("--dry-run", "--profile", "--no-wheels", "--engines", "--dataset-id", "--kernel-id", "--gpus",
                "--test-tomograms", "--profile-scale", "--gpu-seconds-per-window", "--demo", "--cpu-machines",
                "--dry-run-seed", "--cache-dir", "--target"):
        assert opt in text


def test_the_entry_point_is_thin_and_the_builder_modules_small():
    assert len((REPO / "build_submission.py").read_text().splitlines()) <= 200
    for path in sorted((REPO / "kaggle_builder").glob("*.py")):
        assert len(path.read_text().splitlines()) < 400, path.name


def test_demo_summary_prints_absolute_paths_and_why_the_f2_differs(tmp_path, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.chdir(tmp_path)
    score = dict(f2=0.9, precision=0.8, recall=1.0, tp=8, fp=2, fn=0, tn=14)
    dry = SimpleNamespace(executed=Path("out/demo/dryrun/x.ipynb"), submission=Path("out/demo/dryrun/s.csv"),
                          n_tomograms=3, score=dict(score, f2=0.5), headline="F2 0.500")
    text = DemoSummary(data_dir=Path("out/demo/data"), manifest=Path("out/demo/models/manifest.yaml"),
                       submission=Path("out/demo/submission.csv"), candidates_dir=Path("out/demo/candidates"),
                       score=score, threshold="t", seconds={"synth": 1.0}, dry_run=dry).render()
    assert f"{tmp_path}/out/demo/data" in text and f"{tmp_path}/out/demo/dryrun/s.csv" in text
    assert " out/" not in text
    assert "13.1 Å" in text and "why the F2 differs" in text
