"""Mamba-2 backbone (DiM-Gesture / DiM-Gestor): the AdaLN block with a Mamba-2 mixer.

The mixer (Dao & Gu 2024): input projection -> short causal depthwise convolution -> the SSD
state-space scan (`ssd.py`) -> gated RMSNorm -> output projection. Legend: B batch, T frames,
M model width, E = expand · M inner width, H = E / P heads, P head dim, N state size.

Time and memory are linear in T:
- training (`recompute`, the default): a one-directional mixer runs as one fused function, chunk
  by piece (`mamba2_ops.fused_mixer`), that keeps only its (B, T, M) input and one scan state per
  piece and recomputes each piece in backward; a bidirectional one (or one on the mamba-ssm
  kernel) is recomputed by activation checkpointing around the per-direction scans;
- inference: `chunks` runs the mixer piece by piece with its state, so the AdaLN block runs whole
  layers `piece` frames at a time (see `blocks.ChunkedMixer`);
- streaming: `init_state` / `step` keep only the convolution tail and the scan state (one frame
  at a time this is the recurrence itself, `ssd.ssd_step`).

With `bidirectional`, a second scan runs over the reversed sequence with its own convolution
and dynamics; the two outputs are summed before the gated norm (whole-sequence denoising).
When the `mamba-ssm` CUDA kernels are installed and the input is on a GPU, `kernel="auto"`
uses them for the scan; `kernel="torch"` always uses the pure-PyTorch path (the test oracle).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..errors import CospeechError
from .blocks import ChunkedMixer
from .denoiser import Denoiser, DenoiserConfig
from .mamba2_ops import Sizes, conv_scan, fused_mixer, gated_rms_norm

KERNELS = ("auto", "torch", "mamba_ssm")


@dataclass(frozen=True)
class Mamba2Options:
    """Mamba-2 mixer settings (`DenoiserConfig.mixer`); unknown keys are an error."""

    d_state: int = 64  # N
    expand: int = 2  # E = expand · M
    head_dim: int = 64  # P
    d_conv: int = 4  # causal depthwise convolution length
    chunk: int = 64  # frames per SSD chunk
    piece: int = 128  # frames per step of the training and inference loops (a multiple of chunk;
    #                   larger suits a GPU, smaller keeps a CPU's working set in cache)
    bidirectional: bool = False  # add a scan over the reversed sequence
    recompute: bool = True  # training: recompute the mixer in backward instead of storing its intermediates
    kernel: str = "auto"  # "auto" | "torch" | "mamba_ssm"
    dt_min: float = 0.001
    dt_max: float = 0.1

    def __post_init__(self):
        if self.kernel not in KERNELS:
            raise CospeechError(f"mamba2 kernel must be one of {', '.join(KERNELS)}; got {self.kernel!r}")
        if min(self.d_state, self.expand, self.head_dim, self.d_conv, self.chunk, self.piece) < 1:
            raise CospeechError(f"mamba2 sizes must be positive: {self}")
        if self.piece % self.chunk:
            raise CospeechError(f"mamba2 piece ({self.piece}) must be a multiple of chunk ({self.chunk})")


def mamba_ssm_scan(x, dt, A, b, c, chunk, state):
    """The fused CUDA scan of `mamba-ssm` (imported only here) with `ssd_scan`'s call."""
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except ImportError as err:
        raise CospeechError(
            f"mamba2 kernel 'mamba_ssm' needs the mamba-ssm package (CUDA only: pip install mamba-ssm): {err}"
        ) from None
    return mamba_chunk_scan_combined(x, dt, A, b[:, :, None], c[:, :, None], chunk, initial_states=state,
                                     return_final_states=True)


def frame_weights(mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, T) bool mask -> (B, T, 1) 1.0 for real frames, 0.0 for padding; None when all are real."""
    if mask is None or bool(mask.all()):
        return None
    return mask[..., None].to(dtype)


@dataclass
class ScanState:
    """What one scan direction carries between pieces: the last d_conv - 1 convolution inputs
    conv (B, d_conv - 1, E + 2N) and the SSD state ssm (B, H, P, N)."""

    conv: torch.Tensor
    ssm: torch.Tensor


class ScanDirection(nn.Module):
    """Convolution and SSD scan of one direction. xbc (B, T, E + 2N), dt (B, T, H) raw,
    keep (B, T, 1) or None -> y (B, T, E) (scan output plus the D skip)."""

    def __init__(self, inner: int, opts: Mamba2Options):
        super().__init__()
        self.opts = opts
        self.heads = inner // opts.head_dim
        channels = inner + 2 * opts.d_state
        self.conv_weight = nn.Parameter(torch.empty(channels, opts.d_conv))
        self.conv_bias = nn.Parameter(torch.empty(channels))
        bound = 1 / math.sqrt(opts.d_conv)  # nn.Conv1d's default for a depthwise kernel
        nn.init.uniform_(self.conv_weight, -bound, bound)
        nn.init.uniform_(self.conv_bias, -bound, bound)
        dt = torch.exp(torch.rand(self.heads) * math.log(opts.dt_max / opts.dt_min) + math.log(opts.dt_min))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # softplus(dt_bias) = dt
        self.A_log = nn.Parameter(torch.log(torch.empty(self.heads).uniform_(1, 16)))
        self.D = nn.Parameter(torch.ones(self.heads))
        self.sizes = Sizes(opts.head_dim, opts.d_state, opts.chunk, opts.piece)

    def init_state(self, batch: int, like: torch.Tensor) -> ScanState:
        o = self.opts
        conv = like.new_zeros(batch, o.d_conv - 1, self.conv_weight.shape[0])
        return ScanState(conv, like.new_zeros(batch, self.heads, o.head_dim, o.d_state))

    def forward(self, xbc: torch.Tensor, dt: torch.Tensor, keep: torch.Tensor | None,
                state: ScanState | None = None) -> tuple[torch.Tensor, ScanState]:
        if state is None:
            state = self.init_state(xbc.shape[0], xbc)
        if self.use_mamba_ssm(xbc):
            y, conv, ssm = self.composed(xbc, dt, keep, state, mamba_ssm_scan)
        else:
            y, conv, ssm = conv_scan(xbc, dt, keep, state.conv, state.ssm, self.conv_weight, self.conv_bias,
                                     self.dt_bias, self.A_log, self.D, self.sizes)
        return y.flatten(-2), ScanState(conv, ssm)

    def composed(self, xbc: torch.Tensor, dt: torch.Tensor, keep: torch.Tensor | None, state: ScanState,
                 scan: Callable) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The same direction as separate differentiable steps around `scan(x, dt, A, b, c, chunk,
        state) -> (y, state)`: the path of the mamba-ssm kernel, and the oracle of the fused
        `conv_scan` in the tests. Returns y (B, T, H, P), conv tail, scan state."""
        o, t = self.opts, xbc.shape[1]
        ext = torch.cat([state.conv, xbc], dim=1)  # (B, d_conv - 1 + T, E + 2N)
        conv = F.conv1d(ext.transpose(1, 2), self.conv_weight[:, None], self.conv_bias, groups=ext.shape[-1])
        x, b, c = F.silu(conv.transpose(1, 2)).split([self.heads * o.head_dim, o.d_state, o.d_state], dim=-1)
        x = x.unflatten(-1, (self.heads, o.head_dim))  # (B, T, H, P)
        dt = F.softplus(dt + self.dt_bias)  # (B, T, H)
        if keep is not None:
            dt = dt * keep
        y, ssm = scan(x, dt, -torch.exp(self.A_log), b, c, o.chunk, state.ssm)
        return torch.addcmul(y, x, self.D[:, None]), ext[:, t:].clone(), ssm

    def use_mamba_ssm(self, x: torch.Tensor) -> bool:
        kernel = self.opts.kernel
        if kernel == "mamba_ssm" and not x.is_cuda:
            raise CospeechError("mamba2 kernel 'mamba_ssm' runs on CUDA tensors only; use kernel 'auto' or 'torch'")
        return kernel == "mamba_ssm" or (kernel == "auto" and x.is_cuda and importlib.util.find_spec("mamba_ssm") is not None)


class Mamba2Mixer(ChunkedMixer):
    """(B, T, M), mask (B, T) bool (True = real frame; padding only at the end) or None -> (B, T, M)."""

    def __init__(self, width: int, opts: Mamba2Options):
        super().__init__()
        inner = opts.expand * width
        if inner % opts.head_dim:
            raise CospeechError(f"mamba2: expand · width = {inner} is not divisible by head_dim {opts.head_dim}")
        if opts.kernel == "mamba_ssm" and importlib.util.find_spec("mamba_ssm") is None:
            raise CospeechError("mamba2 kernel 'mamba_ssm' needs the mamba-ssm package (CUDA only: pip install mamba-ssm)")
        self.opts, self.inner = opts, inner
        self.streams = not opts.bidirectional
        self.heads = inner // opts.head_dim
        self.in_proj = nn.Linear(width, 2 * inner + 2 * opts.d_state + self.heads, bias=False)  # z, xBC, dt
        self.forward_scan = ScanDirection(inner, opts)
        self.backward_scan = ScanDirection(inner, opts) if opts.bidirectional else None
        self.norm_weight = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, width, bias=False)

    def forward(self, u: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if not (self.opts.recompute and torch.is_grad_enabled()):
            return self._mix(u, mask)
        if self.backward_scan is None and not self.forward_scan.use_mamba_ssm(u):
            d = self.forward_scan
            keep = frame_weights(mask, u.dtype)
            return fused_mixer(u, keep, self.in_proj.weight, d.conv_weight, d.conv_bias, d.dt_bias, d.A_log, d.D,
                               self.norm_weight, self.out_proj.weight, d.sizes)
        return checkpoint(self._mix, u, mask, use_reentrant=False)

    def _mix(self, u: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        keep = frame_weights(mask, u.dtype)
        z, xbc, dt = self._project(u, keep)
        y, _ = self.forward_scan(xbc, dt, keep)  # (B, T, E)
        if self.backward_scan is not None:
            rev = None if keep is None else keep.flip(1)
            y = y + self.backward_scan(xbc.flip(1), dt.flip(1), rev)[0].flip(1)
        return self._output(y, z)

    def _project(self, u: torch.Tensor, keep: torch.Tensor | None):
        """u (B, T, M) -> z (B, T, E), xbc (B, T, E + 2N) with padded frames zeroed, dt (B, T, H)."""
        z, xbc, dt = self.in_proj(u).split([self.inner, self.inner + 2 * self.opts.d_state, self.heads], dim=-1)
        return z, (xbc if keep is None else xbc * keep), dt

    def _project_scan(self, u: torch.Tensor, keep: torch.Tensor | None):
        """Only xbc and dt (the reverse pass of `chunks` needs no z)."""
        xbc, dt = F.linear(u, self.in_proj.weight[self.inner :]).split([self.inner + 2 * self.opts.d_state, self.heads], dim=-1)
        return (xbc if keep is None else xbc * keep), dt

    def _output(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Gated RMSNorm then the output projection: y, z (B, T, E) -> (B, T, M)."""
        return self.out_proj(gated_rms_norm(y, z, self.norm_weight, self.opts.piece))

    # -- streaming and piecewise inference -------------------------------------------------
    def init_state(self, batch: int, like: torch.Tensor) -> ScanState:
        if self.backward_scan is not None:
            raise CospeechError("a bidirectional mamba2 mixer needs the whole sequence; it cannot stream")
        return self.forward_scan.init_state(batch, like)

    def step(self, u: torch.Tensor, state: ScanState, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, ScanState]:
        """The next frames of a stream: u (B, L, M) (L ≥ 1) -> (B, L, M) and the new state."""
        keep = frame_weights(mask, u.dtype)
        z, xbc, dt = self._project(u, keep)
        y, state = self.forward_scan(xbc, dt, keep, state)
        return self._output(y, z), state

    def chunks(self, inputs: Callable[[int, int], torch.Tensor], length: int,
               mask: torch.Tensor | None = None) -> Iterator[tuple[int, int, torch.Tensor]]:
        """Inference piece by piece: `inputs(s, e)` gives the mixer input of frames s:e (B, e-s, M);
        yields (s, e, output (B, e-s, M)) in order. Live memory is O(piece), plus a (B, T, E)
        buffer of the reverse scan's output when bidirectional."""
        piece = self.opts.piece
        bounds = [(s, min(s + piece, length)) for s in range(0, length, piece)]
        keep = frame_weights(mask, self.in_proj.weight.dtype)
        reverse = None
        if self.backward_scan is not None:
            state = None
            for s, e in reversed(bounds):
                k = None if keep is None else keep[:, s:e].flip(1)
                xbc, dt = self._project_scan(inputs(s, e).flip(1), k)
                y, state = self.backward_scan(xbc, dt, k, state)  # (B, e-s, E), reversed in time
                if reverse is None:
                    reverse = y.new_empty(y.shape[0], length, self.inner)
                reverse[:, s:e] = y.flip(1)
        state = None
        for s, e in bounds:
            k = None if keep is None else keep[:, s:e]
            z, xbc, dt = self._project(inputs(s, e), k)
            y, state = self.forward_scan(xbc, dt, k, state)
            if reverse is not None:
                y = y + reverse[:, s:e]
            yield s, e, self._output(y, z)


def make_mixer(cfg: DenoiserConfig) -> nn.Module:
    try:
        opts = Mamba2Options(**cfg.mixer)
    except TypeError as err:
        raise CospeechError(f"mamba2 mixer options: {err}") from None
    if cfg.causal and opts.bidirectional:
        raise CospeechError("a causal denoiser cannot scan backwards: leave the mamba2 mixer's bidirectional off")
    return Mamba2Mixer(cfg.width, opts)


def build(cfg: DenoiserConfig) -> Denoiser:
    """The Mamba-2 denoiser (B, T, D) -> (B, T, D)."""
    return Denoiser(cfg, make_mixer)
