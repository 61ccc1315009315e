"""Gaussian diffusion over (B, T, D) motion with `diffusers` schedulers.

Training noises clean motion with the DDPM forward process and regresses ε, x0 or v; sampling
runs DDIM, DDPM or DPM-Solver, with classifier-free guidance. We own the loop (the schedulers'
contract is `step(model_output, t, sample)`), so a `project` hook can overwrite or fuse frames
between steps: that is how long inputs are windowed and, later, how out-painting works.

Every random draw takes the caller's `torch.Generator`: the same seed gives the same motion.
The model is any callable `model(x_t, t, cond, mask) -> (B, T, D)`; `cond` must offer
`dropout(p, generator)`, `with_null()` and `rows(idx)` (see `models.Condition`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Callable

import torch

from ..errors import CospeechError

PREDICTIONS = ("epsilon", "sample", "v_prediction")
SAMPLERS = ("ddim", "ddpm", "dpmsolver")


@dataclass(frozen=True)
class DiffusionConfig:
    prediction: str = "sample"  # what the network predicts: epsilon | sample (x0) | v_prediction
    train_steps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    cond_dropout: float = 0.1  # probability of training a row unconditionally (for guidance)
    velocity_weight: float = 0.0  # weight of the frame-to-frame velocity loss on the predicted x0
    sampler: str = "ddim"
    sample_steps: int = 25
    guidance: float = 1.0  # 1 = plain conditional sampling (one network pass per step)

    def __post_init__(self):
        if self.prediction not in PREDICTIONS:
            raise CospeechError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        if self.sampler not in SAMPLERS:
            raise CospeechError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "DiffusionConfig":
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise CospeechError(f"unknown diffusion settings: {sorted(unknown)}")
        return cls(**d)


def train_scheduler(cfg: DiffusionConfig):
    from diffusers import DDPMScheduler

    return DDPMScheduler(
        num_train_timesteps=cfg.train_steps, beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction, clip_sample=False,
    )


def sample_scheduler(cfg: DiffusionConfig, sampler: str | None = None):
    """A fresh scheduler for sampling, sharing the training noise schedule."""
    sampler = sampler or cfg.sampler
    base = dict(
        num_train_timesteps=cfg.train_steps, beta_schedule=cfg.beta_schedule, prediction_type=cfg.prediction,
    )
    if sampler == "ddim":
        from diffusers import DDIMScheduler

        return DDIMScheduler(**base, clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing")
    if sampler == "ddpm":
        from diffusers import DDPMScheduler

        return DDPMScheduler(**base, clip_sample=False, timestep_spacing="trailing")
    if sampler == "dpmsolver":
        from diffusers import DPMSolverMultistepScheduler

        return DPMSolverMultistepScheduler(**base, timestep_spacing="trailing")
    raise CospeechError(f"unknown sampler {sampler!r}; choose from {', '.join(SAMPLERS)}")


def predicted_x0(pred: torch.Tensor, x_t: torch.Tensor, steps: torch.Tensor, cfg: DiffusionConfig, scheduler) -> torch.Tensor:
    """The clean motion implied by a network output (B, T, D) at diffusion steps (B,)."""
    if cfg.prediction == "sample":
        return pred
    ab = scheduler.alphas_cumprod.to(x_t.device, x_t.dtype)[steps][:, None, None]
    if cfg.prediction == "epsilon":
        return (x_t - (1 - ab).sqrt() * pred) / ab.sqrt()
    return ab.sqrt() * x_t - (1 - ab).sqrt() * pred


def _masked_mse(err: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return (err**2 * weight).sum() / weight.sum().clamp(min=1.0)


def training_loss(
    model, x0: torch.Tensor, cond, cfg: DiffusionConfig, scheduler, generator: torch.Generator,
    mask: torch.Tensor | None = None, channel_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error of the network's target on randomly noised motion, plus (when
    cfg.velocity_weight > 0) the error of the predicted motion's frame-to-frame velocity, which
    suppresses high-frequency jitter (as in MDM's velocity loss).

    x0: (B, T, D) clean normalised motion; mask: (B, T) bool real frames; channel_mask: (B, D)
    bool channels holding real data for each row (others do not count).
    """
    b, t, d = x0.shape
    steps = torch.randint(0, cfg.train_steps, (b,), generator=generator, device=x0.device)
    noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = scheduler.add_noise(x0, noise, steps)
    pred = model(x_t, steps, cond.dropout(cfg.cond_dropout, generator), mask)  # (B, T, D)
    if cfg.prediction == "epsilon":
        target = noise
    elif cfg.prediction == "sample":
        target = x0
    else:
        target = scheduler.get_velocity(x0, noise, steps)
    weight = torch.ones(b, t, d, dtype=x0.dtype, device=x0.device)
    if mask is not None:
        weight = weight * mask[:, :, None]
    if channel_mask is not None:
        weight = weight * channel_mask[:, None, :]
    loss = _masked_mse(pred - target, weight)
    if cfg.velocity_weight > 0 and t > 1:
        x0_hat = predicted_x0(pred, x_t, steps, cfg, scheduler)
        vel_err = x0_hat.diff(dim=1) - x0.diff(dim=1)  # (B, T - 1, D)
        loss = loss + cfg.velocity_weight * _masked_mse(vel_err, weight[:, 1:] * weight[:, :-1])
    return loss


@torch.no_grad()
def sample(
    model, cond, shape: tuple[int, int, int], cfg: DiffusionConfig, generator: torch.Generator,
    steps: int | None = None, sampler: str | None = None, guidance: float | None = None,
    mask: torch.Tensor | None = None, project: Callable[[torch.Tensor], torch.Tensor] | None = None,
    noise: torch.Tensor | None = None, max_batch: int = 64,
) -> torch.Tensor:
    """Draw motion (B, T, D) in normalised units.

    project: applied to the initial noise and after every step (e.g. to fuse overlapping
    windows). noise: the initial sample (B, T, D), drawn from `generator` when None.
    max_batch: rows per network call, bounding memory for many windows.
    """
    steps = steps or cfg.sample_steps
    guidance = cfg.guidance if guidance is None else guidance
    if steps < 1:
        raise CospeechError(f"steps must be ≥ 1, got {steps}")
    sched = sample_scheduler(cfg, sampler)
    sched.set_timesteps(steps)
    device = cond.audio.device
    x = noise if noise is not None else torch.randn(shape, generator=generator, device=device)
    x = x * sched.init_noise_sigma
    if project is not None:
        x = project(x)

    def predict(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = []
        for i in range(0, x_t.shape[0], max_batch):
            rows = slice(i, i + max_batch)
            xb, cb, mb = x_t[rows], cond.rows(rows), None if mask is None else mask[rows]
            tb = torch.full((xb.shape[0],), int(t), device=device, dtype=torch.long)
            if guidance == 1.0:
                out.append(model(xb, tb, cb, mb))
                continue
            both = model(torch.cat([xb, xb]), torch.cat([tb, tb]), cb.with_null(), None if mb is None else torch.cat([mb, mb]))
            c, u = both.chunk(2)
            out.append(u + guidance * (c - u))
        return torch.cat(out)

    for t in sched.timesteps:
        x_in = sched.scale_model_input(x, t)
        x = sched.step(predict(x_in, t), t, x, generator=generator).prev_sample
        if project is not None:
            x = project(x)
    return x
