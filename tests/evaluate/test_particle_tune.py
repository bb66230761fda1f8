"""Per-class threshold sweep (inference.evaluate.particle_tune): the swept counts equal the metric's at every
threshold, the best threshold by formula, and the manifest copy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from inference.common.errors import InputError
from inference.evaluate.particle_metric import score_particles
from inference.evaluate.particle_tune import (
    apply_thresholds,
    class_sweeps,
    manifest_thresholds,
    sweep_counts,
    threshold_grid,
    tune_thresholds,
    write_tuned_manifest,
)
from inference.manifest.particle_classes import CZII_CLASSES

APO, RIBO, BGAL = "apo-ferritin", "ribosome", "beta-galactosidase"


def cands(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=["experiment", "particle_type", "x", "y", "z", "conf"])


def labels_of(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=["experiment", "particle_type", "x", "y", "z"])


def f4(p, r):
    return 17 * p * r / (16 * p + r) if p + r > 0 else 0.0


def test_grid_runs_from_the_floor_to_1_by_step_and_refuses_coarse_steps():
    g = threshold_grid(0.005)  # from the default candidate floor, 0.05
    assert len(g) == 1 + round((1 - 0.05) / 0.005) == 191 and g[0] == 0.05 and g[-1] == 1.0 and g[37] == 0.235
    assert len(threshold_grid(0.001)) == 951
    g = threshold_grid(0.005, start=0.005)
    assert len(g) == 200 and g[0] == 0.005 and g[-1] == 1.0
    for bad in (0.01, 0.0, -0.001, float("nan")):
        with pytest.raises(ValueError):
            threshold_grid(bad)
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError):
            threshold_grid(0.005, start=bad)


def test_best_threshold_by_formula():
    # 3 ribosomes; candidates: 0.9 and 0.6 on particles 1 and 2, 0.4 and 0.3 on nothing, 0.2 on particle 3
    labels = labels_of(("A", RIBO, 0.0, 0.0, 0.0), ("A", RIBO, 1000.0, 0.0, 0.0), ("A", RIBO, 2000.0, 0.0, 0.0))
    c = cands(("A", RIBO, 0.0, 0.0, 0.0, 0.9), ("A", RIBO, 1000.0, 0.0, 0.0, 0.6), ("A", RIBO, 5000.0, 0.0, 0.0, 0.4),
              ("A", RIBO, 6000.0, 0.0, 0.0, 0.3), ("A", RIBO, 2000.0, 10.0, 0.0, 0.2))
    # kept sets as t grows (conf >= t): all 5 (tp 3, fp 2) up to t = 0.2; then 4 (2, 2); 3 (2, 1); 2 (2, 0); 1 (1, 0)
    f_all, f_two = f4(3 / 5, 1.0), f4(2 / 2, 2 / 3)
    assert f_all > f_two  # 0.9107 > 0.6939... recall dominates
    result = tune_thresholds(labels, c)
    assert result.thresholds[RIBO] == 0.05  # the lowest threshold of the best F: the grid's first, the floor
    ribo = next(s for s in result.per_class if s.name == RIBO)
    assert (ribo.tp, ribo.fp, ribo.fn) == (3, 2, 0) and ribo.fbeta == pytest.approx(f_all)
    assert result.thresholds[APO] is None and result.score == pytest.approx(f_all / 7)
    # with many more unmatched low-conf candidates the threshold rises past them
    noise = [("A", RIBO, 9000.0 + 100 * i, 0.0, 0.0, 0.1) for i in range(40)]
    more = tune_thresholds(labels, pd.concat([c, cands(*noise)], ignore_index=True))
    assert more.thresholds[RIBO] == 0.105  # conf >= t drops the 40 at 0.1 from t = 0.105 on, the lowest such


@pytest.mark.parametrize("seed", range(5))
def test_swept_counts_equal_the_metric_at_every_threshold(seed):
    rng = np.random.default_rng(seed)
    names = [c.name for c in CZII_CLASSES]
    n = 80
    labels = pd.DataFrame({"experiment": rng.choice(["A", "B", "C"], n), "particle_type": rng.choice(names[:4], n),
                           "x": rng.uniform(0, 600, n), "y": rng.uniform(0, 600, n), "z": rng.uniform(0, 200, n)})
    m = 200
    c = pd.DataFrame({"experiment": rng.choice(["A", "B", "D"], m), "particle_type": rng.choice(names, m),
                      "x": rng.uniform(0, 600, m), "y": rng.uniform(0, 600, m), "z": rng.uniform(0, 200, m),
                      "conf": rng.choice(np.round(np.arange(0, 1.0001, 0.005), 3), m)})  # confs on grid points too
    sweeps = class_sweeps(labels, c)
    grid = threshold_grid(0.005)
    counts = {cls.name: sweep_counts(s, grid) for cls, s in zip(CZII_CLASSES, sweeps)}
    for k in range(0, len(grid), 7):
        kept = c.loc[c["conf"] >= grid[k]]
        s = score_particles(labels, kept)
        for cls in s.per_class:
            if cls.name in set(labels.particle_type):
                tp, fp, fn = (int(a[k]) for a in counts[cls.name])
                assert (tp, fp, fn) == (cls.tp, cls.fp, cls.fn), (grid[k], cls.name)
    result = tune_thresholds(labels, c)
    again = score_particles(labels, apply_thresholds(c, result.thresholds))
    assert again.score == pytest.approx(result.score)
    coarse = [score_particles(labels, c.loc[c["conf"] >= t]) for t in grid[::20]]
    for k, cls in enumerate(result.per_class):
        if result.thresholds[cls.name] is not None:  # no coarser threshold does better
            assert cls.fbeta >= max(s.per_class[k].fbeta for s in coarse) - 1e-12


def test_candidates_outside_labelled_experiments_do_not_count():
    labels = labels_of(("A", APO, 0.0, 0.0, 0.0))
    c = cands(("A", APO, 0.0, 0.0, 0.0, 0.5), *[("Z", APO, 100.0 * i, 0, 0, 0.9) for i in range(10)])
    sweep = class_sweeps(labels, c)[0]
    assert len(sweep.conf) == 1 and sweep.best.tolist() == [0.5]
    assert tune_thresholds(labels, c).thresholds[APO] == 0.05


def test_written_manifest_has_the_thresholds_by_name(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text("task: particles\nmembers:\n- name: a\n  onnx: a.onnx\nclasses:\n"
                        "- {name: apo-ferritin, radius_A: 60, weight: 1, threshold: 0.16}\n"
                        "- {name: ribosome, radius_A: 150, weight: 1, threshold: 0.13}\n"
                        "- {name: thyroglobulin, radius_A: 130, weight: 2}\n")
    out = tmp_path / "tuned.yaml"
    done = write_tuned_manifest(manifest, out, {"apo-ferritin": 0.205, "ribosome": None, "thyroglobulin": 0.3,
                                                "virus-like-particle": 0.4})
    assert done == ["apo-ferritin", "thyroglobulin"]
    data = yaml.safe_load(out.read_text())
    assert [c.get("threshold") for c in data["classes"]] == [0.205, 0.13, 0.3]
    assert data["task"] == "particles" and data["members"] == [{"name": "a", "onnx": "a.onnx"}]
    assert list(data) == ["task", "members", "classes"]
    assert manifest_thresholds(out) == {"apo-ferritin": 0.205, "ribosome": 0.13, "thyroglobulin": 0.3}


@pytest.mark.parametrize("text, message", [
    ("members: []\n", "no 'classes:' list"),
    ("classes: [{radius_A: 3}]\n", "no 'classes:' list"),
    ("classes: [\n", "not valid YAML"),
])
def test_bad_manifests_are_one_line(tmp_path, text, message):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(text)
    with pytest.raises(InputError, match=message) as exc:
        write_tuned_manifest(manifest, tmp_path / "o.yaml", {"apo-ferritin": 0.1})
    assert str(exc.value).startswith(str(manifest)) and not (tmp_path / "o.yaml").exists()
