"""Readable references for the Mamba-2 SSD scan, the oracles that `models.ssd` is tested against.

`ssd_recurrence` is the definition, one frame at a time. One head h carries a state S (P, N):

    S_t = exp(dt_t · A_h) · S_{t-1} + (dt_t · x_t) ⊗ b_t        y_t = S_t · c_t

`ssd_minimal` is the same map as the chunked SSD algorithm of Mamba-2, after state-spaces/mamba's
`ssd_minimal.py`: every chunk at once, a masked (L × L) product inside each chunk and the state
passed between chunks, written with einsum. Both are plain and slow (`ssd_minimal` holds
(B, H, K, L, L) and (B, H, K, K)); `ssd_scan` computes the same thing a piece at a time with its
own backward.

Shapes (legend: B batch, T frames, H heads, P head dim, N state size, L chunk length, K chunks):
x (B, T, H, P), dt (B, T, H) positive step sizes, A (H,) negative rates, b and c (B, T, N) (one
group, shared by the heads), state (B, H, P, N); both return y (B, T, H, P) and the final state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ssd_recurrence(x, dt, A, b, c, state=None):
    """The recurrence, frame by frame."""
    bsz, t, h, p = x.shape
    s = x.new_zeros(bsz, h, p, b.shape[-1]) if state is None else state
    ys = []
    for i in range(t):
        decay = torch.exp(dt[:, i] * A)  # (B, H)
        s = decay[:, :, None, None] * s + torch.einsum("bhp,bn->bhpn", x[:, i] * dt[:, i, :, None], b[:, i])
        ys.append(torch.einsum("bhpn,bn->bhp", s, c[:, i]))
    return torch.stack(ys, dim=1), s


def segsum(a):
    """(..., L) log-decays -> (..., L, L): [i, j] = a[j+1] + … + a[i] for j ≤ i (the log-decay from
    frame j to frame i), −inf for j > i. Summed, not a difference of cumulative sums, for accuracy."""
    n = a.shape[-1]
    a = a[..., :, None].expand(*a.shape, n)  # [i, j] = a[i]
    below = torch.ones(n, n, dtype=torch.bool, device=a.device).tril(-1)
    sums = a.masked_fill(~below, 0.0).cumsum(-2)
    return sums.masked_fill(~(below | torch.eye(n, dtype=torch.bool, device=a.device)), float("-inf"))


def ssd_minimal(x, dt, A, b, c, chunk=16, state=None):
    """The chunked SSD algorithm, all chunks at once."""
    bsz, t, h, p = x.shape
    pad = -t % chunk  # zero step sizes at the end: no decay, no input
    x, dt, b, c = (F.pad(v, (0, 0) * (v.dim() - 2) + (0, pad)) for v in (x, dt, b, c))
    xs = (x * dt[..., None]).unflatten(1, (-1, chunk))  # (B, K, L, H, P): discretised inputs
    a = (dt * A).unflatten(1, (-1, chunk)).permute(0, 3, 1, 2)  # (B, H, K, L): log-decays
    b, c = b.unflatten(1, (-1, chunk)), c.unflatten(1, (-1, chunk))  # (B, K, L, N)
    a_cum = a.cumsum(-1)  # (B, H, K, L)

    # 1. within each chunk: y_i = Σ_{j ≤ i} (c_i · b_j) · decay(j → i) · xs_j
    y_in = torch.einsum("bkln,bksn,bhkls,bkshp->bklhp", c, b, segsum(a).exp(), xs)
    # 2. what each chunk adds to the state by its end
    to_end = (a_cum[..., -1:] - a_cum).exp()  # (B, H, K, L)
    added = torch.einsum("bkln,bhkl,bklhp->bkhpn", b, to_end, xs)  # (B, K, H, P, N)
    # 3. the state at every chunk border: the chunk-level recurrence as one product
    if state is None:
        state = x.new_zeros(bsz, h, p, b.shape[-1])
    added = torch.cat([state[:, None], added], dim=1)  # (B, K + 1, H, P, N)
    across = segsum(F.pad(a_cum[..., -1], (1, 0))).exp()  # (B, H, K + 1, K + 1)
    borders = torch.einsum("bhzk,bkhpn->bzhpn", across, added)  # (B, K + 1, H, P, N)
    # 4. each chunk's start state, decayed to every frame of the chunk and read out by c
    y_start = torch.einsum("bkln,bkhpn,bhkl->bklhp", c, borders[:, :-1], a_cum.exp())
    return (y_in + y_start).flatten(1, 2)[:, :t], borders[:, -1]
