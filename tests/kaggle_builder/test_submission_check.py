"""kaggle_builder.submission_check, the particles half: the CZII submission's check and repair (stdlib only)."""

from __future__ import annotations

import pytest

from inference.synth.particle_project import SUBMISSION_COLUMNS
from kaggle_builder import submission_check as sc
from kaggle_builder.target import CZII

HEADER = "id,experiment,particle_type,x,y,z\n"
TYPES = ("apo-ferritin", "beta-amylase", "ribosome")


def test_the_header_is_the_competitions():
    assert sc.PARTICLE_HEADER == list(CZII.submission_header) == SUBMISSION_COLUMNS


def test_a_valid_submission_has_no_problems_and_its_summary_counts_per_class(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(HEADER + "0,TS_1,apo-ferritin,1.5,2,3\n1,TS_1,ribosome,0,0,0\n2,TS_2,apo-ferritin,-4,5e3,6\n")
    assert sc.particle_problems(path, TYPES) == [] and sc.particle_problems(path) == []
    assert sc.particle_summary(path, ["TS_1", "TS_2", "TS_3"]) == ("3 picks in 2 experiment(s) (of 3 test runs): "
                                                                   "apo-ferritin 2, ribosome 1")
    empty = tmp_path / "e.csv"
    empty.write_text(HEADER)  # no picks at all is a valid submission
    assert sc.particle_problems(empty, TYPES) == [] and sc.particle_summary(empty) == "0 picks in 0 experiment(s): none"


def test_ids_that_are_not_0_to_n_minus_1_are_renumbered_and_every_row_kept(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text(HEADER + "5,TS_1,apo-ferritin,1,2,3\n5,TS_1,ribosome,4,5,6\n,TS_2,ribosome,7,8,9\n")
    assert sc.particle_problems(path, TYPES) == ["3 id(s) are not 0..n-1 in order (first at row 1)"]
    assert sc.repair_particles(path, TYPES) == 0
    assert path.read_text() == HEADER + "0,TS_1,apo-ferritin,1,2,3\n1,TS_1,ribosome,4,5,6\n2,TS_2,ribosome,7,8,9\n"
    assert sc.particle_problems(path, TYPES) == []


def test_invalid_rows_are_dropped_and_the_rest_renumbered(tmp_path):
    path = tmp_path / "s.csv"
    rows = ["0,TS_1,apo-ferritin,1,2,3",      # kept -> id 0
            "1,,apo-ferritin,1,2,3",          # no experiment
            "2,TS_1,,1,2,3",                  # no particle type
            "3,TS_1,flagellar-motor,1,2,3",   # not one of the manifest's types
            "4,TS_1,ribosome,nan,2,3",        # not finite
            "5,TS_1,ribosome,1,inf,3",        # not finite
            "6,TS_1,ribosome,1,2,abc",        # not a number
            "7,TS_1,ribosome,1,2",            # 5 fields
            "8,TS_2,beta-amylase,7,8,9"]      # kept -> id 1
    path.write_text(HEADER + "\n".join(rows) + "\n")
    problems = sc.particle_problems(path, TYPES)
    assert len(problems) == 1
    assert problems[0].startswith("7 invalid row(s): row 2: no experiment; row 3: particle_type ''")
    assert "row 4: particle_type 'flagellar-motor' is not one of the manifest's" in problems[0]
    assert sc.repair_particles(path, TYPES) == 7
    assert path.read_text() == HEADER + "0,TS_1,apo-ferritin,1,2,3\n1,TS_2,beta-amylase,7,8,9\n"
    # without the manifest's types any non-empty name passes
    path.write_text(HEADER + "0,TS_1,flagellar-motor,1,2,3\n")
    assert sc.particle_problems(path) == [] and sc.particle_problems(path, TYPES) != []


def test_columns_in_another_order_are_read_by_name(tmp_path):
    path = tmp_path / "s.csv"
    header = ["experiment", "id", "x", "y", "z", "particle_type", "conf"]
    path.write_text(",".join(header) + "\nTS_1,0,1,2,3,ribosome,0.9\nTS_1,1,4,5,6,apo-ferritin,0.5\n")
    assert sc.particle_problems(path, TYPES) == [f"header {header} != {sc.PARTICLE_HEADER}"]
    assert sc.repair_particles(path, TYPES) == 0
    assert path.read_text() == HEADER + "0,TS_1,ribosome,1,2,3\n1,TS_1,apo-ferritin,4,5,6\n"


@pytest.mark.parametrize("content,problem,dropped", [
    (None, "no submission", 0),
    (b"\xff\xfe\x00garbage\n", "unreadable", 0),
    (b"tomo_id,Motor axis 0,Motor axis 1,Motor axis 2\ntomo_a,1,2,3\ntomo_b,-1,-1,-1\n", "columns", 2),
    (b"", "columns", 0),
])
def test_nothing_readable_becomes_the_header_alone(tmp_path, content, problem, dropped):
    path = tmp_path / "submission.csv"
    if content is not None:
        path.write_bytes(content)
    problems = sc.particle_problems(path, TYPES)
    assert len(problems) == 1 and problems[0].startswith(problem)
    assert sc.repair_particles(path, TYPES) == dropped
    assert path.read_text() == HEADER  # a valid, empty submission
    assert sc.particle_problems(path, TYPES) == []
