"""Linformer self-attention (Wang et al. 2020): keys and values projected along the length to ``proj_dim``.

``softmax(q (E k)^T / sqrt(d)) (F v)`` with learned ``E, F`` of shape ``(proj_dim, max_length)``. Inputs
shorter than ``max_length`` use the first columns; padded keys and values are zeroed before the
projection, so appending padding never changes the result. Bidirectional only: the length projection
mixes all positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from favor.layers.attention import SelfAttention

__all__ = ["LinformerSelfAttention"]


class LinformerSelfAttention(SelfAttention):
    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        max_length: int,
        proj_dim: int = 64,
        share_kv: bool = False,
        rotary: bool = False,
    ) -> None:
        super().__init__(d_model=d_model, n_heads=n_heads, causal=False, rotary=rotary)
        self.max_length = max_length
        self.key_projection = nn.Parameter(torch.empty(proj_dim, max_length))
        nn.init.xavier_normal_(self.key_projection)
        if share_kv:
            self.value_projection = None
        else:
            self.value_projection = nn.Parameter(torch.empty(proj_dim, max_length))
            nn.init.xavier_normal_(self.value_projection)

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        padding_mask: torch.Tensor | None,
        segment_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if segment_ids is not None:
            # E and F project all L positions of a row onto proj_dim rows: every output mixes every segment.
            raise ValueError(
                "Linformer cannot keep packed segments apart (its length projection mixes every position "
                "of a row); train it on one sequence per row (data.mode=single)"
            )
        length = k.shape[2]
        if length > self.max_length:
            raise ValueError(f"length {length} exceeds the Linformer max_length={self.max_length}")
        if padding_mask is not None:
            padded = padding_mask[:, None, :, None]  # (B, 1, L, 1)
            k, v = k.masked_fill(padded, 0.0), v.masked_fill(padded, 0.0)
        e = self.key_projection[:, :length].to(k.dtype)  # (p, L)
        f_proj = self.value_projection if self.value_projection is not None else self.key_projection
        f = f_proj[:, :length].to(v.dtype)
        k_low = torch.einsum("pl,bhld->bhpd", e, k)  # (B, H, p, d)
        v_low = torch.einsum("pl,bhld->bhpd", f, v)  # (B, H, p, d)
        return F.scaled_dot_product_attention(q, k_low, v_low)

    def weights(self, q: torch.Tensor, k: torch.Tensor, *, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """The effective ``(L, L)`` matrix ``softmax(q (E k)^T / sqrt(d)) F`` that multiplies ``v`` (rows
        need not sum to 1 and entries may be negative: F is a learned projection, not a distribution)."""
        length = k.shape[2]
        if length > self.max_length:
            raise ValueError(f"length {length} exceeds the Linformer max_length={self.max_length}")
        if padding_mask is not None:
            k = k.masked_fill(padding_mask[:, None, :, None], 0.0)
        e = self.key_projection[:, :length].to(k.dtype)  # (p, L)
        f_proj = self.value_projection if self.value_projection is not None else self.key_projection
        f = f_proj[:, :length].to(q.dtype)
        if padding_mask is not None:
            f = f.masked_fill(padding_mask[:, None, None, :], 0.0)  # (B, 1, p, L): padded values count 0
        low = torch.softmax(
            (q @ torch.einsum("pl,bhld->bhpd", e, k).transpose(-2, -1)) * q.shape[-1] ** -0.5, -1
        )
        return low @ f  # (B, H, L, p) @ (p, L) -> (B, H, L, L)
