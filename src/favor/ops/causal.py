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

from favor.ops.common import augment_values, split_output
from favor.ops.features import Features

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


class _DecayedScan(torch.autograd.Function):
    """Exclusive prefix sums with decay: ``P_c = a_c E_{c-1}``, ``E_c = P_c + T_c``.

    Written as one autograd node with a hand-written reverse scan: recording N tiny autograd nodes costs
    far more than the arithmetic (and slicing a stacked tensor N times makes the backward quadratic).
    The decays ``a`` carry no gradient (they come from the detached stabilizer frames).
    """

    @staticmethod
    def forward(ctx, states, decays, initial):
        # states (B, H, N, M, D), decays (B, H, N), initial (B, H, M, D). The loop runs over contiguous
        # (N, B, H, M, D) slices: strided slices of the (B, H, N, ...) layout are several times slower.
        states_n = states.movedim(2, 0).contiguous()
        decays_n = decays.movedim(2, 0).contiguous()[..., None, None]
        prefixes = torch.empty_like(states_n)
        carried = initial
        for c in range(states_n.shape[0]):
            torch.mul(carried, decays_n[c], out=prefixes[c])
            carried = prefixes[c] + states_n[c]
        ctx.save_for_backward(decays_n)
        return prefixes.movedim(0, 2), carried

    @staticmethod
    def backward(ctx, grad_prefixes, grad_final):
        (decays_n,) = ctx.saved_tensors
        grad_prefixes = grad_prefixes.movedim(2, 0).contiguous()
        grad_states = torch.empty_like(grad_prefixes)
        # G_c = dL/dE_c: G_{N-1} = grad_final, G_{c-1} = a_c (dP_c + G_c), and dT_c = G_c.
        running = grad_final if grad_final is not None else torch.zeros_like(grad_prefixes[0])
        for c in range(grad_prefixes.shape[0] - 1, -1, -1):
            grad_states[c] = running
            running = (grad_prefixes[c] + running) * decays_n[c]
        return grad_states.movedim(0, 2), None, running


def _scan_states(
    chunk_states: torch.Tensor, frames: torch.Tensor, initial: FavorState | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exclusive prefix sums of chunk states, each expressed in its own chunk's frame.

    Args:
        chunk_states: ``(B, H, N, M, d+1)``; state c is in frame ``frames[..., c]``.
        frames: ``(B, H, N)``, non-decreasing along N (-inf while no real key has been seen).
        initial: state carried in from earlier positions, or None.

    Returns:
        prefixes ``(B, H, N, M, d+1)`` (prefix c excludes chunk c) and the final inclusive state.
    """
    if initial is None:
        carried = torch.zeros_like(chunk_states[:, :, 0])
        start = torch.full_like(frames[..., :1], float("-inf"))
    else:
        carried = initial.context.to(chunk_states.dtype)
        start = initial.frame.to(frames.dtype).unsqueeze(-1)
    previous = torch.cat([start, frames[..., :-1]], dim=-1)
    # exp(F_{c-1} - F_c) <= 1; an empty carried state (frame -inf) decays to 0 instead of NaN.
    decays = torch.where(torch.isfinite(previous), torch.exp(previous - frames), torch.zeros_like(frames))
    return _DecayedScan.apply(chunk_states, decays.detach(), carried)


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

    chunk_states = k_c.transpose(-2, -1) @ v_aug  # (B, H, N, M, d+1)
    prefixes, final = _scan_states(chunk_states, frames, initial)

    # (B, H, N, C, C), keys j <= query i; in place on the product, which its backward does not need
    future = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=v.device).triu_(1)
    scores = (q_c @ k_c.transpose(-2, -1)).masked_fill_(future, 0.0)
    out_aug = q_c @ prefixes + scores @ v_aug  # (B, H, N, C, d+1)
    out = split_output(out_aug).reshape(batch, heads, n_chunks * chunk_size, -1)[:, :, :length]

    consumed = 0 if initial is None else initial.length
    state = FavorState(context=final, frame=frames[..., -1], length=consumed + length)
    return out, state
