"""Tests of inference.evaluate.scoring: hand-computed cases of the BYU flagellar motor metric."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inference.cli import score as cli_score
from inference.common.errors import InputError
from inference.evaluate import scoring
from inference.evaluate.scoring import Score, per_tomogram, score_files, score_frames

AXES = ["Motor axis 0", "Motor axis 1", "Motor axis 2"]


def labels_frame(rows):
    """rows: (tomo_id, z, y, x, spacing)."""
    return pd.DataFrame(rows, columns=["tomo_id", *AXES, "Voxel spacing"])


def submission_frame(rows):
    """rows: (tomo_id, z, y, x)."""
    return pd.DataFrame(rows, columns=["tomo_id", *AXES])


def outcome_of(labels_rows, prediction):
    """Outcome for a single tomogram 't' with the given label rows and prediction (z, y, x)."""
    table = per_tomogram(labels_frame(labels_rows), submission_frame([("t", *prediction)]))
    assert list(table.columns) == ["tomo_id", "outcome", "distance_A"]
    assert len(table) == 1
    return table["outcome"].iloc[0]


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------- distance threshold


def test_exactly_1000_angstrom_along_one_axis_is_tp():
    assert outcome_of([("t", 100, 200, 300, 10.0)], (200, 200, 300)) == "TP"  # 100 vox * 10 Å


def test_exactly_1000_angstrom_3_4_5_offset_is_tp():
    table = per_tomogram(
        labels_frame([("t", 100, 200, 300, 10.0)]), submission_frame([("t", 160, 280, 300)])
    )  # sqrt(60² + 80²) = 100 vox * 10 Å = 1000 Å
    assert table["outcome"].iloc[0] == "TP"
    assert table["distance_A"].iloc[0] == pytest.approx(1000.0)


def test_just_beyond_1000_angstrom_is_fn():
    # 100.00001 vox * 10 Å = 1000.0001 Å
    assert outcome_of([("t", 100, 200, 300, 10.0)], (200.00001, 200, 300)) == "FN"


def test_spacing_matters():
    offset = (180, 200, 300)  # 80 voxels from the motor
    assert outcome_of([("t", 100, 200, 300, 10.0)], offset) == "TP"  # 800 Å
    assert outcome_of([("t", 100, 200, 300, 15.0)], offset) == "FN"  # 1200 Å


# ---------------------------------------------------------------- outcomes


def test_minus_one_on_motor_tomogram_is_fn():
    assert outcome_of([("t", 100, 200, 300, 10.0)], (-1, -1, -1)) == "FN"


def test_prediction_on_empty_tomogram_is_fp():
    assert outcome_of([("t", -1, -1, -1, 10.0)], (100, 200, 300)) == "FP"


def test_minus_one_on_empty_tomogram_is_tn():
    table = per_tomogram(labels_frame([("t", -1, -1, -1, 10.0)]), submission_frame([("t", -1, -1, -1)]))
    assert table["outcome"].iloc[0] == "TN"
    assert math.isnan(table["distance_A"].iloc[0])


def test_prediction_near_second_motor_is_tp():
    labels = [("t", 10, 10, 10, 10.0), ("t", 400, 400, 400, 10.0)]
    table = per_tomogram(labels_frame(labels), submission_frame([("t", 405, 400, 400)]))
    assert table["outcome"].iloc[0] == "TP"
    assert table["distance_A"].iloc[0] == pytest.approx(50.0)  # nearest motor: 5 vox * 10 Å


@pytest.mark.parametrize("prediction", [(-1, 200, 300), (100, -1, 300), (100, 200, -1)])
def test_any_single_minus_one_coordinate_is_no_prediction(prediction):
    assert outcome_of([("t", 100, 200, 300, 10.0)], prediction) == "FN"
    assert outcome_of([("t", -1, -1, -1, 10.0)], prediction) == "TN"


# ---------------------------------------------------------------- F2


def test_f2_formula_hand_computed():
    labels = labels_frame(
        [(f"m{i}", 100, 100, 100, 10.0) for i in range(5)] + [(f"e{i}", -1, -1, -1, 10.0) for i in range(3)]
    )
    submission = submission_frame(
        [("m0", 100, 100, 100), ("m1", 100, 100, 150), ("m2", 130, 100, 100)]  # 3 TP
        + [("m3", -1, -1, -1), ("m4", 500, 500, 500)]  # 2 FN
        + [("e0", 50, 50, 50)]  # 1 FP
        + [("e1", -1, -1, -1), ("e2", -1, 0, 0)]  # 2 TN
    )
    score = score_frames(labels, submission)
    assert (score.tp, score.fp, score.fn, score.tn) == (3, 1, 2, 2)
    assert score.f2 == pytest.approx(5 * 3 / (5 * 3 + 4 * 2 + 1))
    assert score.precision == pytest.approx(3 / (3 + 1))
    assert score.recall == pytest.approx(3 / (3 + 2))
    # beta is a parameter: beta = 1 is the plain F1.
    assert score_frames(labels, submission, beta=1.0).f2 == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))


def test_all_true_negatives_scores_zero_by_definition():
    score = score_frames(labels_frame([("t", -1, -1, -1, 10.0)]), submission_frame([("t", -1, -1, -1)]))
    assert score == Score(f2=0.0, precision=0.0, recall=0.0, tp=0, fp=0, fn=0, tn=1)


def test_perfect_submission_scores_one():
    score = score_frames(labels_frame([("t", 1, 2, 3, 10.0)]), submission_frame([("t", 1, 2, 3)]))
    assert (score.f2, score.precision, score.recall) == (1.0, 1.0, 1.0)


def test_as_dict_keys_and_plain_types():
    d = Score(f2=0.5, precision=0.25, recall=1.0, tp=1, fp=3, fn=0, tn=2).as_dict()
    assert list(d) == ["f2", "precision", "recall", "tp", "fp", "fn", "tn"]
    json.dumps(d)


# ---------------------------------------------------------------- errors


def test_tomo_id_mismatch_lists_missing_and_extra(tmp_path):
    labels = write_csv(
        tmp_path / "labels.csv",
        "tomo_id,Motor axis 0,Motor axis 1,Motor axis 2,Voxel spacing\n"
        + "".join(f"tomo_{i},-1,-1,-1,10\n" for i in range(8)),
    )
    sub = write_csv(
        tmp_path / "sub.csv",
        "tomo_id,Motor axis 0,Motor axis 1,Motor axis 2\n"
        + "".join(f"tomo_{i},-1,-1,-1\n" for i in range(1, 8))
        + "tomo_x,-1,-1,-1\n",
    )
    with pytest.raises(InputError) as info:
        score_files(labels, sub)
    message = str(info.value)
    assert info.value.path == str(sub)
    assert "1 tomogram(s) of the labels are missing (tomo_0)" in message
    assert "1 tomo_id(s) are not in the labels (tomo_x)" in message


def test_tomo_id_mismatch_shows_at_most_five_examples():
    labels = labels_frame([(f"t{i}", -1, -1, -1, 10.0) for i in range(8)])
    with pytest.raises(InputError) as info:
        score_frames(labels, submission_frame([("t0", -1, -1, -1)]), submission_name="my.csv")
    message = str(info.value)
    assert message.startswith("my.csv: ")
    assert "7 tomogram(s) of the labels are missing (t1, t2, t3, t4, t5, ...)" in message
    assert "t6" not in message


def test_duplicate_tomo_ids(tmp_path):
    sub = write_csv(
        tmp_path / "sub.csv", "tomo_id,Motor axis 0,Motor axis 1,Motor axis 2\na,1,2,3\nb,1,2,3\na,-1,-1,-1\n"
    )
    with pytest.raises(InputError, match=r"sub\.csv: .*1 tomo_id\(s\) appear on more than one row: a"):
        scoring.load_submission(sub)


def test_missing_column(tmp_path):
    sub = write_csv(tmp_path / "sub.csv", "tomo_id,Motor axis 0,Motor axis 2\na,1,3\n")
    with pytest.raises(InputError, match=r"sub\.csv: missing column\(s\) 'Motor axis 1'"):
        scoring.load_submission(sub)
    labels = write_csv(tmp_path / "labels.csv", "tomo_id,Motor axis 0,Motor axis 1,Motor axis 2\na,1,2,3\n")
    with pytest.raises(InputError, match=r"labels\.csv: missing column\(s\) 'Voxel spacing'"):
        scoring.load_labels(labels)


def test_nan_names_column_and_row(tmp_path):
    sub = write_csv(
        tmp_path / "sub.csv", "tomo_id,Motor axis 0,Motor axis 1,Motor axis 2\na,1,2,3\nb,1,NaN,3\nc,1,,3\n"
    )
    with pytest.raises(InputError) as info:
        scoring.load_submission(sub)
    assert info.value.path == str(sub)
    assert "column 'Motor axis 1', row 2 (line 3): missing value" in str(info.value)


def test_non_numeric_names_column_and_row(tmp_path):
    labels = write_csv(
        tmp_path / "labels.csv",
        "tomo_id,Motor axis 0,Motor axis 1,Motor axis 2,Voxel spacing\na,1,2,3,10\na,4,5,6,ten\n",
    )
    with pytest.raises(InputError, match=r"column 'Voxel spacing', row 2 \(line 3\): 'ten' is not a finite number"):
        scoring.load_labels(labels)


def test_nan_in_frame_names_row():
    sub = submission_frame([("a", 1, 2, 3), ("b", 1, 2, float("nan"))])
    with pytest.raises(InputError, match=r"column 'Motor axis 2', row 2: missing value"):
        score_frames(labels_frame([("a", 1, 2, 3, 10), ("b", 1, 2, 3, 10)]), sub)


def test_inconsistent_spacing():
    labels = labels_frame([("a", 1, 2, 3, 10.0), ("a", 4, 5, 6, 12.0)])
    with pytest.raises(InputError, match=r"a: 10\.0 vs 12\.0"):
        score_frames(labels, submission_frame([("a", 1, 2, 3)]))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        scoring.load_labels(tmp_path / "nope.csv")


# ---------------------------------------------------------------- files and CLI


def test_files_ignore_extra_columns_and_blank_lines(tmp_path):
    labels = write_csv(
        tmp_path / "labels.csv",
        "row_id,tomo_id,Motor axis 0,Motor axis 1,Motor axis 2,Voxel spacing,Number of motors\n"
        "0,a,10,10,10,10,2\n1,a,90,90,90,10,2\n2,b,-1,-1,-1,15,0\n\n",
    )
    sub = write_csv(tmp_path / "sub.csv", "tomo_id,Motor axis 0,Motor axis 1,Motor axis 2,conf\nb,5,5,5,0.9\na,90,90,91,0.8\n")
    assert list(scoring.load_labels(labels).columns) == ["tomo_id", *AXES, "Voxel spacing"]
    score = score_files(labels, sub)
    assert (score.tp, score.fp, score.fn, score.tn) == (1, 1, 0, 0)


def _parser():
    parser = argparse.ArgumentParser(prog="inference")
    subparsers = parser.add_subparsers(dest="command", required=True)
    cli_score.add_cli(subparsers)
    return parser


def _cli_files(tmp_path):
    labels = write_csv(
        tmp_path / "labels.csv",
        "tomo_id,Motor axis 0,Motor axis 1,Motor axis 2,Voxel spacing\na,10,10,10,10\nb,-1,-1,-1,10\nc,5,5,5,10\n",
    )
    sub = write_csv(tmp_path / "sub.csv", "tomo_id,Motor axis 0,Motor axis 1,Motor axis 2\na,11,10,10\nb,-1,-1,-1\nc,-1,-1,-1\n")
    return labels, sub


def test_cli_json(tmp_path, capsys):
    labels, sub = _cli_files(tmp_path)
    args = _parser().parse_args(["score", "--labels", str(labels), "--submission", str(sub), "--json"])
    assert args.func(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"f2": 5 * 1 / (5 * 1 + 4 * 1 + 0), "precision": 1.0, "recall": 0.5, "tp": 1, "fp": 0, "fn": 1, "tn": 1}


def test_cli_table(tmp_path, capsys):
    labels, sub = _cli_files(tmp_path)
    args = _parser().parse_args(["score", "--labels", str(labels), "--submission", str(sub)])
    assert cli_score.run_cli(args) == 0
    out = capsys.readouterr().out
    assert "F2" in out and "0.5556" in out and "TN" in out


def test_cli_every_option_has_help():
    parser = _parser()
    score_parser = parser._subparsers._group_actions[0].choices["score"]
    for action in score_parser._actions:
        assert action.help, action.dest


def test_cli_input_error_propagates(tmp_path):
    labels, _ = _cli_files(tmp_path)
    args = _parser().parse_args(["score", "--labels", str(labels), "--submission", str(tmp_path / "none.csv")])
    with pytest.raises(InputError, match="none.csv"):
        cli_score.run_cli(args)


def test_real_labels_perfect_and_empty_submissions(real_labels):
    labels = scoring.load_labels(real_labels)
    first = labels.groupby("tomo_id", sort=True).first().reset_index()[["tomo_id", *AXES]]
    has_motor = ~(first[AXES] == -1).any(axis=1)
    perfect = score_frames(labels, first)
    assert perfect.f2 == 1.0 and perfect.fp == 0 and perfect.fn == 0
    assert perfect.tp == int(has_motor.sum()) and perfect.tn == int((~has_motor).sum())
    nothing = first.assign(**{a: -1.0 for a in AXES})
    assert score_frames(labels, nothing).f2 == 0.0


# ---------------------------------------------------------------- property


@st.composite
def labels_and_submission(draw):
    n = draw(st.integers(1, 12))
    coord = st.floats(0, 300, allow_nan=False)
    label_rows, sub_rows = [], []
    for i in range(n):
        spacing = draw(st.sampled_from([6.5, 10.0, 15.6, 19.7]))
        motors = draw(st.integers(0, 3))
        for _ in range(motors):
            label_rows.append((f"t{i}", draw(coord), draw(coord), draw(coord), spacing))
        if motors == 0:
            label_rows.append((f"t{i}", -1.0, -1.0, -1.0, spacing))
        if draw(st.booleans()):
            sub_rows.append((f"t{i}", draw(coord), draw(coord), draw(coord)))
        else:
            sub_rows.append((f"t{i}", -1.0, -1.0, -1.0))
    order = draw(st.permutations(range(n)))
    return labels_frame(label_rows), submission_frame(sub_rows), list(order)


@settings(max_examples=30, deadline=None)
@given(labels_and_submission())
def test_score_invariant_under_submission_row_order(case):
    labels, submission, order = case
    shuffled = submission.iloc[order].reset_index(drop=True)
    assert score_frames(labels, shuffled) == score_frames(labels, submission)
    pd.testing.assert_frame_equal(per_tomogram(labels, shuffled), per_tomogram(labels, submission))


def test_thousand_tomograms_is_fast():
    rng = np.random.default_rng(0)
    n = 1000
    ids = [f"tomo_{i:04d}" for i in range(n)]
    labels = labels_frame([(t, *rng.uniform(0, 500, 3), 10.0) for t in ids for _ in range(2)])
    submission = submission_frame([(t, *rng.uniform(0, 500, 3)) for t in ids])
    score = score_frames(labels, submission)
    assert score.tp + score.fp + score.fn + score.tn == n
