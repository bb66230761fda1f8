"""CPU and GPU (CuPy) pipelines give the same candidates on the same synthetic tomogram.

Skipped cleanly where CuPy has no CUDA device. The GPU side runs the whole member on the device
(upload once, resample kernel, windows as device views, batched stitching kernel, NMS kernel);
the model is the same ONNX file on ONNX Runtime (its CPU provider copies each batch to the host,
so the test needs no onnxruntime-gpu).
"""

import numpy as np
import pytest

from kernels import cupy_available

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not cupy_available(), reason="CuPy is not installed or sees no CUDA device")]


def test_cpu_and_gpu_candidates_agree(tmp_path):
    import cupy as cp

    from inference.demo_models import write_demo_models
    from inference.engines import load_engine
    from inference.manifest import load_manifest
    from inference.predictor import MemberPredictor
    from inference.readers import read_volume
    from inference.synth import generate

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
