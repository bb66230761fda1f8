"""Manifests without the recipe keys keep their results: candidates pinned before those keys existed.

The golden file ``tests/data/regression_default_keys.json`` was written at main's HEAD (c1e18aa),
before the recipe keys (issue 13) were added, by ``python tests/test_regression_default_keys.py``.
The inputs are built with integer arithmetic only (identical on every machine); the engines are
the demo ONNX detectors on ONNX Runtime's CPU provider. Where the golden's environment (ONNX
Runtime, NumPy, CPU) is this one, every candidate, fused point and submission value must be
identical BIT FOR BIT; elsewhere float kernels may round differently, so the comparison allows
1e-5 on confs and 1e-3 voxels on coordinates (same counts, same decisions).
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

GOLDEN = Path(__file__).parent / "data" / "regression_default_keys.json"

# (tomo_id, shape, spacing, dark blob centres in voxels): odd shapes, one smaller than the demo patch
# on every axis after resampling, spacings below, at and above the target (16 Å).
TOMOGRAMS = [
    ("tomo_a", (80, 150, 140), 13.1, [(40, 70, 60)]),
    ("tomo_b", (40, 70, 66), 19.7, [(18, 30, 40)]),
    ("tomo_c", (70, 140, 150), 16.0, [(30, 40, 100), (45, 100, 30)]),
    ("tomo_d", (90, 170, 160), 10.5, []),
]

# Today's options beyond the demo manifest: max stitching, transposing TTA, per-axis overlap,
# affine normalisation, no border, 2d transposes, quantile threshold.
VARIETY = {
    "target_spacing": 16.0,
    "default_spacing": 13.1,
    "members": [
        {"name": "v3d", "kind": "3d", "model": "demo3d.onnx", "patch": [64, 128, 128], "stride": 16,
         "overlap": [0.25, 0.5, 0.0], "normalize": {"mean": 120.0, "std": 30.0}, "activation": "sigmoid",
         "tta": ["zyx", "zxy", "yxz_zy"], "weight": 2.0, "stitch": "max", "batch_size": 3,
         "decode": {"nms_kernel": 3, "min_conf": 0.01, "top_k": 7}},
        {"name": "v2d", "kind": "2d", "model": "demo2d.onnx", "patch": [128, 128], "stride": 16,
         "overlap": 0.25, "normalize": "zscore", "activation": "sigmoid", "tta": ["yx", "xy_y"],
         "weight": 1.0, "batch_size": 5, "channels": 3, "slice_spacing": 32.0,
         "decode": {"nms_kernel": 5, "min_conf": 0.02, "top_k": 9, "border_A": 100.0}},
    ],
    "threshold": {"quantile": 0.5},
    "fusion": {"method": "wbf", "dist_A": 800.0, "conf_type": "avg", "skip_conf": 0.05},
}


def tomogram(shape, spacing, blobs, seed):
    """uint8 volume from integer arithmetic only: hashed noise, dark spheres of 225 Å with a bright rim."""
    z, y, x = np.indices(shape, dtype=np.int64)
    h = (z * 73856093) ^ (y * 19349663) ^ (x * 83492791) ^ (seed * 2654435761)
    vol = 128 + (h % 41) - 20
    r2 = int(round((225.0 / spacing) ** 2))
    for cz, cy, cx in blobs:
        d2 = (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2
        vol = np.where(d2 <= r2, vol - 70, vol)
        vol = np.where((d2 > r2) & (d2 <= 2 * r2), vol + 25, vol)
    return np.clip(vol, 0, 255).astype(np.uint8)


def environment() -> str:
    import onnxruntime

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"onnxruntime {onnxruntime.__version__}; numpy {np.__version__}; {platform.machine()}; {cpu}"


def run_all(root: Path) -> dict:
    """Both manifests over the inputs; every member's candidates, fused points and the submission."""
    from inference.manifest.parse import load_manifest
    from inference.run.runner import PredictConfig, run_predict
    from inference.synth.demo_models import write_demo_models

    data = root / "input"
    data.mkdir(parents=True)
    rows = ["tomo_id,voxel_spacing"]
    for i, (tomo_id, shape, spacing, blobs) in enumerate(TOMOGRAMS):
        np.save(data / f"{tomo_id}.npy", tomogram(shape, spacing, blobs, i))
        rows.append(f"{tomo_id},{spacing}")
    spacing_csv = root / "spacing.csv"
    spacing_csv.write_text("\n".join(rows) + "\n")
    demo = write_demo_models(root / "models", with_2d=True)
    variety = root / "models" / "variety.yaml"
    variety.write_text(yaml.safe_dump(VARIETY, sort_keys=False))
    out = {}
    for name, path in (("demo", demo), ("variety", variety)):
        res = run_predict(PredictConfig(manifest=load_manifest(path), input_dir=data,
                                        output=root / name / "submission.csv", spacing_csv=spacing_csv,
                                        progress=False, workers=0))
        out[name] = {
            "members": {t: r.members for t, r in sorted(res.results.items())},
            "fused": {t: r.fused for t, r in sorted(res.results.items())},
            "threshold": res.decision.threshold,
            "submission": res.submission.astype({"tomo_id": str}).values.tolist(),
        }
    return out


@pytest.fixture(scope="module")
def current(tmp_path_factory):
    return run_all(tmp_path_factory.mktemp("regression"))


def _points_equal(a, b, exact: bool, where: str):
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    assert a.shape == b.shape, f"{where}: {len(a)} points now, {len(b)} in the golden"
    if exact:
        assert np.array_equal(a, b), f"{where}: not bit-identical\nnow {a.tolist()}\ngolden {b.tolist()}"
    else:
        np.testing.assert_allclose(a[:, :3], b[:, :3], rtol=0, atol=1e-3, err_msg=where)
        np.testing.assert_allclose(a[:, 3], b[:, 3], rtol=0, atol=1e-5, err_msg=where)


@pytest.mark.parametrize("name", ["demo", "variety"])
def test_default_keys_reproduce_the_golden(current, name):
    golden = json.loads(GOLDEN.read_text())
    exact = golden["environment"] == environment()
    got, want = current[name], golden["runs"][name]
    assert sorted(got["members"]) == sorted(want["members"])
    for tomo_id in want["members"]:
        assert sorted(got["members"][tomo_id]) == sorted(want["members"][tomo_id]), tomo_id
        for member, pts in want["members"][tomo_id].items():
            _points_equal(got["members"][tomo_id][member], pts, exact, f"{name} {tomo_id} {member}")
        _points_equal(got["fused"][tomo_id], want["fused"][tomo_id], exact, f"{name} {tomo_id} fused")
    if exact:
        assert got["threshold"] == want["threshold"]
        assert got["submission"] == want["submission"]
    else:
        assert got["threshold"] == pytest.approx(want["threshold"], abs=1e-5)
        motor = [[r[1] >= 0 for r in sub] for sub in (got["submission"], want["submission"])]
        assert motor[0] == motor[1]


def test_golden_is_not_trivial():
    """The golden pins real work: candidates on every tomogram with a blob, motors and non-motors."""
    golden = json.loads(GOLDEN.read_text())
    for run in golden["runs"].values():
        for tomo_id, _, _, blobs in TOMOGRAMS:
            if blobs:
                assert any(len(p) for p in run["members"][tomo_id].values()), tomo_id
        decisions = {r[1] >= 0 for r in run["submission"]}
        assert decisions == {True, False}


if __name__ == "__main__":  # regenerate the golden (only where the code's results are meant to change)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        runs = run_all(Path(tmp))
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps({"environment": environment(), "runs": runs}, sort_keys=True, indent=1) + "\n")
    print(f"wrote {GOLDEN}", file=sys.stderr)
