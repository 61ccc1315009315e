"""Fréchet distance of feature sets: the fitted Gaussians and the covariance term, in closed form."""

import numpy as np
import pytest

from cospeech.metrics import frechet_distance, frechet_distance_of, gaussian_stats


def test_gaussian_stats_match_numpy(rng):
    x = rng.normal(size=(12, 4)) @ rng.normal(size=(4, 4)) + np.array([1.0, -2.0, 0.0, 5.0])
    mu, cov = gaussian_stats(x)
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(x.T, ddof=1), rtol=1e-12)
    mu1, cov1 = gaussian_stats(np.array([[1.0, 2.0, 3.0]]))  # one clip: no spread
    np.testing.assert_array_equal(mu1, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(cov1, np.zeros((3, 3)))
    _, var = gaussian_stats(np.array([[1.0], [3.0], [8.0]]))  # one channel: a (1, 1) covariance
    np.testing.assert_allclose(var, [[13.0]])


def test_sets_with_equal_means_differ_by_their_covariances():
    # ±e1, ±e2: mean 0, unbiased covariance (2/3) I; twice as wide: (8/3) I.
    # FD = Σ_c (√(2/3) − √(8/3))² = 2 · (2/3) = 4/3
    a = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    assert frechet_distance_of(a, 2 * a) == pytest.approx(4.0 / 3.0, rel=1e-12)
    assert frechet_distance_of(2 * a, a) == pytest.approx(4.0 / 3.0, rel=1e-12)
    # one channel: {−1, 1} (variance 2) against {−3, 3} (variance 18): (√2 − √18)² = 8
    assert frechet_distance_of(np.array([[-1.0], [1.0]]), np.array([[-3.0], [3.0]])) == pytest.approx(8.0, rel=1e-12)


def test_rotated_covariance_closed_form():
    # Σ1 = diag(4, 1) and Σ2 = the same rotated by 90° = diag(1, 4): commuting, so
    # FD = Σ (√λ1 − √λ2)² = (2 − 1)² + (1 − 2)² = 2, whatever the means' common value
    mu = np.array([0.3, -0.7])
    assert frechet_distance(mu, np.diag([4.0, 1.0]), mu, np.diag([1.0, 4.0])) == pytest.approx(2.0, rel=1e-12)
    # a full-rank covariance against a zero one: FD = tr(Σ)
    c = np.array([[2.0, 0.5], [0.5, 1.0]])
    assert frechet_distance(mu, c, mu, np.zeros((2, 2))) == pytest.approx(3.0, rel=1e-12)


def test_non_commuting_covariances_match_the_two_by_two_formula(rng):
    # for 2 × 2 matrices tr(√M) = √(tr M + 2 √det M), with M = Σ1^½ Σ2 Σ1^½ (tr M = tr Σ1Σ2,
    # det M = det Σ1 det Σ2): an independent closed form
    for _ in range(5):
        a, b = rng.normal(size=(2, 2)), rng.normal(size=(2, 2))
        c1, c2 = a @ a.T + 0.1 * np.eye(2), b @ b.T + 0.1 * np.eye(2)
        tr_sqrt = np.sqrt(np.trace(c1 @ c2) + 2 * np.sqrt(np.linalg.det(c1) * np.linalg.det(c2)))
        expected = np.trace(c1) + np.trace(c2) - 2 * tr_sqrt
        assert frechet_distance(np.zeros(2), c1, np.zeros(2), c2) == pytest.approx(expected, rel=1e-9)


def test_rank_one_covariances_closed_form():
    # Σ1 = u uᵀ, Σ2 = v vᵀ (singular): tr((Σ1^½ Σ2 Σ1^½)^½) = |u·v|, so FD = |u|² + |v|² − 2|u·v|
    u, v = np.array([1.0, 2.0, 0.0]), np.array([0.5, -1.0, 3.0])
    expected = u @ u + v @ v - 2 * abs(u @ v)
    assert frechet_distance(np.zeros(3), np.outer(u, u), np.zeros(3), np.outer(v, v)) == pytest.approx(expected, rel=1e-9)


def test_tiny_covariances_are_not_mistaken_for_round_off():
    # FD is homogeneous: scaling every covariance by s scales FD by s, down to s = 1e-20
    c1, c2 = np.diag([4.0, 1.0]), np.array([[2.0, 0.5], [0.5, 1.0]])
    fd = frechet_distance(np.zeros(2), c1, np.zeros(2), c2)
    assert fd > 0.1
    for s in (1e-6, 1e-20):
        assert frechet_distance(np.zeros(2), s * c1, np.zeros(2), s * c2) == pytest.approx(s * fd, rel=1e-6, abs=0)
