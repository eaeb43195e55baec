"""Causal FAVOR+ attention in chunks: linear memory in forward and backward, work done as matrix products.

Positions are cut into chunks of C. For chunk c with query features Q_c, key features K_c and augmented
values V_c (see :mod:`favor.ops.common`):

    out_c = Q_c P_c + tril(Q_c K_c^T) V_c

where P_c = sum over earlier chunks of K^T V (the carried prefix state, ``(M, d + 1)`` per head). Only
chunk-boundary states are stored, so memory is O(L (M + d) / C * ... ) = O((L / C) M d + L (M + d)),
never the O(L M d) of explicit prefix sums (see :func:`favor.ops.naive.naive_causal_attention`).

Stabilization: every key weight is ``exp(log_scale_j - F_c)`` where the frame F_c is the running max of
``log_scale`` over real keys up to and including chunk c. The carried state is rescaled by
``exp(F_{c-1} - F_c) <= 1`` when the frame grows, as online softmax does, so a large late key never
underflows the features of earlier keys, and nothing overflows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from favor.ops.common import augment_values
from favor.ops.features import Features
from favor.ops.linear import causal_core

__all__ = ["FavorState", "causal_attention"]


@dataclass
class FavorState:
    """Recurrent state of causal FAVOR+ attention after some prefix of positions.

    context: ``(B, H, M, d + 1)``, sum of ``phi(k_j) [v_j, 1]^T`` in the frame below.
    frame: ``(B, H)``, the log-scale all of ``context`` is relative to (-inf while empty).
    length: number of positions consumed.
    """

    context: torch.Tensor
    frame: torch.Tensor
    length: int = 0


def _chunk_frames(log_scale: torch.Tensor, start: torch.Tensor | None) -> torch.Tensor:
    """Running max of per-chunk maxima, ``(B, H, N)``, continuing from a starting frame ``(B, H)``."""
    chunk_max = log_scale.detach().amax(dim=-1)  # (B, H, N)
    if start is not None:
        chunk_max = torch.cat([start.detach().unsqueeze(-1), chunk_max], dim=-1)
        return chunk_max.cummax(dim=-1).values[..., 1:]
    return chunk_max.cummax(dim=-1).values


def _decays(frames: torch.Tensor, initial: FavorState | None) -> torch.Tensor:
    """``exp(F_{c-1} - F_c) <= 1`` per chunk, ``(B, H, N)``; an empty carried state decays to 0, not NaN."""
    if initial is None:
        start = torch.full_like(frames[..., :1], float("-inf"))
    else:
        start = initial.frame.to(frames.dtype).unsqueeze(-1)
    previous = torch.cat([start, frames[..., :-1]], dim=-1)
    return torch.where(torch.isfinite(previous), torch.exp(previous - frames), torch.zeros_like(frames))


def causal_attention(
    query_base: torch.Tensor,
    keys: Features,
    v: torch.Tensor,
    keep: torch.Tensor | None,
    *,
    chunk_size: int = 64,
    initial: FavorState | None = None,
) -> tuple[torch.Tensor, FavorState]:
    """Chunked causal linear attention.

    Args:
        query_base: query features ``(B, H, L, M)``.
        keys: key features; base ``(B, H, L, M)``, log_scale ``(B, H, L)`` or None.
        v: values ``(B, H, L, d)``.
        keep: ``(B, 1, L)`` True at real keys, or None.
        chunk_size: positions per chunk C; any positive value (L need not be a multiple).
        initial: state from earlier positions (decoding / streaming), or None.

    Returns:
        outputs ``(B, H, L, d)`` and the state after the last position.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    batch, heads, length, _ = v.shape
    n_chunks = -(-length // chunk_size)
    pad = n_chunks * chunk_size - length

    log_scale = keys.log_scale if keys.log_scale is not None else v.new_zeros(batch, heads, length)
    real = torch.ones(batch, 1, length, dtype=torch.bool, device=v.device) if keep is None else keep
    # Pad positions up to a whole number of chunks; padded keys get weight 0 through `real`.
    q_base, k_base = query_base, keys.base
    if pad:
        q_base, k_base, v = (F.pad(t, (0, 0, 0, pad)) for t in (q_base, k_base, v))
        log_scale = F.pad(log_scale, (0, pad), value=float("-inf"))
        real = F.pad(real, (0, pad), value=False)
    log_scale = log_scale.masked_fill(~real, float("-inf"))

    chunked = (batch, heads, n_chunks, chunk_size)
    frames = _chunk_frames(log_scale.reshape(chunked), None if initial is None else initial.frame)
    # Frames are -inf only where no real key has been seen yet; any finite value works there.
    safe_frames = torch.nan_to_num(frames, neginf=0.0)
    weights = torch.exp(log_scale.reshape(chunked) - safe_frames.unsqueeze(-1))  # (B, H, N, C)

    q_c = q_base.reshape(*chunked, -1)  # (B, H, N, C, M)
    k_c = k_base.reshape(*chunked, -1)  # (B, H, N, C, M)
    v_aug = augment_values(v.reshape(*chunked, -1), weights)  # (B, H, N, C, d+1)

    if initial is None:
        carried = v_aug.new_zeros(batch, heads, q_c.shape[-1], v_aug.shape[-1])  # (B, H, M, d+1)
    else:
        carried = initial.context.to(v_aug.dtype)
    out, final = causal_core(q_c, k_c, v_aug, _decays(frames, initial).detach(), carried)  # (B, H, N, C, d)
    out = out.reshape(batch, heads, n_chunks * chunk_size, -1)[:, :, :length]

    consumed = 0 if initial is None else initial.length
    state = FavorState(context=final, frame=frames[..., -1], length=consumed + length)
    return out, state
