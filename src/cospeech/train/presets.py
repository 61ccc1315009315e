"""Training presets: named, frozen configurations (data, not code branches).

`default` is the bundled model's configuration. Presets of the papers (DiffSHEG, DiffSpeaker,
DiffMotion-v2, DiM-Gestor) are data too, each with a `-tiny` variant for tests. A preset's
`encoder` names the SSL speech encoder it wants (`audio.extractors.SSL_ENCODERS`); without those
weights it trains on the mel path and says so.

`Preset.override({"diffusion.prediction": "epsilon", "denoiser.dropout": 0.2})` returns a
preset with fields of its sections (`train`, `diffusion`, `denoiser`) replaced: the experiment
knob behind `--set key=value`. An unknown key is an error, and text values are read as their
field's type.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping

from ..artifacts import config_from_dict
from ..diffusion import DiffusionConfig
from ..errors import CospeechError
from ..models import DenoiserConfig


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
    grad_accum: int = 1  # forward/backward passes per optimiser step; the batch (global) is split over them
    mirror: bool = False  # draw each window as recorded or as its left-right mirror image (`motion.mirror`)

    def __post_init__(self):
        least = {"steps": 1, "batch_size": 1, "warmup": 0, "checkpoint_every": 1, "keep_checkpoints": 0, "log_every": 1,
                 "grad_accum": 1, "window": 2, "stride": 1, "overlap": 0}
        for name, low in least.items():
            value = getattr(self, name)
            if value is None and name in ("window", "stride", "overlap"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise CospeechError(f"training {name.replace('_', ' ')} must be a whole number ≥ {low}, got {value!r}")
        if not (isinstance(self.lr, (int, float)) and self.lr > 0 and math.isfinite(self.lr)):
            raise CospeechError(f"training learning rate must be a positive number, got {self.lr!r}")

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
    paper: str = ""  # the paper the preset follows, "" for our own
    parts: tuple[str, ...] | None = None  # the motion parts the model generates (None: all the cache holds)
    encoder: str | None = None  # the SSL speech encoder it wants (hubert, wavlm, wav2vec2), None = the mel path

    def override(self, settings: Mapping[str, Any]) -> "Preset":
        """This preset with `section.field` settings replaced (sections: train, diffusion,
        denoiser); a text value is read as the field's type ("0.2" -> 0.2, "none" -> None)."""
        sections = {"train": asdict(self.train), "diffusion": asdict(self.diffusion), "denoiser": dict(self.denoiser)}
        for key, value in typed_settings(settings).items():
            section, _, name = key.partition(".")
            sections[section][name] = value
        try:
            return replace(self, train=TrainConfig(**sections["train"]), diffusion=DiffusionConfig(**sections["diffusion"]),
                           denoiser=sections["denoiser"])
        except CospeechError as err:
            raise CospeechError(f"--set: {err}") from None


def _field_types(cls, skip=()) -> dict[str, str]:
    return {f.name: f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
            for f in dataclasses.fields(cls) if f.name not in skip}


# section -> field -> its type as written; the denoiser's data sizes come from the cache, not a preset
SETTABLE = {
    "train": _field_types(TrainConfig),
    "diffusion": _field_types(DiffusionConfig),
    "denoiser": _field_types(DenoiserConfig, skip=("motion_dim", "audio_dim", "n_speakers", "motion_parts")),
}


def typed_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """`section.field` -> value, each key checked and each text value read as its field's type."""
    out = {}
    for key, value in settings.items():
        section, _, name = key.partition(".")
        if section not in SETTABLE:
            raise CospeechError(f"--set {key}: unknown setting; keys start with {', '.join(SETTABLE)}")
        if name not in SETTABLE[section]:
            raise CospeechError(f"--set {key}: unknown setting; {section} has {', '.join(SETTABLE[section])}")
        out[key] = _value(key, value, SETTABLE[section][name])
    return out


def _value(key: str, value, type_name: str):
    """`value` as the field type `type_name` (int, float, str, bool, dict, or X | None): text is
    read, an int given for a float becomes a float (so 2 and 2.0 are one setting)."""
    options = [t.strip() for t in type_name.split("|")]
    if not isinstance(value, str):
        return float(value) if options[0] == "float" and type(value) is int else value
    text = value
    if "None" in options and text.strip().lower() in ("none", "null"):
        return None
    base = options[0]
    try:
        if base == "int":
            return int(text)
        if base == "float":
            return float(text)
        if base == "bool":
            return {"true": True, "false": False}[text.strip().lower()]
        if base == "dict":
            value = json.loads(text)
            if not isinstance(value, dict):
                raise ValueError
            return value
    except (ValueError, KeyError):
        raise CospeechError(f"--set {key}={text}: not a valid {type_name}") from None
    return text


def parse_settings(items) -> dict[str, str]:
    """`["diffusion.prediction=epsilon", ...]` -> {"diffusion.prediction": "epsilon", ...} (checked by `Preset.override`)."""
    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CospeechError(f"--set {item}: expected key=value, e.g. diffusion.prediction=epsilon")
        out[key.strip()] = value.strip()
    return out


PRESETS: dict[str, Preset] = {
    "default": Preset(
        "the bundled model: AdaLN-Zero transformer, width 192, 4 layers, speech low-passed to 6 Hz, x0-prediction "
        "+ velocity and acceleration losses in units of the data's own spread per channel, DDIM 25",
        denoiser=dict(backbone="transformer", width=192, depth=4, heads=4, dropout=0.1, audio_smooth=5),
        diffusion=DiffusionConfig(prediction="sample", sample_steps=25, velocity_weight=1.0, accel_weight=0.2,
                                  scaled_derivatives=True),
        train=TrainConfig(steps=2500, batch_size=24, lr=3e-4, window=120),
    ),
    "tiny": Preset(
        "a small model for tests and quick experiments: width 64, 2 layers",
        denoiser=dict(backbone="transformer", width=64, depth=2, heads=4, dropout=0.0),
        diffusion=DiffusionConfig(prediction="sample", sample_steps=10, velocity_weight=1.0),
        train=TrainConfig(steps=300, batch_size=8, lr=1e-3, warmup=20, checkpoint_every=100, log_every=10, window=60),
    ),
    # DiffSpeaker (paper sizes: its VOCASET configuration). Face only: the model generates jaw and
    # expression; the body of its output is the SMPL-X rest pose. Its speech encoder (HuBERT, one of
    # the paper's two) is the cache's SSL stream, its frames averaged onto each motion frame beside the
    # mel features (so frame i's window holds the SSL frames of its interval); without it, the mel path.
    "diffspeaker": Preset(
        "face only (jaw + expression): biased conditional attention (style and step tokens prepended to self- and "
        "cross-attention, each frame attends to its own speech only), width 512, 1 layer, x0-prediction, DDIM 50",
        denoiser=dict(backbone="diffspeaker", width=512, depth=1, heads=4, mlp_ratio=2.0, dropout=0.1,
                      mixer=dict(period=30, align_radius=0)),
        diffusion=DiffusionConfig(prediction="sample", sample_steps=50, velocity_weight=1.0, cond_dropout=0.0),
        train=TrainConfig(steps=5000, batch_size=32, lr=1e-4, window=150),
        encoder="hubert", paper="DiffSpeaker (arXiv 2402.05712)", parts=("jaw", "expression"),
    ),
    "diffspeaker-tiny": Preset(
        "diffspeaker for tests: width 64, 1 layer, DDIM 10",
        denoiser=dict(backbone="diffspeaker", width=64, depth=1, heads=4, mlp_ratio=2.0, dropout=0.0,
                      mixer=dict(period=30, align_radius=0)),
        diffusion=DiffusionConfig(prediction="sample", sample_steps=10, velocity_weight=1.0, cond_dropout=0.0),
        train=TrainConfig(steps=300, batch_size=8, lr=2e-3, warmup=20, checkpoint_every=100, log_every=10, window=60),
        encoder="hubert", paper="DiffSpeaker (arXiv 2402.05712)", parts=("jaw", "expression"),
    ),
    # DiffSHEG (paper sizes; its SHOW window, 88 frames at 30 fps). Its HuBERT stream joins the mel
    # features in the shared speech encoder (the cache's SSL stream; without it, the mel path).
    "diffsheg": Preset(
        "joint expression + gesture, UniEG: the expression branch's prediction, detached, conditions the gesture "
        "branch; shared mid-level speech transformer; AdaIN style blocks (person id + step); 8 layers, width 512, "
        "8 heads, epsilon-prediction, DDIM 25",
        denoiser=dict(backbone="diffsheg", width=512, depth=8, heads=8, mlp_ratio=2.0, dropout=0.1,
                      mixer=dict(face=["jaw", "expression"], audio_layers=2)),
        diffusion=DiffusionConfig(prediction="epsilon", sample_steps=25, cond_dropout=0.0),
        train=TrainConfig(steps=5000, batch_size=32, lr=3e-4, window=88),
        encoder="hubert", paper="DiffSHEG (arXiv 2401.04747)",
    ),
    "diffsheg-tiny": Preset(
        "diffsheg for tests: width 64, 2 layers per branch, 1 speech layer, x0-prediction (a width-64 branch cannot "
        "carry 300 channels of noise through, which epsilon needs), DDIM 10",
        denoiser=dict(backbone="diffsheg", width=64, depth=2, heads=4, mlp_ratio=2.0, dropout=0.0,
                      mixer=dict(face=["jaw", "expression"], audio_layers=1)),
        diffusion=DiffusionConfig(prediction="sample", sample_steps=10, velocity_weight=1.0, cond_dropout=0.0),
        train=TrainConfig(steps=300, batch_size=8, lr=2e-3, warmup=20, checkpoint_every=100, log_every=10, window=60),
        encoder="hubert", paper="DiffSHEG (arXiv 2401.04747)",
    ),
    # DiffMotion-v2 (arXiv 2308.05995): WavLM Base+ features -> AdaLN transformer with causal attention, full body,
    # epsilon-prediction, plain MSE (no velocity loss). The paper's sizes are not in our notes: width 256, 8 layers and
    # 8 heads are ours. `causal` also makes the audio convolution read past frames only (and forbids the low-pass).
    "diffmotion-v2": Preset(
        "DiffMotion-v2: WavLM features -> AdaLN transformer with causal attention, width 256, 8 layers, "
        "epsilon-prediction, DDIM 25",
        denoiser=dict(backbone="transformer", width=256, depth=8, heads=8, dropout=0.1, causal=True, x_skip=True),
        diffusion=DiffusionConfig(prediction="epsilon", sample_steps=25),
        train=TrainConfig(steps=4000, batch_size=24, lr=2e-4, window=120),
        encoder="wavlm", paper="DiffMotion-v2 (arXiv 2308.05995)",
    ),
    "diffmotion-v2-tiny": Preset(
        "DiffMotion-v2 for tests: causal transformer, width 64, 2 layers, epsilon-prediction",
        denoiser=dict(backbone="transformer", width=64, depth=2, heads=4, dropout=0.0, causal=True, x_skip=True),
        diffusion=DiffusionConfig(prediction="epsilon", sample_steps=10),
        train=TrainConfig(steps=300, batch_size=8, lr=1e-3, warmup=20, checkpoint_every=100, log_every=10, window=60),
        encoder="wavlm", paper="DiffMotion-v2 (arXiv 2308.05995)",
    ),
    # DiM-Gestor (arXiv 2411.16729; no public code): AdaLN Mamba-2 blocks (our one-directional mixer) and the fuzzy
    # feature extractor (`models/fuzzy.py`, where each choice the paper leaves open is written down). 12 blocks as
    # its transformer twin (PG-12blocks); width 256 and epsilon-prediction (as DiffMotion-v2, the same group's model)
    # are ours. The paper runs its extractor on a Chinese pre-trained speech model; WavLM Base+ stands in here.
    "dim-gestor": Preset(
        "DiM-Gestor: AdaLN Mamba-2, width 256, 12 blocks, fuzzy style extractor (Mamba-2 over WavLM features, "
        "no speaker label), epsilon-prediction, DDIM 25",
        denoiser=dict(backbone="mamba2", width=256, depth=12, dropout=0.1, fuzzy=dict(width=128, depth=2), x_skip=True),
        diffusion=DiffusionConfig(prediction="epsilon", sample_steps=25),
        train=TrainConfig(steps=4000, batch_size=24, lr=2e-4, window=120),
        encoder="wavlm", paper="DiM-Gestor (arXiv 2411.16729)",
    ),
    "dim-gestor-tiny": Preset(
        "DiM-Gestor for tests: AdaLN Mamba-2, width 64, 2 blocks, fuzzy extractor of width 32",
        denoiser=dict(backbone="mamba2", width=64, depth=2, dropout=0.0,
                      mixer=dict(d_state=16, head_dim=16, chunk=32, piece=64), fuzzy=dict(width=32, depth=1), x_skip=True),
        diffusion=DiffusionConfig(prediction="epsilon", sample_steps=10),
        train=TrainConfig(steps=300, batch_size=8, lr=1e-3, warmup=20, checkpoint_every=100, log_every=10, window=60),
        encoder="wavlm", paper="DiM-Gestor (arXiv 2411.16729)",
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise CospeechError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name]


# -- the catalogue (`cospeech presets`) ------------------------------------------------------
CATALOGUE_SPEAKERS = 30  # BEAT2's speakers: the speaker table a parameter count assumes


def denoiser_config(name: str, spec=None, audio_dim: int | None = None,
                    n_speakers: int = CATALOGUE_SPEAKERS) -> DenoiserConfig:
    """The denoiser of preset `name` for a motion spec (default: the SMPL-X + FLAME spec, cut to
    the preset's parts), speech features of `audio_dim` channels (default: the cache's) and
    `n_speakers` speakers: what training on such a cache builds."""
    from ..audio import AudioFeatureConfig
    from ..motion import smplx_flame_spec

    p = get_preset(name)
    spec = spec or smplx_flame_spec()
    if p.parts:
        spec, _ = spec.select(p.parts)
    return DenoiserConfig(motion_dim=spec.dim, audio_dim=audio_dim or AudioFeatureConfig().dim, n_speakers=n_speakers,
                          motion_parts={q.name: q.dim for q in spec.parts}, **p.denoiser)


def catalogue() -> list[dict]:
    """One row per preset: its paper, parameter count (its denoiser built for the SMPL-X + FLAME
    spec, the default speech features and `CATALOGUE_SPEAKERS` speakers) and key defaults."""
    from ..models import build_denoiser

    rows = []
    for name, p in PRESETS.items():
        den = denoiser_config(name)
        params = sum(t.numel() for t in build_denoiser(den).parameters())
        rows.append({
            "preset": name, "paper": p.paper or "-", "params": params, "backbone": den.backbone, "width": den.width,
            "depth": den.depth, "heads": den.heads, "prediction": p.diffusion.prediction, "sampler": p.diffusion.sampler,
            "sample_steps": p.diffusion.sample_steps, "window": p.train.window, "motion": f"{den.motion_dim} channels"
            + (f" ({', '.join(p.parts)})" if p.parts else ""), "description": p.description,
            "encoder": p.encoder,
        })
    return rows
