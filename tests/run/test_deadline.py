"""The deadline guard with a fake clock: the ladder, degradation, stop, and a run that hits it."""


import pandas as pd
import pytest
import yaml

from inference.manifest.parse import load_manifest
from inference.run.deadline import DeadlineGuard, ladder
from inference.run.plan import STOP
from inference.run.results import TomoResult

MEMBERS = [("x3d_m", 3, 1.0, ["zyx", "zxy"]), ("densenet121", 3, 1.0, ["zyx_x", "zyx_y"]),
           ("resnext50", 3, 0.8, ["zyx_z", "zxy_z"]), ("maxvit", 2, 1.2, ["yx", "xy"]), ("coat", 2, 0.5, ["yx"])]


@pytest.fixture
def manifest(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x")
    members = []
    for name, kind, w, tta in MEMBERS:
        m = {"name": name, "kind": f"{kind}d", "model": "m.onnx", "stride": 16, "normalize": "zscore",
             "weight": w, "tta": tta, "patch": [64, 128, 128] if kind == 3 else [128, 128]}
        if kind == 2:
            m["slice_spacing"] = 32.0
        members.append(m)
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump({"target_spacing": 16.0, "members": members, "threshold": {"quantile": 0.55}}))
    return load_manifest(p)


def test_ladder_order(manifest):
    plans = ladder(manifest, {"x3d_m": 3.0, "densenet121": 2.0, "resnext50": 4.0, "maxvit": 1.0, "coat": 1.5})
    assert [p.level for p in plans] == list(range(len(plans)))
    assert plans[0].active is None and plans[0].tta_limit is None
    assert plans[1].tta_limit == 1 and len(plans[1].active) == 5
    # lowest weight first: coat (0.5), then resnext50 (0.8), then densenet121 (1.0, later of the two 1.0s)
    assert plans[2].active == ("x3d_m", "densenet121", "resnext50", "maxvit")
    assert plans[3].active == ("x3d_m", "densenet121", "maxvit")
    assert plans[4].active == ("x3d_m", "maxvit")
    assert plans[-1].active == ("maxvit",) and plans[-1].tta_limit == 1  # the fastest per transform


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def result(level, seconds):
    return TomoResult(tomo_id="t", status="ok", member_seconds=seconds, degrade=level)


def test_degrades_then_stops(manifest):
    clock = Clock()
    guard = DeadlineGuard(manifest, budget_s=1000.0, total=100, workers=1, clock=clock)
    full = {"x3d_m": 4.0, "densenet121": 4.0, "resnext50": 4.0, "maxvit": 2.0, "coat": 1.0}  # 15 s per tomogram
    assert guard().level == 0                    # nothing learnt yet: full ensemble
    clock.t = 15.0
    guard.observe(result(0, full))
    # projection: 15 + 99 x 15 = 1500 > 950 -> drop TTA: per transform 2,2,2,1,1 -> 1 TTA costs 8 s
    # 15 + 99 x 8 = 807 <= 950
    p = guard()
    assert p.level == 1 and p.tta_limit == 1
    assert guard.cost(p) == pytest.approx(2 + 2 + 2 + 1 + 1)
    clock.t = 400.0                               # slow machine: the calibration factor kicks in
    for _ in range(9):
        guard.observe(result(1, {"x3d_m": 2.0, "densenet121": 2.0, "resnext50": 2.0, "maxvit": 1.0, "coat": 1.0}))
    p = guard()
    assert p.level > 1
    assert guard.projection(p) <= 0.95 * 1000 or p.level == len(ladder(manifest)) - 1
    clock.t = 1000.0
    assert guard() is STOP


def test_levels_never_go_back(manifest):
    clock = Clock()
    guard = DeadlineGuard(manifest, budget_s=100.0, total=10, clock=clock)
    full = {m[0]: 5.0 for m in MEMBERS}
    clock.t = 25.0
    guard.observe(result(0, full))
    high = guard().level
    assert high > 0
    clock.t = 26.0
    for _ in range(5):
        guard.observe(result(high, {"x3d_m": 0.01}))
    assert guard().level >= high


def test_run_hits_the_deadline_with_a_fake_clock(tmp_path):
    """In-process run over 6 tomograms; the fake clock jumps 40 s per dispatch against a 100 s budget:
    the first tomograms run, the rest are written as -1, and the submission is complete."""
    from inference.run.runner import PredictConfig, run_predict
    from inference.synth.demo_models import write_demo_models
    from inference.synth.generate import generate

    generate(tmp_path / "data", 6, 3, split="test", scale=0.1, progress=False)
    manifest = load_manifest(write_demo_models(tmp_path / "models", with_2d=True))
    clock = Clock()
    guard = DeadlineGuard(manifest, budget_s=100.0, total=6, clock=clock)

    def planner():
        plan = guard()
        clock.t += 40.0
        return plan

    cfg = PredictConfig(manifest=manifest, input_dir=tmp_path / "data" / "test", output=tmp_path / "sub.csv",
                        progress=False, workers=0, write_every_s=0.0)
    res = run_predict(cfg, planner=planner)
    sub = pd.read_csv(tmp_path / "sub.csv")
    assert len(sub) == 6 and sub["tomo_id"].is_unique
    assert 1 <= len(res.results) < 6                       # some ran, the rest never started
    unreached = set(sub.tomo_id) - set(res.results)
    assert (sub.set_index("tomo_id").loc[sorted(unreached)] == -1).all().all()


def test_spent_budget_via_config_writes_all_minus_one(tmp_path):
    from dataclasses import replace

    from inference.run.runner import PredictConfig, run_predict
    from inference.synth.demo_models import write_demo_models
    from inference.synth.generate import generate

    generate(tmp_path / "data", 3, 4, split="test", scale=0.1, progress=False)
    manifest = load_manifest(write_demo_models(tmp_path / "models"))
    cfg = PredictConfig(manifest=manifest, input_dir=tmp_path / "data" / "test", output=tmp_path / "sub.csv",
                        progress=False, workers=1, deadline_h=1e-9)
    res = run_predict(cfg)
    sub = pd.read_csv(tmp_path / "sub.csv")
    assert len(sub) == 3 and not res.results and (sub.iloc[:, 1:] == -1).all().all()
    # with time to spare the same config runs everything at level 0
    res = run_predict(replace(cfg, deadline_h=1.0, workers=0))
    assert len(res.results) == 3 and all(r.degrade == 0 for r in res.results.values())
