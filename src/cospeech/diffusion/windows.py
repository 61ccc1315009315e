"""Sampling sequences longer than the training window: overlapping windows, fused every step.

All windows are denoised as one batch; after each step the overlapping frames of neighbouring
windows are replaced by their weighted average (weights ramp down towards each window's edges),
so the windows agree on one trajectory and the joins are smooth. The starting noise is drawn
once for the whole sequence and cut into windows, so overlaps start consistent too.
"""

from __future__ import annotations

import torch


def window_starts(total: int, window: int, overlap: int) -> list[int]:
    """Start frames of windows of `window` frames covering [0, total) with ≥ `overlap` shared."""
    if total <= window:
        return [0]
    stride = max(window - overlap, 1)
    starts = list(range(0, total - window + 1, stride))
    if starts[-1] != total - window:
        starts.append(total - window)
    return starts


class WindowFuser:
    """Cuts a (T, D) sequence into (N, W, D) windows and fuses them back.

    Call it on (N, W, D) to get windows that agree on their overlaps (the `project` hook of
    `diffusion.sample`).
    """

    def __init__(self, total: int, window: int, overlap: int):
        self.total = total
        self.window = min(window, total)
        self.starts = window_starts(total, self.window, overlap)
        ramp = torch.arange(1, self.window + 1, dtype=torch.float32)
        edge = float(max(overlap, 1) + 1)
        self.weight = torch.minimum(torch.ones(self.window), torch.minimum(ramp, ramp.flip(0)) / edge)  # (W,)
        idx = torch.tensor(self.starts)[:, None] + torch.arange(self.window)[None]  # (N, W)
        self.index = idx

    @property
    def n_windows(self) -> int:
        return len(self.starts)

    def split(self, seq: torch.Tensor) -> torch.Tensor:
        """(T, ...) -> (N, W, ...)."""
        return seq[self.index]

    def merge(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, W, D) -> (T, D), the weighted average of every window covering each frame."""
        d = windows.shape[-1]
        w = self.weight.to(windows.dtype)[None, :, None].expand(len(self.starts), -1, 1)  # (N, W, 1)
        num = torch.zeros(self.total, d, dtype=windows.dtype).index_add_(0, self.index.reshape(-1), (windows * w).reshape(-1, d))
        den = torch.zeros(self.total, 1, dtype=windows.dtype).index_add_(0, self.index.reshape(-1), w.reshape(-1, 1))
        return num / den

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        return self.split(self.merge(windows))
