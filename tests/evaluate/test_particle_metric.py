"""The CZII particle metric (inference.evaluate.particle_metric): one test per rule of the competition's code,
expected values written as formulas; and a random cross-check against a brute-force reading of the rules."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from inference.evaluate.particle_metric import (
    ParticleScore,
    fbeta_of,
    format_particle_table,
    match_counts,
    score_particles,
)
from inference.manifest.particle_classes import CZII_CLASSES

APO, RIBO, BGAL, AMYL, THYRO, VLP = ("apo-ferritin", "ribosome", "beta-galactosidase", "beta-amylase",
                                     "thyroglobulin", "virus-like-particle")
WEIGHT = {c.name: c.weight for c in CZII_CLASSES}
RADIUS = {c.name: c.radius_A for c in CZII_CLASSES}
TOTAL_WEIGHT = 7.0  # 1 + 0 + 2 + 1 + 2 + 1


def table(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=["experiment", "particle_type", "x", "y", "z"])


EMPTY = table()


def f4(p: float, r: float) -> float:
    return 17 * p * r / (16 * p + r) if p + r > 0 else 0.0


def per(score: ParticleScore, name: str):
    return next(c for c in score.per_class if c.name == name)


def test_f4_is_17pr_over_16p_plus_r():
    labels = table(*[("A", APO, 1000.0 * i, 0.0, 0.0) for i in range(4)])
    sub = table(("A", APO, 0.0, 0.0, 10.0), ("A", APO, 1000.0, 5.0, 0.0), ("A", APO, 5000.0, 0.0, 0.0))
    s = score_particles(labels, sub)
    c = per(s, APO)
    assert (c.tp, c.fp, c.fn) == (2, 1, 2)
    p, r = 2 / 3, 2 / 4
    assert c.precision == pytest.approx(p) and c.recall == pytest.approx(r) and c.fbeta == pytest.approx(f4(p, r))
    assert s.score == pytest.approx(WEIGHT[APO] * f4(p, r) / TOTAL_WEIGHT)
    assert fbeta_of(1, 1, 0)[2] == pytest.approx(f4(0.5, 1.0)) == pytest.approx(17 / 18)  # 0.944


def test_several_points_on_one_particle_are_one_tp_and_the_rest_fp():
    labels = table(("A", RIBO, 500.0, 500.0, 500.0))
    sub = table(*[("A", RIBO, 500.0 + d, 500.0, 500.0) for d in (0.0, 10.0, -20.0)])
    c = per(score_particles(labels, sub), RIBO)
    assert (c.tp, c.fp, c.fn) == (1, 2, 0)
    assert c.fbeta == pytest.approx(f4(1 / 3, 1.0))


def test_one_point_near_two_particles_finds_both_and_fp_goes_negative():
    # two apo-ferritins 40 Å apart, match radius 0.5 x 60 = 30 Å: a point between them is within 20 Å of both
    labels = table(("A", APO, 100.0, 0.0, 0.0), ("A", APO, 140.0, 0.0, 0.0))
    sub = table(("A", APO, 120.0, 0.0, 0.0))
    s = score_particles(labels, sub)
    c = per(s, APO)
    assert (c.tp, c.fp, c.fn) == (2, -1, 0)
    p, r = 2 / (2 - 1), 1.0  # precision 2: as the competition's code computes it
    assert c.precision == pytest.approx(p) and c.fbeta == pytest.approx(f4(p, r)) == pytest.approx(34 / 33)
    assert s.score == pytest.approx(f4(p, r) / TOTAL_WEIGHT)


def test_match_radius_is_half_the_particle_radius_inclusive():
    r = 0.5 * RADIUS[APO]  # 30 Å
    labels = table(("A", APO, 0.0, 0.0, 0.0))
    assert per(score_particles(labels, table(("A", APO, r, 0.0, 0.0))), APO).tp == 1
    assert per(score_particles(labels, table(("A", APO, r + 1e-6, 0.0, 0.0))), APO).tp == 0
    assert per(score_particles(labels, table(("A", APO, 18.0, 24.0, 0.0))), APO).tp == 1  # 3-4-5: exactly 30
    assert match_counts(np.zeros((1, 3)), np.array([[0.0, 0.0, 75.0]]), 0.5 * RADIUS[RIBO]) == (1, 0, 0)


def test_right_place_wrong_class_is_no_match():
    labels = table(("A", APO, 0.0, 0.0, 0.0), ("A", RIBO, 1000.0, 0.0, 0.0))
    s = score_particles(labels, table(("A", RIBO, 0.0, 0.0, 0.0)))
    assert (per(s, APO).tp, per(s, APO).fn) == (0, 1) and (per(s, RIBO).tp, per(s, RIBO).fp, per(s, RIBO).fn) == (0, 1, 1)


def test_class_without_reference_in_an_experiment_its_points_there_are_fp():
    labels = table(("A", APO, 0.0, 0.0, 0.0), ("B", RIBO, 0.0, 0.0, 0.0))  # B has no apo-ferritin
    sub = table(("A", APO, 0.0, 0.0, 0.0), ("B", APO, 0.0, 0.0, 0.0), ("B", APO, 900.0, 0.0, 0.0))
    c = per(score_particles(labels, sub), APO)
    assert (c.tp, c.fp, c.fn) == (1, 2, 0) and c.fbeta == pytest.approx(f4(1 / 3, 1.0))


def test_counts_are_summed_over_experiments_before_f():
    labels = table(("A", THYRO, 0.0, 0.0, 0.0), ("A", THYRO, 1000.0, 0.0, 0.0), ("B", THYRO, 0.0, 0.0, 0.0))
    sub = table(("A", THYRO, 0.0, 0.0, 0.0), ("B", THYRO, 0.0, 0.0, 0.0), ("B", THYRO, 3000.0, 0.0, 0.0))
    s = score_particles(labels, sub)
    c = per(s, THYRO)
    assert (c.tp, c.fp, c.fn) == (2, 1, 1)  # A: 1, 0, 1; B: 1, 1, 0
    assert c.fbeta == pytest.approx(f4(2 / 3, 2 / 3))
    assert s.score == pytest.approx(WEIGHT[THYRO] * f4(2 / 3, 2 / 3) / TOTAL_WEIGHT)


def test_experiments_absent_from_the_labels_are_ignored():
    labels = table(("A", VLP, 0.0, 0.0, 0.0))
    base = score_particles(labels, table(("A", VLP, 0.0, 0.0, 0.0)))
    more = score_particles(labels, table(("A", VLP, 0.0, 0.0, 0.0), ("Z", VLP, 0.0, 0.0, 0.0), ("Z", APO, 1.0, 2.0, 3.0)))
    assert more == base and base.score == pytest.approx(WEIGHT[VLP] * 1.0 / TOTAL_WEIGHT)


def test_given_experiments_make_an_experiment_without_labels_count():
    labels = table(("A", VLP, 0.0, 0.0, 0.0))
    sub = table(("A", VLP, 0.0, 0.0, 0.0), ("E", VLP, 0.0, 0.0, 0.0))
    c = per(score_particles(labels, sub, experiments=["A", "E"]), VLP)
    assert (c.tp, c.fp, c.fn) == (1, 1, 0)


def test_class_without_labels_anywhere_contributes_zero_and_its_weight_counts():
    labels = table(("A", APO, 0.0, 0.0, 0.0))
    sub = table(("A", APO, 0.0, 0.0, 0.0), ("A", BGAL, 0.0, 0.0, 0.0), ("A", BGAL, 500.0, 0.0, 0.0))
    s = score_particles(labels, sub)
    g = per(s, BGAL)
    assert (g.tp, g.fp, g.fn, g.fbeta) == (0, 0, 0, 0.0)  # never matched, as the competition's loop over label types
    assert per(s, APO).fbeta == 1.0 and s.score == pytest.approx(1.0 / TOTAL_WEIGHT)


def test_header_only_submission_is_valid_and_scores_zero():
    labels = table(("A", APO, 0.0, 0.0, 0.0), ("A", RIBO, 500.0, 0.0, 0.0), ("B", RIBO, 9.0, 9.0, 9.0))
    s = score_particles(labels, EMPTY)
    assert s.score == 0.0 and (per(s, RIBO).tp, per(s, RIBO).fp, per(s, RIBO).fn) == (0, 0, 2)


def test_weights_perfect_everywhere_but_one_class():
    labels = table(*[("A", c.name, 1000.0 * i, 0.0, 0.0) for i, c in enumerate(CZII_CLASSES)])
    s = score_particles(labels, labels)
    assert s.score == 1.0
    partial = score_particles(labels, labels[labels.particle_type != BGAL])
    assert partial.score == pytest.approx((TOTAL_WEIGHT - WEIGHT[BGAL]) / TOTAL_WEIGHT)
    amyl = score_particles(labels, labels[labels.particle_type != AMYL])
    assert amyl.score == 1.0  # beta-amylase has weight 0


def test_as_dict_is_exactly_the_json_shape():
    d = score_particles(table(("A", APO, 0.0, 0.0, 0.0)), EMPTY).as_dict()
    assert list(d) == ["score", "per_class"] and list(d["per_class"]) == [c.name for c in CZII_CLASSES]
    assert list(d["per_class"][APO]) == ["tp", "fp", "fn", "precision", "recall", "fbeta"]
    assert "score (sum of weight x F4 / 7)" in format_particle_table(score_particles(table(("A", APO, 0, 0, 0)), EMPTY))


def test_unknown_types_and_duplicate_labels_are_refused():
    with pytest.raises(ValueError, match="unknown particle_type"):
        score_particles(table(("A", APO, 0, 0, 0)), table(("A", "flagellar-motor", 0, 0, 0)))
    with pytest.raises(ValueError, match="twice"):
        score_particles(table(("A", APO, 0, 0, 0), ("A", RIBO, 0, 0, 0)), EMPTY)


def brute_force(labels: pd.DataFrame, sub: pd.DataFrame) -> tuple[float, dict]:
    """The rules read literally, with a full distance matrix instead of KD-trees."""
    experiments = set(labels.experiment)
    sub = sub[sub.experiment.isin(experiments)]
    counts, fs, ws = {}, [], []
    for c in CZII_CLASSES:
        tp = fp = fn = 0
        if c.name in set(labels.particle_type):
            for e in experiments:
                ref = labels[(labels.experiment == e) & (labels.particle_type == c.name)][["x", "y", "z"]].to_numpy(float)
                can = sub[(sub.experiment == e) & (sub.particle_type == c.name)][["x", "y", "z"]].to_numpy(float)
                if len(ref) == 0:
                    fp += len(can)
                    continue
                d = np.sqrt(((can[:, None, :] - ref[None, :, :]) ** 2).sum(-1)) if len(can) else np.zeros((0, len(ref)))
                hit = int((d <= 0.5 * c.radius_A).any(axis=0).sum())
                tp, fp, fn = tp + hit, fp + len(can) - hit, fn + len(ref) - hit
        p = tp / (tp + fp) if tp + fp > 0 else 0
        r = tp / (tp + fn) if tp + fn > 0 else 0
        counts[c.name] = (tp, fp, fn)
        fs.append(f4(p, r))
        ws.append(c.weight)
    return float(np.dot(fs, ws) / sum(ws)), counts


@pytest.mark.parametrize("seed", range(8))
def test_random_cases_equal_the_brute_force_reading(seed):
    rng = np.random.default_rng(seed)
    names = [c.name for c in CZII_CLASSES][: rng.integers(2, 7)]
    n = 60
    labels = pd.DataFrame({"experiment": rng.choice(["A", "B", "C"], n), "particle_type": rng.choice(names, n),
                           "x": rng.uniform(0, 800, n), "y": rng.uniform(0, 800, n), "z": rng.uniform(0, 300, n)})
    jitter = rng.normal(0, 25, (n, 3))
    sub = labels.sample(frac=0.7, random_state=seed).copy()
    sub[["x", "y", "z"]] += jitter[: len(sub)]
    noise = pd.DataFrame({"experiment": rng.choice(["A", "B", "D"], 30), "particle_type": rng.choice(names, 30),
                          "x": rng.uniform(0, 800, 30), "y": rng.uniform(0, 800, 30), "z": rng.uniform(0, 300, 30)})
    sub = pd.concat([sub, noise], ignore_index=True)
    s = score_particles(labels, sub)
    expected, counts = brute_force(labels, sub)
    assert s.score == pytest.approx(expected, abs=1e-12)
    assert {c.name: (c.tp, c.fp, c.fn) for c in s.per_class} == counts
