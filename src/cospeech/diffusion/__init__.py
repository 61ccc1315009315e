"""Diffusion: training loss, samplers over diffusers schedulers, window fusion for long inputs."""

from .gaussian import PREDICTIONS, SAMPLERS, DiffusionConfig, sample, sample_scheduler, train_scheduler, training_loss
from .windows import WindowFuser, window_starts

__all__ = [
    "PREDICTIONS", "SAMPLERS", "DiffusionConfig", "WindowFuser", "sample", "sample_scheduler",
    "train_scheduler", "training_loss", "window_starts",
]
