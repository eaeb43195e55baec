"""Exact softmax attention, the reference FAVOR+ estimates: ``softmax(q k^T / sqrt(d)) v``."""

from __future__ import annotations

import torch

__all__ = ["softmax_attention"]


def softmax_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
    segment_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact attention, written out (any dtype, float64 included) for use as a reference.

    Args:
        q, k, v: ``(batch, heads, length, head_dim)``; k and v may have a different length than q.
        causal: query i sees keys j <= i (aligned at the end when lengths differ, as in decoding).
        key_padding_mask: ``(batch, key_length)`` bool, True marks padding.
        segment_ids: ``(batch, length)`` integers (q and k of one length): a query sees only keys with its
            own id (a block-diagonal mask for packed rows).

    Returns:
        ``(batch, heads, length, head_dim)``. A query with no visible key gets zeros.
    """
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, H, Lq, Lk)
    visible = torch.ones(scores.shape[-2:], dtype=torch.bool, device=q.device)
    if causal:
        lq, lk = scores.shape[-2:]
        visible = torch.tril(visible, diagonal=lk - lq)
    visible = visible.expand(scores.shape)
    if key_padding_mask is not None:
        visible = visible & ~key_padding_mask[:, None, None, :]
    if segment_ids is not None:
        visible = visible & (segment_ids[:, None, :, None] == segment_ids[:, None, None, :])
    scores = scores.masked_fill(~visible, float("-inf"))
    weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    return weights @ v
