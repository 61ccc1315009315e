"""Per-channel normalisation statistics, fitted only where data is real."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True, eq=False)
class Normalizer:
    """x_norm = (x - mean) / std, per channel. mean, std: (D,) float32."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, arrays, masks=None, min_std: float = 1e-4) -> "Normalizer":
        """Statistics over a list of (T_i, D) arrays; masks: optional (D,) bool per array, True
        where that array's channel holds real data (channels never real get mean 0, std 1)."""
        d = arrays[0].shape[1]
        total = np.zeros(d)
        total_sq = np.zeros(d)
        count = np.zeros(d)
        for i, a in enumerate(arrays):
            a = np.asarray(a, dtype=np.float64)
            m = np.ones(d, dtype=bool) if masks is None else np.asarray(masks[i], dtype=bool)
            total += np.where(m, a.sum(0), 0.0)
            total_sq += np.where(m, (a * a).sum(0), 0.0)
            count += np.where(m, len(a), 0)
        seen = count > 0
        mean = np.where(seen, total / np.maximum(count, 1), 0.0)
        var = np.where(seen, total_sq / np.maximum(count, 1) - mean**2, 1.0)
        std = np.maximum(np.sqrt(np.maximum(var, 0.0)), min_std)
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def _stats(self, x):
        if isinstance(x, torch.Tensor):
            return (torch.as_tensor(self.mean, dtype=x.dtype, device=x.device),
                    torch.as_tensor(self.std, dtype=x.dtype, device=x.device))
        return self.mean, self.std

    def normalize(self, x):
        """(..., D) numpy or torch -> same type."""
        mean, std = self._stats(x)
        return (x - mean) / std

    def denormalize(self, x):
        mean, std = self._stats(x)
        return x * std + mean

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Normalizer":
        return cls(np.asarray(d["mean"], dtype=np.float32), np.asarray(d["std"], dtype=np.float32))
