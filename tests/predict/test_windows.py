import math

import numpy as np
import pytest

from inference.engines.registry import load_engine
from inference.predict.window_placement import count_windows, pad_end, padded_size, window_starts
from inference.predict.windows import sliding_window


def pool(batch, s=16):
    """NumPy average pool with receptive field == stride: the identity-like predictor."""
    n, c = batch.shape[:2]
    sp = batch.shape[2:]
    r = batch.reshape((n, c) + sum(((d // s, s) for d in sp), ()))
    return r.mean(axis=tuple(range(3, 3 + 2 * len(sp), 2)))


@pytest.mark.parametrize("padded,patch,overlap,expected", [
    (64, 64, 0.25, [0]),
    (128, 64, 0.0, [0, 64]),
    (128, 64, 0.25, [0, 48, 64]),      # step floor(48/16)*16 = 48; last shifted inward to 64
    (160, 64, 0.5, [0, 32, 64, 96]),
    (96, 32, 0.9, [0, 16, 32, 48, 64]),  # step never below the stride
])
def test_window_starts(padded, patch, overlap, expected):
    starts = window_starts(padded, patch, 16, overlap)
    assert starts == expected
    assert all(s % 16 == 0 for s in starts)
    assert starts[-1] + patch == padded


def test_padded_size():
    assert padded_size(100, 64, 16) == 112
    assert padded_size(30, 64, 16) == 64
    assert padded_size(128, 64, 16) == 128


@pytest.mark.parametrize("shape", [(80, 160, 144), (50, 70, 33), (17, 200, 16), (5, 7, 9)])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.6])
def test_stitch_equals_whole_volume_exactly(shape, overlap):
    rng = np.random.default_rng(1)
    vol = rng.random((1,) + shape).astype(np.float32)
    heat = sliding_window(vol, pool, (32, 64, 64), 16, overlap, batch_size=3, pad_value=0.5)
    grid = tuple(padded_size(n, p, 16) for n, p in zip(shape, (32, 64, 64)))
    whole = pool(pad_end(vol, grid, 0.5)[None])[0, 0]
    keep = tuple(slice(0, math.ceil(n / 16)) for n in shape)
    assert heat.shape == tuple(math.ceil(n / 16) for n in shape)
    assert np.array_equal(heat, whole[keep])


def test_stitch_exact_with_onnx_avgpool(avgpool_onnx):
    engine = load_engine(avgpool_onnx)
    vol = np.random.default_rng(2).random((1, 48, 100, 90)).astype(np.float32)
    heat = sliding_window(vol, engine, (32, 64, 64), 16, 0.25, batch_size=4, pad_value=0.0)
    whole = engine(pad_end(vol, (48, 112, 96), 0.0)[None])[0, 0][:, :7, :6]
    assert np.array_equal(heat, whole)


def test_max_mode_and_counts():
    vol = np.zeros((1, 32, 32, 64), np.float32)
    calls = []

    def predictor(batch):
        calls.append(batch.shape[0])
        return np.ones((batch.shape[0], 1, 2, 2, 2), np.float32) * len(calls)

    heat = sliding_window(vol, predictor, (32, 32, 32), 16, 0.5, batch_size=1, mode="max")
    # windows start at x = 0, 16, 32 -> three calls; the max at each cell is the latest window covering it
    assert sum(calls) == 3 == count_windows((32, 32, 64), (32, 32, 32), 16, 0.5)
    assert heat[0, 0].tolist() == [1, 2, 3, 3]


def test_2d_windows_with_channels():
    vol = np.random.default_rng(3).random((3, 70, 50)).astype(np.float32)
    heat = sliding_window(vol, lambda b: pool(b).mean(axis=1, keepdims=True), (32, 32), 16, 0.25,
                          batch_size=5, pad_value=0.0)
    whole = pool(pad_end(vol, (80, 64), 0.0)[None])[0].mean(axis=0)[:5, :4]
    assert heat.shape == (5, 4)
    np.testing.assert_allclose(heat, whole, rtol=0, atol=1e-6)


def test_predictor_shape_mismatch_is_clear():
    vol = np.zeros((1, 32, 32, 32), np.float32)
    with pytest.raises(ValueError, match="expected"):
        sliding_window(vol, lambda b: np.zeros((b.shape[0], 1, 3, 2, 2)), (32, 32, 32), 16, 0.0)


def test_grid_windows_predictor_shape_mismatch_is_clear():
    from inference.predict.windows import sliding_window_grid

    vol = np.zeros((1, 32, 32, 32), np.float32)
    with pytest.raises(ValueError, match=r"expected \(1, 1, 2, 2, 2\) \(the window / stride \(16, 16, 16\)\)"):
        sliding_window_grid(vol, lambda b: np.zeros((b.shape[0], 1, 3, 2, 2)), (32, 32, 32), [[0]] * 3, (8, 8, 8),
                            (2, 2, 2), resize_axes=(0, 1, 2))


def test_run_windows_feeds_the_merger_each_batch_with_its_starts():
    from inference.predict.windows import run_windows

    class Recorder:
        def __init__(self):
            self.seen = []

        def add(self, starts, outs):
            self.seen.append((list(starts), outs.copy()))

        def result(self):
            return self.seen

    vol = np.arange(2 * 6, dtype=np.float32).reshape(2, 6)   # (C, x); window 2, offset 1 (one voxel of padding before)
    seen = run_windows(vol, lambda b: b.sum(axis=(1, 2))[:, None, None], (2,), [(-1,), (1,), (3,)], (1,), Recorder(),
                       offset=(1,), batch_size=2)
    assert [s for s, _ in seen] == [[(-1,), (1,)], [(3,)]]
    # window at start a reads voxels a+1, a+2 of vol (both channels): the outputs are (N, 1) after the channel drop
    want = [vol[:, a + 1:a + 3].sum() for a in (-1, 1, 3)]
    np.testing.assert_array_equal(np.concatenate([o[:, 0] for _, o in seen]), want)
