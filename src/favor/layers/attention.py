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
from favor.ops import softmax_attention_matrix

__all__ = ["SelfAttention", "ExactSelfAttention", "KVCache"]


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

    def attention_matrix(
        self,
        x: torch.Tensor,
        *,
        padding_mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The weights this module applies to its values for ``x``: ``(batch, heads, length, length)``,
        row i how query i mixes the keys (the plain twin of `forward`: ``forward(x)`` is the output
        projection of ``matrix @ v``). O(length^2) memory: for inspecting one sequence (attention maps,
        contacts from attention), not for training."""
        q, k, _ = self._split_heads(x, positions=positions)
        return self.weights(q, k, padding_mask=padding_mask)

    def weights(self, q: torch.Tensor, k: torch.Tensor, *, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """Heads ``(batch, heads, length, head_dim)`` in, ``(batch, heads, length, length)`` weights out."""
        raise ValueError(f"{type(self).__name__} applies no length x length attention matrix")

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

    Decoding keeps a `KVCache` (keys and values of the positions consumed, in a preallocated buffer).
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

    def weights(self, q: torch.Tensor, k: torch.Tensor, *, padding_mask: torch.Tensor | None) -> torch.Tensor:
        return softmax_attention_matrix(q, k, causal=self.causal, key_padding_mask=padding_mask)

    def attend_step(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: KVCache | None
    ) -> tuple[torch.Tensor, KVCache]:
        cache = KVCache.start(k) if cache is None else cache
        cache = cache.append(k, v)
        keys, values = cache.keys, cache.values
        new, total = q.shape[2], keys.shape[2]
        mask = None
        if new > 1:
            # New position t sits at total - new + t and sees keys up to itself.
            mask = torch.ones(new, total, dtype=torch.bool, device=q.device).tril(diagonal=total - new)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask), cache


class _KVBuffer:
    """Preallocated key and value storage shared by the caches of one decoding branch.

    ``filled`` is how many positions some cache has written; only a cache of exactly that length may append
    in place (a sibling cache, stepped from the same earlier state, copies instead).
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, filled: int) -> None:
        self.keys, self.values, self.filled = keys, values, filled

    @property
    def capacity(self) -> int:
        return self.keys.shape[2]


class KVCache:
    """An exact-attention decoding cache: keys and values ``(batch, heads, length, head_dim)`` of the
    positions seen so far, in a buffer that grows by doubling, so a token costs O(length) attention and O(1)
    amortized copying (a ``torch.cat`` per token would copy the whole cache every time).

    Immutable as a value: `append` returns a new cache and never changes what an existing one holds, so a
    state can be reused to branch (decoding from one prompt several ways).
    """

    def __init__(self, buffer: _KVBuffer, length: int) -> None:
        self._buffer, self.length = buffer, length

    @classmethod
    def start(cls, like: torch.Tensor, capacity: int = 64) -> KVCache:
        batch, heads, _, dim = like.shape
        empty = like.new_empty(batch, heads, capacity, dim)
        return cls(_KVBuffer(empty, torch.empty_like(empty), 0), 0)

    @property
    def keys(self) -> torch.Tensor:
        return self._buffer.keys[:, :, : self.length]

    @property
    def values(self) -> torch.Tensor:
        return self._buffer.values[:, :, : self.length]

    def append(self, k: torch.Tensor, v: torch.Tensor) -> KVCache:
        """The cache after ``k``, ``v`` ``(batch, heads, T, head_dim)`` more positions."""
        buffer, need = self._buffer, self.length + k.shape[2]
        if buffer.filled != self.length or need > buffer.capacity:
            # Another cache grew this buffer past us (a branch), or it is full: copy into a new buffer.
            capacity = max(need, 2 * buffer.capacity)
            keys = k.new_empty(*k.shape[:2], capacity, k.shape[-1])
            values = torch.empty_like(keys)
            keys[:, :, : self.length] = self.keys
            values[:, :, : self.length] = self.values
            buffer = _KVBuffer(keys, values, self.length)
        buffer.keys[:, :, self.length : need] = k
        buffer.values[:, :, self.length : need] = v
        buffer.filled = need
        return KVCache(buffer, need)
