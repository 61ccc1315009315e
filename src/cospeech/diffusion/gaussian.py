"""Gaussian diffusion over (B, T, D) motion with `diffusers` schedulers.

Training noises clean motion with the DDPM forward process and regresses ε, x0 or v; sampling
runs DDIM, DDPM or DPM-Solver, with classifier-free guidance. We own the loop (the schedulers'
contract is `step(model_output, t, sample)`), so a `project` hook can overwrite or fuse frames
between steps: that is how long inputs are windowed and, later, how out-painting works.

Every random draw takes the caller's `torch.Generator`: the same seed gives the same motion.
The model is any callable `model(x_t, t, cond, mask) -> (B, T, D)` (the `Backbone` protocol);
`cond` must offer `dropout(p, generator)`, `with_null()` and `rows(idx)` (see `models.Condition`).

Legend: B rows (windows), T frames, D motion channels.
"""

from __future__ import annotations

import copy
import functools
import importlib
import math
import sys
from dataclasses import asdict, dataclass
from typing import Callable, Protocol

import numpy as np
import torch

from ..artifacts import config_from_dict
from ..errors import CospeechError

PREDICTIONS = ("epsilon", "sample", "v_prediction")
CLEAN = -1  # the timestep a hook sees once sampling is done: x is clean motion
SAMPLERS = ("ddim", "ddpm", "dpmsolver")


@dataclass(frozen=True)
class DiffusionConfig:
    prediction: str = "sample"  # what the network predicts: epsilon | sample (x0) | v_prediction
    train_steps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    cond_dropout: float = 0.1  # probability of training a row unconditionally (for guidance)
    velocity_weight: float = 0.0  # weight of the frame-to-frame velocity loss on the predicted x0
    accel_weight: float = 0.0  # weight of the acceleration (second difference) loss on the predicted x0
    scaled_derivatives: bool = False  # velocity and acceleration errors per channel in units of the data's own spread
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
        return config_from_dict(cls, d, "diffusion settings")


class Backbone(Protocol):
    """What the diffusion code needs of a denoiser: x_t (B, T, D), t (B,) int64, a condition
    and a frame mask (B, T) bool or None -> the prediction (B, T, D) (ε, x0 or v)."""

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond, mask: torch.Tensor | None) -> torch.Tensor: ...


Hook = Callable[[torch.Tensor, int, int], torch.Tensor]
"""A sampling hook: (x (B, T, D) at noise level t, t, step index) -> x. See `sample`."""


def _scheduler_class(name: str):
    """The `diffusers` scheduler class `name`, imported when first needed (sampling, training).

    diffusers' utilities import `torch._dynamo`, which costs about as much again as `import
    torch`, only to mark model classes for `torch.compile` (`maybe_allow_in_graph`, a no-op when
    the import fails); no scheduler uses it. Unless something loaded it already, it is hidden
    while diffusers loads and importable as usual right after.
    """
    hide = "torch._dynamo" not in sys.modules
    if hide:
        sys.modules["torch._dynamo"] = None  # makes `import torch._dynamo` fail (ImportError)
    try:
        return getattr(importlib.import_module("diffusers.schedulers"), name)
    finally:
        if hide and sys.modules.get("torch._dynamo", False) is None:
            del sys.modules["torch._dynamo"]


def train_scheduler(cfg: DiffusionConfig):
    return _scheduler_class("DDPMScheduler")(
        num_train_timesteps=cfg.train_steps, beta_schedule=cfg.beta_schedule,
        prediction_type=cfg.prediction, clip_sample=False,
    )


def sample_scheduler(cfg: DiffusionConfig, sampler: str | None = None):
    """A fresh scheduler for sampling, sharing the training noise schedule (a copy of one built
    once per config: building one costs ~2 ms, which a stream would pay for every window)."""
    return copy.deepcopy(_scheduler(cfg, sampler or cfg.sampler))


@functools.lru_cache(maxsize=16)
def _scheduler(cfg: DiffusionConfig, sampler: str):
    base = dict(
        num_train_timesteps=cfg.train_steps, beta_schedule=cfg.beta_schedule, prediction_type=cfg.prediction,
    )
    # Where the sampled timesteps sit. "trailing" starts at the last training step (pure noise),
    # right for x0 and v: their x0 estimate is bounded there. An ε-model's x0 estimate is
    # (x_t - √(1-ᾱ) ε̂) / √ᾱ, and this cosine schedule ends at ᾱ = 2.4e-9, so an ε error of 0.01
    # at t = 999 became an x0 error of ~200 (the ε presets' samples reached |z| ~ 100-4000 in
    # normalised units); "leading" starts a stride lower (t = 900 for 10 steps, ᾱ = 0.024), as
    # DDIM's ε codebases do
    spacing = "leading" if cfg.prediction == "epsilon" else "trailing"
    if sampler == "ddim":
        return _scheduler_class("DDIMScheduler")(**base, clip_sample=False, set_alpha_to_one=True,
                                                 timestep_spacing=spacing)
    if sampler == "ddpm":
        return _scheduler_class("DDPMScheduler")(**base, clip_sample=False, timestep_spacing=spacing)
    if sampler == "dpmsolver":
        return _scheduler_class("DPMSolverMultistepScheduler")(**base, timestep_spacing=spacing)
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


def derivative_spread(arrays, channel_masks, floor: float = 1e-3) -> np.ndarray:
    """(2, D) float32: the root-mean-square frame-to-frame velocity (row 0) and acceleration
    (row 1) of each channel over (T_i, D) arrays (normalised motion), counting the arrays whose
    `channel_masks[i]` (D,) holds the channel; at least `floor`.

    What `scaled_derivatives` divides the errors by. Normalised motion has unit spread per
    channel, but not per derivative: on the shared clips the body's and the root orientation's
    accelerations spread 0.02-0.05, the jaw's 0.57. An error of 0.02 per frame is half a real
    acceleration of the body (and, through the skeleton's lever arms, the jerk of real motion
    several times over) but 4 % of the jaw's, and the plain loss weighs them alike.
    """
    dim = len(channel_masks[0])
    sums, counts = np.zeros((2, dim)), np.zeros((2, dim))
    for x, m in zip(arrays, channel_masks):
        x = np.asarray(x, dtype=np.float64)
        for order in (1, 2):
            if len(x) > order:
                d = np.diff(x, order, axis=0)
                sums[order - 1] += (d**2).sum(0) * m
                counts[order - 1] += len(d) * np.asarray(m, dtype=np.float64)
    rms = np.sqrt(sums / np.maximum(counts, 1))
    return np.maximum(rms, floor).astype(np.float32)


def training_loss(
    model, x0: torch.Tensor, cond, cfg: DiffusionConfig, scheduler, generator: torch.Generator,
    mask: torch.Tensor | None = None, channel_mask: torch.Tensor | None = None,
    spread: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error of the network's target on randomly noised motion, plus (when
    cfg.velocity_weight > 0) the error of the predicted motion's frame-to-frame velocity (as in
    MDM's velocity loss) and (cfg.accel_weight > 0) of its acceleration, the second difference:
    frame-to-frame noise weighs 2× in the velocity error and 6× in the acceleration error, while
    smooth motion's second differences are small, so that term is what holds jitter down.

    x0: (B, T, D) clean normalised motion; mask: (B, T) bool real frames; channel_mask: (B, D)
    bool channels holding real data for each row (others do not count); spread: (2, D) the
    data's velocity and acceleration spread per channel (`derivative_spread`), which divides the
    velocity and acceleration errors when cfg.scaled_derivatives is set (required then).
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
    if (cfg.velocity_weight > 0 or cfg.accel_weight > 0) and t > 1:
        x0_hat = predicted_x0(pred, x_t, steps, cfg, scheduler)
        vel_err = x0_hat.diff(dim=1) - x0.diff(dim=1)  # (B, T - 1, D)
        acc_err = vel_err.diff(dim=1)  # (B, T - 2, D)
        if cfg.scaled_derivatives:
            if spread is None or spread.shape != (2, d):
                raise CospeechError(f"scaled_derivatives needs the data's spread (2, {d}) (`derivative_spread`)")
            vel_err, acc_err = vel_err / spread[0].to(vel_err), acc_err / spread[1].to(acc_err)
        vel_w = weight[:, 1:] * weight[:, :-1]  # a difference counts where both its frames do
        if cfg.velocity_weight > 0:
            loss = loss + cfg.velocity_weight * _masked_mse(vel_err, vel_w)
        if cfg.accel_weight > 0 and t > 2:
            loss = loss + cfg.accel_weight * _masked_mse(acc_err, vel_w[:, 1:] * vel_w[:, :-1])
    return loss


@torch.no_grad()
def sample(
    model: Backbone, cond, shape: tuple[int, int, int], cfg: DiffusionConfig, generator: torch.Generator,
    steps: int | None = None, sampler: str | None = None, guidance: float | None = None,
    mask: torch.Tensor | None = None, project: Callable[[torch.Tensor], torch.Tensor] | None = None,
    noise: torch.Tensor | None = None, max_batch: int = 64, hook: Hook | None = None,
    jump_length: int = 1, jump_count: int = 0,
) -> torch.Tensor:
    """Draw motion (B, T, D) in normalised units, on the device and in the dtype of `noise`
    (or of `cond` when `noise` is None).

    hook: called as `x = hook(x, t, i)` on the initial noise (i = 0, t = the first timestep)
    and after every step i = 1 … steps, where x is then at the noise level of timestep t (the
    next one the network sees; `CLEAN` = -1 after the last step). Out-painting and keyframe
    constraints re-impose known frames here, noised to level t (`noise_to`).
    project: a hook that needs no t, applied at the same points (e.g. window fusion); it runs
    before `hook`.
    noise: the initial sample (B, T, D), drawn from `generator` when None.
    max_batch: rows per network call, bounding memory for many windows.
    A model with a `prepare_condition(cond, mask) -> cond` method computes there, once, what it
    derives from the condition alone (DiffSHEG's speech encoder), into `cond.derived`.
    jump_length, jump_count: RePaint's resampling (Lugmayr et al. 2022): after every
    `jump_length` steps, x is noised back up by that many steps with the forward process
    (`renoise`) and those steps are run again, `jump_count` times, so the frames a hook holds
    and the frames the network makes have that many more steps to agree — smoother seams
    for (1 + jump_count)× the network calls. DDIM and DDPM only (DPM-Solver's multistep
    history cannot be rewound).
    """
    steps = cfg.sample_steps if steps is None else steps
    guidance = cfg.guidance if guidance is None else guidance
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise CospeechError(f"steps must be a whole number ≥ 1, got {steps!r}")
    if not math.isfinite(guidance):
        raise CospeechError(f"guidance must be a finite number, got {guidance}")
    if not (isinstance(jump_length, int) and isinstance(jump_count, int) and jump_length >= 1 and jump_count >= 0):
        raise CospeechError(f"jump length must be ≥ 1 and jump count ≥ 0, got {jump_length!r} and {jump_count!r}")
    if jump_count and (sampler or cfg.sampler) == "dpmsolver":
        raise CospeechError("resampling (jump count > 0) needs the ddim or ddpm sampler; dpmsolver cannot step back")
    prepare = getattr(model, "prepare_condition", None)
    if prepare is not None:  # what the network derives from the condition alone, once for all steps
        cond = prepare(cond, mask)
    sched = sample_scheduler(cfg, sampler)
    sched.set_timesteps(steps)
    device = cond.audio.device
    x = noise if noise is not None else torch.randn(shape, generator=generator, device=generator.device).to(device)
    x = x * sched.init_noise_sigma
    timesteps = [int(t) for t in sched.timesteps]
    levels = timesteps[1:] + [CLEAN]

    def after(x_t: torch.Tensor, t: int, i: int) -> torch.Tensor:
        if project is not None:
            x_t = project(x_t)
        if hook is not None:
            x_t = hook(x_t, t, i)
        return x_t

    def predict(x_t: torch.Tensor, t: int) -> torch.Tensor:
        out = []
        for i in range(0, x_t.shape[0], max_batch):
            rows = slice(i, i + max_batch)
            xb, cb, mb = x_t[rows], cond.rows(rows), None if mask is None else mask[rows]
            tb = torch.full((xb.shape[0],), t, device=xb.device, dtype=torch.long)
            if guidance == 1.0:
                out.append(model(xb, tb, cb, mb))
                continue
            both = model(torch.cat([xb, xb]), torch.cat([tb, tb]), cb.with_null(), None if mb is None else torch.cat([mb, mb]))
            c, u = both.chunk(2)
            out.append(u + guidance * (c - u))
        return torch.cat(out)

    x = after(x, timesteps[0], 0)
    jumps = [0] * (len(timesteps) + 1)  # jumps made back from after step i
    i = 0
    while i < len(timesteps):
        t, level = timesteps[i], levels[i]
        x_in = sched.scale_model_input(x, t)
        x = sched.step(predict(x_in, t), t, x, generator=generator).prev_sample
        i += 1
        x = after(x, level, i)
        if jump_count and i % jump_length == 0 and i < len(timesteps) and jumps[i] < jump_count:
            jumps[i] += 1
            i -= jump_length
            x = after(renoise(x, level, timesteps[i], cfg, generator), timesteps[i], i)
    return x


def renoise(x: torch.Tensor, t_from: int, t_to: int, cfg: DiffusionConfig, generator: torch.Generator) -> torch.Tensor:
    """x (…, T, D) at the noise level of timestep t_from -> a draw at the higher level t_to from
    the forward process q(x_to | x_from) = N(√(ᾱ_to / ᾱ_from) x, (1 - ᾱ_to / ᾱ_from) I)."""
    ab = _alphas_cumprod(cfg)
    ratio = float(ab[t_to] / ab[t_from])
    noise = torch.randn(x.shape, generator=generator, device=generator.device).to(x.device, x.dtype)
    return math.sqrt(ratio) * x + math.sqrt(1 - ratio) * noise


def noise_to(x0: torch.Tensor, noise: torch.Tensor, t: int, cfg: DiffusionConfig) -> torch.Tensor:
    """Clean motion x0 (…, T, D) noised to the level of timestep t by the forward process
    (x0 itself when t is `CLEAN`): what a hook imposes on known frames during sampling."""
    if t == CLEAN:
        return x0
    ab = _alphas_cumprod(cfg)[t].to(x0.device, x0.dtype)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


@functools.lru_cache(maxsize=8)
def _alphas_cumprod(cfg: DiffusionConfig) -> torch.Tensor:
    """The forward process's ᾱ (train_steps,), built once per config (a hook asks at every step)."""
    return train_scheduler(cfg).alphas_cumprod
