"""Pieces shared by the bidirectional and causal FAVOR+ paths: key weights and the guarded division.

Both paths compute ``D^-1 Q' (K'^T V)`` with the key-side per-row scale and the padding mask folded into a
weight per key, ``w_j = keep_j * exp(log_scale_j - c)``. The weight multiplies the values and, as an extra
value column, gives the denominator from the same matrix product:

    V_aug = [w * V, w]            (batch, heads, length, d + 1)
    out_aug = Q' (K'^T V_aug)     numerator in [..., :d], denominator in [..., d]
"""

from __future__ import annotations

import torch

__all__ = ["augment_values", "keep_mask"]


def keep_mask(key_padding_mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    """``(batch, length)`` True-is-padding mask -> ``(batch, 1, length)`` True-is-real mask, or None."""
    if key_padding_mask is None:
        return None
    batch, _, length = like.shape[:3]
    if key_padding_mask.shape != (batch, length):
        raise ValueError(
            f"key_padding_mask must have shape (batch, length) = {(batch, length)}, "
            f"got {tuple(key_padding_mask.shape)}"
        )
    if key_padding_mask.dtype != torch.bool:
        raise ValueError(f"key_padding_mask must be bool (True marks padding), got {key_padding_mask.dtype}")
    return (~key_padding_mask).unsqueeze(1)


def augment_values(v: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``[w * v, w]``: values ``(B, H, L, d)`` and weights ``(B, H, L)`` -> ``(B, H, L, d + 1)``."""
    w = weights.unsqueeze(-1)
    return torch.cat([v * w, w], dim=-1)
