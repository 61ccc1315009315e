"""`MotionGenerator`: a trained model that turns speech into `SmplxMotion`.

A saved model is a folder with `model.safetensors` (weights) and `model.json` (everything else:
configs, MotionSpec, normalisation statistics, versions, training record), so `load_model(path)`
rebuilds it with no flags. Python users and the CLI call the same `generate`.

A model trained on an SSL speech encoder's features (`GeneratorConfig.encoder`, the record of its
stream with the weights' sha256) needs those weights again: `load_model(path, audio_encoder=
"wavlm=DIR")` (or `attach_encoder`) checks the folder's hash against the record. Its speech
features are the mel-path features with the encoder's frames averaged onto the motion grid
appended (`condition_features`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ._version import __version__
from .artifacts import load_tensors, read_json, save_tensors, write_json
from .audio import AudioFeatureConfig, check_speech, resample, speech_features
from .diffusion import SAMPLERS, DiffusionConfig, WindowFuser, noise_to, sample
from .errors import CospeechError
from .models import Condition, DenoiserConfig, build_denoiser
from .models.condition import Stream
from .motion import MotionSpec, Normalizer, SmplxMotion

FORMAT = 1
WEIGHTS = "model.safetensors"
CONFIG = "model.json"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
KEYFRAME_BLEND_S = 1 / 3  # seconds either side of a keyframe over which the motion is eased into it
SEGMENT_WINDOWS = 64  # windows sampled together; longer inputs go segment by segment (bounded memory)
JOINERS = ("fused", "foppas")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'cpu', 'cuda', 'cuda:N' or 'auto' (CUDA when available, else the CPU) -> a torch.device."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise CospeechError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise CospeechError(f"device {device!r} asked for, but this machine has no CUDA device (use cpu or auto)")
    if dev.type not in ("cpu", "cuda"):
        raise CospeechError(f"device {device!r} is not supported; use cpu, cuda, cuda:N or auto")
    return dev


@dataclass(frozen=True)
class SampleOptions:
    """How to turn speech into motion, as one object (the CLI, the library and benchmarks pass it).

    steps, sampler, guidance: None = the model's own (`cospeech info`). seed: 0 … 2**64 - 1; the
    same seed gives the same motion on the same device. speaker: a style the model was trained
    on (None = its default). style: a style vector (S,) for models conditioned on one. device:
    cpu, cuda, cuda:N or auto; dtype: float32, float16 or bfloat16 (of the network's weights
    and activations; the output is float32). joiner: how windows of a long input are joined:
    `fused` denoises up to `SEGMENT_WINDOWS` overlapping windows together and averages their
    overlaps at every step; `foppas` (DiffSHEG's out-painting) denoises one window after the
    other, each with its first `overlap` frames held to the end of the one before at every
    step — what a stream can do, since no window waits for later speech (`Outpainter`;
    `generate` then uses the causal beat flag, so a `StreamSession` fed the same speech gives
    the same motion). jump_length, jump_count: RePaint-style resampling of every sampled window
    (see `diffusion.sample`): smoother joins to held frames (out-painting, keyframes) for
    (1 + jump_count)× the sampling time; 0 jumps (the default) is plain sampling.
    """

    steps: int | None = None
    sampler: str | None = None
    guidance: float | None = None
    seed: int = 0
    speaker: str | None = None
    style: tuple[float, ...] | None = None
    device: str = "cpu"
    dtype: str = "float32"
    joiner: str = "fused"
    jump_length: int = 1
    jump_count: int = 0

    def __post_init__(self):
        if self.steps is not None and (isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1):
            raise CospeechError(f"steps must be a whole number ≥ 1, got {self.steps!r}")
        if self.sampler is not None and self.sampler not in SAMPLERS:
            raise CospeechError(f"unknown sampler {self.sampler!r}; choose from {', '.join(SAMPLERS)}")
        if self.guidance is not None and not (isinstance(self.guidance, (int, float)) and math.isfinite(self.guidance)):
            raise CospeechError(f"guidance must be a finite number, got {self.guidance!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**64:
            raise CospeechError(f"seed must be a whole number from 0 to 2**64 - 1, got {self.seed!r}")
        if self.style is not None:
            object.__setattr__(self, "style", tuple(float(v) for v in self.style))
            if not all(math.isfinite(v) for v in self.style):
                raise CospeechError("style vector must be finite")
        for name, least in (("jump_length", 1), ("jump_count", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < least:
                raise CospeechError(f"{name.replace('_', ' ')} must be a whole number ≥ {least}, got {v!r}")
        if self.jump_count and self.sampler == "dpmsolver":
            raise CospeechError("resampling (jump count > 0) needs the ddim or ddpm sampler; dpmsolver cannot step back")
        if self.joiner not in JOINERS:
            raise CospeechError(f"unknown joiner {self.joiner!r}; choose from {', '.join(JOINERS)}")
        if self.dtype not in DTYPES:
            raise CospeechError(f"unknown dtype {self.dtype!r}; choose from {', '.join(DTYPES)}")
        resolve_device(self.device)

    @classmethod
    def of(cls, options: "SampleOptions | None" = None, **overrides) -> "SampleOptions":
        """`options` with the keyword arguments that are not None replacing its fields."""
        base = options or cls()
        known = {f.name for f in fields(cls)}
        unknown = set(overrides) - known
        if unknown:
            raise TypeError(f"unknown sample options: {sorted(unknown)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        return cls(**{**{f: getattr(base, f) for f in known}, **given}) if given else base


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
    encoder: dict | None = None  # the SSL stream read besides the mel path (`audio.extractors.describe`), or None

    def to_dict(self) -> dict:
        d = {
            "fps": self.fps, "window": self.window, "overlap": self.overlap,
            "speakers": list(self.speakers), "default_speaker": self.default_speaker,
            "origin": list(self.origin), "audio": self.audio.to_dict(), "spec": self.spec.to_dict(),
            "denoiser": self.denoiser.to_dict(), "diffusion": self.diffusion.to_dict(),
        }
        return d if self.encoder is None else {**d, "encoder": dict(self.encoder)}

    @classmethod
    def from_dict(cls, d: dict) -> "GeneratorConfig":
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise CospeechError(f"model settings: unknown setting(s) {', '.join(map(repr, unknown))} "
                                "(written by a newer cospeech?)")
        return cls(
            fps=float(d["fps"]), window=int(d["window"]), overlap=int(d["overlap"]),
            speakers=tuple(d["speakers"]), default_speaker=d["default_speaker"], origin=tuple(d["origin"]),
            audio=AudioFeatureConfig.from_dict(d["audio"]), spec=MotionSpec.from_dict(d["spec"]),
            denoiser=DenoiserConfig.from_dict(d["denoiser"]), diffusion=DiffusionConfig.from_dict(d["diffusion"]),
            encoder=d.get("encoder"),
        )


def grid_stream(feats: np.ndarray, rate: float, start: float, n_frames: int, fps: float) -> np.ndarray:
    """A stream's frames (Ta, C) at `rate` Hz, frame j covering [start + j / rate, ...) seconds,
    averaged onto n_frames motion frames at fps -> (T, C) float32 (`Stream.to_motion_grid`)."""
    # torch.tensor copies: cached arrays are read-only
    s = Stream(torch.tensor(np.asarray(feats, dtype=np.float32))[None], float(rate), float(start))
    return s.to_motion_grid(n_frames, fps)[0].numpy()


def encoder_stream(cache, encoder: dict) -> str:
    """The name of the cache's stream of this encoder record (same kind, settings and weights)."""
    for name, rec in cache.streams.items():
        if rec.get("key") == encoder["key"]:
            return name
    raise CospeechError(f"{cache.root}: holds no {encoder['extractor']} stream of the weights sha256 "
                        f"{encoder['weights_sha256'][:12]}; run `cospeech prepare ... --audio-encoder "
                        f"{encoder['extractor']}=DIR` with that folder first")


def condition_features(cache, take, encoder: dict | None) -> np.ndarray:
    """A cached take's speech features as a model with `encoder` reads them: (T, C) the mel-path
    `audio`, then (with an encoder) its stream's frames on the motion grid, (T, C + C_ssl)."""
    if encoder is None:
        return take.audio
    name = encoder_stream(cache, encoder)
    rec = cache.streams[name]
    offset = take.meta.get("range", (0, 0))[0] / cache.fps  # a segment holds its recording's whole stream
    grid = grid_stream(take.streams[name], rec["rate"], rec["start"] - offset, take.n_frames, cache.fps)
    return np.concatenate([take.audio, grid], axis=1)


class MotionGenerator:
    """A denoiser with the configuration and statistics that make it usable on raw speech."""

    def __init__(self, cfg: GeneratorConfig, denoiser: torch.nn.Module, motion_norm: Normalizer,
                 audio_norm: Normalizer, info: dict | None = None, encoder=None):
        self.cfg = cfg
        self.denoiser = denoiser.eval()
        self.motion_norm = motion_norm
        self.audio_norm = audio_norm
        self.info = info or {}
        self.encoder = None
        if encoder is not None:
            self.attach_encoder(encoder)

    # -- the SSL speech encoder ------------------------------------------------------------
    def attach_encoder(self, encoder) -> None:
        """Give the model the SSL encoder it was trained on: an `audio.extractors.SslEncoder` or
        `KIND=DIR` text. Its kind and weights' sha256 must be the model's."""
        from .audio.extractors import parse_encoder

        enc = parse_encoder(encoder) if isinstance(encoder, str) else encoder
        want = self.cfg.encoder
        if want is None:
            raise CospeechError(f"--audio-encoder {enc.NAME}: this model reads no SSL features (it was trained on the "
                                "mel path); leave --audio-encoder out")
        if enc.NAME != want["extractor"]:
            raise CospeechError(f"--audio-encoder {enc.NAME}: this model was trained on {want['extractor']} features")
        if enc.weights_sha256() != want["weights_sha256"] or enc.config() != want["config"]:
            raise CospeechError(f"{enc.folder}: {enc.NAME} weights (sha256 {enc.weights_sha256()[:12]}, {enc.config()}) "
                                f"differ from those this model was trained with (sha256 {want['weights_sha256'][:12]}, "
                                f"{want['config']}); pass the folder it was trained with")
        self.encoder = enc

    def _encoder_features(self, wave: np.ndarray, sample_rate: int, n_frames: int) -> np.ndarray:
        """The SSL encoder's frames of speech (N,) at sample_rate on the motion grid, (T, C_ssl)."""
        want = self.cfg.encoder
        if self.encoder is None:
            from .audio.extractors import SSL_ENCODERS

            kind = want["extractor"]
            repo = SSL_ENCODERS[kind].REPO if kind in SSL_ENCODERS else kind
            raise CospeechError(f"this model reads {kind} features: pass --audio-encoder {kind}=DIR (Python: "
                                f"audio_encoder=...), DIR holding {repo} (sha256 {want['weights_sha256'][:12]})")
        feats = self.encoder(resample(wave, sample_rate, self.encoder.sample_rate), self.cfg.fps, n_frames)
        return grid_stream(feats, want["rate"], want["start"], n_frames, self.cfg.fps)

    # -- inference -------------------------------------------------------------------------
    def speaker_index(self, speaker: str | None) -> int:
        speaker = speaker if speaker is not None else self.cfg.default_speaker
        if speaker is None:
            return -1
        if speaker not in self.cfg.speakers:
            raise CospeechError(f"unknown speaker {speaker!r}; this model knows: {', '.join(self.cfg.speakers)}")
        return self.cfg.speakers.index(speaker)

    def check_options(self, options: SampleOptions) -> None:
        """Fail before any work on options this model cannot honour."""
        self.speaker_index(options.speaker)
        if options.steps is not None and options.steps > self.cfg.diffusion.train_steps:
            raise CospeechError(f"steps must be ≤ the model's {self.cfg.diffusion.train_steps} training steps, "
                                f"got {options.steps}")
        if options.style is not None:
            dim = getattr(self.denoiser, "style_dim", None)
            if dim is None:
                raise CospeechError("this model takes no style vector (it has no fuzzy style extractor: it was trained "
                                    "with speaker ids only)")
            if len(options.style) != dim:
                raise CospeechError(f"style vector must have this model's {dim} values, got {len(options.style)}")

    def style_tensor(self, options: SampleOptions, rows: int, device, dtype) -> torch.Tensor | None:
        """The options' style vector for `rows` windows, (B, S), or None."""
        if options.style is None:
            return None
        return torch.tensor(options.style, dtype=dtype, device=device)[None].expand(rows, -1)

    @torch.no_grad()
    def style_from(self, wave: np.ndarray, sample_rate: int) -> tuple[float, ...]:
        """The fuzzy extractor's global style vector (S,) of a reference recording (N,) at any rate,
        pooled over all of it: pass it as `style=` to `generate` to take that recording's style
        instead of the speaker's (raises CospeechError for a model without a fuzzy extractor)."""
        if getattr(self.denoiser, "style_dim", None) is None:
            raise CospeechError("--style-from: this model has no fuzzy style extractor (train a dim-gestor preset)")
        audio = torch.as_tensor(self.audio_features(wave, sample_rate), dtype=torch.float32)[None]  # (1, T, C)
        net = self.denoiser.float().cpu()
        return tuple(float(v) for v in net.style_of(audio)[0])

    def audio_features(self, wave: np.ndarray, sample_rate: int, checked: bool = False,
                       causal: bool = False) -> np.ndarray:
        """Mono speech (N,) at any rate -> normalised features (T, C) on this model's grid.

        checked: the speech already passed `check_speech` (e.g. in `load_audio`); not again.
        causal: the beat flag as a stream knows it (`speech_features(causal_beats=True)`).
        """
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise CospeechError(f"expected mono speech of shape (N,), got {wave.shape}")
        if not checked:
            check_speech(wave, sample_rate)
        mel_wave = resample(wave, sample_rate, self.cfg.audio.sample_rate)
        feats = speech_features(mel_wave, self.cfg.fps, cfg=self.cfg.audio, causal_beats=causal)  # (T, C)
        if self.cfg.encoder is not None:
            feats = np.concatenate([feats, self._encoder_features(wave, sample_rate, len(feats))], axis=1)
        return self.audio_norm.normalize(feats)

    def keyframe_targets(self, keyframes: dict[int, SmplxMotion] | None, total: int):
        """Poses to hit -> (frames (K,) int, values (K, D) normalised, weights (K, D) in [0, 1]).

        keyframes: frame index (negative counts from the end: -1 is the last frame) -> a motion
        whose first frame is the pose. Every channel of the parts the pose holds is fixed at the
        keyframe (weight 1), except the root's velocity (the root's path stays the model's); the
        frames within `KEYFRAME_BLEND_S` of it are drawn towards the pose with a raised-cosine
        weight, so the motion eases into the pose instead of jumping.
        """
        radius = max(int(round(KEYFRAME_BLEND_S * self.cfg.fps)), 1)
        ease = 0.5 * (1 + np.cos(np.pi * np.arange(radius) / radius))  # (radius,), 1 at the keyframe
        d = self.cfg.spec.dim
        weight = np.zeros((total, d), dtype=np.float32)
        value = np.zeros((total, d), dtype=np.float32)
        seen = set()
        for frame, pose in (keyframes or {}).items():
            idx = int(frame) + total if int(frame) < 0 else int(frame)
            if not 0 <= idx < total:
                raise CospeechError(f"keyframe {frame} is outside the motion's {total} frames")
            if idx in seen:
                raise CospeechError(f"two keyframes name frame {idx}")
            seen.add(idx)
            target = self.motion_norm.normalize(self.cfg.spec.encode(pose.crop(0, 1)))[0]  # (D,)
            mask = self.cfg.spec.channel_mask(set(pose.parts) - {"root_vel"})  # (D,)
            for offset, w in enumerate(ease):
                for f in {idx - offset, idx + offset}:
                    if 0 <= f < total and w > weight[f][mask].max(initial=0.0):
                        weight[f] = np.where(mask, w, weight[f])
                        value[f] = np.where(mask, target, value[f])
        frames = np.nonzero(weight.any(axis=1))[0]
        return frames, value[frames], weight[frames]

    @torch.no_grad()
    def sample_features(self, audio: np.ndarray, options: SampleOptions | None = None,
                        keyframes: dict[int, SmplxMotion] | None = None,
                        on_step: Callable[[int, int], None] | None = None, **kw) -> np.ndarray:
        """Normalised audio features (T, C) -> denormalised motion features (T, D), float32.

        Up to `SEGMENT_WINDOWS` overlapping windows are denoised together and fused every step.
        Longer inputs are sampled segment by segment, each segment's first `overlap` frames
        held to the end of the previous one at every step (out-painting), so memory stays
        bounded by one segment however long the speech. joiner `foppas`: window after window
        (`Outpainter` with the model's window, overlap and `default_lookahead`). keyframes: poses the
        motion passes through exactly (`keyframe_targets`), imposed the same way. keyword
        arguments: `SampleOptions` fields (seed, speaker, steps, sampler, guidance, device, dtype).
        on_step: called as on_step(done, total) after each denoising step of each segment (the
        fused joiner; a progress bar for long speech), total = segments × (steps + 1), more with resampling.
        """
        opts = SampleOptions.of(options, **kw)
        self.check_options(opts)
        audio_t = torch.as_tensor(np.asarray(audio), dtype=torch.float32)
        total = len(audio_t)
        key_frames, key_values, key_weight = self.keyframe_targets(keyframes, total)
        if opts.joiner == "foppas":
            painter = Outpainter(self, opts, keyframes=(key_frames, key_values, key_weight))
            painter.feed(audio_t)
            out = painter.run(final=True)
        else:
            out = self._sample_fused(audio_t, opts, key_frames, key_values, key_weight, on_step)
        out *= self.motion_norm.std  # denormalised in place: for long speech the largest array alive
        out += self.motion_norm.mean
        return out

    def _sample_fused(self, audio_t: torch.Tensor, opts: SampleOptions, key_frames, key_values, key_weight,
                      on_step: Callable[[int, int], None] | None = None):
        """Normalised audio (T, C) -> normalised motion (T, D), `SEGMENT_WINDOWS` fused windows at a time."""
        device, dtype = resolve_device(opts.device), DTYPES[opts.dtype]
        net = self.denoiser.to(device=device, dtype=dtype)
        generator = torch.Generator().manual_seed(opts.seed)  # on the CPU: the same noise on every device
        total, window = len(audio_t), min(self.cfg.window, len(audio_t))
        stride = max(window - self.cfg.overlap, 1)
        seg_len = window + (SEGMENT_WINDOWS - 1) * stride
        spk = self.speaker_index(opts.speaker)
        out = np.empty((total, self.cfg.spec.dim), dtype=np.float32)
        tick = None
        if on_step is not None:
            steps = opts.steps or self.cfg.diffusion.sample_steps
            ticks = _count_segments(total, seg_len, self.cfg.overlap) * _handovers(steps, opts.jump_length, opts.jump_count)
            done = iter(range(1, ticks + 1))

            def tick() -> None:
                on_step(next(done, ticks), ticks)

        start, keep = 0, 0
        while True:
            stop = min(start + seg_len, total)
            # fixed frames of this segment: the held overlap, then the keyframes inside it
            inside = (key_frames >= start + keep) & (key_frames < stop)
            fixed = (np.concatenate([np.arange(keep), key_frames[inside] - start]),
                     np.concatenate([out[start:start + keep], key_values[inside]]),
                     np.concatenate([np.ones((keep, out.shape[1]), np.float32), key_weight[inside]]))
            seg = self._sample_segment(net, audio_t[start:stop], spk, fixed, opts, generator, device, dtype, tick)
            out[start:stop] = seg.numpy()
            if stop == total:
                break
            keep = min(self.cfg.overlap, stop - start)
            start = stop - keep
        return out

    def _sample_segment(self, net, audio: torch.Tensor, speaker: int, fixed, opts: SampleOptions,
                        generator: torch.Generator, device, dtype, tick: Callable[[], None] | None = None) -> torch.Tensor:
        """Audio (T, C) -> normalised motion (T, D) on the CPU. fixed: (frames (K,), values
        (K, D), weights (K, D)): at every noise level those channels are moved to their values
        (noised to that level) by their weight, 1 = held exactly."""
        fuser = WindowFuser(len(audio), self.cfg.window, self.cfg.overlap)
        windows = fuser.split(audio).to(device, dtype)  # (N, W, C)
        spk = torch.full((fuser.n_windows,), speaker, dtype=torch.long, device=device)
        seq_noise = torch.randn(len(audio), self.cfg.spec.dim, generator=generator)  # (T, D)
        noise = fuser.split(seq_noise).to(device, dtype)  # (N, W, D)
        hook = None
        frames, values, weight = (torch.as_tensor(a) for a in fixed)
        if len(frames):
            values_noise = seq_noise[frames]

            def hook(x: torch.Tensor, t: int, i: int) -> torch.Tensor:
                seq = fuser.merge(x.float().cpu())
                target = noise_to(values, values_noise, t, self.cfg.diffusion)
                seq[frames] = torch.lerp(seq[frames], target, weight)
                return fuser.split(seq).to(device, dtype)

        project = None if hook else _OnCpu(fuser)
        if tick is not None:  # counts the points where the sampler hands over x: the noise, then each step
            inner_hook, inner_project = hook, project
            if inner_hook is not None:
                def hook(x: torch.Tensor, t: int, i: int) -> torch.Tensor:
                    x = inner_hook(x, t, i)
                    tick()
                    return x
            else:
                def project(x: torch.Tensor) -> torch.Tensor:
                    x = inner_project(x)
                    tick()
                    return x
        style = self.style_tensor(opts, fuser.n_windows, device, dtype)
        x = sample(
            net, Condition(windows, spk, style=style), tuple(noise.shape), self.cfg.diffusion, generator,
            steps=opts.steps, sampler=opts.sampler, guidance=opts.guidance,
            project=project, noise=noise, hook=hook,
            jump_length=opts.jump_length, jump_count=opts.jump_count,
        )
        return fuser.merge(x.float().cpu())

    def generate(self, wave: np.ndarray, sample_rate: int, options: SampleOptions | None = None,
                 checked: bool = False, keyframes: dict[int, SmplxMotion] | None = None,
                 on_phase: Callable[[str], None] | None = None, on_step: Callable[[int, int], None] | None = None,
                 **kw) -> SmplxMotion:
        """Speech (N,) float at `sample_rate` -> motion of round(duration × fps) frames.

        options / keyword arguments: see `SampleOptions` (e.g. `generate(wave, sr, seed=0)`).
        checked: the speech was already validated (`load_audio` does). keyframes: frame ->
        pose the motion passes through (see `keyframe_targets`). The `foppas` joiner reads the
        causal beat flag, as a stream does. on_phase: called with the name of each phase as it
        ends, "features", "sampling", "decode" (to time them). on_step: see `sample_features`. A result that is not finite
        everywhere is an error, never returned.
        """
        phase = on_phase or (lambda name: None)
        opts = SampleOptions.of(options, **kw)
        self.check_options(opts)
        audio = self.audio_features(wave, sample_rate, checked, causal=opts.joiner == "foppas")
        phase("features")
        feats = self.sample_features(audio, opts, keyframes, on_step=on_step)
        if not np.isfinite(feats).all():
            raise CospeechError("the model produced non-finite motion (NaN or infinity); "
                                "nothing was written — check the options and the model's weights")
        phase("sampling")
        motion = self.cfg.spec.decode(feats, self.cfg.fps, origin=self.cfg.origin)
        phase("decode")
        return motion

    # -- files -----------------------------------------------------------------------------
    def save(self, folder: str | Path, half: bool = False, info: dict | None = None) -> Path:
        """Write model.safetensors + model.json into `folder` (each file atomically)."""
        folder = Path(folder)
        state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu()
                 for k, v in self.denoiser.state_dict().items()}
        save_tensors(state, folder / WEIGHTS, metadata={"format": "cospeech", "version": __version__})
        meta = {
            "format": FORMAT, "config": self.cfg.to_dict(), "motion_norm": self.motion_norm.to_dict(),
            "audio_norm": self.audio_norm.to_dict(), "info": {**self.info, **(info or {}), "versions": versions()},
        }
        write_json(folder / CONFIG, meta)
        return folder

    @classmethod
    def load(cls, folder: str | Path, audio_encoder=None) -> "MotionGenerator":
        """The model in `folder`; audio_encoder: the SSL encoder it was trained on (`attach_encoder`)."""
        folder = Path(folder)
        meta = read_json(folder / CONFIG, "model config")
        fmt = meta.get("format") if isinstance(meta, dict) else None
        if isinstance(fmt, int) and fmt > FORMAT:
            raise CospeechError(f"{folder}: model format {fmt} was written by a newer cospeech (this one reads "
                                f"format {FORMAT}); upgrade cospeech")
        if fmt != FORMAT:
            raise CospeechError(f"{folder}: not a cospeech model (format {fmt!r}, expected {FORMAT})")
        try:
            cfg = GeneratorConfig.from_dict(meta["config"])
            motion_norm, audio_norm = Normalizer.from_dict(meta["motion_norm"]), Normalizer.from_dict(meta["audio_norm"])
        except (KeyError, TypeError, ValueError) as err:
            raise CospeechError(f"{folder}: damaged model config ({err!r})") from None
        state = load_tensors(folder / WEIGHTS)
        denoiser = build_denoiser(cfg.denoiser)
        try:
            denoiser.load_state_dict({k: v.float() for k, v in state.items()})
        except RuntimeError as err:
            raise CospeechError(f"{folder}: weights do not fit the config ({str(err).splitlines()[0]})") from None
        return cls(cfg, denoiser, motion_norm, audio_norm, meta.get("info", {}), encoder=audio_encoder)


def default_lookahead(cfg: GeneratorConfig) -> int:
    """Look-ahead frames of out-painting when none is asked for: a third of the model's overlap
    (10 frames, 1/3 s, for the bundled model)."""
    return cfg.overlap // 3


class Outpainter:
    """FOPPAS (DiffSHEG's out-painting) over features that arrive in pieces: the core that
    `sample_features(joiner="foppas")` and `streaming.StreamSession` share.

    With e frames emitted, the next window covers frames [max(0, e - overlap), e + stride +
    lookahead): its first min(overlap, e) frames are held to the emitted tail at every step
    (noised to the step's level, exact at the end), it emits frames [e, e + stride), and its
    last `lookahead` frames give those their future context. The next window denoises those
    again, drawn at every step towards this window's values with a weight falling linearly
    from 1 to 0 (the boundary blend): without it the frame after the held tail jumps (on 20 s
    of unseen speech, 4 steps: mean third difference 0.37 at seams against 0.08 within
    windows; 0.075 at seams with it). stride = window - overlap - lookahead ≥ 1. A window is
    denoised as soon as its features are there; `run(final=True)` also denoises the rest as
    one last, shorter window. `overlap` may change between windows (a larger one emits fewer
    frames per window). Defaults: the model's window and overlap, `default_lookahead`.

    Memory: the features and motion of the last `window` frames, whatever the length.
    keyframes: (frames (K,), values (K, D), weights (K, D)) from `keyframe_targets`, held in
    every window that covers them beyond its held tail (offline use).
    Legend: T frames, C audio channels, D motion channels (normalised units throughout).
    """

    def __init__(self, gen: "MotionGenerator", options: SampleOptions, window: int | None = None,
                 overlap: int | None = None, lookahead: int | None = None, keyframes=None):
        gen.check_options(options)
        self.gen, self.opts = gen, options
        self.window = gen.cfg.window if window is None else int(window)
        self.lookahead = default_lookahead(gen.cfg) if lookahead is None else int(lookahead)
        if not 0 <= self.lookahead < self.window <= gen.cfg.window:
            raise CospeechError(f"out-painting needs a window of at most the model's {gen.cfg.window} frames "
                                f"(got {self.window}) longer than its look-ahead (got {self.lookahead} frames)")
        self.overlap = gen.cfg.overlap if overlap is None else overlap
        self.device, self.dtype = resolve_device(options.device), DTYPES[options.dtype]
        self.net = gen.denoiser.to(device=self.device, dtype=self.dtype)
        self.generator = torch.Generator().manual_seed(options.seed)  # on the CPU: the same noise on every device
        self.speaker = gen.speaker_index(options.speaker)
        d = gen.cfg.spec.dim
        empty = np.zeros(0, np.int64), np.zeros((0, d), np.float32), np.zeros((0, d), np.float32)
        self.keyframes = tuple(np.asarray(a) for a in (keyframes or empty))
        self.fed = 0  # feature frames received
        self.emitted = 0  # motion frames given out
        self.windows = 0  # windows denoised
        self._feats = torch.zeros(0, gen.cfg.audio.dim)  # (≤ window + pending, C), frames _at …
        self._tail = np.zeros((0, d), np.float32)  # (≤ window, D), the last frames emitted
        self._ahead = np.zeros((0, d), np.float32)  # (≤ lookahead, D), the last window's frames after them
        self._at = 0

    @property
    def overlap(self) -> int:
        return self._overlap

    @overlap.setter
    def overlap(self, value: int) -> None:
        whole = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
        if not whole or not 0 <= value <= self.window - self.lookahead - 1:
            raise CospeechError(f"overlap must be a whole number from 0 to {self.window - self.lookahead - 1} "
                                f"(window {self.window} - look-ahead {self.lookahead} - 1), got {value!r}")
        self._overlap = int(value)

    @property
    def stride(self) -> int:
        """Frames emitted per window."""
        return self.window - self.overlap - self.lookahead

    def feed(self, feats) -> None:
        """Append normalised audio features (n, C) of the next frames."""
        feats = torch.as_tensor(np.asarray(feats), dtype=torch.float32)
        self._feats = torch.cat([self._feats, feats])
        self.fed += len(feats)

    def run(self, final: bool = False) -> np.ndarray:
        """Denoise every window whose features are there -> the new motion frames (n, D)."""
        out = []
        while True:
            e = self.emitted
            if self.fed - e >= self.stride + self.lookahead:
                stop, emit = e + self.stride + self.lookahead, e + self.stride
            elif final and self.fed > e:
                stop = emit = self.fed
            else:
                break
            out.append(self._window(max(0, e - self.overlap), stop, emit))
        return np.concatenate(out) if out else np.zeros((0, self.gen.cfg.spec.dim), np.float32)

    def _window(self, start: int, stop: int, emit: int) -> np.ndarray:
        e, held = self.emitted, self.emitted - start
        d = self._tail.shape[1]
        # the previous window's look-ahead frames, blended in: weight falling from near 1 to 0
        ahead = self._ahead[: stop - e]
        ramp = np.repeat(1 - np.arange(1, len(ahead) + 1, dtype=np.float32)[:, None] / (len(ahead) + 1), d, axis=1)
        key_frames, key_values, key_weight = self.keyframes
        inside = (key_frames >= e + len(ahead)) & (key_frames < stop)
        fixed = (np.concatenate([np.arange(held + len(ahead)), key_frames[inside] - start]),
                 np.concatenate([self._tail[len(self._tail) - held:], ahead, key_values[inside]]),
                 np.concatenate([np.ones((held, d), np.float32), ramp, key_weight[inside]]))
        seq = self._sample(self._feats[start - self._at: stop - self._at], fixed)  # (stop - start, D)
        new = seq[held: emit - start]
        self._ahead = seq[emit - start:]
        self.emitted, self.windows = emit, self.windows + 1
        self._tail = np.concatenate([self._tail, new])[-self.window:]
        keep_from = max(0, emit - self.window)  # no later window reaches further back
        self._feats, self._at = self._feats[keep_from - self._at:], keep_from
        return new

    def _sample(self, audio: torch.Tensor, fixed) -> np.ndarray:
        """One window: audio (W, C) -> normalised motion (W, D); fixed: (frames (K,), values (K, D),
        weights (K, D)) moved to their values, noised to the current level, at every step."""
        cfg, device, dtype = self.gen.cfg, self.device, self.dtype
        noise = torch.randn(len(audio), cfg.spec.dim, generator=self.generator)  # (W, D)
        frames, values, weight = (torch.as_tensor(a) for a in fixed)
        hook = None
        if len(frames):
            values_noise, weight = noise[frames], weight.to(device, dtype)

            def hook(x: torch.Tensor, t: int, i: int) -> torch.Tensor:
                target = noise_to(values, values_noise, t, cfg.diffusion).to(device, dtype)
                x[0, frames] = torch.lerp(x[0, frames], target, weight)
                return x

        spk = torch.full((1,), self.speaker, dtype=torch.long, device=device)
        style = self.gen.style_tensor(self.opts, 1, device, dtype)
        x = sample(self.net, Condition(audio[None].to(device, dtype), spk, style=style), (1, len(audio), cfg.spec.dim),
                   cfg.diffusion, self.generator, steps=self.opts.steps, sampler=self.opts.sampler,
                   guidance=self.opts.guidance, noise=noise[None].to(device, dtype), hook=hook,
                   jump_length=self.opts.jump_length, jump_count=self.opts.jump_count)
        return x[0].float().cpu().numpy()


def _handovers(steps: int, jump_length: int, jump_count: int) -> int:
    """How often `diffusion.sample` hands x to its hooks: the noise, each step, and with resampling
    each of the (steps - 1) // jump_length jump points `jump_count` times: the renoised x and the
    `jump_length` steps run again."""
    return 1 + steps + (steps - 1) // jump_length * jump_count * (1 + jump_length)


def _count_segments(total: int, seg_len: int, overlap: int) -> int:
    """How many segments `_sample_fused` samples for `total` frames (its loop, without the sampling)."""
    start, n = 0, 1
    while min(start + seg_len, total) != total:
        stop = start + seg_len
        start, n = stop - min(overlap, stop - start), n + 1
    return n


class _OnCpu:
    """Window fusion for windows that may live on another device or dtype: fused on the CPU in
    float32 (exact, and the same on every device), returned where they came from."""

    def __init__(self, fuser: WindowFuser):
        self.fuser = fuser

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.dtype == torch.float32:
            return self.fuser(x)
        return self.fuser(x.float().cpu()).to(x.device, x.dtype)


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


def load_model(path: str | Path | None = None, audio_encoder=None) -> MotionGenerator:
    """Load a model: the bundled default when `path` is None, else a model or run folder.
    audio_encoder: `KIND=DIR` or an `SslEncoder`, for a model trained on SSL features."""
    return MotionGenerator.load(resolve_model_path(path), audio_encoder=audio_encoder)
