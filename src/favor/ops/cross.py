"""FAVOR+ cross-attention: queries from one sequence (a decoder), keys and values from another (an encoder).

Layout: queries ``(batch, heads, L_q, head_dim)``, keys and values ``(batch, heads, L_k, head_dim)``;
``key_padding_mask`` ``(batch, L_k)`` bool, True at padding (the source's padding).

The keys and values enter only through the source context

    C = sum_j w_j phi'(k_j) [v_j, 1]^T            (batch, heads, M, d + 1)

with the per-key weight ``w_j = keep_j * exp(log_scale_j - c)`` of the bidirectional path (one stabilizer
``c`` per (batch, head) over the real keys, so padding never moves it; see `favor.ops.common`). A query reads
``out = (phi'(q) C)[:d] / (phi'(q) C)[d]``. So the context is computed once per source
(`favor_cross_context`) and every decoded token costs O(M d) per head (`favor_cross_read`), whatever the
source length. Padded keys have weight 0: they leave the numerator and the denominator exactly, so the
result equals the same computation on the source with its padded positions removed.

`favor_cross_attention` is the whole op; its plain twin, the explicit ``(L_q, L_k)`` matrix, is
`favor.ops.naive.naive_favor_cross_attention` (tests compare the two on outputs and gradients), which
``mode="naive"`` returns as an alias.
"""

from __future__ import annotations

import torch

from favor.ops.attention import MODES
from favor.ops.common import augment_values, divide, keep_mask, noncausal_key_weights
from favor.ops.features import get_kernel
from favor.ops.inputs import check_cross_qkv, full_precision
from favor.ops.naive import naive_favor_cross_attention

__all__ = ["favor_cross_attention", "favor_cross_context", "favor_cross_read"]


def favor_cross_context(
    k: torch.Tensor,
    v: torch.Tensor,
    projection: torch.Tensor | None,
    *,
    kernel: str = "softmax",
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The source context ``C`` ``(batch, heads, M, d + 1)`` of keys and values (float32 or float64).

    Computed once per source; `favor_cross_read` turns queries into outputs with it. Differentiable.
    """
    check_cross_qkv(None, k, v)
    feature_kernel = get_kernel(kernel, projection)
    keep = keep_mask(key_padding_mask, k)  # (B, 1, L_k), True at real keys
    with full_precision(v) as dtype:
        k32, v32 = k.to(dtype), v.to(dtype)
        projection = None if projection is None else projection.to(device=k.device, dtype=dtype)
        keys = feature_kernel.forward(k32, projection)
        weights = noncausal_key_weights(keys, keep)  # (B, H, L_k)
        return keys.base.transpose(-2, -1) @ augment_values(v32, weights)  # (B, H, M, d + 1)


def favor_cross_read(
    q: torch.Tensor, context: torch.Tensor, projection: torch.Tensor | None, *, kernel: str = "softmax"
) -> torch.Tensor:
    """Outputs ``(batch, heads, L_q, d)`` (in ``q``'s dtype) of queries read from a source context."""
    if q.dim() != 4 or context.dim() != 4 or q.shape[:2] != context.shape[:2]:
        raise ValueError(
            f"q (batch, heads, L_q, head_dim) and context (batch, heads, M, d + 1) must share batch and "
            f"heads; got {tuple(q.shape)} and {tuple(context.shape)}"
        )
    feature_kernel = get_kernel(kernel, projection)
    with torch.autocast(device_type=q.device.type, enabled=False):
        q32 = q.to(context.dtype)
        projection = None if projection is None else projection.to(device=q.device, dtype=context.dtype)
        # The query's per-row scale cancels between numerator and denominator.
        query = feature_kernel.forward(q32, projection, scale=False).base  # (B, H, L_q, M)
        return divide(query @ context)[0].to(q.dtype)


def favor_cross_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    projection: torch.Tensor | None,
    *,
    kernel: str = "softmax",
    key_padding_mask: torch.Tensor | None = None,
    mode: str = "fast",
) -> torch.Tensor:
    """FAVOR+ estimate of ``softmax(q k^T / sqrt(d)) v`` for queries and keys of different lengths.

    Args:
        q: ``(batch, heads, L_q, head_dim)``; k, v: ``(batch, heads, L_k, head_dim)``.
        projection: ``(nb_features, head_dim)`` (`favor.ops.random_projection`); None only for "relu".
        key_padding_mask: ``(batch, L_k)`` bool, True at padded keys (excluded exactly).
        mode: "fast" (the context form, O((L_q + L_k) M d)), or "naive": an alias that returns
            :func:`favor.ops.naive_favor_cross_attention` (the explicit matrix, O(L_q L_k M)).

    Returns ``(batch, heads, L_q, head_dim)`` in ``q``'s dtype. A query whose keys are all padding gets 0.
    """
    check_cross_qkv(q, k, v)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "naive":
        return naive_favor_cross_attention(
            q, k, v, projection, kernel=kernel, key_padding_mask=key_padding_mask
        )
    context = favor_cross_context(k, v, projection, kernel=kernel, key_padding_mask=key_padding_mask)
    return favor_cross_read(q, context, projection, kernel=kernel)
