import numpy as np
import pytest

from inference.manifest.types import Normalize
from inference.predict.resample import normalize, resample, resampled_shape


@pytest.mark.parametrize("n,s,t,expected", [
    (300, 13.1, 16.0, int(np.floor(299 * 13.1 / 16.0)) + 1),
    (100, 16.0, 16.0, 100),
    (10, 32.0, 16.0, 19),     # upsampling: samples at 0, 16, ..., 288 Å within 0..288 Å
    (1, 13.1, 16.0, 1),
])
def test_lengths(n, s, t, expected):
    assert resampled_shape((n,), s, t) == (expected,)


def test_linear_ramp_is_exact_both_ways():
    # a volume whose value is its physical z position (Å) resamples to the physical position of the sample
    s, t = 13.1, 16.0
    z = np.arange(50, dtype=np.float32) * s
    vol = np.broadcast_to(z[:, None, None], (50, 4, 5)).copy()
    out = resample(vol, s, t)
    assert out.shape == resampled_shape(vol.shape, s, t)
    j = np.arange(out.shape[0])
    np.testing.assert_allclose(out[:, 0, 0], j * t, rtol=1e-5)
    # and back: index j sits at original index j * t / s
    back = np.interp(j * t / s, np.arange(50), z)
    np.testing.assert_allclose(out[:, 2, 3], back, rtol=1e-5)


def test_identity_and_dtype():
    vol = np.random.default_rng(0).integers(0, 255, (5, 6, 7), dtype=np.uint8)
    out = resample(vol, 16.0, 16.0)
    assert out.dtype == np.float32 and np.array_equal(out, vol.astype(np.float32))


def test_per_axis_spacing():
    vol = np.ones((10, 20, 30), np.float32)
    assert resample(vol, (32.0, 16.0, 8.0), 16.0).shape == (19, 20, 15)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_chunked_equals_direct(axis):
    from inference.predict.resample import _resample_axis
    vol = np.random.default_rng(1).random((37, 31, 33)).astype(np.float32)
    a = _resample_axis(vol, axis, 6.5, 16.0, np, chunk=3)
    b = _resample_axis(vol, axis, 6.5, 16.0, np, chunk=1000)
    assert np.array_equal(a, b)
    # and both equal the textbook formula along that axis
    n = vol.shape[axis]
    pos = np.arange(int(np.floor((n - 1) * 6.5 / 16.0)) + 1) * 16.0 / 6.5
    ref = np.apply_along_axis(lambda v: np.interp(pos, np.arange(n), v), axis, vol)
    np.testing.assert_allclose(a, ref, rtol=1e-5, atol=1e-6)


def test_normalize_modes():
    v = np.array([0, 127.5, 255], np.float32)
    np.testing.assert_allclose(normalize(v, Normalize("affine", 127.5, 127.5)), [-1, 0, 1])
    z = normalize(v, Normalize("zscore"))
    assert abs(float(z.mean())) < 1e-6 and abs(float(z.std()) - 1) < 1e-6
    assert np.array_equal(normalize(np.full(4, 3.0, np.float32), Normalize("zscore")), np.zeros(4, np.float32))
