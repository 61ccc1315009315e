"""Exponential moving average of weights.

Written here rather than with `torch.optim.swa_utils.AveragedModel` because we want the usual
warm-up of the decay (min(decay, (1 + n) / (10 + n))), which short CPU runs need so that early
EMA weights are not dominated by the random initialisation.
"""

from __future__ import annotations

import copy

import torch


class Ema:
    def __init__(self, model: torch.nn.Module, decay: float):
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.updates = 0

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for e, p in zip(self.model.state_dict().values(), model.state_dict().values()):
            if e.dtype.is_floating_point:
                e.lerp_(p, 1.0 - d)
            else:
                e.copy_(p)
