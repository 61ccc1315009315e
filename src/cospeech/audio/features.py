"""Hand-crafted speech features on the motion frame grid, in bounded memory.

Everything is computed at the analysis hop (10 ms at 16 kHz), then averaged onto the motion
grid: motion frame i covers the time interval [i / fps, (i + 1) / fps), and feature frame i is
the exact mean of the analysis features over that interval (analysis frame j, centred, covers
[(j - 0.5) hop, (j + 0.5) hop)). So feature frame i covers motion frame i for any pair of rates,
30 fps at a 100 Hz hop included, where a plain index mapping would drift.

The features are librosa's (log-mel, MFCC, onset strength, RMS energy, beats), the values the
bundled model was trained on, written with numpy alone: importing librosa costs seconds of
numba compilation, which `cospeech generate` would pay on every run. The tests hold these
functions to librosa's results on real speech.

Memory. The signal is analysed in blocks of `block_frames` analysis frames (2048, 20 s by
default) with the few frames of context each feature needs, so log-mel, MFCC, onset strength
and energy equal the whole-file computation (up to float32 rounding of the same sums). Beats
need the whole recording (one tempo, one dynamic programme): they are tracked once over the
onset envelope, 4 bytes per analysis frame, and the tempogram behind the tempo estimate is
summed in blocks of frames; so beats are identical for any block size.

Ceiling: beyond the caller's signal, peak memory is the output (T × C float32, 33 MB per hour
at 30 fps) plus the larger of a fixed ~45 MB working set for one block and, once the blocks are
freed, the beat tracker's ~60 bytes per analysis frame (20 MB per hour; it rules past ~2 h).
Measured by benchmarks/feature_memory.py: 43 MB added for 10 min (librosa on the whole file
added 2.5 GB), 110 MB for 2 h of which 66 MB is the output (with a float32 beat tracker; the
float64 one, exact to librosa, adds ~12 MB at 2 h).

Legend: Ta analysis frames, T motion frames, C channels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..artifacts import config_from_dict
from .io import SAMPLE_RATE, check_speech

BLOCK_FRAMES = 2048  # analysis frames per block (20.48 s at a 10 ms hop)
TEMPO_WINDOW_S = 8.0  # autocorrelation window of the tempo estimate (librosa's ac_size)
TEMPO_BLOCK = 512  # tempogram frames per block
START_BPM = 120.0  # centre of the log-normal tempo prior
MAX_BPM = 320.0
TIGHTNESS = 100.0  # how strictly beats follow the tempo
CAUSAL_BEAT_EVERY = 100  # streaming beats: analysis frames between trackings (1 s at a 10 ms hop)
CAUSAL_BEAT_HISTORY = 800  # streaming beats: analysis frames of onsets each tracking sees (8 s)
CAUSAL_TEMPO_EVERY = 400  # streaming beats: analysis frames between tempo estimates (4 s)


@dataclass(frozen=True)
class AudioFeatureConfig:
    """How speech becomes per-frame features. Stored in every checkpoint and cache."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 512
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms
    n_mels: int = 64
    n_mfcc: int = 13

    @property
    def dim(self) -> int:
        """Channels per frame: log-mel, MFCC, onset strength, log energy, beat flag."""
        return self.n_mels + self.n_mfcc + 3

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def names(self) -> list[str]:
        return (
            [f"logmel{i}" for i in range(self.n_mels)]
            + [f"mfcc{i}" for i in range(self.n_mfcc)]
            + ["onset", "log_energy", "beat"]
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AudioFeatureConfig":
        return config_from_dict(cls, d, "audio feature settings")


def n_motion_frames(n_samples: int, sample_rate: int, fps: float) -> int:
    """Motion frames that tile a recording: round(duration × fps)."""
    return int(round(n_samples / sample_rate * fps))


def n_analysis_frames(n_samples: int, cfg: AudioFeatureConfig) -> int:
    """Centred analysis frames of a signal of n_samples: one every hop, the first at sample 0."""
    return 1 + n_samples // cfg.hop_length


def to_motion_grid(
    frames: np.ndarray, frame_rate: float, n_frames: int, fps: float, first: int = 0, offset: int = 0
) -> np.ndarray:
    """Average centred analysis frames over each motion frame's interval.

    frames: (Ta, C), frames[k] being analysis frame offset + k, which covers
    [(offset + k - 0.5) / frame_rate, (offset + k + 0.5) / frame_rate). Returns (n_frames, C)
    float32 for motion frames first … first + n_frames - 1; frame i is the mean over
    [i / fps, (i + 1) / fps). Time past the last given frame holds its value, so `frames` must
    reach the end of the recording or the end of the last interval.
    """
    assert frames.ndim == 2, f"expected (Ta, C), got {frames.shape}"
    edges = np.arange(first, first + n_frames + 1, dtype=np.float64) / fps  # seconds
    pos = edges * frame_rate + 0.5 - offset  # in given frames, from the start of frames[0]'s interval
    assert n_frames == 0 or pos[0] >= 0, "the frames start after the first motion frame"
    need = int(np.ceil(pos[-1])) + 1
    f = frames.astype(np.float64)
    if need > len(f):
        f = np.concatenate([f, np.repeat(f[-1:], need - len(f), axis=0)])
    cum = np.concatenate([np.zeros((1, f.shape[1])), np.cumsum(f, axis=0)])  # (Ta + 1, C)
    idx = np.clip(np.floor(pos).astype(np.int64), 0, len(f) - 1)
    integral = cum[idx] + (pos - idx)[:, None] * f[idx]  # (T + 1, C), in frame units
    return ((integral[1:] - integral[:-1]) * (fps / frame_rate)).astype(np.float32)


def times_to_grid(times: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """Event times in seconds -> (n_frames,) float32 flags, 1 where frame i's interval holds one."""
    flags = np.zeros(n_frames, dtype=np.float32)
    idx = np.floor(np.asarray(times, dtype=np.float64) * fps).astype(np.int64)
    flags[idx[(idx >= 0) & (idx < n_frames)]] = 1.0
    return flags


# -- spectral features ---------------------------------------------------------------------
def periodic_hann(n: int) -> np.ndarray:
    """The periodic Hann window of n points (scipy's get_window('hann', n)), float64."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(hz, 1000.0) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log_part, mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    hz = (200.0 / 3) * mel
    log_part = 1000.0 * np.exp((np.log(6.4) / 27.0) * (np.maximum(mel, 15.0) - 15.0))
    return np.where(mel >= 15.0, log_part, hz)


def mel_filters(cfg: AudioFeatureConfig) -> np.ndarray:
    """Slaney-normalised triangular mel filters (librosa.filters.mel), (n_mels, n_fft // 2 + 1) float32."""
    fft_hz = np.fft.rfftfreq(cfg.n_fft, d=1.0 / cfg.sample_rate)
    mel_hz = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(cfg.sample_rate / 2.0), cfg.n_mels + 2))
    fdiff = np.diff(mel_hz)
    ramps = mel_hz[:, None] - fft_hz[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper)).astype(np.float32)
    weights *= (2.0 / (mel_hz[2:] - mel_hz[:-2]))[:, None]
    return weights


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Orthonormal DCT-II (scipy.fft.dct(norm='ortho')) as an (n_out, n_in) float64 matrix."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    m = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    m[0] /= np.sqrt(2.0)
    return m


def centred_frames(wave: np.ndarray, j0: int, j1: int, length: int, hop: int, offset: int = 0) -> np.ndarray:
    """Frames j0 … j1 - 1 of `length` samples centred on sample j × hop, zeros outside the signal.

    wave: (N,), samples offset … offset + N - 1 of the signal (a stream keeps only its recent
    samples; zeros before sample 0 and after the last sample given). Returns (j1 - j0, length),
    a view of a block-sized buffer.
    """
    start = j0 * hop - length // 2
    stop = (j1 - 1) * hop - length // 2 + length
    buf = np.zeros(stop - start, dtype=wave.dtype)
    assert start >= offset or offset == 0, "the frames reach before the samples kept"
    lo, hi = max(start, offset), min(stop, offset + len(wave))
    if hi > lo:
        buf[lo - start: hi - start] = wave[lo - offset:hi - offset]
    return np.lib.stride_tricks.sliding_window_view(buf, length)[::hop]


def log_mel(wave: np.ndarray, cfg: AudioFeatureConfig, j0: int, j1: int, mel_basis: np.ndarray,
            offset: int = 0) -> np.ndarray:
    """Log-mel power (dB, ref 1, floor 1e-10) of analysis frames j0 … j1 - 1: (j1 - j0, n_mels) float32.

    The power spectrum is librosa's: a periodic Hann window of win_length centred in n_fft,
    zero padding at the ends, the STFT stored as complex64. offset: see `centred_frames`.
    """
    window = np.zeros(cfg.n_fft)
    left = (cfg.n_fft - cfg.win_length) // 2
    window[left: left + cfg.win_length] = periodic_hann(cfg.win_length)
    frames = centred_frames(wave, j0, j1, cfg.n_fft, cfg.hop_length, offset)  # (n, n_fft)
    spec = np.fft.rfft(frames * window, axis=1).astype(np.complex64)
    power = np.abs(spec) ** 2  # (n, n_fft // 2 + 1) float32
    mel = (power.astype(np.float64) @ mel_basis.T.astype(np.float64)).astype(np.float32)  # (n, n_mels)
    return 10.0 * np.log10(np.maximum(mel, np.float32(1e-10)))


def log_energy(wave: np.ndarray, cfg: AudioFeatureConfig, j0: int, j1: int, offset: int = 0) -> np.ndarray:
    """RMS energy in dB (floor -100 dB) over win_length samples centred on each frame: (j1 - j0,) float32."""
    frames = centred_frames(wave, j0, j1, cfg.win_length, cfg.hop_length, offset).astype(np.float64)
    rms = np.sqrt(np.mean(frames * frames, axis=1)).astype(np.float32)
    return 20.0 * np.log10(np.maximum(rms, np.float32(1e-5)))


def onset_delay(cfg: AudioFeatureConfig) -> int:
    """Frames by which librosa's onset strength lags the log-mel rise it measures: the value at
    frame j is the rise from frame j - d to j - d + 1 (d = 7 at a 10 ms hop: 1 for the
    difference, 2048 // (2 hop) for its centring of a 2048-sample frame)."""
    return 1 + 2048 // (2 * cfg.hop_length)


def analysis_block(
    wave: np.ndarray, cfg: AudioFeatureConfig, j0: int, j1: int, mel_basis: np.ndarray, dct: np.ndarray,
    offset: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Features of analysis frames j0 … j1 - 1 of the signal whose samples offset … are `wave` (N,)
    (the whole signal when offset is 0; a stream passes the samples it kept, which must reach
    back `onset_delay` frames and half an FFT before frame j0: `stream_context`).

    Returns (features (j1 - j0, C - 1) float32: log-mel, MFCC, onset strength, log energy;
    onset (j1 - j0,) float32). The beat flag, the missing channel, needs the whole recording.
    """
    delay = onset_delay(cfg)
    c0 = max(j0 - delay, 0)
    logmel = log_mel(wave, cfg, c0, j1, mel_basis, offset)  # (j1 - c0, n_mels)
    mfcc = (logmel.astype(np.float64) @ dct.T).astype(np.float32)
    # librosa's onset strength: mean rise of log-mel from frame j - delay, 0 before frame delay
    rise = np.maximum(0.0, np.diff(logmel, axis=0)).mean(axis=1, dtype=np.float64)  # rise[k]: c0 + k -> c0 + k + 1
    onset = np.zeros(j1 - j0, dtype=np.float32)
    first = min(max(j0, delay), j1)
    onset[first - j0:] = rise[first - delay - c0: j1 - delay - c0]
    n = j1 - j0
    feats = np.concatenate(
        [logmel[-n:], mfcc[-n:], onset[:, None], log_energy(wave, cfg, j0, j1, offset)[:, None]], axis=1
    )
    return feats, onset


def onset_envelope(wave: np.ndarray, cfg: AudioFeatureConfig = AudioFeatureConfig(),
                   block_frames: int = BLOCK_FRAMES) -> np.ndarray:
    """librosa's onset strength of the log-mel spectrogram, computed in blocks: (Ta,) float32."""
    ta = n_analysis_frames(len(wave), cfg)
    mel_basis, dct = mel_filters(cfg), dct_matrix(cfg.n_mfcc, cfg.n_mels)
    onset = np.empty(ta, dtype=np.float32)
    for j0 in range(0, ta, block_frames):
        j1 = min(j0 + block_frames, ta)
        onset[j0:j1] = analysis_block(wave, cfg, j0, j1, mel_basis, dct)[1]
    return onset


# -- beats ---------------------------------------------------------------------------------
def _next_fast_len(n: int) -> int:
    """The smallest 5-smooth integer ≥ n (scipy.fft.next_fast_len for real transforms)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def tempo(onset_env: np.ndarray, cfg: AudioFeatureConfig, block: int = TEMPO_BLOCK) -> float:
    """Global tempo in BPM of an onset envelope (Ta,), as librosa.feature.tempo estimates it.

    The mean over frames of the peak-normalised autocorrelation of 8 s Hann-windowed stretches
    of the envelope, weighted by a log-normal prior around 120 BPM. The tempogram is summed
    `block` frames at a time, never held whole (librosa's is 800 × Ta).
    """
    win = int(TEMPO_WINDOW_S * cfg.sample_rate) // cfg.hop_length
    n = len(onset_env)
    padded = np.pad(onset_env, win // 2, mode="linear_ramp", end_values=0)
    stretches = np.lib.stride_tricks.sliding_window_view(padded, win)  # (n + 1, win) view
    window = periodic_hann(win)
    n_pad = _next_fast_len(2 * win - 1)
    total = np.zeros(win)
    for t0 in range(0, n, block):
        x = stretches[t0: min(t0 + block, n)] * window  # (b, win) float64
        spec = np.fft.rfft(x, n=n_pad, axis=1)
        ac = np.fft.irfft(spec.real**2 + spec.imag**2, n=n_pad, axis=1)[:, :win]  # autocorrelation
        peak = np.abs(ac).max(axis=1, keepdims=True)
        peak[peak < np.finfo(np.float64).tiny] = 1.0
        total += (ac / peak).sum(axis=0)
    mean = total / n
    with np.errstate(divide="ignore"):
        bpms = np.concatenate([[np.inf], 60.0 * cfg.sample_rate / (cfg.hop_length * np.arange(1.0, win))])
        logprior = -0.5 * (np.log2(bpms) - np.log2(START_BPM)) ** 2
    logprior[: int(np.argmax(bpms < MAX_BPM))] = -np.inf
    return float(bpms[np.argmax(np.log1p(1e6 * mean) + logprior)])


def _local_score(onset_norm: np.ndarray, period: float) -> np.ndarray:
    """The onset envelope smoothed by a Gaussian of ±period frames (librosa's beat local score,
    summed in the same order, and like it leaving out frame 0): (Ta,) float64."""
    k = np.arange(-period, period + 1)
    window = np.exp(-0.5 * (k * 32.0 / period) ** 2)
    n, half = len(onset_norm), len(window) // 2
    src = np.zeros(n + 2 * half, dtype=np.float64)
    src[half + 1: half + n] = onset_norm[1:]  # src[half + m] = onset[m], onset[0] left out
    score = np.zeros(n)
    for i, w in enumerate(window):  # score[i] += w[k] * onset[i + half - k], in order of k
        score += w * src[2 * half - i: 2 * half - i + n]
    return score


def _beat_dp(score: np.ndarray, period: float, tightness: float) -> tuple[np.ndarray, np.ndarray]:
    """librosa's beat dynamic programme: each frame's best predecessor between period / 2 and
    2 period frames back, penalised by the squared log ratio of the gap to the period.

    score: (Ta,) float64. Returns (backlink (Ta,) int64, cumulative score (Ta,) float64). Frames
    less than period / 2 apart never depend on each other, so they are solved together.
    """
    n = len(score)
    near = int(np.round(period / 2))
    gaps = np.arange(near, int(2 * period) + 1)  # nearest predecessor first, as librosa searches
    penalty = tightness * (np.log(gaps) - np.log(period)) ** 2  # (G,)
    cum = np.zeros(n)
    back = np.full(n, -1, dtype=np.int64)
    for c in range(0, n, near):
        idx = np.arange(c, min(c + near, n))
        loc = idx[:, None] - gaps[None, :]  # (b, G)
        cand = np.where(loc >= 0, cum[np.maximum(loc, 0)] - penalty, -np.inf)
        best = np.argmax(cand, axis=1)
        found = loc[:, 0] >= 0
        best_score = cand[np.arange(len(idx)), best]
        cum[idx] = np.where(found, score[idx] + best_score, score[idx])
        back[idx] = np.where(found, idx - gaps[best], -1)
    # no beat before the first frame whose score reaches 1 % of the maximum
    start = int(np.argmax(score >= 0.01 * score.max()))
    back[:start] = -1
    return back, cum


def beat_frames(onset_env: np.ndarray, cfg: AudioFeatureConfig = AudioFeatureConfig()) -> np.ndarray:
    """Beat frames tracked over an onset envelope (Ta,), as librosa.beat.beat_track tracks them.

    Ellis' dynamic programme at the global tempo, then weak leading and trailing beats trimmed.
    Memory is a few arrays of Ta (about 60 bytes per frame) and the tempogram's block.
    """
    return track_beats(onset_env, cfg)[0]


def track_beats(onset_env: np.ndarray, cfg: AudioFeatureConfig = AudioFeatureConfig(),
                bpm: float | None = None) -> tuple[np.ndarray, float]:
    """`beat_frames` and the beat period it tracked at, in analysis frames (0 when no beats).
    bpm: the tempo to track at (default: `tempo` of this envelope)."""
    onset_env = np.asarray(onset_env, dtype=np.float32)
    if len(onset_env) < 2 or not onset_env.any():
        return np.zeros(0, dtype=np.int64), 0.0
    bpm = tempo(onset_env, cfg) if bpm is None else bpm
    period = float(np.round(cfg.frame_rate * 60.0 / bpm))
    onset_norm = onset_env / (onset_env.std(ddof=1) + np.finfo(np.float32).tiny)  # float32, as librosa
    score = _local_score(onset_norm.astype(np.float64), period)
    back, cum = _beat_dp(score, period, TIGHTNESS)

    # the last beat: the last local maximum of the cumulative score above half their median
    peaks = np.zeros(len(cum), dtype=bool)
    peaks[1:-1] = (cum[1:-1] > cum[:-2]) & (cum[1:-1] >= cum[2:])
    peaks[-1] = cum[-1] > cum[-2]
    tail = len(cum) - 1
    if peaks.any():
        threshold = 0.5 * np.median(cum[peaks])
        above = np.flatnonzero(peaks & (cum >= threshold))
        tail = int(above[-1]) if len(above) else tail
    beats = []
    while tail >= 0:
        beats.append(tail)
        tail = int(back[tail])
    beats = np.asarray(beats[::-1], dtype=np.int64)

    # trim leading and trailing beats weaker than half the RMS of the smoothed beat scores
    smooth = np.convolve(score[beats], np.hanning(5))[2:]
    threshold = 0.5 * np.sqrt(np.mean(smooth**2))
    strong = np.flatnonzero(score > threshold)
    if len(strong) == 0:
        return np.zeros(0, dtype=np.int64), 0.0
    return beats[(beats >= strong[0]) & (beats <= strong[-1])], period


def beat_times(onset_env: np.ndarray, cfg: AudioFeatureConfig = AudioFeatureConfig()) -> np.ndarray:
    """Beat times in seconds tracked from the onset envelope (Ta,)."""
    return beat_frames(onset_env, cfg) * cfg.hop_length / float(cfg.sample_rate)


# -- causal beats (streaming) ----------------------------------------------------------------
def last_analysis_frame(ends: np.ndarray, fps: float, frame_rate: float) -> np.ndarray:
    """The last analysis frame that motion frames ending at frame edges `ends` (ints) average
    over (`to_motion_grid`): floor(end / fps × frame_rate + 0.5), int64."""
    return np.floor(np.asarray(ends, dtype=np.float64) / fps * frame_rate + 0.5).astype(np.int64)


class CausalBeats:
    """The streaming approximation of the beat flag: what a stream can know without the future.

    Offline beats come from one tempo and one dynamic programme over the whole recording, which
    a stream cannot wait for. Instead, every `CAUSAL_BEAT_EVERY` analysis frames (1 s) beats
    are tracked over the last `CAUSAL_BEAT_HISTORY` frames of onsets (8 s) and continued at
    their period; a motion frame takes the latest tracking that its own audio already allows,
    so the flag waits for no future audio (no added latency). The tempo behind each tracking
    (the costly part) is re-estimated every `CAUSAL_TEMPO_EVERY` frames (4 s; at every tracking
    during the first 4 s), over the same 8 s of history.

    Feed the onset envelope in order (`extend`), ask for flags of ascending motion frames
    (`flags`); onsets no later tracking needs are dropped, so memory is bounded.
    """

    def __init__(self, fps: float, cfg: AudioFeatureConfig = AudioFeatureConfig()):
        self.fps, self.cfg = float(fps), cfg
        self._onset, self._at = np.zeros(0, np.float32), 0  # onset envelope from analysis frame _at
        self._tempo: tuple[int, float] | None = None  # (point, bpm)
        self._beats: tuple[int, np.ndarray] | None = None  # (point, absolute beat frames)

    def __len__(self) -> int:
        return len(self._onset)

    def extend(self, onset: np.ndarray) -> None:
        self._onset = np.concatenate([self._onset, np.asarray(onset, np.float32)])

    def flags(self, frames: np.ndarray, ta: int | None = None) -> np.ndarray:
        """Beat flags (n,) float32 of motion frames `frames` (ascending ints, at or after any asked
        before). ta: analysis frames of the whole recording once known (None while streaming)."""
        ja = last_analysis_frame(frames + 1, self.fps, self.cfg.frame_rate)
        if ta is not None:
            ja = np.minimum(ja, ta - 1)
        points = ja // CAUSAL_BEAT_EVERY * CAUSAL_BEAT_EVERY
        flags = np.zeros(len(frames), dtype=np.float32)
        for g in np.unique(points):
            mine = points == g
            beat = np.floor(self._beats_at(int(g)) * self.cfg.hop_length / self.cfg.sample_rate * self.fps)
            flags[mine] = np.isin(frames[mine], beat.astype(np.int64))
        return flags

    def _history(self, point: int) -> tuple[int, np.ndarray]:
        first = max(0, point - CAUSAL_BEAT_HISTORY + 1)
        return first, self._onset[first - self._at: point + 1 - self._at]

    def _beats_at(self, g: int) -> np.ndarray:
        if self._beats is not None and self._beats[0] == g:
            return self._beats[1]
        tp = g if g < CAUSAL_TEMPO_EVERY else g // CAUSAL_TEMPO_EVERY * CAUSAL_TEMPO_EVERY
        if self._tempo is None or self._tempo[0] != tp:
            onset = self._history(tp)[1]
            self._tempo = (tp, tempo(onset, self.cfg) if len(onset) >= 2 and onset.any() else START_BPM)
        first, onset = self._history(g)
        beats, period = track_beats(onset, self.cfg, bpm=self._tempo[1])
        beats = beats + first
        if len(beats) and period > 0:  # continued at the period up to the next tracking
            ahead = np.arange(beats[-1] + period, g + CAUSAL_BEAT_EVERY + 1, period).astype(np.int64)
            beats = np.concatenate([beats, ahead])
        self._beats = (g, beats)
        keep = min(first, max(0, tp - CAUSAL_BEAT_HISTORY + 1))  # later points look no further back
        self._onset, self._at = self._onset[keep - self._at:], keep
        return beats


def causal_beat_flags(onset_env: np.ndarray, n_frames: int, fps: float,
                      cfg: AudioFeatureConfig = AudioFeatureConfig()) -> np.ndarray:
    """`CausalBeats` flags of motion frames 0 … n_frames - 1 from a whole onset envelope (Ta,):
    (n_frames,) float32, what `FeatureStream` gives chunk by chunk."""
    beats = CausalBeats(fps, cfg)
    beats.extend(onset_env)
    return beats.flags(np.arange(n_frames), ta=len(onset_env))


def onset_frames(onset_env: np.ndarray, cfg: AudioFeatureConfig = AudioFeatureConfig()) -> np.ndarray:
    """Onset frames picked from an onset envelope (Ta,), as librosa.onset.onset_detect picks them.

    On the envelope scaled to [0, 1]: a frame that is the maximum of the 30 ms before it and
    rises 0.07 above the mean of the 100 ms around it, at least 30 ms after the previous onset.
    """
    x = np.asarray(onset_env, dtype=np.float32)
    x = x - x.min()
    x /= x.max() + np.finfo(np.float32).tiny
    sr, hop = cfg.sample_rate, cfg.hop_length
    pre_max, post_max = int(np.ceil(0.03 * sr // hop)), int(np.ceil(0.00 * sr // hop + 1))
    pre_avg, post_avg = int(np.ceil(0.10 * sr // hop)), int(np.ceil(0.10 * sr // hop + 1))
    wait, delta = int(np.ceil(0.03 * sr // hop)), 0.07
    n = len(x)
    if n == 0 or not x.any():
        return np.zeros(0, dtype=np.int64)
    i = np.arange(n)
    # running maximum over [i - pre_max, i + post_max) and mean over [i - pre_avg, i + post_avg)
    padded = np.concatenate([np.full(pre_max, -np.inf, np.float32), x, np.full(post_max - 1, -np.inf, np.float32)])
    local_max = np.lib.stride_tricks.sliding_window_view(padded, pre_max + post_max).max(axis=1)
    cum = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
    lo, hi = np.maximum(i - pre_avg, 0), np.minimum(i + post_avg, n)
    local_mean = ((cum[hi] - cum[lo]) / (hi - lo)).astype(np.float32)
    # frame 0 looks only forward (librosa's special case)
    local_max[0] = x[:post_max].max()
    local_mean[0] = x[:post_avg].mean()
    candidates = np.flatnonzero((x == local_max) & (x >= local_mean + delta))
    onsets, next_allowed = [], 0
    for c in candidates:
        if c >= next_allowed:
            onsets.append(c)
            next_allowed = c + wait + 1
    return np.asarray(onsets, dtype=np.int64)


def onset_times(onset_env: np.ndarray, cfg: AudioFeatureConfig = AudioFeatureConfig()) -> np.ndarray:
    """Onset times in seconds picked from the onset envelope (Ta,)."""
    return onset_frames(onset_env, cfg) * cfg.hop_length / float(cfg.sample_rate)


def speech_onsets(wave: np.ndarray, cfg: AudioFeatureConfig = AudioFeatureConfig()) -> np.ndarray:
    """Onset times (s) of mono speech (N,) at cfg.sample_rate, for beat-alignment metrics."""
    return onset_times(onset_envelope(wave, cfg), cfg)


def speech_features(
    wave: np.ndarray, fps: float, n_frames: int | None = None, cfg: AudioFeatureConfig = AudioFeatureConfig(),
    block_frames: int = BLOCK_FRAMES, causal_beats: bool = False,
) -> np.ndarray:
    """Speech features aligned to the motion grid, in bounded memory.

    wave: (N,) float32 mono at cfg.sample_rate. n_frames defaults to round(duration × fps).
    Returns (T, cfg.dim) float32: log-mel, MFCC, onset strength, log energy, beat flag.
    The signal is analysed `block_frames` analysis frames at a time; beyond the signal, peak
    memory is the output plus ~45 MB up to ~2 h of speech, 20 MB per hour past that (module notes).
    causal_beats: the beat flag as a stream knows it (`causal_beat_flags`), so these features
    equal `FeatureStream`'s for the same speech; the other channels do not depend on it.
    """
    assert wave.ndim == 1, f"expected a mono (N,) signal, got {wave.shape}"
    assert block_frames > 0, block_frames
    check_speech(wave, cfg.sample_rate)
    if n_frames is None:
        n_frames = n_motion_frames(len(wave), cfg.sample_rate, fps)
    ta = n_analysis_frames(len(wave), cfg)
    rate = cfg.frame_rate
    mel_basis, dct = mel_filters(cfg), dct_matrix(cfg.n_mfcc, cfg.n_mels)
    # a block of motion frames reaches back at most one motion frame's span of analysis frames
    context = int(np.ceil(rate / fps)) + 2
    out = np.empty((n_frames, cfg.dim), dtype=np.float32)
    onset = np.empty(ta, dtype=np.float32)
    done = 0  # motion frames written so far
    for j0 in range(0, ta, block_frames):
        j1 = min(j0 + block_frames, ta)
        c0 = max(j0 - context, 0)
        feats, onset_blk = analysis_block(wave, cfg, c0, j1, mel_basis, dct)
        onset[j0:j1] = onset_blk[j0 - c0:]
        if j1 == ta:  # the last block: every remaining frame (time past the end holds the last value)
            upto = n_frames
        else:  # frames whose interval ends before analysis frame j1's: end × rate + 0.5 < j1
            upto = min(n_frames, int(np.floor(((j1 - 0.5) / rate) * fps)))
            while upto < n_frames and (upto + 1) / fps * rate + 0.5 < j1:
                upto += 1
            while upto > done and upto / fps * rate + 0.5 >= j1:
                upto -= 1
        if upto > done:
            out[done:upto, :-1] = to_motion_grid(feats, rate, upto - done, fps, first=done, offset=c0)
            done = upto
    if causal_beats:
        out[:, -1] = causal_beat_flags(onset, n_frames, fps, cfg)
    else:
        out[:, -1] = times_to_grid(beat_times(onset, cfg), n_frames, fps)
    return out


class FeatureStream:
    """`speech_features(..., causal_beats=True)` of a stream, chunk by chunk, in bounded memory.

        feats = FeatureStream(fps=30.0)
        rows = feats.push(chunk)  # (n, C) float32: the motion frames whose audio is complete
        rows = feats.close()      # the rest, up to round(duration × fps) frames

    Chunks are float32 mono samples at cfg.sample_rate, any length. A motion frame is given out
    once every analysis frame it averages over is complete (half an FFT, 16 ms at 16 kHz, past
    the frame's end). Log-mel, MFCC, onset and energy equal the offline values (the same blocks
    with their context, up to float rounding of the frame averages); the beat flag is the causal
    one (`CausalBeats`). Kept between pushes: the last `stream_context` samples, the
    analysis frames of the motion frame in progress and `CAUSAL_BEAT_HISTORY` onset values,
    whatever the stream's length.
    """

    def __init__(self, fps: float, cfg: AudioFeatureConfig = AudioFeatureConfig()):
        self.fps, self.cfg = float(fps), cfg
        self._mel, self._dct = mel_filters(cfg), dct_matrix(cfg.n_mfcc, cfg.n_mels)
        self.samples = 0  # samples received
        self.frames = 0  # motion frames given out
        self.closed = False
        self._wave, self._wave_at = np.zeros(0, np.float32), 0  # recent samples, from sample _wave_at
        self._j = 0  # analysis frames computed
        self._rows, self._rows_at = np.zeros((0, cfg.dim - 1), np.float32), 0  # analysis features, from frame _rows_at
        self._beats = CausalBeats(fps, cfg)

    def buffered(self) -> int:
        """Values held between pushes (samples, analysis features, onsets): bounded."""
        return self._wave.size + self._rows.size + len(self._beats)

    def push(self, samples: np.ndarray) -> np.ndarray:
        """float32 samples (N,) -> feature rows (n, C) of the motion frames completed by them."""
        assert not self.closed, "push after close"
        samples = np.asarray(samples, dtype=np.float32)
        assert samples.ndim == 1, f"expected mono samples (N,), got {samples.shape}"
        out, step = [], BLOCK_FRAMES * self.cfg.hop_length  # a long chunk goes a block at a time
        for k in range(0, len(samples), step):
            piece = samples[k: k + step]
            self._wave = np.concatenate([self._wave, piece])
            self.samples += len(piece)
            half = self.cfg.n_fft // 2
            ready = (self.samples - half) // self.cfg.hop_length + 1 if self.samples >= half else 0
            out.append(self._advance(ready, None))
        return np.concatenate(out) if out else np.zeros((0, self.cfg.dim), np.float32)

    def close(self) -> np.ndarray:
        """The remaining rows: every analysis frame (zeros past the end), up to round(duration × fps)."""
        assert not self.closed, "closed twice"
        self.closed = True
        ta = n_analysis_frames(self.samples, self.cfg)
        return self._advance(ta, n_motion_frames(self.samples, self.cfg.sample_rate, self.fps), ta)

    def _advance(self, ready: int, n_frames: int | None, ta: int | None = None) -> np.ndarray:
        cfg, rate, hop = self.cfg, self.cfg.frame_rate, self.cfg.hop_length
        if ready > self._j:
            feats, onset = analysis_block(self._wave, cfg, self._j, ready, self._mel, self._dct, offset=self._wave_at)
            self._rows = np.concatenate([self._rows, feats])
            self._beats.extend(onset)
            self._j = ready
            keep = max(0, (ready - onset_delay(cfg)) * hop - cfg.n_fft // 2)  # what the next frames look back to
            self._wave, self._wave_at = self._wave[keep - self._wave_at:], keep
        if n_frames is None:  # the motion frames whose last analysis frame is complete
            n_frames = self.frames
            while last_analysis_frame(n_frames + 1, self.fps, rate) < ready:
                n_frames += 1
        first, n = self.frames, n_frames - self.frames
        if n <= 0:
            return np.zeros((0, cfg.dim), np.float32)
        grid = to_motion_grid(self._rows, rate, n, self.fps, first=first, offset=self._rows_at)
        beat = self._beats.flags(np.arange(first, n_frames), ta)
        self.frames = n_frames
        start = int(last_analysis_frame(n_frames, self.fps, rate))  # the next frame's first analysis frame
        start = min(max(start, self._rows_at), self._rows_at + len(self._rows) - 1)
        self._rows, self._rows_at = self._rows[start - self._rows_at:], start
        return np.concatenate([grid, beat[:, None]], axis=1)
