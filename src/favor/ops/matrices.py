"""Attention matrices, materialised: the ``(L_q, L_k)`` weights an attention op applies to its values.

`softmax_attention_matrix` is exact attention's ``softmax(q k^T / sqrt(d))``; `favor_attention_matrix` is
the matrix FAVOR+ applies implicitly, ``D^-1 Q' K'^T`` (Choromanski et al. 2021, eq. 5), built from the
same feature maps and the same stabilizers as `favor.ops.favor_attention`, so that ``matrix @ v`` equals
the op's output. They cost O(L^2) memory: for inspection of one sequence (attention maps, contacts from
attention, the approximation analyses), never for training.

Masks follow the ops: ``key_padding_mask`` ``(batch, L_k)`` True at padding (padded keys get weight 0),
``causal`` lets query i see keys j <= i. A query that sees no key gets a row of zeros.
"""

from __future__ import annotations

import torch

from favor.ops.common import keep_mask, noncausal_key_weights
from favor.ops.features import feature_map

__all__ = ["favor_attention_matrix", "softmax_attention_matrix"]


def _visible(
    length_q: int, length_k: int, *, causal: bool, key_padding_mask: torch.Tensor | None, device
) -> torch.Tensor | None:
    """``(batch or 1, 1, L_q, L_k)`` bool, True where a query may see a key; None when all may."""
    visible = None
    if causal:
        visible = torch.ones(length_q, length_k, dtype=torch.bool, device=device).tril(length_k - length_q)
        visible = visible[None, None]
    if key_padding_mask is not None:
        keys = ~key_padding_mask[:, None, None, :]
        visible = keys if visible is None else visible & keys
    return visible


def softmax_attention_matrix(
    q: torch.Tensor,
    k: torch.Tensor,
    *,
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact ``softmax(q k^T / sqrt(d))`` over the visible keys: ``(batch, heads, L_q, L_k)``."""
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    visible = _visible(
        q.shape[-2], k.shape[-2], causal=causal, key_padding_mask=key_padding_mask, device=q.device
    )
    if visible is not None:
        scores = scores.masked_fill(~visible, float("-inf"))
    return torch.softmax(scores, dim=-1).nan_to_num(0.0)


def favor_attention_matrix(
    q: torch.Tensor,
    k: torch.Tensor,
    projection: torch.Tensor | None,
    *,
    kernel: str = "softmax",
    causal: bool = False,
    key_padding_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The FAVOR+ estimate of the attention matrix, ``D^-1 Q' K'^T``: ``(batch, heads, L_q, L_k)``.

    Query row scales cancel in the ratio; key scales are taken relative to their maximum over real keys
    (`favor.ops.common.noncausal_key_weights`), as the attention op does. Signed (trigonometric) features can
    make a row's denominator ~0 or negative: its sign is kept and its magnitude floored.
    """
    queries = feature_map(q, None if projection is None else projection.to(q.dtype), kernel=kernel)
    keys = feature_map(k, None if projection is None else projection.to(k.dtype), kernel=kernel)
    keep = keep_mask(key_padding_mask, keys.base)
    key_features = keys.base * noncausal_key_weights(keys, keep).unsqueeze(-1)  # (B, H, L_k, M)
    scores = queries.base @ key_features.transpose(-2, -1)  # (B, H, L_q, L_k)
    visible = _visible(
        q.shape[-2], k.shape[-2], causal=causal, key_padding_mask=key_padding_mask, device=q.device
    )
    if visible is not None:
        scores = scores.masked_fill(~visible, 0.0)
    denominator = scores.sum(-1, keepdim=True)
    floor = torch.finfo(scores.dtype).tiny ** 0.5
    sign = torch.where(denominator < 0, -1.0, 1.0).to(scores.dtype)
    return scores / (sign * denominator.abs().clamp_min(floor))
