"""Multi-head cross-attention of decoder positions over an encoded source: FAVOR+ or exact softmax.

Queries come from the decoder ``(batch, T, d_model)``, keys and values from the encoder's output
``(batch, S, d_model)`` with its padding mask ``(batch, S)`` (True at padding). The source side is turned
into a `SourceMemory` once per source (`memory`); `forward` then reads it for any number of decoder
positions, so teacher-forced training and token-by-token decoding run the very same code.

FAVOR+ memory is the source context ``(batch, heads, M, d + 1)`` (`favor.ops.favor_cross_context`): a
decoded token costs O(M d) per head whatever the source length. Exact memory is the source's keys and
values. Cross-attention has no positions of its own (rotary positions do not apply across sequences).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from favor.layers.favor_attention import RandomProjection
from favor.ops import favor_cross_context, favor_cross_read

__all__ = ["CrossAttention", "SourceMemory", "CROSS_KINDS"]

CROSS_KINDS = ("favor", "exact")


@dataclass(frozen=True)
class SourceMemory:
    """What a decoder layer keeps of one batch of sources; every tensor has the batch in dim 0.

    context: FAVOR+ source context ``(B, H, M, d + 1)``, or None.
    keys, values: ``(B, H, S, d)`` (exact attention; Luong attention: ``(B, S, D)``), or None.
    allowed: ``(B, 1, 1, S)`` bool (``(B, 1, S)`` for Luong), True at real source positions, or None.
    """

    context: torch.Tensor | None = None
    keys: torch.Tensor | None = None
    values: torch.Tensor | None = None
    allowed: torch.Tensor | None = None

    def select(self, index: torch.Tensor) -> SourceMemory:
        """The memory of rows ``index`` ``(R,)`` (beam search reorders and repeats sources)."""
        picked = {}
        for f in fields(self):
            value = getattr(self, f.name)
            picked[f.name] = None if value is None else value.index_select(0, index)
        return SourceMemory(**picked)


class CrossAttention(RandomProjection, nn.Module):
    """Queries from ``x``, keys and values from a `SourceMemory`; ``kind``: "favor" or "exact"."""

    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        kind: str = "favor",
        kernel: str = "softmax",
        nb_features: int = 256,
        orthogonal: bool = True,
        norms: str = "chi",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if kind not in CROSS_KINDS:
            raise ValueError(f"kind must be one of {', '.join(CROSS_KINDS)}, got {kind!r}")
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.kind, self.kernel = kind, kernel
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, d_model // n_heads
        self.nb_features, self.orthogonal, self.norms = nb_features, orthogonal, norms
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)
        if kind == "favor":
            self._init_projection(seed)

    def redraw_projections(self, generator: torch.Generator | None = None) -> None:
        """A fresh FAVOR+ projection in place; memories made before it are stale (make them again)."""
        if self.kind == "favor":
            super().redraw_projections(generator)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, L, d)

    def memory(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None) -> SourceMemory:
        """The memory of encoded sources ``(batch, S, d_model)`` (padding ``(batch, S)``, True at padding)."""
        k, v = self.key_value(source).chunk(2, dim=-1)
        k, v = self._heads(k), self._heads(v)  # (B, H, S, d)
        if self.kind == "favor":
            context = favor_cross_context(
                k, v, self.projection, kernel=self.kernel, key_padding_mask=padding_mask
            )
            return SourceMemory(context=context)
        allowed = None if padding_mask is None else ~padding_mask[:, None, None, :]  # (B, 1, 1, S)
        return SourceMemory(keys=k, values=v, allowed=allowed)

    def forward(self, x: torch.Tensor, memory: SourceMemory) -> torch.Tensor:
        """Decoder positions ``(batch, T, d_model)`` -> ``(batch, T, d_model)``."""
        q = self._heads(self.query(x))  # (B, H, T, d)
        if self.kind == "favor":
            out = favor_cross_read(q, memory.context, self.projection, kernel=self.kernel)
        else:
            out = F.scaled_dot_product_attention(q, memory.keys, memory.values, attn_mask=memory.allowed)
        batch, _, length, _ = out.shape
        return self.out(out.transpose(1, 2).reshape(batch, length, self.d_model))  # (B, T, D)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, kernel={self.kernel!r}, nb_features={self.nb_features}"
