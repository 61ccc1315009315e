"""The Mamba-2 state-space scan (SSD), in pure PyTorch, linear in time and memory.

One head h carries a state S (P, N) through the frames:

    S_t = exp(dt_t · A_h) · S_{t-1} + (dt_t · x_t) ⊗ b_t        y_t = S_t · c_t

Shapes (legend: B batch, T frames, H heads, P head dim, N state size, L chunk length, K chunks
in a piece): x (B, T, H, P), dt (B, T, H) positive step sizes, A (H,) negative rates, b and c
(B, T, N) (one group, shared by the heads), state (B, H, P, N).

The SSD algorithm of Mamba-2 (written plainly, all chunks at once, in `ssd_reference`, the
test oracle): inside a chunk of L frames the output is a masked (L × L) product; between chunks
only the state passes. `ssd_scan` walks the sequence a *piece* of K chunks at a time: the K
chunks' (L × L) terms are computed together, the state crosses the K chunk borders in a short
loop, and only the state crosses piece borders, so the largest intermediate is (B, K, H, L, L)
whatever T is. `_PiecewiseScan` (training) keeps the
inputs and the state at each piece border; backward walks the pieces in reverse, recomputes
each piece and carries the state gradient. `ssd_step` is the recurrence itself, one frame at a
time, for streaming.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ssd_step(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, b: torch.Tensor, c: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One frame of the recurrence. x (B, H, P), dt (B, H), A (H,), b, c (B, N), state (B, H, P, N)
    -> y (B, H, P), new state (B, H, P, N)."""
    decay = torch.exp(dt * A)[..., None, None]  # (B, H, 1, 1)
    state = decay * state + (dt[..., None] * x)[..., None] * b[:, None, None, :]  # (B, H, P, N)
    return (state @ c[:, None, :, None]).squeeze(-1), state  # (B, H, P)


def future_mask(n: int, device) -> torch.Tensor:
    """(n, n) bool, True above the diagonal (the future of each frame)."""
    return torch.ones(n, n, dtype=torch.bool, device=device).triu(1)


def _in_chunks(v: torch.Tensor, chunk: int) -> torch.Tensor:
    """(B, T, ...) -> (B, K, L, ...), zero-padded to whole chunks (a zero step size neither decays
    nor feeds the state, so padding changes nothing before it)."""
    pad = -v.shape[1] % chunk
    if pad:
        v = F.pad(v, (0, 0) * (v.dim() - 2) + (0, pad))
    return v.unflatten(1, (-1, chunk))


def piece_forward(x, dt, A, b, c, state, chunk, upper):
    """One piece. x (B, T, H, P), dt (B, T, H), b, c (B, T, N), state (B, H, P, N) at its start,
    upper = future_mask(chunk) -> y (B, T, H, P), state at its end, and what `piece_backward`
    reuses."""
    bsz, t, h, p = x.shape
    x5, dt4, b4, c4 = (_in_chunks(v, chunk) for v in (x, dt, b, c))  # (B, K, L, ...)
    k = x5.shape[1]
    acs = (dt4 * A).cumsum(2).transpose(2, 3)  # (B, K, H, L): cumulative log-decay in each chunk
    decay = (acs[..., :, None] - acs[..., None, :]).masked_fill_(upper, float("-inf")).exp_()  # (B, K, H, L, L)
    xd = (x5 * dt4[..., None]).transpose(2, 3).contiguous()  # (B, K, H, L, P)
    scores = c4 @ b4.transpose(-1, -2)  # (B, K, L, L)
    m = decay * scores[:, :, None]  # (B, K, H, L, L)
    e = acs.exp()  # (B, K, H, L)
    w = torch.exp(acs[..., -1:] - acs)  # (B, K, H, L): decay from each frame to its chunk's end
    u = (xd * w[..., None]).transpose(2, 3).reshape(bsz, k, chunk, h * p)  # (B, K, L, H·P)
    local = (u.transpose(-1, -2) @ b4).view(bsz, k, h, p, -1)  # (B, K, H, P, N): each chunk's own input
    g = e[..., -1, None, None]  # (B, K, H, 1, 1): decay across each chunk
    starts = x.new_empty(bsz, k, h, p, local.shape[-1])  # state at each chunk start
    for i in range(k):
        starts[:, i] = state
        state = torch.addcmul(local[:, i], state, g[:, i])
    flat = starts.view(bsz, k, h * p, -1)  # (B, K, H·P, N)
    y = (c4 @ flat.transpose(-1, -2)).view(bsz, k, chunk, h, p)  # (B, K, L, H, P): from the chunk's start state
    y.mul_(e.transpose(2, 3)[..., None]).add_((m @ xd).transpose(2, 3))  # plus within the chunk
    return y.flatten(1, 2)[:, :t], state, (x5, dt4, b4, c4, acs, decay, xd, scores, m, e, w, u, g, starts)


def piece_backward(A, saved, dy, dstate):
    """Gradients of one piece from `piece_forward`'s saved values. dy (B, T, H, P), dstate
    (B, H, P, N) at its end -> dx, ddt, dA (H,), db, dc, dstate at its start."""
    x5, dt4, b4, c4, acs, decay, xd, scores, m, e, w, u, g, starts = saved
    bsz, k, chunk, h, p = x5.shape
    t = dy.shape[1]
    dy5 = _in_chunks(dy, chunk)  # (B, K, L, H, P)
    dyh = dy5.transpose(2, 3).contiguous()  # (B, K, H, L, P)
    dxd = m.transpose(-1, -2) @ dyh  # (B, K, H, L, P)
    dm = dyh @ xd.transpose(-1, -2)  # (B, K, H, L, L)
    dscores = (dm * decay).sum(2)  # (B, K, L, L)
    dc = dscores @ b4  # (B, K, L, N)
    db = dscores.transpose(-1, -2) @ c4
    prod = dm.mul_(m)
    dacs = prod.sum(-1) - prod.sum(-2)  # (B, K, H, L)

    flat = starts.view(bsz, k, h * p, -1)  # (B, K, H·P, N)
    y_in = (c4 @ flat.transpose(-1, -2)).view(bsz, k, chunk, h, p)
    dy_in = dy5 * e.transpose(2, 3)[..., None]  # (B, K, L, H, P)
    dacs += (dy_in * y_in).sum(-1).transpose(2, 3)
    dy_in = dy_in.view(bsz, k, chunk, h * p)
    dc += dy_in @ flat
    dstart = (dy_in.transpose(-1, -2) @ c4).view(starts.shape)  # (B, K, H, P, N): through each chunk's output
    dnew = torch.empty_like(starts)  # gradient of the state at each chunk end
    for i in reversed(range(k)):
        dnew[:, i] = dstate
        dstate = torch.addcmul(dstart[:, i], dstate, g[:, i])
    d_end = (dnew * starts).sum((-1, -2)) * g[..., 0, 0]  # (B, K, H)
    dflat = dnew.view(bsz, k, h * p, -1)
    db += u @ dflat
    du = (b4 @ dflat.transpose(-1, -2)).view(bsz, k, chunk, h, p).transpose(2, 3)  # (B, K, H, L, P)
    dxd += du * w[..., None]
    dw = (du * xd).sum(-1) * w  # (B, K, H, L)
    dacs -= dw
    dacs[..., -1] += dw.sum(-1) + d_end

    da = dacs.flip(-1).cumsum(-1).flip(-1).transpose(2, 3)  # (B, K, L, H): through the cumulative sum
    dxd = dxd.transpose(2, 3)  # (B, K, L, H, P)
    dx = (dxd * dt4[..., None]).flatten(1, 2)[:, :t]
    ddt = ((dxd * x5).sum(-1) + da * A).flatten(1, 2)[:, :t]
    dA = (da * dt4).sum((0, 1, 2))
    return dx, ddt, dA, db.flatten(1, 2)[:, :t], dc.flatten(1, 2)[:, :t], dstate


def _scan(x, dt, A, b, c, chunk, piece, state, keep_states=False):
    """The piece loop. Returns y (B, T, H, P), final state, and the state at each piece start
    ((n, B, H, P, N), n pieces) when keep_states."""
    bsz, t, h, p = x.shape
    starts, upper = range(0, t, piece), future_mask(chunk, x.device)
    kept = x.new_empty(len(starts), *state.shape) if keep_states else None
    y = x.new_empty(bsz, t, h, p)
    for i, s in enumerate(starts):
        if keep_states:
            kept[i] = state
        sl = slice(s, s + piece)
        y[:, sl], state, _ = piece_forward(x[:, sl], dt[:, sl], A, b[:, sl], c[:, sl], state, chunk, upper)
    return y, state, kept


class _PiecewiseScan(torch.autograd.Function):
    """Piecewise scan whose backward recomputes each piece: saves the inputs and a state per piece."""

    @staticmethod
    def forward(ctx, x, dt, A, b, c, state, chunk, piece):
        y, final, kept = _scan(x, dt, A, b, c, chunk, piece, state, keep_states=True)
        ctx.save_for_backward(x, dt, A, b, c, kept)
        ctx.chunk, ctx.piece = chunk, piece
        return y, final

    @staticmethod
    def backward(ctx, dy, dfinal):
        x, dt, A, b, c, kept = ctx.saved_tensors
        chunk, piece = ctx.chunk, ctx.piece
        upper = future_mask(chunk, x.device)
        dx, ddt, db, dc = torch.empty_like(x), torch.empty_like(dt), torch.empty_like(b), torch.empty_like(c)
        dA = torch.zeros_like(A)
        dstate = torch.zeros_like(kept[0]) if dfinal is None else dfinal
        if dy is None:
            dy = torch.zeros_like(x)
        for i in reversed(range(len(kept))):
            sl = slice(i * piece, (i + 1) * piece)
            _, _, saved = piece_forward(x[:, sl], dt[:, sl], A, b[:, sl], c[:, sl], kept[i], chunk, upper)
            dx[:, sl], ddt[:, sl], dA_i, db[:, sl], dc[:, sl], dstate = piece_backward(A, saved, dy[:, sl], dstate)
            dA += dA_i
        return dx, ddt, dA, db, dc, dstate, None, None


def ssd_scan(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
    chunk: int = 64, state: torch.Tensor | None = None, piece: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The scan over a whole sequence, a piece of chunks at a time with the state passed on.

    x (B, T, H, P), dt (B, T, H), A (H,), b, c (B, T, N), state (B, H, P, N) or None (zeros);
    piece: frames per step, a multiple of chunk (default 4 chunks) -> y (B, T, H, P), final state
    (B, H, P, N). Differentiable in every input.
    """
    bsz, t, h, p = x.shape
    piece = piece or 4 * chunk
    assert piece % chunk == 0, "piece must be a multiple of chunk"
    assert dt.shape == (bsz, t, h) and A.shape == (h,), "dt must be (B, T, H) and A (H,)"
    assert b.shape == c.shape and b.shape[:2] == (bsz, t), "b and c must be (B, T, N)"
    if state is None:
        state = x.new_zeros(bsz, h, p, b.shape[-1])
    if torch.is_grad_enabled() and any(v.requires_grad for v in (x, dt, A, b, c, state)):
        return _PiecewiseScan.apply(x, dt, A, b, c, state, chunk, piece)
    y, final, _ = _scan(x, dt, A, b, c, chunk, piece, state)
    return y, final
