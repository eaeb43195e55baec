"""Plain twins of the fast FAVOR+ paths, for tests: explicit attention matrices and explicit prefix sums.

These materialise what the fast paths avoid (an ``(L, L)`` matrix, or ``(L, M, d)`` prefix sums per head),
so they are only for small sizes. Key features use one stabilizer per (batch, head) over real keys; the
denominator has the same guard as the fast paths (a query that sees no real key gets 0, not NaN).
"""

from __future__ import annotations

import torch

from favor.ops.common import divide
from favor.ops.features import Features

__all__ = ["naive_noncausal_attention", "naive_causal_attention"]


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


def _key_features(keys: Features, keep: torch.Tensor | None) -> torch.Tensor:
    # phi(k_j) up to one shared constant, zero at padded keys: (B, H, L, M)
    return keys.base * noncausal_key_weights(keys, keep).unsqueeze(-1)


def naive_noncausal_attention(
    query_base: torch.Tensor, keys: Features, v: torch.Tensor, keep: torch.Tensor | None
) -> torch.Tensor:
    """``A = Q' K'^T`` materialised, ``out = A V / A 1``. Shapes as in the fast path."""
    attn = query_base @ _key_features(keys, keep).transpose(-2, -1)  # (B, H, L, L)
    return divide(torch.cat([attn @ v, attn.sum(-1, keepdim=True)], dim=-1))[0]


def naive_causal_attention(
    query_base: torch.Tensor, keys: Features, v: torch.Tensor, keep: torch.Tensor | None
) -> torch.Tensor:
    """Explicit prefix sums ``S_i = sum_{j<=i} phi(k_j) v_j^T``, ``z_i = sum_{j<=i} phi(k_j)``."""
    k_feat = _key_features(keys, keep)
    prefix_kv = torch.cumsum(k_feat.unsqueeze(-1) * v.unsqueeze(-2), dim=2)  # (B, H, L, M, d)
    prefix_k = torch.cumsum(k_feat, dim=2)  # (B, H, L, M)
    numerator = torch.einsum("bhlm,bhlmd->bhld", query_base, prefix_kv)
    denominator = torch.einsum("bhlm,bhlm->bhl", query_base, prefix_k)
    return divide(torch.cat([numerator, denominator.unsqueeze(-1)], dim=-1))[0]
