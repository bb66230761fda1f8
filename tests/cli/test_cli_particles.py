"""``score --task particles`` and ``tune`` through the CLI: the JSON shape, the auto task, copick labels, and bad
input as one ``error:`` line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from inference.cli.main import main
from inference.io.copick_picks import write_picks

HEADER = "id,experiment,particle_type,x,y,z\n"
LABELS = ("experiment,particle_type,x,y,z\nTS_1,apo-ferritin,0,0,0\nTS_1,apo-ferritin,1000,0,0\n"
          "TS_1,ribosome,3000,0,0\nTS_2,thyroglobulin,0,0,0\n")


def f4(p, r):
    return 17 * p * r / (16 * p + r) if p + r > 0 else 0.0


@pytest.fixture()
def files(tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text(LABELS)
    sub = tmp_path / "sub.csv"
    sub.write_text(HEADER + "0,TS_1,apo-ferritin,10,0,0\n1,TS_1,ribosome,3050,0,0\n2,TS_1,ribosome,9000,0,0\n"
                   "3,TS_9,thyroglobulin,0,0,0\n")
    return labels, sub


def run_json(capsys, *argv):
    code = main(["score", *argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0
    return json.loads(out)


def test_json_is_exactly_score_and_per_class(files, capsys):
    labels, sub = files
    got = run_json(capsys, "--labels", str(labels), "--submission", str(sub))  # auto: particle_type column
    assert list(got) == ["score", "per_class"]
    assert got["per_class"]["apo-ferritin"] == {"tp": 1, "fp": 0, "fn": 1, "precision": 1.0, "recall": 0.5,
                                                "fbeta": pytest.approx(f4(1.0, 0.5))}
    assert got["per_class"]["ribosome"]["tp"] == 1 and got["per_class"]["ribosome"]["fp"] == 1
    assert got["per_class"]["thyroglobulin"]["fn"] == 1  # TS_9 is not in the labels: ignored
    expected = (1 * f4(1.0, 0.5) + 1 * f4(0.5, 1.0) + 2 * 0.0) / 7
    assert got["score"] == pytest.approx(expected)
    assert run_json(capsys, "--task", "particles", "--labels", str(labels), "--submission", str(sub)) == got


def test_header_only_submission_scores_zero(files, tmp_path, capsys):
    labels, _ = files
    empty = tmp_path / "empty.csv"
    empty.write_text(HEADER)
    assert run_json(capsys, "--labels", str(labels), "--submission", str(empty))["score"] == 0.0


def test_human_table(files, capsys):
    labels, sub = files
    assert main(["score", "--labels", str(labels), "--submission", str(sub)]) == 0
    out = capsys.readouterr().out
    assert "labels: 4 point(s) in 2 experiment(s)" in out and "virus-like-particle" in out
    assert "score (sum of weight x F4 / 7):" in out


def test_copick_labels_give_the_csv_score(files, tmp_path, capsys):
    labels, sub = files
    root = tmp_path / "overlay"
    write_picks(root, "TS_1", "apo-ferritin", [[0, 0, 0], [1000, 0, 0]], [1, 1], user_id="curation")
    write_picks(root, "TS_1", "ribosome", [[3000, 0, 0]], [1], user_id="curation")
    write_picks(root, "TS_2", "thyroglobulin", [[0, 0, 0]], [1], user_id="curation")
    write_picks(root, "TS_2", "ribosome", [[5, 5, 5]], [0.3], user_id="motorfinder")  # not curation
    csv_score = run_json(capsys, "--labels", str(labels), "--submission", str(sub))
    for source in (root, root / "ExperimentRuns"):
        assert run_json(capsys, "--labels", str(source), "--labels-user", "curation", "--submission", str(sub)) == \
            csv_score


def cli(*argv):
    return subprocess.run([sys.executable, "-m", "inference", *argv], capture_output=True, text=True, check=False)


def test_unknown_particle_type_in_submission_is_one_line_exit_2(files, tmp_path):
    labels, _ = files
    sub = tmp_path / "bad.csv"
    sub.write_text(HEADER + "0,TS_1,apo-ferritin,0,0,0\n1,TS_1,flagellar-motor,0,0,0\n2,TS_1,membrane,0,0,0\n")
    proc = cli("score", "--labels", str(labels), "--submission", str(sub))
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {sub}: unknown particle_type(s) 'flagellar-motor', "
                                                   "'membrane'")


def test_unknown_particle_type_in_labels_csv_and_copick_is_one_line_exit_2(files, tmp_path):
    _, sub = files
    labels = tmp_path / "labels.csv"
    labels.write_text("experiment,particle_type,x,y,z\nTS_1,ribosomes,0,0,0\n")
    proc = cli("score", "--labels", str(labels), "--submission", str(sub))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"error: {labels}: unknown particle_type(s) 'ribosomes'")
    picks = write_picks(tmp_path / "ov", "TS_1", "membrane", [[0, 0, 0]], [1], user_id="curation")
    proc = cli("score", "--labels", str(tmp_path / "ov"), "--submission", str(sub))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"error: {picks}: unknown particle type 'membrane'")


def static_root(d):
    (d / "static" / "ExperimentRuns" / "TS_1" / "VoxelSpacing10.000" / "denoised.zarr").mkdir(parents=True)
    return d / "static"


@pytest.mark.parametrize("setup, argv, message", [
    (lambda d: d / "nope", [], "labels not found. Fix: pass a labels CSV, a copick project folder or its config JSON"),
    (lambda d: d, [], "no ExperimentRuns/ folder here"),
    (static_root, [], "no picks files (ExperimentRuns/<run>/Picks/*.json) under"),  # the static root by mistake
    (lambda d: write_picks(d / "ov", "TS_1", "ribosome", [[0, 0, 0]], [1], user_id="someone").parents[3], ["--labels-user",
     "curation"], "no picks file of user 'curation' (users found: someone)"),
])
def test_bad_copick_labels_are_one_line(files, tmp_path, setup, argv, message):
    _, sub = files
    source = setup(tmp_path)
    proc = cli("score", "--task", "particles", "--labels", str(source), "--submission", str(sub), *argv)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_labels_user_with_motors_is_refused(files, capsys):
    labels, _ = files
    code = main(["score", "--task", "motors", "--labels", str(labels), "--submission", str(labels), "--labels-user",
                 "x"])
    assert code == 2 and "--labels-user" in capsys.readouterr().err


def manifest_file(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"task": "particles", "classes": [
        {"name": "apo-ferritin", "radius_A": 60, "weight": 1, "threshold": 0.5},
        {"name": "ribosome", "radius_A": 150, "weight": 1, "threshold": 0.5}]}, sort_keys=False))
    return path


def test_tune_writes_the_manifest(files, tmp_path, capsys):
    labels, _ = files
    cands = tmp_path / "c.csv"
    cands.write_text("experiment,particle_type,x,y,z,conf\nTS_1,apo-ferritin,0,0,0,0.3\nTS_1,apo-ferritin,1000,0,0,0.2\n"
                     "TS_1,ribosome,3000,0,0,0.7\n")
    more = tmp_path / "c2.csv"
    more.write_text("experiment,particle_type,x,y,z,conf\n" + "".join(
        f"TS_1,ribosome,{9000 + 500 * i},0,0,0.4\n" for i in range(20)))
    out = tmp_path / "tuned.yaml"
    code = main(["tune", "--candidates", str(cands), str(more), "--labels", str(labels), "--manifest",
                 str(manifest_file(tmp_path)), "--output", str(out), "--json"])
    got = json.loads(capsys.readouterr().out)
    # apo: every candidate kept is best (the floor, 0.05); ribosome: the 20 at 0.4 go from t = 0.405 on
    assert code == 0 and got["thresholds"]["apo-ferritin"] == 0.05 and got["thresholds"]["ribosome"] == 0.405
    assert got["thresholds"]["thyroglobulin"] is None  # labelled, but F is 0 at every threshold
    assert got["thresholds"]["beta-galactosidase"] is None  # no labels
    classes = yaml.safe_load(out.read_text())["classes"]
    assert [c["threshold"] for c in classes] == [0.05, 0.405]
    assert got["score"] == pytest.approx((1.0 + 1.0) / 7)
    assert main(["tune", "--candidates", str(cands), "--labels", str(labels), "--manifest",
                 str(manifest_file(tmp_path)), "--output", str(out)]) == 0
    assert "at the manifest's thresholds" in capsys.readouterr().out


def test_tune_bad_input_is_one_line_exit_2(files, tmp_path):
    labels, _ = files
    cands = tmp_path / "c.csv"
    cands.write_text("experiment,particle_type,x,y,z,conf\nTS_1,apo-ferritin,0,0,0,0.3\n")
    manifest = manifest_file(tmp_path)
    out = tmp_path / "o.yaml"
    for argv, message in [(["--step", "0.01"], "--step 0.01 is not in (0, 0.005]"),
                          ([], None)]:
        proc = cli("tune", "--candidates", str(cands), "--labels", str(labels), "--manifest", str(manifest),
                   "--output", str(out), *argv)
        if message is None:
            assert proc.returncode == 0, proc.stderr
        else:
            assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("experiment,particle_type,x,y,z,conf\nTS_1,ferritin,0,0,0,0.3\n")
    proc = cli("tune", "--candidates", str(bad), "--labels", str(labels), "--manifest", str(manifest), "--output",
               str(tmp_path / "o2.yaml"))
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {bad}: unknown particle_type(s) 'ferritin'")
    assert not (tmp_path / "o2.yaml").exists()
    manifest.write_text("members: []\n")
    proc = cli("tune", "--candidates", str(cands), "--labels", str(labels), "--manifest", str(manifest), "--output",
               str(tmp_path / "o3.yaml"))
    assert proc.returncode == 2 and "no 'classes:' list" in proc.stderr
