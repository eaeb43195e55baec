"""Plain twins of the fast FAVOR+ paths, for tests: explicit attention matrices and explicit prefix sums.

These materialise what the fast paths avoid (an ``(L, L)`` matrix, or ``(L, M, d)`` prefix sums per head),
so they are only for small sizes. Key features use one stabilizer per (batch, head) over real keys.
"""

from __future__ import annotations

import torch

from favor.ops.features import Features
from favor.ops.noncausal import noncausal_key_weights

__all__ = ["naive_noncausal_attention", "naive_causal_attention"]


def _key_features(keys: Features, keep: torch.Tensor | None) -> torch.Tensor:
    # phi(k_j) up to one shared constant, zero at padded keys: (B, H, L, M)
    return keys.base * noncausal_key_weights(keys, keep).unsqueeze(-1)


def naive_noncausal_attention(
    query_base: torch.Tensor, keys: Features, v: torch.Tensor, keep: torch.Tensor | None
) -> torch.Tensor:
    """``A = Q' K'^T`` materialised, ``out = A V / A 1``. Shapes as in the fast path."""
    attn = query_base @ _key_features(keys, keep).transpose(-2, -1)  # (B, H, L, L)
    return (attn @ v) / attn.sum(-1, keepdim=True)


def naive_causal_attention(
    query_base: torch.Tensor, keys: Features, v: torch.Tensor, keep: torch.Tensor | None
) -> torch.Tensor:
    """Explicit prefix sums ``S_i = sum_{j<=i} phi(k_j) v_j^T``, ``z_i = sum_{j<=i} phi(k_j)``."""
    k_feat = _key_features(keys, keep)
    prefix_kv = torch.cumsum(k_feat.unsqueeze(-1) * v.unsqueeze(-2), dim=2)  # (B, H, L, M, d)
    prefix_k = torch.cumsum(k_feat, dim=2)  # (B, H, L, M)
    numerator = torch.einsum("bhlm,bhlmd->bhld", query_base, prefix_kv)
    denominator = torch.einsum("bhlm,bhlm->bhl", query_base, prefix_k)
    return numerator / denominator.unsqueeze(-1)
