"""`MotionGenerator`: a trained model that turns speech into `SmplxMotion`.

A saved model is a folder with `model.safetensors` (weights) and `model.json` (everything else:
configs, MotionSpec, normalisation statistics, versions, training record), so `load_model(path)`
rebuilds it with no flags. Python users and the CLI call the same `generate`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .atomic import atomic_path, write_text
from .audio import AudioFeatureConfig, check_speech, resample, speech_features
from .diffusion import DiffusionConfig, WindowFuser, sample
from .errors import CospeechError
from .models import Condition, DenoiserConfig, build_denoiser
from .motion import MotionSpec, Normalizer, SmplxMotion

FORMAT = 1
WEIGHTS = "model.safetensors"
CONFIG = "model.json"


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to rebuild and run a model, stored in `model.json`."""

    fps: float
    window: int  # frames per denoised window (the training window)
    overlap: int  # frames shared by neighbouring windows on long inputs
    speakers: tuple[str, ...]
    default_speaker: str | None
    origin: tuple[float, float, float]  # root translation of the first frame
    audio: AudioFeatureConfig
    spec: MotionSpec
    denoiser: DenoiserConfig
    diffusion: DiffusionConfig

    def to_dict(self) -> dict:
        return {
            "fps": self.fps, "window": self.window, "overlap": self.overlap,
            "speakers": list(self.speakers), "default_speaker": self.default_speaker,
            "origin": list(self.origin), "audio": self.audio.to_dict(), "spec": self.spec.to_dict(),
            "denoiser": self.denoiser.to_dict(), "diffusion": self.diffusion.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        return cls(
            fps=float(d["fps"]), window=int(d["window"]), overlap=int(d["overlap"]),
            speakers=tuple(d["speakers"]), default_speaker=d["default_speaker"], origin=tuple(d["origin"]),
            audio=AudioFeatureConfig.from_dict(d["audio"]), spec=MotionSpec.from_dict(d["spec"]),
            denoiser=DenoiserConfig.from_dict(d["denoiser"]), diffusion=DiffusionConfig.from_dict(d["diffusion"]),
        )


class MotionGenerator:
    """A denoiser with the configuration and statistics that make it usable on raw speech."""

    def __init__(self, cfg: GeneratorConfig, denoiser: torch.nn.Module, motion_norm: Normalizer,
                 audio_norm: Normalizer, info: dict | None = None):
        self.cfg = cfg
        self.denoiser = denoiser.eval()
        self.motion_norm = motion_norm
        self.audio_norm = audio_norm
        self.info = info or {}

    # -- inference -------------------------------------------------------------------------
    def speaker_index(self, speaker: str | None) -> int:
        speaker = speaker if speaker is not None else self.cfg.default_speaker
        if speaker is None:
            return -1
        if speaker not in self.cfg.speakers:
            raise CospeechError(f"unknown speaker {speaker!r}; this model knows: {', '.join(self.cfg.speakers)}")
        return self.cfg.speakers.index(speaker)

    def audio_features(self, wave: np.ndarray, sample_rate: int) -> np.ndarray:
        """Mono speech (N,) at any rate -> normalised features (T, C) on this model's grid."""
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise CospeechError(f"expected mono speech of shape (N,), got {wave.shape}")
        check_speech(wave, sample_rate)
        wave = resample(wave, sample_rate, self.cfg.audio.sample_rate)
        return self.audio_norm.normalize(speech_features(wave, self.cfg.fps, cfg=self.cfg.audio))

    @torch.no_grad()
    def sample_features(
        self, audio: np.ndarray, seed: int = 0, speaker: str | None = None, steps: int | None = None,
        sampler: str | None = None, guidance: float | None = None,
    ) -> np.ndarray:
        """Normalised audio features (T, C) -> denormalised motion features (T, D)."""
        generator = torch.Generator().manual_seed(int(seed))
        audio_t = torch.as_tensor(audio, dtype=torch.float32)
        fuser = WindowFuser(len(audio_t), self.cfg.window, self.cfg.overlap)
        windows = fuser.split(audio_t)  # (N, W, C)
        spk = torch.full((fuser.n_windows,), self.speaker_index(speaker), dtype=torch.long)
        noise = fuser.split(torch.randn(len(audio_t), self.cfg.spec.dim, generator=generator))  # (N, W, D)
        x = sample(
            self.denoiser, Condition(windows, spk), tuple(noise.shape), self.cfg.diffusion, generator,
            steps=steps, sampler=sampler, guidance=guidance, project=fuser, noise=noise,
        )
        return self.motion_norm.denormalize(fuser.merge(x).numpy())

    def generate(
        self, wave: np.ndarray, sample_rate: int, seed: int = 0, speaker: str | None = None,
        steps: int | None = None, sampler: str | None = None, guidance: float | None = None,
    ) -> SmplxMotion:
        """Speech (N,) float at `sample_rate` -> motion of round(duration × fps) frames."""
        feats = self.sample_features(
            self.audio_features(wave, sample_rate), seed=seed, speaker=speaker, steps=steps,
            sampler=sampler, guidance=guidance,
        )
        return self.cfg.spec.decode(feats, self.cfg.fps, origin=self.cfg.origin)

    # -- files -----------------------------------------------------------------------------
    def save(self, folder: str | Path, half: bool = False, info: dict | None = None) -> Path:
        """Write model.safetensors + model.json into `folder` (each file atomically)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: (v.half() if half and v.is_floating_point() else v).contiguous()
                 for k, v in self.denoiser.state_dict().items()}
        with atomic_path(folder / WEIGHTS, suffix=".safetensors") as tmp:
            save_file(state, str(tmp), metadata={"format": "cospeech", "version": __version__})
        meta = {
            "format": FORMAT, "config": self.cfg.to_dict(), "motion_norm": self.motion_norm.to_dict(),
            "audio_norm": self.audio_norm.to_dict(), "info": {**self.info, **(info or {}), "versions": versions()},
        }
        write_text(folder / CONFIG, json.dumps(meta, indent=1))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "MotionGenerator":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            meta = json.loads((folder / CONFIG).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CospeechError(f"{folder / CONFIG}: cannot read model config ({err})") from None
        if meta.get("format") != FORMAT:
            raise CospeechError(f"{folder}: model format {meta.get('format')} is not {FORMAT}")
        try:
            cfg = GeneratorConfig.from_dict(meta["config"])
            state = load_file(str(folder / WEIGHTS))
        except (KeyError, TypeError, OSError, SafetensorError) as err:
            raise CospeechError(f"{folder}: damaged model ({err})") from None
        denoiser = build_denoiser(cfg.denoiser)
        try:
            denoiser.load_state_dict({k: v.float() for k, v in state.items()})
        except RuntimeError as err:
            raise CospeechError(f"{folder}: weights do not fit the config ({str(err).splitlines()[0]})") from None
        return cls(cfg, denoiser, Normalizer.from_dict(meta["motion_norm"]),
                   Normalizer.from_dict(meta["audio_norm"]), meta.get("info", {}))


def versions() -> dict:
    import diffusers

    return {"cospeech": __version__, "torch": torch.__version__, "diffusers": diffusers.__version__,
            "numpy": np.__version__}


def bundled_model_path() -> Path:
    return Path(str(resources.files("cospeech") / "assets" / "default_model"))


def resolve_model_path(path: str | Path | None) -> Path:
    """A model folder from: None (the bundled model), a model folder, a model.safetensors file,
    or a training run folder (its latest checkpoint)."""
    if path is None:
        folder = bundled_model_path()
        if not (folder / CONFIG).exists():
            raise CospeechError("the bundled model is missing from this installation")
        return folder
    p = Path(path)
    if not p.exists():
        raise CospeechError(f"{p}: no such model file or folder")
    if p.is_file():
        if p.suffix != ".safetensors" or not (p.parent / CONFIG).exists():
            raise CospeechError(f"{p}: expected a model.safetensors with model.json beside it")
        return p.parent
    if (p / CONFIG).exists():
        return p
    ckpts = sorted((p / "checkpoints").glob("step-*/" + CONFIG)) if (p / "checkpoints").is_dir() else []
    if ckpts:
        return ckpts[-1].parent
    raise CospeechError(f"{p}: neither a model folder (model.json) nor a training run with checkpoints")


def load_model(path: str | Path | None = None) -> MotionGenerator:
    """Load a model: the bundled default when `path` is None, else a model or run folder."""
    return MotionGenerator.load(resolve_model_path(path))
