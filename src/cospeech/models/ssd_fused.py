"""One direction of the Mamba-2 mixer, fused chunk by chunk: causal depthwise convolution ->
SiLU -> step sizes -> SSD scan -> D skip.

Legend: B batch, T frames, L chunk length, K convolution length, C = E + 2N convolution channels
(x, b, c), E = H · P inner width, H heads, P head dim, N state size.

Each chunk's convolution needs only the K - 1 raw frames before it, and its scan only the state,
so every intermediate lives for one chunk: (B, L, C) tensors that stay in cache on a CPU.
`_ConvScan` saves the raw inputs and the scan state at each chunk border; its backward walks the
chunks in reverse, recomputes each chunk and carries the state gradient, so training memory is
the inputs plus (T / L) states. The same loop without saving serves inference and streaming
(with the convolution tail and the scan state carried between calls; one frame at a time it is
the recurrence `ssd_step`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .ssd import future_mask, ssd_chunk_backward, ssd_chunk_forward, ssd_step


@dataclass(frozen=True)
class Sizes:
    head_dim: int  # P
    d_state: int  # N
    chunk: int  # L


def _window(conv_state, xbc, s, e):
    """Raw convolution inputs of frames s:e with the K - 1 before them: (B, K - 1 + e - s, C)."""
    k1 = conv_state.shape[1]
    if s >= k1:
        return xbc[:, s - k1 : e]
    return torch.cat([conv_state[:, s:], xbc[:, :e]], dim=1)


def _conv(win, weight, bias):
    """Causal depthwise convolution of a window (B, K - 1 + L, C) with weight (C, K) -> (B, L, C)."""
    k = weight.shape[1]
    n = win.shape[1] - k + 1
    out = torch.addcmul(bias, win[:, :n], weight[:, 0])
    for j in range(1, k):
        out.addcmul_(win[:, j : j + n], weight[:, j])
    return out


def _chunk_inputs(win, dt_raw, keep, conv_w, conv_b, dt_bias, sizes):
    """Recomputable front of one chunk -> pre-activation (B, L, C), x (B, L, H, P), b, c (B, L, N),
    step sizes dt (B, L, H) and v = dt_raw + dt_bias (B, L, H)."""
    pre = _conv(win, conv_w, conv_b)
    x, b, c = F.silu(pre).split([pre.shape[-1] - 2 * sizes.d_state, sizes.d_state, sizes.d_state], dim=-1)
    x = x.unflatten(-1, (-1, sizes.head_dim))
    v = dt_raw + dt_bias
    dt = F.softplus(v)
    if keep is not None:
        dt = dt * keep  # padded frames neither decay nor feed the state
    return pre, x, b, c, dt, v


def _loop(xbc, dt_raw, keep, conv_state, ssm_state, conv_w, conv_b, dt_bias, A_log, D, sizes, keep_states):
    """The forward chunk loop -> y (B, T, H, P), final conv tail, final scan state, and the scan
    state at each chunk start when keep_states."""
    bsz, t, _ = xbc.shape
    A = -torch.exp(A_log)  # (H,)
    starts, upper = range(0, t, sizes.chunk), future_mask(sizes.chunk, xbc.device)
    states = xbc.new_empty(len(starts), *ssm_state.shape) if keep_states else None
    y = xbc.new_empty(bsz, t, A.shape[0], sizes.head_dim)
    for i, s in enumerate(starts):
        e = min(s + sizes.chunk, t)
        if keep_states:
            states[i] = ssm_state
        _, x, b, c, dt, _ = _chunk_inputs(_window(conv_state, xbc, s, e), dt_raw[:, s:e],
                                          None if keep is None else keep[:, s:e], conv_w, conv_b, dt_bias, sizes)
        if e - s == 1 and not keep_states:  # streaming one frame: the plain recurrence
            yc, ssm_state = ssd_step(x[:, 0], dt[:, 0], A, b[:, 0], c[:, 0], ssm_state)
            yc = yc[:, None]
        else:
            yc, ssm_state = ssd_chunk_forward(x, dt, A, b, c, ssm_state, upper)
        torch.addcmul(yc, x, D[:, None], out=y[:, s:e])
    tail = _window(conv_state, xbc, t, t)  # the last K - 1 raw frames
    return y, tail, ssm_state, states


class _ConvScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xbc, dt_raw, conv_state, ssm_state, conv_w, conv_b, dt_bias, A_log, D, keep, sizes):
        y, tail, final, states = _loop(xbc, dt_raw, keep, conv_state, ssm_state, conv_w, conv_b, dt_bias, A_log, D,
                                       sizes, keep_states=True)
        ctx.save_for_backward(xbc, dt_raw, conv_state, conv_w, conv_b, dt_bias, A_log, D, keep, states)
        ctx.sizes = sizes
        return y, tail.clone(), final

    @staticmethod
    def backward(ctx, dy, dtail, dfinal):
        xbc, dt_raw, conv_state, conv_w, conv_b, dt_bias, A_log, D, keep, states = ctx.saved_tensors
        sizes, (bsz, t, ch), k1 = ctx.sizes, xbc.shape, conv_state.shape[1]
        A = -torch.exp(A_log)
        upper = future_mask(sizes.chunk, xbc.device)
        dext = xbc.new_zeros(bsz, k1 + t, ch)  # gradient of [conv_state, xbc]
        if dtail is not None:
            dext[:, t:] += dtail
        ddt_raw = torch.empty_like(dt_raw)
        dconv_w, dconv_b = torch.zeros_like(conv_w), torch.zeros_like(conv_b)
        dA, dD = torch.zeros_like(A), torch.zeros_like(D)
        dstate = torch.zeros_like(states[0]) if dfinal is None else dfinal
        if dy is None:
            dy = xbc.new_zeros(bsz, t, A.shape[0], sizes.head_dim)
        for i in reversed(range(len(states))):
            s = i * sizes.chunk
            e = min(s + sizes.chunk, t)
            win = _window(conv_state, xbc, s, e)
            kp = None if keep is None else keep[:, s:e]
            pre, x, b, c, dt, v = _chunk_inputs(win, dt_raw[:, s:e], kp, conv_w, conv_b, dt_bias, sizes)
            dyc = dy[:, s:e]
            dD += (dyc * x).sum((0, 1, 3))
            dx, ddt, dA_i, db, dc, dstate = ssd_chunk_backward(x, dt, A, b, c, states[i], upper, dyc, dstate)
            dA += dA_i
            dx = torch.addcmul(dx, dyc, D[:, None])
            sig = torch.sigmoid(pre)
            dpre = torch.cat([dx.flatten(-2), db, dc], dim=-1).mul_(sig * (1 + pre * (1 - sig)))  # (B, L, C)
            dconv_b += dpre.sum((0, 1))
            n = e - s
            for j in range(conv_w.shape[1]):
                dconv_w[:, j] += (dpre * win[:, j : j + n]).sum((0, 1))
                dext[:, s + j : s + j + n].addcmul_(dpre, conv_w[:, j])
            if kp is not None:
                ddt = ddt * kp
            ddt_raw[:, s:e] = ddt * torch.sigmoid(v)
        return (dext[:, k1:], ddt_raw, dext[:, :k1], dstate, dconv_w, dconv_b, ddt_raw.sum((0, 1)), dA * A, dD,
                None, None)


def conv_scan(
    xbc: torch.Tensor, dt_raw: torch.Tensor, keep: torch.Tensor | None, conv_state: torch.Tensor,
    ssm_state: torch.Tensor, conv_w: torch.Tensor, conv_b: torch.Tensor, dt_bias: torch.Tensor,
    A_log: torch.Tensor, D: torch.Tensor, sizes: Sizes,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """xbc (B, T, C) raw convolution inputs, dt_raw (B, T, H), keep (B, T, 1) or None, conv_state
    (B, K - 1, C), ssm_state (B, H, P, N), conv_w (C, K), conv_b (C,), dt_bias, A_log, D (H,)
    -> y (B, T, H, P) (scan output plus D skip), conv tail (B, K - 1, C), scan state (B, H, P, N).
    Differentiable in every tensor but keep."""
    tensors = (xbc, dt_raw, conv_state, ssm_state, conv_w, conv_b, dt_bias, A_log, D)
    if torch.is_grad_enabled() and any(v.requires_grad for v in tensors):
        return _ConvScan.apply(*tensors, keep, sizes)
    y, tail, final, _ = _loop(xbc, dt_raw, keep, conv_state, ssm_state, conv_w, conv_b, dt_bias, A_log, D, sizes,
                              keep_states=False)
    return y, tail, final
