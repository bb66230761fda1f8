"""export.flops: the meta-device count equals a real run's count and scales with the window."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.export

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from export.flops import count_flops  # noqa: E402
from export.models.registry import REGISTRY, build_model


def test_meta_count_equals_a_real_run_and_scales_linearly_for_convnets():
    spec = REGISTRY["x3d_m"]
    meta = count_flops(spec, (32, 64, 64))
    model, _ = build_model(spec, (32, 64, 64))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, 1, 32, 64, 64))
    assert meta.flops == counter.get_total_flops() > 0
    assert meta.params == sum(p.numel() for p in model.parameters())
    assert meta.output_shape == (1, 1, 2, 4, 4)
    big = count_flops(spec, (64, 128, 128))
    # linear in voxels up to the SE blocks' 1x1 convs on globally pooled maps (constant per window)
    assert big.flops == pytest.approx(8 * meta.flops, rel=2e-3) and big.flops < 8 * meta.flops
