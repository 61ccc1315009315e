"""Training presets: named, frozen configurations (data, not code branches).

`default` is the bundled model's configuration. Presets of the papers (DiffSHEG, DiffSpeaker,
DiffMotion-v2, DiM-Gestor) are added here as data when their denoisers exist.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..artifacts import config_from_dict
from ..diffusion import DiffusionConfig
from ..errors import CospeechError


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 6000
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup: int = 200  # linear warm-up steps, then cosine decay to `final_lr_ratio` × lr
    final_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    log_every: int = 25
    window: int | None = None  # frames per training window; None = the cache's
    stride: int | None = None  # frames between window starts; None = the cache's
    overlap: int | None = None  # frames shared by windows at generation; None = window // 4

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return config_from_dict(cls, d, "training settings")


@dataclass(frozen=True)
class Preset:
    description: str
    denoiser: dict = field(default_factory=dict)  # DenoiserConfig fields besides the data sizes
    diffusion: DiffusionConfig = DiffusionConfig()
    train: TrainConfig = TrainConfig()


PRESETS: dict[str, Preset] = {
    "default": Preset(
        "the bundled model: AdaLN-Zero transformer, width 192, 4 layers, x0-prediction + velocity loss, DDIM 25",
        denoiser=dict(backbone="transformer", width=192, depth=4, heads=4, dropout=0.1),
        diffusion=DiffusionConfig(prediction="sample", sample_steps=25, velocity_weight=1.0),
        train=TrainConfig(steps=5000, batch_size=24, lr=3e-4, window=120),
    ),
    "tiny": Preset(
        "a small model for tests and quick experiments: width 64, 2 layers",
        denoiser=dict(backbone="transformer", width=64, depth=2, heads=4, dropout=0.0),
        diffusion=DiffusionConfig(prediction="sample", sample_steps=10, velocity_weight=1.0),
        train=TrainConfig(steps=300, batch_size=8, lr=1e-3, warmup=20, checkpoint_every=100, log_every=10, window=60),
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise CospeechError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]
