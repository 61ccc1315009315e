"""The Mamba-2 state-space scan (SSD), in pure PyTorch, linear in time and memory.

One head h carries a state S (P, N) through the frames:

    S_t = exp(dt_t · A_h) · S_{t-1} + (dt_t · x_t) ⊗ b_t        y_t = S_t · c_t

Shapes (legend: B batch, T frames, H heads, P head dim, N state size, L chunk length):
x (B, T, H, P), dt (B, T, H) positive step sizes, A (H,) negative rates, b and c (B, T, N)
(one group, shared by the heads), state (B, H, P, N).

`ssd_scan` computes this chunk by chunk (the SSD algorithm of Mamba-2, as in `ssd_minimal`):
inside a chunk the output is a masked (L × L) product, and only the state crosses chunk
borders, so nothing of size (chunks × L × L × H) exists at once. For training, `_ChunkedScan`
keeps just the inputs and the state at each chunk border; backward walks the chunks in reverse,
recomputes each chunk's (L × L) terms and carries the state gradient. `ssd_step` is the
recurrence itself, one frame at a time, for streaming.
"""

from __future__ import annotations

import torch


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


def chunk_terms(x, dt, A, b, c, upper):
    """Quantities of one chunk that do not depend on the incoming state.

    x (B, L, H, P), dt (B, L, H), b, c (B, L, N), upper (≥L, ≥L) from `future_mask` -> xd (B, H, L, P),
    cumulative log-decay acs (B, H, L), decay (B, H, L, L) = exp(acs_l - acs_s) for s ≤ l else 0,
    scores G (B, L, L), and the masked mixing matrix m = decay · G (B, H, L, L).
    """
    n = x.shape[1]
    upper = upper[:n, :n]
    acs = (dt * A).cumsum(1).transpose(1, 2)  # (B, H, L)
    decay = (acs[..., :, None] - acs[..., None, :]).masked_fill_(upper, float("-inf")).exp_()  # (B, H, L, L)
    xd = (x * dt[..., None]).transpose(1, 2).contiguous()  # (B, H, L, P)
    scores = c @ b.transpose(1, 2)  # (B, L, L)
    return xd, acs, decay, scores, decay * scores[:, None]


def ssd_chunk_forward(x, dt, A, b, c, state, upper, terms=None, new_state=True):
    """One chunk: x (B, L, H, P), dt (B, L, H), b, c (B, L, N), state (B, H, P, N) at its start
    -> y (B, L, H, P), state (B, H, P, N) at its end (None unless new_state). `terms`:
    `chunk_terms` if already computed."""
    bsz, n, h, p = x.shape
    xd, acs, decay, scores, m = terms or chunk_terms(x, dt, A, b, c, upper)
    e = acs.exp()  # (B, H, L)
    flat = state.reshape(bsz, h * p, -1)  # (B, H·P, N)
    y = (c @ flat.transpose(1, 2)).view(bsz, n, h, p)  # (B, L, H, P): from the incoming state
    y.mul_(e.transpose(1, 2)[..., None]).add_((m @ xd).transpose(1, 2))  # plus within the chunk
    if not new_state:
        return y, None
    w = torch.exp(acs[..., -1:] - acs)  # (B, H, L): decay from each frame to the chunk end
    u = (xd * w[..., None]).transpose(1, 2).reshape(bsz, n, h * p)  # (B, L, H·P)
    new = e[..., -1, None, None] * state + (u.transpose(1, 2) @ b).view(bsz, h, p, -1)  # (B, H, P, N)
    return y, new


def ssd_chunk_backward(x, dt, A, b, c, state, upper, dy, dnew, terms=None):
    """Gradients of one chunk, recomputing its (L × L) terms unless given. dy (B, L, H, P),
    dnew (B, H, P, N) -> dx, ddt, dA (H,), db, dc, dstate (gradient of the state at the chunk start)."""
    bsz, n, h, p = x.shape
    xd, acs, decay, scores, m = terms or chunk_terms(x, dt, A, b, c, upper)
    dyh = dy.transpose(1, 2).contiguous()  # (B, H, L, P)
    dxd = m.transpose(-1, -2) @ dyh  # (B, H, L, P)
    dm = dyh @ xd.transpose(-1, -2)  # (B, H, L, L)
    dscores = (dm * decay).sum(1)  # (B, L, L)
    dc = dscores @ b  # (B, L, N)
    db = dscores.transpose(1, 2) @ c  # (B, L, N)
    prod = dm.mul_(m)  # (B, H, L, L)
    dacs = prod.sum(-1) - prod.sum(-2)  # (B, H, L)

    e = acs.exp()  # (B, H, L)
    flat = state.reshape(bsz, h * p, -1)  # (B, H·P, N)
    y_in = (c @ flat.transpose(1, 2)).view(bsz, n, h, p)  # (B, L, H, P)
    dy_in = dy * e.transpose(1, 2)[..., None]  # (B, L, H, P)
    dacs = dacs + (dy_in * y_in).sum(-1).transpose(1, 2)
    dy_in = dy_in.reshape(bsz, n, h * p)  # (B, L, H·P)
    dc = dc + dy_in @ flat
    dstate = (dy_in.transpose(1, 2) @ c).view(bsz, h, p, -1)  # (B, H, P, N)

    e_end = e[..., -1]  # (B, H)
    dstate = dstate + e_end[..., None, None] * dnew
    d_end = (dnew * state).sum((-1, -2)) * e_end  # (B, H)
    w = torch.exp(acs[..., -1:] - acs)  # (B, H, L)
    u = (xd * w[..., None]).transpose(1, 2).reshape(bsz, n, h * p)  # (B, L, H·P)
    dflat = dnew.reshape(bsz, h * p, -1)  # (B, H·P, N)
    db = db + u @ dflat
    du = (b @ dflat.transpose(1, 2)).view(bsz, n, h, p).transpose(1, 2)  # (B, H, L, P)
    dxd = dxd + du * w[..., None]
    dw = (du * xd).sum(-1) * w  # (B, H, L)
    dacs = dacs - dw
    dacs[..., -1] += dw.sum(-1) + d_end

    da = dacs.flip(-1).cumsum(-1).flip(-1).transpose(1, 2)  # (B, L, H): through the cumulative sum
    dxd = dxd.transpose(1, 2)  # (B, L, H, P)
    dx = dxd * dt[..., None]
    ddt = (dxd * x).sum(-1) + da * A
    dA = (da * dt).sum((0, 1))
    return dx, ddt, dA, db, dc, dstate


def _scan(x, dt, A, b, c, chunk, state, keep_states=False):
    """The chunk loop. Returns y (B, T, H, P), final state, and the state at each chunk start
    ((K, B, H, P, N), K chunks) when keep_states."""
    bsz, t, h, p = x.shape
    starts, upper = range(0, t, chunk), future_mask(chunk, x.device)
    kept = x.new_empty(len(starts), *state.shape) if keep_states else None
    y = x.new_empty(bsz, t, h, p)
    for k, s in enumerate(starts):
        if keep_states:
            kept[k] = state
        e = min(s + chunk, t)
        y[:, s:e], state = ssd_chunk_forward(x[:, s:e], dt[:, s:e], A, b[:, s:e], c[:, s:e], state, upper)
    return y, state, kept


class _ChunkedScan(torch.autograd.Function):
    """Chunked scan whose backward recomputes each chunk: saves the inputs and K border states."""

    @staticmethod
    def forward(ctx, x, dt, A, b, c, state, chunk):
        y, final, kept = _scan(x, dt, A, b, c, chunk, state, keep_states=True)
        ctx.save_for_backward(x, dt, A, b, c, kept)
        ctx.chunk = chunk
        return y, final

    @staticmethod
    def backward(ctx, dy, dfinal):
        x, dt, A, b, c, kept = ctx.saved_tensors
        chunk, t = ctx.chunk, x.shape[1]
        upper = future_mask(chunk, x.device)
        dx, ddt, db, dc = torch.empty_like(x), torch.empty_like(dt), torch.empty_like(b), torch.empty_like(c)
        dA = torch.zeros_like(A)
        dstate = torch.zeros_like(kept[0]) if dfinal is None else dfinal
        if dy is None:
            dy = torch.zeros_like(x)
        for k in reversed(range(len(kept))):
            s = k * chunk
            e = min(s + chunk, t)
            sl = slice(s, e)
            dx[:, sl], ddt[:, sl], dA_k, db[:, sl], dc[:, sl], dstate = ssd_chunk_backward(
                x[:, sl], dt[:, sl], A, b[:, sl], c[:, sl], kept[k], upper, dy[:, sl], dstate
            )
            dA += dA_k
        return dx, ddt, dA, db, dc, dstate, None


def ssd_scan(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, b: torch.Tensor, c: torch.Tensor,
    chunk: int = 64, state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The scan over a whole sequence, chunk by chunk with the state passed between chunks.

    x (B, T, H, P), dt (B, T, H), A (H,), b, c (B, T, N), state (B, H, P, N) or None (zeros)
    -> y (B, T, H, P), final state (B, H, P, N). Differentiable in every input.
    """
    bsz, t, h, p = x.shape
    assert dt.shape == (bsz, t, h) and A.shape == (h,), "dt must be (B, T, H) and A (H,)"
    assert b.shape == c.shape and b.shape[:2] == (bsz, t), "b and c must be (B, T, N)"
    if state is None:
        state = x.new_zeros(bsz, h, p, b.shape[-1])
    if torch.is_grad_enabled() and any(v.requires_grad for v in (x, dt, A, b, c, state)):
        return _ChunkedScan.apply(x, dt, A, b, c, state, chunk)
    y, final, _ = _scan(x, dt, A, b, c, chunk, state)
    return y, final
