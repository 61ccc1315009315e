"""Real-time generation: speech pushed in chunks, motion pulled in chunks, as the speech arrives.

    session = StreamSession(model, SampleOptions(seed=0), sample_rate=16000, lookahead_s=0.1)
    session.push(chunk)       # float32 mono samples (N,), any N >= 0, at `sample_rate`
    motion = session.pull()   # SmplxMotion of the frames ready since the last pull (maybe 0 frames)
    motion = session.close()  # the rest, up to round(duration × fps) frames

The motion is DiffSHEG's FOPPAS out-painting (`generator.Outpainter`): each new window is
denoised with its first frames held, at every step, to the tail already emitted. Features are
computed incrementally (`audio.features.FeatureStream`); their beat flag is the causal
approximation, which `generate(..., joiner="foppas")` uses too, so the whole speech pushed in any
chunks gives the same motion as the offline foppas run with the same options and window.

Latency: a frame comes out once its window's last frame's audio is in: at most
`(stride + lookahead - 1) / fps` seconds after the end of its own audio, plus 16 ms for the last
FFT frame (`latency_s`), plus the time to denoise one window (steps × one network pass over
`window` frames). The look-ahead (`lookahead_s`, rounded up to frames) buys each emitted frame
that much future speech as context, and costs exactly that much latency; a larger `overlap`
(up to window - look-ahead - 1) emits fewer frames per window: lower latency, more compute.

Memory is bounded whatever the stream's length: the session keeps the last window of features
and motion, a few hundred samples and 8 s of onset values for the beat flag; only motion that
is never pulled accumulates.
"""

from __future__ import annotations

import math

import numpy as np

from .audio.features import FeatureStream, last_analysis_frame
from .errors import CospeechError
from .generator import MotionGenerator, Outpainter, SampleOptions, default_lookahead
from .motion import SmplxMotion


class StreamSession:
    """One stream of speech -> motion. Attributes: `fps` (motion), `sample_rate` (of the pushed
    samples), `frames_emitted` (motion frames produced so far, pulled or not), `samples_pushed`,
    `latency_s`, `window`, `lookahead`, `overlap` (settable between pushes), `closed`.

    model: a `MotionGenerator`. options: sampling options (seed, steps, sampler, speaker, …; the
    joiner is always out-painting). window: frames per denoised window (default: the model's);
    overlap: frames of each window held to the emitted tail (default: the model's, capped to
    what the window allows); lookahead_s: seconds of speech after the last emitted frame that
    each window also sees (rounded up to whole frames; default: `default_lookahead`, what
    offline foppas uses).
    """

    def __init__(self, model: MotionGenerator, options: SampleOptions | None = None, sample_rate: int | None = None,
                 lookahead_s: float | None = None, window: int | None = None, overlap: int | None = None):
        cfg = model.cfg
        if cfg.encoder is not None:
            raise CospeechError(f"stream: this model reads {cfg.encoder['extractor']} features of whole recordings, "
                                "which a stream cannot compute piece by piece; use a model trained on the mel path")
        self.model, self.fps = model, cfg.fps
        self.sample_rate = cfg.audio.sample_rate if sample_rate is None else sample_rate
        if isinstance(self.sample_rate, bool) or not isinstance(self.sample_rate, (int, np.integer)) \
                or not 4_000 <= self.sample_rate <= 768_000:
            raise CospeechError(f"stream: sample rate must be a whole number of Hz from 4000 to 768000, "
                                f"got {sample_rate!r}")
        if lookahead_s is not None and not (isinstance(lookahead_s, (int, float)) and not isinstance(lookahead_s, bool)
                                            and math.isfinite(lookahead_s) and lookahead_s >= 0):
            raise CospeechError(f"stream: lookahead_s must be a finite number of seconds ≥ 0, got {lookahead_s!r}")
        window = cfg.window if window is None else window
        if isinstance(window, bool) or not isinstance(window, (int, np.integer)) or window < 2:
            raise CospeechError(f"stream: window must be a whole number of frames ≥ 2, got {window!r}")
        lookahead = default_lookahead(cfg) if lookahead_s is None else math.ceil(lookahead_s * cfg.fps - 1e-9)
        if overlap is None:
            overlap = max(0, min(cfg.overlap, window - lookahead - 1))
        self._painter = Outpainter(model, options or SampleOptions(), window=window, overlap=overlap,
                                   lookahead=lookahead)
        self._features = FeatureStream(cfg.fps, cfg.audio)
        self._resampler = None
        if self.sample_rate != cfg.audio.sample_rate:
            import soxr

            self._resampler = soxr.ResampleStream(self.sample_rate, cfg.audio.sample_rate, 1, dtype="float32",
                                                  quality="HQ")  # the offline resampler's filter, exactly
        self._waiting: list[np.ndarray] = []  # samples (at the model's rate) not analysed yet
        self._received = 0  # samples at the model's rate, analysed or waiting
        self._pending: list[np.ndarray] = []  # denormalised motion features not pulled yet
        self._position = np.asarray(cfg.origin, np.float32)  # where the root stands after the motion pulled
        moving = [p.name for p in cfg.spec.parts if p.kind == "velocity"]
        self._velocity = moving[0] if moving else None  # the part holding the root's velocity
        self._empty = cfg.spec.decode(np.zeros((0, cfg.spec.dim), np.float32), self.fps, origin=cfg.origin)
        self.samples_pushed = 0
        self.closed = False

    # -- settings --------------------------------------------------------------------------
    @property
    def window(self) -> int:
        return self._painter.window

    @property
    def lookahead(self) -> int:
        """Frames after the last emitted one that each window sees."""
        return self._painter.lookahead

    @property
    def overlap(self) -> int:
        return self._painter.overlap

    @overlap.setter
    def overlap(self, value: int) -> None:
        self._painter.overlap = value

    @property
    def stride(self) -> int:
        """Motion frames emitted per window: window - overlap - lookahead."""
        return self._painter.stride

    @property
    def frames_emitted(self) -> int:
        return self._painter.emitted

    @property
    def latency_s(self) -> float:
        """The longest wait, after the end of a frame's own audio, for the audio its window needs
        (compute not included): (stride + lookahead - 1) / fps + half an FFT frame + half a hop."""
        a = self.model.cfg.audio
        return (self.stride + self.lookahead - 1) / self.fps + (a.n_fft / 2 + a.hop_length / 2) / a.sample_rate

    def buffered(self) -> int:
        """Values the session holds between pushes, motion not yet pulled excepted (bounded)."""
        p = self._painter
        return sum(map(len, self._waiting)) + self._features.buffered() + p._feats.numel() + p._tail.size + p._ahead.size

    # -- the stream ------------------------------------------------------------------------
    def push(self, chunk: np.ndarray) -> None:
        """Add float mono samples (N,) at `sample_rate`; denoises every window they complete."""
        if self.closed:
            raise CospeechError("stream: push after close")
        if not isinstance(chunk, np.ndarray) or chunk.dtype.kind != "f":
            what = chunk.dtype if isinstance(chunk, np.ndarray) else type(chunk).__name__
            raise CospeechError(f"stream: expected a float numpy array of samples in [-1, 1], got {what}")
        if chunk.ndim != 1:
            raise CospeechError(f"stream: expected mono samples of shape (N,), got shape {chunk.shape}")
        if chunk.size and not np.isfinite(chunk).all():
            raise CospeechError(f"stream: chunk {self.samples_pushed}… holds NaN or infinite samples")
        self.samples_pushed += len(chunk)
        wave = chunk.astype(np.float32, copy=True)
        if self._resampler is not None:
            wave = self._resampler.resample_chunk(wave, last=False)
        self._waiting.append(wave)
        self._received += len(wave)
        if self._received >= self._samples_for_next_window():
            self._advance(self._features.push(self._flush()), final=False)

    def pull(self) -> SmplxMotion | None:
        """The motion frames produced since the last pull (possibly none); None once closed."""
        if self.closed:
            return None
        return self._take()

    def close(self) -> SmplxMotion:
        """End the stream: the frames not pulled yet and the rest of the speech's frames."""
        if self.closed:
            raise CospeechError("stream: closed twice")
        if self._resampler is not None:
            self._waiting.append(self._resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        self._advance(self._features.push(self._flush()), final=False)
        self._advance(self._features.close(), final=True)
        self.closed = True
        return self._take()

    def _samples_for_next_window(self) -> int:
        """Samples (at the model's rate) after which the next window's last frame is complete:
        features are computed only then, a window's worth at a time (the same values)."""
        a = self.model.cfg.audio
        last = self._painter.emitted + self.stride + self.lookahead  # frame edge ending the next window
        return int(last_analysis_frame(last, self.fps, a.frame_rate)) * a.hop_length + a.n_fft // 2

    def _flush(self) -> np.ndarray:
        wave = np.concatenate(self._waiting) if self._waiting else np.zeros(0, np.float32)
        self._waiting = []
        return wave

    def _advance(self, rows: np.ndarray, final: bool) -> None:
        gen = self.model
        self._painter.feed(gen.audio_norm.normalize(rows) if len(rows) else rows)
        new = self._painter.run(final=final)
        if not np.isfinite(new).all():
            raise CospeechError("stream: the model produced non-finite motion (NaN or infinity); "
                                "check the options and the model's weights")
        new *= gen.motion_norm.std
        new += gen.motion_norm.mean
        self._pending.append(new)

    def _take(self) -> SmplxMotion:
        cfg = self.model.cfg
        if not self._pending:
            return self._empty
        feats = np.concatenate(self._pending)
        self._pending = []
        if not len(feats):
            return self._empty
        origin = self._position
        if self._velocity is not None and self.frames_emitted > len(feats):  # continue the root's path
            origin = origin + feats[0, cfg.spec.slices()[self._velocity]]
        motion = cfg.spec.decode(feats, self.fps, origin=origin)
        if self._velocity is not None:
            self._position = motion.blocks[self._velocity][-1].copy()
        return motion
