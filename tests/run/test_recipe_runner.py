"""Separate TTAs through the runner, the fuse/submit CLI, worker processes and the deadline guard."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from inference.cli.main import main
from inference.manifest.parse import load_manifest
from inference.run.deadline import DeadlineGuard, ladder
from inference.run.runner import PredictConfig, run_predict


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    """Synthetic data and the demo detectors under a manifest with every recipe key (3d and 2d)."""
    from inference.synth.demo_models import demo_manifest_dict, write_demo_models
    from inference.synth.generate import generate

    root = tmp_path_factory.mktemp("recipe_run")
    generate(root / "data", 5, 12, split="test", scale=0.12, progress=False)
    write_demo_models(root / "models", with_2d=True)
    data = demo_manifest_dict(with_2d=True)
    for m in data["members"]:
        m.update(overlap=0.0, tta_scope="window", tta_merge="separate", windows={"placement": "end", "pad": "zero"},
                 resample={"grid": "half_pixel", "quantize": "uint8"},
                 stitch={"mode": "mean", "space": "logit", "grid_stride": 8})
        m["decode"] = {"nms_kernel": 3, "min_conf": 0.02, "top_k": 100, "nms_radius_A": 1000.0}
        if m["kind"] == "3d":
            m["tta"] = ["zyx", "zxy_x", "zyx_y"]
        else:
            m.update(tta=["yx", "xy_x"], slices={"window": 3, "step": 3, "cell": 4}, slice_spacing=32.0)
    data["fusion"].update(skip_conf=0.2, rescale="weights")
    data["threshold"] = {"quantile": 0.55, "keep_equal": True}
    path = root / "models" / "recipe.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return root, path


INPUTS = ["demo3d@zyx", "demo3d@zxy_x", "demo3d@zyx_y", "demo2d@yx", "demo2d@xy_x"]


def _cfg(recipe, out, **kw):
    root, path = recipe
    return PredictConfig(manifest=load_manifest(path), input_dir=root / "data" / "test", output=out / "sub.csv",
                         spacing_csv=root / "data" / "test_labels.csv", candidates_dir=out / "cands",
                         sample_submission=root / "data" / "sample_submission.csv", progress=False,
                         write_every_s=0.0, **kw)


def test_separate_ttas_write_one_file_each_and_fuse_submit_round_trips(recipe, tmp_path):
    root, path = recipe
    res = run_predict(_cfg(recipe, tmp_path, workers=0))
    cands = tmp_path / "cands"
    assert sorted(p.stem for p in cands.iterdir()) == sorted(INPUTS + ["fused"])
    assert list(res.member_candidates) == INPUTS
    files = [str(cands / f"{n}.csv") for n in INPUTS]
    assert main(["-q", "fuse", "--manifest", str(path), "--candidates", *files, "--output",
                 str(tmp_path / "fused2.csv")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(cands / "fused.csv"), pd.read_csv(tmp_path / "fused2.csv"))
    assert main(["-q", "submit", "--manifest", str(path), "--candidates", str(tmp_path / "fused2.csv"),
                 "--sample-submission", str(root / "data" / "sample_submission.csv"),
                 "--output", str(tmp_path / "sub2.csv")]) == 0
    assert (tmp_path / "sub2.csv").read_text() == (tmp_path / "sub.csv").read_text()
    # an option overrides the manifest; with unit weights the two rescale rules agree (min(n, 5) / 5)
    assert main(["-q", "fuse", "--manifest", str(path), "--rescale", "members", "--candidates", *files,
                 "--output", str(tmp_path / "fused3.csv")]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(cands / "fused.csv"), pd.read_csv(tmp_path / "fused3.csv"))


def test_fuse_manifest_names_the_unknown_file(recipe, tmp_path, capsys):
    root, path = recipe
    bad = tmp_path / "demo3d@zyx_z.csv"
    bad.write_text("tomo_id,z,y,x,conf,voxel_spacing\n")
    assert main(["fuse", "--manifest", str(path), "--candidates", str(bad), "--output", str(tmp_path / "f.csv")]) == 2
    err = capsys.readouterr().err
    assert "demo3d@zyx_z" in err and "--weights" in err


def test_worker_processes_equal_in_process(recipe, tmp_path):
    run_predict(_cfg(recipe, tmp_path / "w0", workers=0))
    run_predict(_cfg(recipe, tmp_path / "w1", workers=1))
    for name in INPUTS + ["fused"]:
        a = (tmp_path / "w0" / "cands" / f"{name}.csv").read_text()
        assert a == (tmp_path / "w1" / "cands" / f"{name}.csv").read_text(), name


def test_deadline_drops_separate_ttas_as_inputs(recipe, tmp_path):
    """Level 1 (one TTA per member) keeps each member's FIRST input; fusion runs over the inputs
    present, so a degraded tomogram's confs stay on the scale of a full one."""
    cfg = _cfg(recipe, tmp_path, workers=0)
    plans = ladder(cfg.manifest)
    assert plans[1].tta_limit == 1
    res = run_predict(cfg, planner=lambda: plans[1])
    for r in res.results.values():
        assert sorted(r.members) == ["demo2d@yx", "demo3d@zyx"] and r.degrade == 1
    full = run_predict(_cfg(recipe, tmp_path / "full", workers=0))
    for t, r in res.results.items():
        # the first TTA's list is the same whether or not the others ran
        assert r.members["demo3d@zyx"] == full.results[t].members["demo3d@zyx"]
    empty = pd.read_csv(tmp_path / "cands" / "demo3d@zxy_x.csv")
    assert len(empty) == 0  # dropped inputs still get their (empty) file

    guard = DeadlineGuard(cfg.manifest, budget_s=100.0, total=10)
    guard.observe(full.results[sorted(full.results)[0]])
    st = guard.seconds_per_tta()
    assert set(st) == {"demo3d", "demo2d"}                  # learnt per member and transform, not per input
    assert guard.cost(plans[1]) == pytest.approx(st["demo3d"] + st["demo2d"])
