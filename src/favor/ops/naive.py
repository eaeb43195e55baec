"""Plain twins of the fast FAVOR+ ops: explicit attention matrices and explicit prefix sums.

Each public twin has the signature of the fast op it twins and computes the same estimate the plain way:

naive_favor_attention        twin of `favor.ops.favor_attention`: ``(L, L)`` matrix (bidirectional) or
                             ``(L, M, d)`` prefix sums per head (causal)
naive_favor_cross_attention  twin of `favor.ops.favor_cross_attention`: the ``(L_q, L_k)`` matrix

They materialise what the fast paths avoid, so they are only for small sizes (tests, references). Key
features use one stabilizer per (batch, head) over real keys; the denominator has the same guard as the
fast paths (a query that sees no real key gets 0, not NaN). Unlike the fast paths they differentiate
through the projection too. The fast modules never import this one (an import-linter contract says so);
only the ``mode="naive"`` aliases of the public dispatchers call it.
"""

from __future__ import annotations

import torch

from favor.ops.common import divide, keep_mask, noncausal_key_weights
from favor.ops.features import Features, get_kernel
from favor.ops.inputs import check_cross_qkv, check_qkv, full_precision
from favor.ops.segments import attend_per_segment

__all__ = [
    "naive_causal_attention",
    "naive_favor_attention",
    "naive_favor_cross_attention",
    "naive_noncausal_attention",
]


def _key_features(keys: Features, keep: torch.Tensor | None) -> torch.Tensor:
    # phi(k_j) up to one shared constant, zero at padded keys: (B, H, L, M)
    return keys.base * noncausal_key_weights(keys, keep).unsqueeze(-1)


def naive_noncausal_attention(
    query_base: torch.Tensor, keys: Features, v: torch.Tensor, keep: torch.Tensor | None
) -> torch.Tensor:
    """``A = Q' K'^T`` materialised, ``out = A V / A 1``, from features (``keep`` ``(B, 1, L_k)`` or None)."""
    attn = query_base @ _key_features(keys, keep).transpose(-2, -1)  # (B, H, L_q, L_k)
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


def naive_favor_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    projection: torch.Tensor | None,
    *,
    causal: bool = False,
    kernel: str = "softmax",
    key_padding_mask: torch.Tensor | None = None,
    chunk_size: int = 64,
    tile_size: int | None = None,
    segment_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Plain twin of :func:`favor.ops.favor_attention`; the same arguments (no ``mode``), the same result.

    q, k, v: ``(batch, heads, length, head_dim)``. ``chunk_size`` and ``tile_size`` change only the fast
    path's speed, so they are accepted and unused. Differentiable in ``projection`` too. Time and memory
    O(L^2) bidirectional, O(L m d) causal.
    """
    check_qkv(q, k, v)
    if segment_ids is not None:

        def alone(q, k, v, padding):
            return naive_favor_attention(
                q, k, v, projection, causal=causal, kernel=kernel, key_padding_mask=padding
            )

        return attend_per_segment(alone, q, k, v, segment_ids, key_padding_mask)
    keep = keep_mask(key_padding_mask, q)
    feature_kernel = get_kernel(kernel, projection)
    twin = naive_causal_attention if causal else naive_noncausal_attention
    with full_precision(q) as dtype:
        q32, k32, v32 = (t.to(dtype) for t in (q, k, v))
        projection = None if projection is None else projection.to(device=q.device, dtype=dtype)
        keys = feature_kernel.forward(k32, projection)
        out = twin(feature_kernel.forward(q32, projection).base, keys, v32, keep)
    return out.to(v.dtype)


def naive_favor_cross_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    projection: torch.Tensor | None,
    *,
    kernel: str = "softmax",
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Plain twin of :func:`favor.ops.favor_cross_attention` (no ``mode``): the ``(L_q, L_k)`` matrix.

    q: ``(batch, heads, L_q, head_dim)``; k, v: ``(batch, heads, L_k, head_dim)``. Returns
    ``(batch, heads, L_q, head_dim)`` in ``q``'s dtype. Time and memory O(L_q L_k M).
    """
    check_cross_qkv(q, k, v)
    feature_kernel = get_kernel(kernel, projection)
    keep = keep_mask(key_padding_mask, k)
    with full_precision(v) as dtype:
        q32, k32, v32 = (t.to(dtype) for t in (q, k, v))
        projection = None if projection is None else projection.to(device=q.device, dtype=dtype)
        query = feature_kernel.forward(q32, projection, scale=False).base
        keys = feature_kernel.forward(k32, projection)
        return naive_noncausal_attention(query, keys, v32, keep).to(q.dtype)
