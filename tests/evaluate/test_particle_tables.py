"""Reading the particle metric's tables (inference.evaluate.particle_tables): submission, candidates, labels as a
CSV or a copick project; every problem one line naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from inference.common.errors import InputError
from inference.evaluate.particle_tables import (
    has_particle_type_column,
    load_candidates,
    load_particle_labels,
    load_particle_submission,
)
from inference.io.copick_picks import write_picks

APO, RIBO = "apo-ferritin", "ribosome"


def one_line(exc) -> str:
    text = str(exc.value)
    assert "\n" not in text and "Fix:" in text
    return text


def test_submission_with_id_and_extra_columns(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_text("id,experiment,particle_type,x,y,z,extra\n0,TS_5_4,beta-amylase,2983.596,3154.13,764.124,q\n"
                    "1, TS_6_6 ,ribosome,1,2,3,\n")
    sub = load_particle_submission(path)
    assert list(sub.columns) == ["experiment", "particle_type", "x", "y", "z"]
    assert sub.experiment.tolist() == ["TS_5_4", "TS_6_6"] and sub.x.tolist() == [2983.596, 1.0]
    assert has_particle_type_column(path) and not has_particle_type_column(tmp_path / "missing.csv")


def test_header_only_submission_is_empty_and_valid(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_text("id,experiment,particle_type,x,y,z\n")
    assert len(load_particle_submission(path)) == 0


@pytest.mark.parametrize("text, message", [
    (("experiment,particle_type,x,y,z\nA,apo-ferritin,1,2,3\nB,flagellar-motor,1,2,3\nC,Ribosome,1,2,3\n"
      "D,flagellar-motor,4,5,6\n"), "unknown particle_type(s) 'Ribosome', 'flagellar-motor' (first at row 2 (line 3))"),
    ("experiment,x,y,z\nA,1,2,3\n", "missing column(s) 'particle_type'"),
    ("experiment,particle_type,x,y,z\nA,ribosome,1,,3\n", "column 'y', row 1 (line 2): missing value"),
    ("experiment,particle_type,x,y,z\nA,ribosome,1,inf,3\n", "'inf' is not a finite number"),
    ("experiment,particle_type,x,y,z\n,ribosome,1,2,3\n", "column 'experiment', row 1 (line 2): empty"),
])
def test_bad_submissions_are_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "sub.csv"
    path.write_text(text)
    with pytest.raises(InputError) as exc:
        load_particle_submission(path)
    assert one_line(exc).startswith(f"{path}: ") and message in str(exc.value)


def test_candidates_need_conf(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("experiment,particle_type,x,y,z\nA,ribosome,1,2,3\n")
    with pytest.raises(InputError, match="'conf'"):
        load_candidates(path)
    path.write_text("experiment,particle_type,x,y,z,conf\nA,ribosome,1,2,3,0.25\n")
    assert load_candidates(path).conf.tolist() == [0.25]


def test_csv_labels_and_their_errors(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("experiment,particle_type,x,y,z\nB,ribosome,1,2,3\nA,apo-ferritin,4,5,6\n")
    labels = load_particle_labels(path)
    assert labels.experiments == ("A", "B") and len(labels.points) == 2 and labels.source == str(path)
    path.write_text("experiment,particle_type,x,y,z\nA,ribosome,1,2,3\nA,apo-ferritin,1,2,3\n")
    with pytest.raises(InputError, match=r"appears twice \(row 2 \(line 3\)"):
        load_particle_labels(path)
    path.write_text("experiment,particle_type,x,y,z\nA,membrane,1,2,3\n")
    with pytest.raises(InputError) as exc:
        load_particle_labels(path)
    assert one_line(exc).startswith(f"{path}: unknown particle_type(s) 'membrane'")


def kaggle_overlay(root: Path) -> None:
    """Kaggle's train overlay: ExperimentRuns/<run>/Picks/<particle>.json, user curation."""
    for run, rows in {"TS_1": {APO: [[10.0, 20.0, 30.0]], RIBO: [[400.0, 500.0, 600.0], [1, 2, 3]]},
                      "TS_2": {APO: [], RIBO: []}}.items():
        folder = root / "ExperimentRuns" / run / "Picks"
        folder.mkdir(parents=True)
        for name, points in rows.items():
            (folder / f"{name}.json").write_text(json.dumps({
                "pickable_object_name": name, "user_id": "curation", "session_id": "0", "run_name": run,
                "voxel_spacing": None, "unit": "angstrom", "trust_orientation": True,
                "points": [{"location": {"x": x, "y": y, "z": z}, "transformation_": [[1.0, 0, 0, 0], [0, 1.0, 0, 0],
                            [0, 0, 1.0, 0], [0, 0, 0, 1.0]], "instance_id": 0} for x, y, z in points]}))


def test_copick_labels_in_three_forms(tmp_path):
    overlay = tmp_path / "overlay"
    kaggle_overlay(overlay)
    cfg = tmp_path / "copick.config"
    cfg.write_text(json.dumps({"config_type": "filesystem", "pickable_objects": [{"name": APO, "is_particle": True}],
                               "overlay_root": f"local://{overlay}"}))
    frames = []
    for source in (overlay, overlay / "ExperimentRuns", cfg):
        labels = load_particle_labels(source)
        assert labels.experiments == ("TS_1", "TS_2")  # TS_2's empty picks files make it a labelled experiment
        frames.append(labels.points.sort_values(["experiment", "particle_type", "x"]).reset_index(drop=True))
    pd.testing.assert_frame_equal(frames[0], frames[1])
    pd.testing.assert_frame_equal(frames[0], frames[2])
    assert frames[0][["x", "y", "z"]].values.tolist() == [[10, 20, 30], [1, 2, 3], [400, 500, 600]]


def test_copick_labels_of_one_user_and_unknown_objects(tmp_path):
    kaggle_overlay(tmp_path)
    write_picks(tmp_path, "TS_1", RIBO, [[700.0, 20.0, 30.0]], [0.5], user_id="motorfinder")
    assert len(load_particle_labels(tmp_path, user_id="curation").points) == 3
    assert len(load_particle_labels(tmp_path).points) == 4
    write_picks(tmp_path, "TS_1", APO, [[10.0, 20.0, 30.0]], [0.5], user_id="motorfinder")
    with pytest.raises(InputError, match="--labels-user"):  # the same point twice (two users' apo-ferritin)
        load_particle_labels(tmp_path)
    bad = write_picks(tmp_path, "TS_2", "membrane", [[1.0, 1.0, 1.0]], [1.0], user_id="curation")
    with pytest.raises(InputError) as exc:
        load_particle_labels(tmp_path, user_id="curation")
    assert one_line(exc).startswith(f"{bad}: unknown particle type 'membrane'")
