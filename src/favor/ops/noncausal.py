"""Bidirectional FAVOR+ attention: ``D^-1 Q' (K'^T V)`` in O(L m d) time and O(L (m + d) + m d) memory."""

from __future__ import annotations

import torch

from favor.ops.common import augment_values
from favor.ops.features import Features
from favor.ops.linear import noncausal_core

__all__ = ["noncausal_attention", "noncausal_key_weights"]


def noncausal_key_weights(keys: Features, keep: torch.Tensor | None) -> torch.Tensor:
    """Per-key weights ``keep_j * exp(log_scale_j - c)`` with one stabilizer ``c`` per (batch, head).

    ``c`` is the max of ``log_scale`` over real keys only, so padding never moves it. Returns ``(B, H, L)``.
    """
    base = keys.base
    if keys.log_scale is None:
        weights = base.new_ones(base.shape[:-1])
        return weights if keep is None else weights * keep
    log_scale = keys.log_scale
    if keep is not None:
        log_scale = log_scale.masked_fill(~keep, float("-inf"))
    # A shared constant cancels in numerator and denominator, so it carries no gradient.
    stabilizer = log_scale.detach().amax(dim=-1, keepdim=True)
    stabilizer = torch.nan_to_num(stabilizer, neginf=0.0)  # all keys padded: any finite value will do
    return torch.exp(log_scale - stabilizer)


def noncausal_attention(
    query_base: torch.Tensor, keys: Features, v: torch.Tensor, keep: torch.Tensor | None
) -> torch.Tensor:
    """Bidirectional linear attention.

    Args:
        query_base: query features ``(B, H, L, M)`` (their per-row scale cancels and is not needed).
        keys: key features, base ``(B, H, L, M)``.
        v: values ``(B, H, L, d)``.
        keep: ``(B, 1, L)`` True at real keys, or None.

    Returns:
        ``(B, H, L, d)``.
    """
    v_aug = augment_values(v, noncausal_key_weights(keys, keep))  # (B, H, L, d+1)
    return noncausal_core(query_base, keys.base, v_aug)  # (B, H, L, d)
