"""Normalisation statistics checked against numpy on data whose statistics are known."""

import numpy as np
import pytest
import torch

from cospeech.motion.normalize import Normalizer


def test_fitted_mean_and_std_match_numpy(rng):
    # three channels with known spread: std 0.5 (below 1, so a variance floor of 1 would show),
    # std 3 around a large offset, and std 2e-3
    scale = np.array([0.5, 3.0, 2e-3])
    offset = np.array([1.0, -250.0, 0.1])
    arrays = [offset + scale * rng.standard_normal((n, 3)) for n in (40, 25, 60)]
    n = Normalizer.fit(arrays)
    pooled = np.concatenate(arrays)
    np.testing.assert_allclose(n.mean, pooled.mean(0), rtol=1e-6)
    np.testing.assert_allclose(n.std, pooled.std(0), rtol=1e-5)  # population std (ddof 0)
    np.testing.assert_allclose(n.std, scale, rtol=0.2)  # and near the std the data was drawn with
    assert n.mean.dtype == n.std.dtype == np.float32


def test_masked_arrays_count_only_their_real_channels(rng):
    a = rng.normal(2.0, 0.5, size=(30, 2))
    b = rng.normal(-1.0, 0.25, size=(50, 2))
    b[:, 0] = 1e6  # not real data in channel 0 of b: must not reach the statistics
    n = Normalizer.fit([a, b], [np.array([True, True]), np.array([False, True])])
    np.testing.assert_allclose(n.mean, [a[:, 0].mean(), np.concatenate([a[:, 1], b[:, 1]]).mean()], rtol=1e-6)
    np.testing.assert_allclose(n.std, [a[:, 0].std(), np.concatenate([a[:, 1], b[:, 1]]).std()], rtol=1e-5)


def test_channels_with_no_real_data_get_mean_0_std_1(rng):
    a = rng.normal(5.0, 2.0, size=(20, 3))
    b = rng.normal(5.0, 2.0, size=(10, 3))
    n = Normalizer.fit([a, b], [np.array([True, False, True]), np.array([True, False, False])])
    assert n.mean[1] == 0.0 and n.std[1] == 1.0
    np.testing.assert_allclose([n.mean[2], n.std[2]], [a[:, 2].mean(), a[:, 2].std()], rtol=1e-5)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_array_equal(n.normalize(x)[:, 1], x[:, 1])  # that channel passes through


def test_min_std_floors_constant_and_quiet_channels():
    t = np.arange(100, dtype=np.float64)
    # a constant far from zero (the variance rounds to a tiny, possibly negative number), a channel
    # of std 0.2 and one of std 2
    a = np.stack([np.full(100, 1234.567), 0.2 * np.sign(np.sin(t + 0.5)), 2.0 * np.sign(np.cos(t + 0.5))], 1)
    n = Normalizer.fit([a])
    assert np.isfinite(n.std).all()
    assert n.std[0] == pytest.approx(1e-4, rel=1e-6)  # the default floor
    np.testing.assert_allclose(n.std[1:], a[:, 1:].std(0), rtol=1e-6)
    floored = Normalizer.fit([a], min_std=0.5)
    np.testing.assert_allclose(floored.std, [0.5, 0.5, a[:, 2].std()], rtol=1e-6)


@pytest.mark.parametrize("kind", ["numpy", torch.float32, torch.float64, torch.bfloat16])
def test_normalize_values_keep_type_and_dtype(kind):
    n = Normalizer(np.array([1.0, -2.0, 0.5], np.float32), np.array([2.0, 0.25, 4.0], np.float32))
    raw = np.array([[3.0, -2.5, 0.5], [-1.0, 0.0, 8.5]])
    expected = np.array([[1.0, -2.0, 0.0], [-1.0, 8.0, 2.0]])
    if kind == "numpy":
        x = raw.astype(np.float32)
        out, back = n.normalize(x), n.denormalize(expected.astype(np.float32))
        assert isinstance(out, np.ndarray) and isinstance(back, np.ndarray)
    else:
        x = torch.tensor(raw, dtype=kind)
        out, back = n.normalize(x), n.denormalize(torch.tensor(expected, dtype=kind))
        assert out.dtype == back.dtype == kind
        out, back = out.double().numpy(), back.double().numpy()
    np.testing.assert_allclose(out, expected, atol=1e-6)  # values exact in every dtype used here
    np.testing.assert_allclose(back, raw, atol=1e-6)


def test_dict_round_trip():
    n = Normalizer(np.array([1.5, -2.0], np.float32), np.array([0.5, 3.0], np.float32))
    again = Normalizer.from_dict(n.to_dict())
    np.testing.assert_array_equal(again.mean, n.mean)
    np.testing.assert_array_equal(again.std, n.std)
    assert again.mean.dtype == again.std.dtype == np.float32
