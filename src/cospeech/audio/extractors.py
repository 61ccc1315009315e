"""Feature extractors: the named speech feature streams a cache can hold, registered in one place.

An extractor is a frozen dataclass (its fields are its configuration) with
  NAME                 registry name, stored in cache indexes;
  sample_rate          the rate it wants speech at;
  rate, start          its frames: frame j covers [start + j / rate, start + (j + 1) / rate)
                       seconds; rate None = on the motion grid (one frame per motion frame);
  dim                  channels per frame;
  weights_sha256()     a hash of learned weights (None for hand-crafted features);
  __call__(wave, fps, n_frames) -> (Ta, C) float32, from mono speech (N,) at sample_rate for a
                       take of n_frames motion frames at fps.
A new stream is one class here and one line in EXTRACTORS; `cospeech.data.prepare` caches each
stream per take under `stream_key`, so adding one computes only that stream.

Self-supervised speech encoders (HuBERT, WavLM, wav2vec2 through `transformers`) load from a
local folder only (`from_pretrained(folder, local_files_only=True)`; nothing is downloaded):
`ssl_encoder("wavlm", folder)` checks the folder and hashes its files, and the hash is their
`weights_sha256`, so a stream (and a model trained on it) names the exact weights.

Legend: N samples, Ta frames of a stream, T motion frames, C channels.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import CospeechError
from .features import AudioFeatureConfig, speech_features
from .io import SAMPLE_RATE


@dataclass(frozen=True)
class SpeechFeatures:
    """Log-mel, MFCC, onset strength, log energy and beat flag averaged onto the motion grid:
    the `audio` every model reads today (`audio.speech_features`)."""

    NAME: ClassVar[str] = "speech"
    cfg: AudioFeatureConfig = AudioFeatureConfig()
    rate: ClassVar[None] = None
    start: ClassVar[float] = 0.0

    @property
    def sample_rate(self) -> int:
        return self.cfg.sample_rate

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def config(self) -> dict:
        return self.cfg.to_dict()

    @classmethod
    def from_config(cls, d: dict) -> "SpeechFeatures":
        return cls(AudioFeatureConfig.from_dict(d))

    def weights_sha256(self) -> str | None:
        return None

    def __call__(self, wave: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
        return speech_features(wave, fps, n_frames=n_frames, cfg=self.cfg)  # (T, C)


@dataclass(frozen=True)
class LogMel:
    """Log-mel spectrogram at its own hop rate (100 Hz by default), librosa's centred frames."""

    NAME: ClassVar[str] = "logmel"
    sample_rate: int = SAMPLE_RATE
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 80

    @property
    def rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def start(self) -> float:
        return -0.5 / self.rate  # centred: frame j is centred on j hops

    @property
    def dim(self) -> int:
        return self.n_mels

    def config(self) -> dict:
        return asdict(self)

    @classmethod
    def from_config(cls, d: dict) -> "LogMel":
        return cls(**d)

    def weights_sha256(self) -> str | None:
        return None

    def __call__(self, wave: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
        import librosa

        mel = librosa.feature.melspectrogram(
            y=wave, sr=self.sample_rate, n_fft=self.n_fft, hop_length=self.hop_length,
            win_length=self.win_length, n_mels=self.n_mels, center=True,
        )
        return librosa.power_to_db(mel, ref=1.0, amin=1e-10, top_db=None).T.astype(np.float32)  # (Ta, C)


@dataclass(frozen=True)
class SslEncoder:
    """Hidden states of a self-supervised speech encoder: one frame per conv-stride hop (20 ms for
    the base models), frame j starting at j / rate seconds. Built by `ssl_encoder(kind, folder)`;
    rate, dim and sha256 come from the folder (`config.json` and a hash of its files).

    layer: which hidden state (-1 = the last layer's output, 0 = the CNN features' projection).
    The whole recording goes through the encoder at once (attention spans the recording).
    """

    NAME: ClassVar[str] = ""
    REPO: ClassVar[str] = ""  # a Hugging Face repository with weights of the kind (what to download)
    MODEL_TYPES: ClassVar[tuple[str, ...]] = ()  # `model_type` values in config.json of this kind
    folder: str
    layer: int = -1
    rate: float = 50.0
    dim: int = 768
    sha256: str = ""
    sample_rate: int = 16_000
    normalize: bool = True  # zero mean, unit variance per recording (the feature extractor's do_normalize)
    start: ClassVar[float] = 0.0
    _model: list = field(default_factory=list, compare=False, repr=False)  # the loaded network, once

    def config(self) -> dict:
        return {"layer": self.layer, "normalize": self.normalize}

    @classmethod
    def from_record(cls, record: dict) -> "SslEncoder":
        """The encoder a `describe` record names (its folder need not exist until features are computed)."""
        cfg = record.get("config") or {}
        return cls(folder=record.get("folder") or "", layer=int(cfg.get("layer", -1)), rate=float(record["rate"]),
                   dim=int(record["dim"]), sha256=record.get("weights_sha256") or "",
                   normalize=bool(cfg.get("normalize", True)))

    def weights_sha256(self) -> str | None:
        return self.sha256

    def network(self):
        """The `transformers` model, loaded from the folder on first use (local files only)."""
        if not self._model:
            from transformers import AutoModel
            from transformers.utils import logging as hf_logging

            check_encoder_folder(type(self), Path(self.folder))
            hf_logging.disable_progress_bar()  # a library's bars would break cospeech's one-line output
            hf_logging.set_verbosity_error()
            try:
                net = AutoModel.from_pretrained(self.folder, local_files_only=True)
            except (OSError, ValueError) as err:
                raise CospeechError(f"{self.folder}: cannot load {self.NAME} weights ({str(err).splitlines()[0]}); "
                                    f"{_download_hint(type(self), self.folder)}") from None
            self._model.append(net.eval())
        return self._model[0]

    def __call__(self, wave: np.ndarray, fps: float, n_frames: int) -> np.ndarray:
        import torch

        net = self.network()
        x = np.asarray(wave, dtype=np.float32)
        if self.normalize:
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        with torch.no_grad():
            out = net(torch.from_numpy(x)[None], output_hidden_states=True)
        return out.hidden_states[self.layer][0].float().numpy()  # (Ta, C)


class HuBERT(SslEncoder):
    NAME = "hubert"
    REPO = "facebook/hubert-base-ls960"
    MODEL_TYPES = ("hubert",)


class WavLM(SslEncoder):
    NAME = "wavlm"
    REPO = "microsoft/wavlm-base-plus"
    MODEL_TYPES = ("wavlm",)


class Wav2Vec2(SslEncoder):
    NAME = "wav2vec2"
    REPO = "facebook/wav2vec2-base-960h"
    MODEL_TYPES = ("wav2vec2",)


SSL_ENCODERS: dict[str, type] = {cls.NAME: cls for cls in (HuBERT, WavLM, Wav2Vec2)}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _download_hint(cls, folder) -> str:
    return (f"download {cls.REPO} (e.g. `huggingface-cli download {cls.REPO} --local-dir {folder}`) "
            f"and pass that folder as --audio-encoder {cls.NAME}=DIR")


def check_encoder_folder(cls, folder: Path) -> dict:
    """The folder's config.json (raises CospeechError naming what to download when the folder,
    its config or its weights are missing, or they are of another kind)."""
    if not folder.is_dir():
        raise CospeechError(f"{folder}: no such {cls.NAME} folder; {_download_hint(cls, folder)}")
    missing = [name for name in ("config.json",) if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if missing:
        raise CospeechError(f"{folder}: no {', '.join(missing)} in the {cls.NAME} folder; {_download_hint(cls, folder)}")
    try:
        config = json.loads((folder / "config.json").read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CospeechError(f"{folder / 'config.json'}: not valid JSON; {_download_hint(cls, folder)}") from None
    if config.get("model_type") not in cls.MODEL_TYPES:
        raise CospeechError(f"{folder}: holds a {config.get('model_type')!r} model, not {cls.NAME}; "
                            f"{_download_hint(cls, folder)}")
    return config


def folder_sha256(folder: str | Path) -> str:
    """sha256 over the relative path and bytes of every file in the folder (hidden files and
    folders, such as a download tool's `.cache`, left out): the weights' identity."""
    from ..artifacts import sha256_file

    root = Path(folder)
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        h.update(f"{rel.as_posix()}\0{sha256_file(path)}\n".encode())
    return h.hexdigest()


def ssl_encoder(kind: str, folder: str | Path, layer: int = -1) -> SslEncoder:
    """A `kind` (hubert, wavlm, wav2vec2) encoder from a local folder: checked, sized and hashed."""
    if kind not in SSL_ENCODERS:
        raise CospeechError(f"unknown speech encoder {kind!r}; choose from {', '.join(SSL_ENCODERS)}")
    cls = SSL_ENCODERS[kind]
    folder = Path(folder).expanduser()
    config = check_encoder_folder(cls, folder)
    stride = int(np.prod(config.get("conv_stride", (5, 2, 2, 2, 2, 2, 2))))
    sample_rate, normalize = SAMPLE_RATE, True
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        try:
            pre_cfg = json.loads(pre.read_text())
        except json.JSONDecodeError:
            raise CospeechError(f"{pre}: not valid JSON") from None
        sample_rate, normalize = int(pre_cfg.get("sampling_rate", SAMPLE_RATE)), bool(pre_cfg.get("do_normalize", True))
    n_layers = int(config.get("num_hidden_layers", 12))
    if not -(n_layers + 1) <= layer <= n_layers:
        raise CospeechError(f"{folder}: layer {layer} is not one of the model's {n_layers + 1} hidden states")
    return cls(folder=str(folder.resolve()), layer=layer, rate=sample_rate / stride, dim=int(config["hidden_size"]),
               sha256=folder_sha256(folder), sample_rate=sample_rate, normalize=normalize)


def parse_encoder(text: str) -> SslEncoder:
    """`KIND=DIR` (the CLI's --audio-encoder, e.g. wavlm=models/wavlm-base-plus) -> the encoder."""
    kind, sep, folder = (text or "").partition("=")
    if not sep or not folder.strip():
        raise CospeechError(f"--audio-encoder {text}: expected KIND=DIR, e.g. wavlm=models/wavlm-base-plus "
                            f"(kinds: {', '.join(SSL_ENCODERS)})")
    return ssl_encoder(kind.strip().lower(), folder.strip())


EXTRACTORS: dict[str, type] = {cls.NAME: cls for cls in (SpeechFeatures, LogMel, HuBERT, WavLM, Wav2Vec2)}


def stream_key(extractor) -> str:
    """`<name>-<hash>`: the hash covers the extractor's name, configuration and weights, so a
    change to any of them is a new stream on disk."""
    record = {"extractor": extractor.NAME, "config": extractor.config(), "weights_sha256": extractor.weights_sha256()}
    return f"{extractor.NAME}-{hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]}"


def describe(extractor) -> dict:
    """What a cache index records of a stream (enough to rebuild the extractor; a learned
    encoder's folder too, which is not part of its key: the weights' hash is)."""
    record = {
        "extractor": extractor.NAME, "config": extractor.config(), "weights_sha256": extractor.weights_sha256(),
        "key": stream_key(extractor), "rate": extractor.rate, "start": extractor.start, "dim": extractor.dim,
    }
    if isinstance(extractor, SslEncoder):
        record["folder"] = extractor.folder
    return record


def build_extractor(record: dict):
    """The extractor a `describe` record names (raises CospeechError for unknown names or settings)."""
    name = record.get("extractor")
    if name not in EXTRACTORS:
        raise CospeechError(f"unknown feature extractor {name!r}; choose from {', '.join(EXTRACTORS)}")
    try:
        if issubclass(EXTRACTORS[name], SslEncoder):
            return EXTRACTORS[name].from_record(record)
        return EXTRACTORS[name].from_config(record.get("config") or {})
    except (TypeError, KeyError) as err:
        raise CospeechError(f"bad {name} settings {record.get('config')}: {err}") from None
