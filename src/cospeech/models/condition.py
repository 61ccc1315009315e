"""`Condition`: what a denoiser is conditioned on, batched, with classifier-free-guidance drops.

A condition holds the speech features on the motion grid (`audio`, the stream every backbone
reads today), any number of named feature `streams` at their own rate (an SSL encoder at 50 Hz,
log-mel at 100 Hz, ...), an optional `style` vector or tokens, and the speaker.

Classifier-free guidance drops a row's conditioning as a whole: `dropout` (training) draws once
per row, `with_null` (guided sampling) appends a null copy of every row. A null row means:
  - keep[b] is False: the denoiser must use its learned "no audio" token and "no speaker" row;
  - audio, every stream and style of that row are zeros (so a backbone that forgot to read
    `keep` still sees no speech, never the real one);
  - speaker[b] is -1 (none).

Legend: B batch, T motion frames, Ta audio frames of a stream, C channels, K style tokens,
S style channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True, eq=False)
class Stream:
    """Features at their own rate, and how they map onto motion frames.

    feats: (B, Ta, C). Frame j of row b covers the seconds [start_b + j / rate, start_b + (j + 1)
    / rate), where start is a float or a (B,) tensor (e.g. a training window that begins between
    two audio frames). Librosa's centred frames have start = -0.5 / rate; an SSL encoder's
    frames (HuBERT, WavLM: 20 ms hop) have start = 0. Motion frame i covers [i / fps, (i + 1) / fps).
    """

    feats: torch.Tensor
    rate: float
    start: float | torch.Tensor = 0.0

    def __post_init__(self):
        assert self.feats.dim() == 3, f"stream features must be (B, Ta, C), got {tuple(self.feats.shape)}"
        assert self.rate > 0, f"stream rate must be > 0 Hz, got {self.rate}"
        if isinstance(self.start, torch.Tensor):
            assert self.start.shape == self.feats.shape[:1], "a per-row stream start must be (B,)"

    def _positions(self, n_frames: int, fps: float) -> torch.Tensor:
        """(B, T + 1) float64: motion frame edges i / fps in this stream's frames, from the start
        of frame 0's interval."""
        b = self.feats.shape[0]
        start = torch.as_tensor(self.start, dtype=torch.float64, device=self.feats.device).expand(b)
        i = torch.arange(n_frames + 1, dtype=torch.float64, device=self.feats.device)
        return i[None] * self.rate / fps - start[:, None] * self.rate  # (B, T + 1)

    def to_motion_grid(self, n_frames: int, fps: float) -> torch.Tensor:
        """(B, T, C): motion frame i is the exact mean of the features over [i / fps, (i + 1) / fps),
        each stream frame weighted by how much of the interval it covers. Time before the first
        or past the last stream frame holds that frame's value. Differentiable."""
        f = self.feats.to(torch.float64)  # (B, Ta, C)
        b, ta, c = f.shape
        pos = self._positions(n_frames, fps)  # (B, T + 1)
        cum = torch.cat([f.new_zeros(b, 1, c), f.cumsum(dim=1)], dim=1)  # (B, Ta + 1, C)
        idx = pos.floor().clamp(0, ta - 1).long()  # (B, T + 1)
        at = idx[:, :, None].expand(-1, -1, c)
        integral = cum.gather(1, at) + (pos - idx)[:, :, None] * f.gather(1, at)  # (B, T + 1, C)
        out = (integral[:, 1:] - integral[:, :-1]) * (fps / self.rate)  # (B, T, C)
        return out.to(self.feats.dtype)

    def frame_ranges(self, n_frames: int, fps: float) -> torch.Tensor:
        """(B, T, 2) int64 [lo, hi): the stream frames whose interval overlaps motion frame i's.
        Clipped to the stream; a motion frame past its end gets the last frame, one before its
        start the first, so no range is empty (DiffSpeaker's alignment bias lets motion frame i
        attend to exactly these audio frames)."""
        ta = self.feats.shape[1]
        pos = self._positions(n_frames, fps)
        eps = 1e-9  # edges that meet exactly (e.g. 30 fps on 50 Hz every 3 frames) do not overlap
        lo = (pos[:, :-1] + eps).floor().long().clamp(0, ta - 1)
        hi = (pos[:, 1:] - eps).ceil().long().clamp(1, ta)
        hi = torch.maximum(hi, lo + 1)
        return torch.stack([lo, hi], dim=-1)

    def rows(self, idx) -> "Stream":
        start = self.start[idx] if isinstance(self.start, torch.Tensor) else self.start
        return Stream(self.feats[idx], self.rate, start)

    def to(self, device) -> "Stream":
        start = self.start.to(device) if isinstance(self.start, torch.Tensor) else self.start
        return Stream(self.feats.to(device), self.rate, start)

    def _zero_rows(self, keep: torch.Tensor) -> "Stream":
        return Stream(torch.where(keep[:, None, None], self.feats, 0), self.rate, self.start)


def _cat_streams(a: Stream, b: Stream) -> Stream:
    start = a.start
    if isinstance(a.start, torch.Tensor) or isinstance(b.start, torch.Tensor):
        rows = [torch.as_tensor(s.start, dtype=torch.float64, device=a.feats.device).expand(s.feats.shape[0]) for s in (a, b)]
        start = torch.cat(rows)
    return Stream(torch.cat([a.feats, b.feats]), a.rate, start)


@dataclass(eq=False)
class Condition:
    """audio: (B, T, C) speech features on the motion grid (the stream named "audio"; a backbone
    that reads only other streams may pass (B, T, 0)); speaker: (B,) int64, -1 = none;
    keep: (B,) bool or None (all kept); False rows are the CFG null condition;
    streams: name -> `Stream` with (B, Ta, C) features at its own rate;
    style: (B, S) vector or (B, K, S) tokens, or None;
    derived: name -> (B, ...) tensor a backbone computed from this condition alone, once for every
    step of a sampling run (`prepare_condition`, see `diffusion.sample`); rows, null rows (zeros)
    and devices follow the condition."""

    audio: torch.Tensor
    speaker: torch.Tensor
    keep: torch.Tensor | None = None
    streams: dict[str, Stream] = field(default_factory=dict)
    style: torch.Tensor | None = None
    derived: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self):
        assert self.audio.dim() == 3, f"audio must be (B, T, C), got {tuple(self.audio.shape)}"
        b = self.audio.shape[0]
        assert self.speaker.shape == (b,), "speaker must be (B,)"
        assert self.keep is None or self.keep.shape == (b,), "keep must be (B,)"
        assert "audio" not in self.streams, "the stream name 'audio' is the motion-grid `audio` field"
        for name, s in self.streams.items():
            assert isinstance(s, Stream) and s.feats.shape[0] == b, f"stream {name!r} must be a Stream of B rows"
        assert self.style is None or (self.style.dim() in (2, 3) and self.style.shape[0] == b), \
            "style must be (B, S) or (B, K, S)"

    @property
    def device(self) -> torch.device:
        return self.audio.device

    def kept(self) -> torch.Tensor:
        if self.keep is None:
            return torch.ones(self.audio.shape[0], dtype=torch.bool, device=self.audio.device)
        return self.keep

    def _with_keep(self, keep: torch.Tensor) -> "Condition":
        """These rows with keep; the rows not kept null (zeros, speaker -1)."""
        return Condition(
            torch.where(keep[:, None, None], self.audio, 0), torch.where(keep, self.speaker, -1), keep,
            {k: s._zero_rows(keep) for k, s in self.streams.items()},
            None if self.style is None else torch.where(keep.view(-1, *[1] * (self.style.dim() - 1)), self.style, 0),
            {k: torch.where(keep.view(-1, *[1] * (v.dim() - 1)), v, 0) for k, v in self.derived.items()},
        )

    def dropout(self, p: float, generator: torch.Generator | None = None) -> "Condition":
        """Null whole rows with probability p, one draw per row for all of its conditioning
        (training for classifier-free guidance)."""
        if p <= 0:
            return self
        r = torch.rand(self.audio.shape[0], generator=generator, device=self.audio.device)
        return self._with_keep(self.kept() & (r >= p))

    def with_null(self) -> "Condition":
        """(2B, ...): these rows, then the same rows null."""
        keep = self.kept()
        null = self._with_keep(torch.zeros_like(keep))
        return Condition(
            torch.cat([self.audio, null.audio]), torch.cat([self.speaker, null.speaker]), torch.cat([keep, null.keep]),
            {k: _cat_streams(s, null.streams[k]) for k, s in self.streams.items()},
            None if self.style is None else torch.cat([self.style, null.style]),
            {k: torch.cat([v, null.derived[k]]) for k, v in self.derived.items()},
        )

    def rows(self, idx) -> "Condition":
        """The rows `idx` (a slice, index tensor or boolean mask) of every field."""
        return Condition(
            self.audio[idx], self.speaker[idx], None if self.keep is None else self.keep[idx],
            {k: s.rows(idx) for k, s in self.streams.items()}, None if self.style is None else self.style[idx],
            {k: v[idx] for k, v in self.derived.items()},
        )

    def to(self, device) -> "Condition":
        return Condition(
            self.audio.to(device), self.speaker.to(device), None if self.keep is None else self.keep.to(device),
            {k: s.to(device) for k, s in self.streams.items()}, None if self.style is None else self.style.to(device),
            {k: v.to(device) for k, v in self.derived.items()},
        )

    def with_derived(self, **tensors: torch.Tensor) -> "Condition":
        """This condition with `derived` tensors (B, ...) added."""
        for name, v in tensors.items():
            assert v.shape[0] == self.audio.shape[0], f"derived {name!r} must have B rows"
        return Condition(self.audio, self.speaker, self.keep, self.streams, self.style, {**self.derived, **tensors})
