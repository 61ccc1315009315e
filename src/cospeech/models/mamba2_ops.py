"""Fused, piece-by-piece operations of the Mamba-2 mixer, each with a recomputing backward.

Legend: B batch, T frames, Lp frames in a piece, d_conv convolution length, M model width, H heads,
P head dim, E = H · P inner width, N state size, C = E + 2N convolution channels (x, b, c).

One *direction* is: causal depthwise convolution -> SiLU -> step sizes -> SSD scan -> D skip.
The loops below walk a *piece* of frames (a few SSD chunks) at a time: a piece's convolution
needs only the d_conv - 1 raw frames before it and its scan only the incoming state, so every
intermediate lives for one piece, (B, piece, C) tensors that stay in cache on a CPU.

- `conv_scan`: one direction over a sequence (`_ConvScan` saves the raw inputs and the scan state
  at each piece border; backward walks the pieces in reverse, recomputes each one and carries the
  state gradient). Without gradients the same loop serves piecewise inference and streaming.
- `gated_rms_norm`: RMSNorm(y · SiLU(z)) · weight, piece by piece, recomputed in backward.
- `fused_mixer`: the whole one-directional mixer (input projection, direction, gated norm, output
  projection) piece by piece; training memory is the input plus one state per piece.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .ssd import future_mask, piece_backward, piece_forward, ssd_step


@dataclass(frozen=True)
class Sizes:
    head_dim: int  # P
    d_state: int  # N
    chunk: int  # L, frames per SSD chunk
    piece: int  # frames per step of the loops, a multiple of chunk


# -- one direction ---------------------------------------------------------------------------
def _window(conv_state, xbc, s, e):
    """Raw convolution inputs of frames s:e with the d_conv - 1 before them: (B, d_conv - 1 + e - s, C)."""
    k1 = conv_state.shape[1]
    if s >= k1:
        return xbc[:, s - k1 : e]
    return torch.cat([conv_state[:, s:], xbc[:, :e]], dim=1)


def _conv(win, weight, bias):
    """Causal depthwise convolution of a window (B, d_conv - 1 + Lp, C) with weight
    (C, d_conv) -> (B, Lp, C)."""
    k = weight.shape[1]
    n = win.shape[1] - k + 1
    out = torch.addcmul(bias, win[:, :n], weight[:, 0])
    for j in range(1, k):
        out.addcmul_(win[:, j : j + n], weight[:, j])
    return out


def _direction_forward(win, dt_raw, keep, weights, A, state, upper, sizes):
    """One piece of a direction (Lp frames). win (B, d_conv - 1 + Lp, C), dt_raw (B, Lp, H), keep
    (B, Lp, 1) or None, weights (conv_w, conv_b, dt_bias, D), state (B, H, P, N) -> y (B, Lp, H, P),
    new state, and the intermediates `_direction_backward` needs."""
    conv_w, conv_b, dt_bias, D = weights
    pre = _conv(win, conv_w, conv_b)  # (B, Lp, C)
    x, b, c = F.silu(pre).split([pre.shape[-1] - 2 * sizes.d_state, sizes.d_state, sizes.d_state], dim=-1)
    x = x.unflatten(-1, (-1, sizes.head_dim))  # (B, Lp, H, P)
    v = dt_raw + dt_bias
    dt = F.softplus(v)
    if keep is not None:
        dt = dt * keep  # padded frames neither decay nor feed the state
    y, state, saved = piece_forward(x, dt, A, b, c, state, sizes.chunk, upper)
    return y.addcmul_(x, D[:, None]), state, (pre, x, v, saved)


def _direction_backward(win, keep, weights, A, parts, dy, dstate, grads, dwin):
    """Gradients of one piece: dy (B, Lp, H, P), dstate (B, H, P, N) at its end -> ddt_raw
    (B, Lp, H) and dstate at its start; adds the window's gradient into dwin (B, d_conv - 1 + Lp, C)
    and the weights' into grads [conv_w, conv_b, dt_bias, A, D]."""
    conv_w, _, _, D = weights
    pre, x, v, saved = parts
    grads[4] += (dy * x).sum((0, 1, 3))
    dx, ddt, dA, db, dc, dstate = piece_backward(A, saved, dy, dstate)
    grads[3] += dA
    dx = torch.addcmul(dx, dy, D[:, None])
    dpre = torch.ops.aten.silu_backward(torch.cat([dx.flatten(-2), db, dc], dim=-1), pre)  # (B, Lp, C)
    grads[1] += dpre.sum((0, 1))
    n = dpre.shape[1]
    for j in range(conv_w.shape[1]):
        grads[0][:, j] += (dpre * win[:, j : j + n]).sum((0, 1))
        dwin[:, j : j + n].addcmul_(dpre, conv_w[:, j])
    if keep is not None:
        ddt = ddt * keep
    ddt_raw = torch.ops.aten.softplus_backward(ddt, v, 1.0, 20.0)
    grads[2] += ddt_raw.sum((0, 1))
    return ddt_raw, dstate


def _loop(xbc, dt_raw, keep, conv_state, ssm_state, weights, A, sizes, keep_states):
    """The forward piece loop -> y (B, T, H, P), final conv tail, final scan state, and the scan
    state at each piece start when keep_states."""
    bsz, t, _ = xbc.shape
    starts, upper = range(0, t, sizes.piece), future_mask(sizes.chunk, xbc.device)
    states = xbc.new_empty(len(starts), *ssm_state.shape) if keep_states else None
    y = xbc.new_empty(bsz, t, A.shape[0], sizes.head_dim)
    for i, s in enumerate(starts):
        e = min(s + sizes.piece, t)
        win, kp = _window(conv_state, xbc, s, e), None if keep is None else keep[:, s:e]
        if keep_states:
            states[i] = ssm_state
        if e - s == 1 and not keep_states:  # streaming one frame: the plain recurrence
            y[:, s:e], ssm_state = _step(win, dt_raw[:, s:e], kp, weights, A, ssm_state, sizes)
        else:
            y[:, s:e], ssm_state, _ = _direction_forward(win, dt_raw[:, s:e], kp, weights, A, ssm_state, upper, sizes)
    return y, _window(conv_state, xbc, t, t), ssm_state, states


def _step(win, dt_raw, keep, weights, A, state, sizes):
    """One frame: the recurrence `ssd_step` instead of a chunk of length one."""
    conv_w, conv_b, dt_bias, D = weights
    channels = win.shape[-1]
    x, b, c = F.silu(_conv(win, conv_w, conv_b)[:, 0]).split([channels - 2 * sizes.d_state, sizes.d_state, sizes.d_state], dim=-1)
    x = x.unflatten(-1, (-1, sizes.head_dim))  # (B, H, P)
    dt = F.softplus(dt_raw[:, 0] + dt_bias)
    if keep is not None:
        dt = dt * keep[:, 0]
    y, state = ssd_step(x, dt, A, b, c, state)
    return torch.addcmul(y, x, D[:, None])[:, None], state


class _ConvScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xbc, dt_raw, conv_state, ssm_state, conv_w, conv_b, dt_bias, A_log, D, keep, sizes):
        weights = (conv_w, conv_b, dt_bias, D)
        y, tail, final, states = _loop(xbc, dt_raw, keep, conv_state, ssm_state, weights, -torch.exp(A_log), sizes,
                                       keep_states=True)
        ctx.save_for_backward(xbc, dt_raw, conv_state, conv_w, conv_b, dt_bias, A_log, D, keep, states)
        ctx.sizes = sizes
        return y, tail.clone(), final

    @staticmethod
    def backward(ctx, dy, dtail, dfinal):
        xbc, dt_raw, conv_state, conv_w, conv_b, dt_bias, A_log, D, keep, states = ctx.saved_tensors
        sizes, (bsz, t, ch), k1 = ctx.sizes, xbc.shape, conv_state.shape[1]
        weights, A = (conv_w, conv_b, dt_bias, D), -torch.exp(A_log)
        upper = future_mask(sizes.chunk, xbc.device)
        dext = xbc.new_zeros(bsz, k1 + t, ch)  # gradient of [conv_state, xbc]
        if dtail is not None:
            dext[:, t:] += dtail
        ddt_raw = torch.empty_like(dt_raw)
        grads = [torch.zeros_like(w) for w in (conv_w, conv_b, dt_bias, A, D)]
        dstate = torch.zeros_like(states[0]) if dfinal is None else dfinal
        if dy is None:
            dy = xbc.new_zeros(bsz, t, A.shape[0], sizes.head_dim)
        for i in reversed(range(len(states))):
            s = i * sizes.piece
            e = min(s + sizes.piece, t)
            win, kp = _window(conv_state, xbc, s, e), None if keep is None else keep[:, s:e]
            _, _, parts = _direction_forward(win, dt_raw[:, s:e], kp, weights, A, states[i], upper, sizes)
            ddt_raw[:, s:e], dstate = _direction_backward(win, kp, weights, A, parts, dy[:, s:e], dstate, grads,
                                                          dext[:, s : e + k1])
        dconv_w, dconv_b, ddt_bias, dA, dD = grads
        return dext[:, k1:], ddt_raw, dext[:, :k1], dstate, dconv_w, dconv_b, ddt_bias, dA * A, dD, None, None


def conv_scan(
    xbc: torch.Tensor, dt_raw: torch.Tensor, keep: torch.Tensor | None, conv_state: torch.Tensor,
    ssm_state: torch.Tensor, conv_w: torch.Tensor, conv_b: torch.Tensor, dt_bias: torch.Tensor,
    A_log: torch.Tensor, D: torch.Tensor, sizes: Sizes,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One direction. xbc (B, T, C) raw convolution inputs, dt_raw (B, T, H), keep (B, T, 1) or
    None, conv_state (B, d_conv - 1, C), ssm_state (B, H, P, N), conv_w (C, d_conv), conv_b (C,), dt_bias,
    A_log, D (H,) -> y (B, T, H, P) (scan plus D skip), conv tail (B, d_conv - 1, C), scan state
    (B, H, P, N). Differentiable in every tensor but keep."""
    tensors = (xbc, dt_raw, conv_state, ssm_state, conv_w, conv_b, dt_bias, A_log, D)
    if torch.is_grad_enabled() and any(v.requires_grad for v in tensors):
        return _ConvScan.apply(*tensors, keep, sizes)
    y, tail, final, _ = _loop(xbc, dt_raw, keep, conv_state, ssm_state, (conv_w, conv_b, dt_bias, D),
                              -torch.exp(A_log), sizes, keep_states=False)
    return y, tail.clone(), final  # a copy: a view would keep the whole xbc alive with the state


# -- gated norm ------------------------------------------------------------------------------
def _gated_norm(y, z, weight, eps):
    g = y * F.silu(z)
    return (g * torch.rsqrt(g.square().mean(-1, keepdim=True) + eps)).mul_(weight)


def _gated_norm_backward(y, z, weight, dout, eps):
    """-> dy, dz, dweight (summed over B, T)."""
    gate = F.silu(z)
    g = y * gate
    r = torch.rsqrt(g.square().mean(-1, keepdim=True) + eps)
    n = g * r
    dn = dout * weight
    dg = (dn - n * (dn * n).mean(-1, keepdim=True)).mul_(r)
    return dg * gate, torch.ops.aten.silu_backward(dg * y, z), (dout * n).sum((0, 1))


class _GatedRMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, z, weight, piece, eps):
        out = torch.empty_like(y)
        for s in range(0, y.shape[1], piece):
            out[:, s : s + piece] = _gated_norm(y[:, s : s + piece], z[:, s : s + piece], weight, eps)
        ctx.save_for_backward(y, z, weight)
        ctx.piece, ctx.eps = piece, eps
        return out

    @staticmethod
    def backward(ctx, dout):
        y, z, weight = ctx.saved_tensors
        dy, dz, dw = torch.empty_like(y), torch.empty_like(z), torch.zeros_like(weight)
        for s in range(0, y.shape[1], ctx.piece):
            sl = slice(s, s + ctx.piece)
            dy[:, sl], dz[:, sl], dw_piece = _gated_norm_backward(y[:, sl], z[:, sl], weight, dout[:, sl], ctx.eps)
            dw += dw_piece
        return dy, dz, dw, None, None


def gated_rms_norm(y: torch.Tensor, z: torch.Tensor, weight: torch.Tensor, piece: int = 64, eps: float = 1e-5) -> torch.Tensor:
    """RMSNorm(y · SiLU(z)) · weight over the last dim (Mamba-2's gated norm). y, z (B, T, E) -> (B, T, E)."""
    if torch.is_grad_enabled() and any(v.requires_grad for v in (y, z, weight)):
        return _GatedRMSNorm.apply(y, z, weight, piece, eps)
    return _gated_norm(y, z, weight, eps)


# -- the whole one-directional mixer ---------------------------------------------------------
def _project(u, w_in, keep, inner, channels):
    """u (B, Lp, M) -> z (B, Lp, E), xbc (B, Lp, C) with padded frames zeroed, dt_raw (B, Lp, H)."""
    z, xbc, dt_raw = F.linear(u, w_in).split([inner, channels, w_in.shape[0] - inner - channels], dim=-1)
    return z, (xbc if keep is None else xbc * keep), dt_raw


class _FusedMixer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, keep, w_in, conv_w, conv_b, dt_bias, A_log, D, norm_w, w_out, sizes, eps):
        bsz, t, _ = u.shape
        inner, channels, k1 = norm_w.shape[0], conv_w.shape[0], conv_w.shape[1] - 1
        weights, A = (conv_w, conv_b, dt_bias, D), -torch.exp(A_log)
        starts, upper = range(0, t, sizes.piece), future_mask(sizes.chunk, u.device)
        states = u.new_empty(len(starts), bsz, A.shape[0], sizes.head_dim, sizes.d_state)
        tails = u.new_empty(len(starts), bsz, k1, channels)
        state, tail = states.new_zeros(states.shape[1:]), tails.new_zeros(tails.shape[1:])
        out = u.new_empty(bsz, t, w_out.shape[0])
        for i, s in enumerate(starts):
            e = min(s + sizes.piece, t)
            kp = None if keep is None else keep[:, s:e]
            z, xbc, dt_raw = _project(u[:, s:e], w_in, kp, inner, channels)
            states[i], tails[i] = state, tail
            win = torch.cat([tail, xbc], dim=1)  # (B, d_conv - 1 + Lp, C)
            y, state, _ = _direction_forward(win, dt_raw, kp, weights, A, state, upper, sizes)
            tail = win[:, win.shape[1] - k1 :]
            out[:, s:e] = F.linear(_gated_norm(y.flatten(-2), z, norm_w, eps), w_out)
        ctx.save_for_backward(u, keep, w_in, conv_w, conv_b, dt_bias, A_log, D, norm_w, w_out, states, tails)
        ctx.sizes, ctx.eps = sizes, eps
        return out

    @staticmethod
    def backward(ctx, dout):
        u, keep, w_in, conv_w, conv_b, dt_bias, A_log, D, norm_w, w_out, states, tails = ctx.saved_tensors
        sizes, eps, (bsz, t, _) = ctx.sizes, ctx.eps, u.shape
        inner, channels, k1 = norm_w.shape[0], conv_w.shape[0], conv_w.shape[1] - 1
        weights, A = (conv_w, conv_b, dt_bias, D), -torch.exp(A_log)
        upper = future_mask(sizes.chunk, u.device)
        du, dw_in, dw_out, dnorm = torch.empty_like(u), torch.zeros_like(w_in), torch.zeros_like(w_out), torch.zeros_like(norm_w)
        grads = [torch.zeros_like(w) for w in (conv_w, conv_b, dt_bias, A, D)]
        dext = u.new_zeros(bsz, k1 + t, channels)  # gradient of [zeros, xbc]
        dstate = torch.zeros_like(states[0])
        for i in reversed(range(len(states))):
            s = i * sizes.piece
            e = min(s + sizes.piece, t)
            uc, kp, do = u[:, s:e], None if keep is None else keep[:, s:e], dout[:, s:e]
            z, xbc, dt_raw = _project(uc, w_in, kp, inner, channels)
            win = torch.cat([tails[i], xbc], dim=1)
            y, _, parts = _direction_forward(win, dt_raw, kp, weights, A, states[i], upper, sizes)
            y = y.flatten(-2)  # (B, Lp, E)
            dw_out.addmm_(do.flatten(0, 1).T, _gated_norm(y, z, norm_w, eps).flatten(0, 1))
            dy, dz, dn = _gated_norm_backward(y, z, norm_w, do @ w_out, eps)
            dnorm += dn
            ddt_raw, dstate = _direction_backward(win, kp, weights, A, parts, dy.unflatten(-1, (-1, sizes.head_dim)),
                                                  dstate, grads, dext[:, s : e + k1])
            dxbc = dext[:, s + k1 : e + k1]
            dp = torch.cat([dz, dxbc if kp is None else dxbc * kp, ddt_raw], dim=-1)  # (B, Lp, 2E + 2N + H)
            dw_in.addmm_(dp.flatten(0, 1).T, uc.flatten(0, 1))
            du[:, s:e] = dp @ w_in
        dconv_w, dconv_b, ddt_bias, dA, dD = grads
        return du, None, dw_in, dconv_w, dconv_b, ddt_bias, dA * A, dD, dnorm, dw_out, None, None


def fused_mixer(
    u: torch.Tensor, keep: torch.Tensor | None, w_in: torch.Tensor, conv_w: torch.Tensor, conv_b: torch.Tensor,
    dt_bias: torch.Tensor, A_log: torch.Tensor, D: torch.Tensor, norm_w: torch.Tensor, w_out: torch.Tensor,
    sizes: Sizes, eps: float = 1e-5,
) -> torch.Tensor:
    """The one-directional mixer from zero states, for training. u (B, T, M), keep (B, T, 1) or
    None, w_in (2E + 2N + H, M) for [z, xbc, dt], direction weights as in `conv_scan`, norm_w (E,),
    w_out (M, E) -> (B, T, M). Saves u and one scan state and convolution tail per piece."""
    return _FusedMixer.apply(u, keep, w_in, conv_w, conv_b, dt_bias, A_log, D, norm_w, w_out, sizes, eps)
