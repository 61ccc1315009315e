"""Fréchet distance between Gaussians fitted to feature sets (FID-style FGD / FED / FMD).

    FD = |μ1 − μ2|² + tr(Σ1) + tr(Σ2) − 2 tr((Σ1^½ Σ2 Σ1^½)^½)

tr((Σ1^½ Σ2 Σ1^½)^½) is the sum of the singular values of Σ2^½ Σ1^½ (because
Σ1^½ Σ2 Σ1^½ = (Σ2^½ Σ1^½)ᵀ (Σ2^½ Σ1^½)), with each square root from a symmetric eigen-
decomposition whose round-off eigenvalues are set to zero. Unlike `scipy.linalg.sqrtm(Σ1 Σ2)`
— the usual implementation — this never produces complex values or NaN, and stays accurate,
when covariances are singular, as they are whenever there are fewer clips than feature
dimensions.
"""

from __future__ import annotations

import numpy as np


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features (N, C) -> mean (C,), covariance (C, C) (unbiased; zeros for N = 1)."""
    x = np.asarray(features, dtype=np.float64)
    assert x.ndim == 2 and len(x) >= 1, f"expected (N, C) features, got {x.shape}"
    mu = x.mean(0)
    cov = np.cov(x, rowvar=False) if len(x) > 1 else np.zeros((x.shape[1], x.shape[1]))
    return mu, np.atleast_2d(cov)


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    noise = max(float(np.abs(w).max()), 1e-300) * len(w) * np.finfo(np.float64).eps
    return (v * np.sqrt(np.where(w > noise, w, 0.0))) @ v.T


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """Fréchet distance between N(mu1, cov1) and N(mu2, cov2); ≥ 0, finite for singular covariances."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    tr_sqrt = np.linalg.svd(_psd_sqrt(cov2) @ _psd_sqrt(cov1), compute_uv=False).sum()
    fd = float(((mu1 - mu2) ** 2).sum() + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt)
    return max(fd, 0.0)


def frechet_distance_of(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets (N, C), (M, C)."""
    return frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
