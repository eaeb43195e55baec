"""Pre-LayerNorm attention backbones: Performer (FAVOR+), Transformer (exact) and Linformer.

Each block is ``x + dropout(attention(LN(x)))`` then ``x + dropout(feed_forward(LN(x)))``; the three
backbones differ only in the attention module, so they are directly comparable.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from favor.layers import (
    ExactSelfAttention,
    FavorSelfAttention,
    FeedForward,
    LinformerSelfAttention,
    SelfAttention,
)
from favor.models.base import Backbone
from favor.models.config import ModelConfig

__all__ = ["AttentionBlock", "AttentionBackbone", "build_attention"]


class AttentionBlock(nn.Module):
    def __init__(self, *, attention: SelfAttention, d_model: int, d_ff: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attention = attention
        self.norm_attention = nn.LayerNorm(d_model)
        self.feed_forward = FeedForward(d_model=d_model, d_ff=d_ff, dropout=dropout)
        self.norm_feed_forward = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None, **packing: Any
    ) -> torch.Tensor:
        """``(batch, length, d_model)`` -> same shape; ``packing``: ``segment_ids`` and ``positions``."""
        x = x + self.dropout(self.attention(self.norm_attention(x), padding_mask=padding_mask, **packing))
        return x + self.dropout(self.feed_forward(self.norm_feed_forward(x)))

    def step(self, x: torch.Tensor, cache: Any, *, offset: int) -> tuple[torch.Tensor, Any]:
        attended, cache = self.attention.step(self.norm_attention(x), cache, offset=offset)
        x = x + self.dropout(attended)
        return x + self.dropout(self.feed_forward(self.norm_feed_forward(x))), cache


def build_attention(config: ModelConfig, layer: int) -> SelfAttention:
    """The attention module of block ``layer`` for ``config.backbone``."""
    common = {"d_model": config.d_model, "n_heads": config.n_heads, "rotary": config.position == "rotary"}
    if config.backbone == "performer":
        a = config.attention
        return FavorSelfAttention(
            **common,
            causal=config.causal,
            kernel=a.kernel,
            nb_features=a.nb_features,
            orthogonal=a.orthogonal,
            norms=a.norms,
            chunk_size=a.chunk_size,
            # One seed per layer: layers get different projections, reproducibly.
            seed=config.seed + layer,
        )
    if config.backbone == "transformer":
        return ExactSelfAttention(**common, causal=config.causal)
    if config.backbone == "linformer":
        return LinformerSelfAttention(
            **common,
            max_length=config.max_length,
            proj_dim=config.linformer.proj_dim,
            share_kv=config.linformer.share_kv,
        )
    raise ValueError(f"backbone {config.backbone!r} has no attention module")


class AttentionBackbone(Backbone):
    """A stack of `AttentionBlock`s followed by a final LayerNorm."""

    def __init__(self, *, config: ModelConfig) -> None:
        super().__init__(
            d_model=config.d_model,
            n_layers=config.n_layers,
            causal=config.causal,
            gradient_checkpointing=config.gradient_checkpointing,
        )
        self.blocks = nn.ModuleList(
            AttentionBlock(
                attention=build_attention(config, layer),
                d_model=config.d_model,
                d_ff=config.d_ff,
                dropout=config.dropout,
            )
            for layer in range(config.n_layers)
        )

    def forward(
        self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None, **packing: Any
    ) -> list[torch.Tensor]:
        """``packing``: ``segment_ids`` and ``positions`` of packed rows (see `favor.ops.segments`)."""
        return self.run_blocks(self.blocks, x, padding_mask=padding_mask, **packing)

    def step(self, x: torch.Tensor, state: list[Any], *, offset: int) -> tuple[torch.Tensor, list[Any]]:
        self._require_causal()
        new_state = []
        for block, cache in zip(self.blocks, state, strict=True):
            x, cache = block.step(x, cache, offset=offset)
            new_state.append(cache)
        return self.final_norm(x), new_state
