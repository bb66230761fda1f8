"""CPU and GPU (CuPy) pipelines give the same candidates on the same synthetic tomogram.

Skipped cleanly where CuPy has no CUDA device. The GPU side runs the whole member on the device
(upload once, resample kernel, windows as device views, batched stitching kernel, NMS kernel);
the model is the same ONNX file on ONNX Runtime (its CPU provider copies each batch to the host,
so the test needs no onnxruntime-gpu).
"""

import numpy as np
import pytest

from kernels.array_module import cupy_available

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not cupy_available(), reason="CuPy is not installed or sees no CUDA device")]


def test_cpu_and_gpu_candidates_agree(tmp_path):
    import cupy as cp

    from inference.engines.registry import load_engine
    from inference.io.readers import read_volume
    from inference.manifest.parse import load_manifest
    from inference.predict.predictor import MemberPredictor
    from inference.synth.demo_models import write_demo_models
    from inference.synth.generate import generate

    labels = generate(tmp_path / "d", 2, 12, split="test", scale=0.2, progress=False)
    manifest = load_manifest(write_demo_models(tmp_path / "m", with_2d=True))
    for tomo_id, g in labels.groupby("tomo_id"):
        vol = read_volume(tmp_path / "d" / "test" / tomo_id).data
        spacing = float(g["Voxel spacing"].iloc[0])
        for member in manifest.members:
            engine = load_engine(member.model)
            cpu = MemberPredictor(member, engine, manifest.target_spacing)(vol, spacing)
            gpu = MemberPredictor(member, engine, manifest.target_spacing, xp=cp)(vol, spacing)
            assert len(cpu.conf) == len(gpu.conf), (tomo_id, member.name)
            np.testing.assert_allclose(gpu.conf, cpu.conf, rtol=0, atol=1e-4)
            np.testing.assert_allclose(gpu.zyx, cpu.zyx, rtol=0, atol=1e-6)


def test_cpu_and_gpu_candidates_agree_with_every_recipe_key(tmp_path):
    """Half-pixel uint8 resample (kernel), end-placed zero-padded windows, window-scope separate TTAs,
    logit stitching on the resized stride-8 grid (xp ops), 1000 Å NMS: CPU and CuPy agree per TTA."""
    import cupy as cp
    import yaml

    from inference.engines.registry import load_engine
    from inference.io.readers import read_volume
    from inference.manifest.parse import load_manifest
    from inference.predict.predictor import MemberPredictor
    from inference.synth.demo_models import demo_manifest_dict, write_demo_models
    from inference.synth.generate import generate

    labels = generate(tmp_path / "d", 2, 13, split="test", scale=0.2, progress=False)
    write_demo_models(tmp_path / "m", with_2d=True)
    data = demo_manifest_dict(with_2d=True)
    for m in data["members"]:
        m.update(overlap=0.0, tta_scope="window", tta_merge="separate", windows={"placement": "end", "pad": "zero"},
                 resample={"grid": "half_pixel", "quantize": "uint8"}, normalize={"mean": 128.0, "std": 40.0},
                 stitch={"mode": "mean", "space": "logit", "grid_stride": 8},
                 decode={"nms_kernel": 3, "min_conf": 0.02, "top_k": 100, "nms_radius_A": 1000.0})
        m["tta"] = ["zyx", "zxy_x"] if m["kind"] == "3d" else ["yx", "xy_x"]
        if m["kind"] == "2d":
            m.update(slices={"window": 3, "step": 3, "cell": 4}, slice_spacing=32.0)
    (tmp_path / "m" / "recipe.yaml").write_text(yaml.safe_dump(data))
    manifest = load_manifest(tmp_path / "m" / "recipe.yaml")
    for tomo_id, g in labels.groupby("tomo_id"):
        vol = read_volume(tmp_path / "d" / "test" / tomo_id).data
        for member in manifest.members:
            engine = load_engine(member.model)
            cpu = MemberPredictor(member, engine, manifest.target_spacing).predict(vol, 13.1)
            gpu = MemberPredictor(member, engine, manifest.target_spacing, xp=cp).predict(cp.asarray(vol), 13.1)
            assert sorted(cpu) == sorted(gpu) == sorted(member.input_names)
            for name in cpu:
                assert len(cpu[name].conf) == len(gpu[name].conf), (tomo_id, name)
                np.testing.assert_allclose(gpu[name].conf, cpu[name].conf, rtol=0, atol=1e-3)
                np.testing.assert_allclose(gpu[name].zyx, cpu[name].zyx, rtol=0, atol=1e-6)
