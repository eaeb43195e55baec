"""Multi-head self-attention modules: the shared projections, and exact attention (the baseline).

Every attention module maps ``(batch, length, d_model)`` to the same shape. Inside, heads use the one
layout of `favor.ops`: ``(batch, heads, length, head_dim)``. Subclasses only say how heads attend
(`attend`) and, for causal modules, how to continue from a decoding cache (`step`).

`padding_mask` is ``(batch, length)`` bool, True at padding: padded keys never influence real positions.
Packed rows add ``segment_ids`` ``(batch, length)`` (a query sees only keys of its own segment) and
``positions`` ``(batch, length)``, each token's index within its segment, which rotary positions use.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from favor.layers.positions import RotaryEmbedding

__all__ = ["SelfAttention", "ExactSelfAttention"]


class SelfAttention(nn.Module):
    """Base class: fused q/k/v projection, optional rotary positions, output projection."""

    def __init__(self, *, d_model: int, n_heads: int, causal: bool = False, rotary: bool = False) -> None:
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.causal = causal
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.rotary = RotaryEmbedding(head_dim=self.head_dim) if rotary else None

    def _split_heads(
        self, x: torch.Tensor, *, offset: int = 0, positions: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, length, _ = x.shape
        qkv = self.qkv(x).view(batch, length, 3, self.n_heads, self.head_dim)  # (B, L, 3, H, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, L, d)
        if self.rotary is not None:
            q = self.rotary(q, offset=offset, positions=positions)
            k = self.rotary(k, offset=offset, positions=positions)
        return q, k, v

    def _merge_heads(self, out: torch.Tensor) -> torch.Tensor:
        batch, _, length, _ = out.shape
        out = out.transpose(1, 2).reshape(batch, length, self.d_model)  # (B, L, D)
        return self.out(out)

    def forward(
        self,
        x: torch.Tensor,
        *,
        padding_mask: torch.Tensor | None = None,
        segment_ids: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``x``: ``(batch, length, d_model)``; returns the same shape."""
        q, k, v = self._split_heads(x, positions=positions)
        if segment_ids is None:
            return self._merge_heads(self.attend(q, k, v, padding_mask=padding_mask))
        return self._merge_heads(self.attend(q, k, v, padding_mask=padding_mask, segment_ids=segment_ids))

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        padding_mask: torch.Tensor | None,
        segment_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Heads ``(batch, heads, length, head_dim)`` in, same layout out."""
        raise NotImplementedError

    def step(self, x: torch.Tensor, cache: Any, *, offset: int) -> tuple[torch.Tensor, Any]:
        """Causal continuation: ``x`` ``(batch, T, d_model)`` new positions starting at ``offset``.

        ``cache`` is None at the start; returns outputs ``(batch, T, d_model)`` and the new cache.
        """
        if not self.causal:
            raise ValueError(
                f"{type(self).__name__} is bidirectional; incremental decoding needs causal=True"
            )
        q, k, v = self._split_heads(x, offset=offset)
        out, cache = self.attend_step(q, k, v, cache)
        return self._merge_heads(out), cache

    def attend_step(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: Any) -> tuple[Any, Any]:
        raise NotImplementedError(f"{type(self).__name__} does not support incremental decoding")


class ExactSelfAttention(SelfAttention):
    """Exact softmax attention through `torch.nn.functional.scaled_dot_product_attention`.

    Decoding keeps a KV cache: ``(k, v)``, each ``(batch, heads, consumed, head_dim)``.
    """

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        padding_mask: torch.Tensor | None,
        segment_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if padding_mask is None and segment_ids is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        length = q.shape[-2]
        allowed = torch.ones(q.shape[0], 1, 1, length, dtype=torch.bool, device=q.device)
        if padding_mask is not None:
            allowed = ~padding_mask[:, None, None, :]  # (B, 1, 1, L), True = may attend
        if segment_ids is not None:  # packed rows: a block-diagonal mask
            allowed = allowed & (segment_ids[:, None, :, None] == segment_ids[:, None, None, :])
        eye = torch.eye(length, dtype=torch.bool, device=q.device)
        if self.causal:
            allowed = allowed & torch.ones_like(eye).tril()
        # A position always sees itself: a padded query whose keys are all masked would otherwise
        # produce NaN, and NaN values leak into real positions even through zero weights.
        allowed = allowed | eye  # (B, 1, L, L)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)

    def attend_step(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        cache: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if cache is not None:
            k = torch.cat([cache[0], k], dim=2)  # (B, H, P + T, d)
            v = torch.cat([cache[1], v], dim=2)
        new, total = q.shape[2], k.shape[2]
        mask = None
        if new > 1:
            # New position t sits at total - new + t and sees keys up to itself.
            mask = torch.ones(new, total, dtype=torch.bool, device=q.device).tril(diagonal=total - new)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), (k, v)
