import pandas as pd
import pytest

from inference.common.atomic import write_csv_atomic
from inference.common.errors import InputError
from inference.ensemble.submission import best_per_tomogram, decide, submission_order, threshold_value
from inference.manifest.types import Threshold


def cands(rows):
    return pd.DataFrame(rows, columns=["tomo_id", "z", "y", "x", "conf", "voxel_spacing"])


def test_best_per_tomogram_and_missing_get_zero():
    c = cands([("a", 1, 2, 3, 0.3, 10), ("a", 4, 5, 6, 0.9, 10), ("b", 7, 8, 9, 0.1, 10)])
    best = best_per_tomogram(c, ["b", "a", "c"])
    assert best.tomo_id.tolist() == ["b", "a", "c"]
    assert best.conf.tolist() == [0.1, 0.9, 0.0]
    assert best.iloc[1][["z", "y", "x"]].tolist() == [4, 5, 6]
    assert best.iloc[2][["z", "y", "x"]].tolist() == [-1, -1, -1]


def test_quantile_linear_rule_and_at_or_below():
    confs = [0.1, 0.2, 0.3, 0.4, 0.5]
    thr = threshold_value(confs, Threshold(quantile=0.55))
    assert thr == pytest.approx(0.3 + (0.55 * 4 - 2) * (0.4 - 0.3))  # position 0.55*(n-1) = 2.2
    best = pd.DataFrame({"tomo_id": list("abcde"), "z": 1.0, "y": 1.0, "x": 1.0, "conf": confs})
    d = decide(best, Threshold(quantile=0.55))
    assert d.n_motor == 2 and d.submission["Motor axis 0"].tolist() == [-1, -1, -1, 1, 1]


def test_all_zero_and_ties():
    best = pd.DataFrame({"tomo_id": list("abcd"), "z": 1.0, "y": 1.0, "x": 1.0, "conf": [0.0] * 4})
    assert decide(best, Threshold(quantile=0.55)).n_motor == 0
    tied = best.assign(conf=[0.5, 0.5, 0.5, 0.9])
    d = decide(tied, Threshold(quantile=0.5))  # threshold 0.5: every tie is at it -> -1
    assert d.threshold == 0.5 and d.n_motor == 1
    assert decide(tied, Threshold(fixed=0.5)).n_motor == 1
    assert decide(tied, Threshold(fixed=0.4)).n_motor == 4


def test_sample_submission_order(tmp_path, caplog):
    s = tmp_path / "sample.csv"
    pd.DataFrame({"tomo_id": ["z", "a", "m"], "Motor axis 0": -1}).to_csv(s, index=False)
    assert submission_order(["a", "m", "q"], s) == ["z", "a", "m"]
    assert "left out" in caplog.text and "get -1" in caplog.text
    assert submission_order(["b", "a"], None) == ["a", "b"]
    bad = tmp_path / "bad.csv"
    bad.write_text("id\nx\n")
    with pytest.raises(InputError, match="tomo_id"):
        submission_order(["a"], bad)


def test_write_atomic(tmp_path):
    p = write_csv_atomic(pd.DataFrame({"a": [1]}), tmp_path / "sub" / "x.csv")
    assert p.read_text() == "a\n1\n" and [f.name for f in p.parent.iterdir()] == ["x.csv"]
