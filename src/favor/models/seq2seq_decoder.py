"""Decoders of the encoder-decoder models: causal self-attention + cross-attention blocks, or an LSTM with
Luong attention.

Both read the encoder through per-layer `favor.layers.SourceMemory` objects made once per source
(`memories`) and offer the same two entry points:

    forward(x, memories, padding_mask=None) -> (batch, T, d_model)      teacher forcing, all positions
    step(x, state, memories, offset=...) -> (last states, new state)    T >= 1 new positions; never mutates

The attention decoder's step state is one self-attention cache per block: a `favor.ops.FavorState`
(performer: O(m d) per head and token, whatever the prefix length) or a `KVCache` (transformer). The
recurrent decoder's state is the LSTM's ``(h, c)`` per layer. `select_rows` picks (and repeats) batch rows
of a state, as beam search needs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from favor.layers import CrossAttention, FeedForward, LuongAttention, SourceMemory
from favor.layers.attention import KVCache
from favor.models.attention_backbone import build_attention
from favor.models.config import ModelConfig
from favor.models.recurrent import RecurrentBackbone
from favor.ops import FavorState

__all__ = ["AttentionDecoder", "RecurrentDecoder", "build_decoder", "select_rows"]


class DecoderBlock(nn.Module):
    """``x + SelfAttn(LN(x))``, then ``x + CrossAttn(LN(x), memory)``, then ``x + FF(LN(x))`` (pre-LN)."""

    def __init__(self, config: ModelConfig, layer: int) -> None:
        super().__init__()
        n_encoder, n_decoder = config.n_layers, config.n_decoder_layers
        # Seeds after the encoder's (seed + i): every FAVOR+ module gets its own projection.
        causal = dataclasses.replace(
            config, task="clm", causal=True, decoder_layers=None, seed=config.seed + n_encoder + layer
        )
        self.self_attention = build_attention(causal, layer=0)
        a = config.attention
        self.cross_attention = CrossAttention(
            d_model=config.d_model,
            n_heads=config.n_heads,
            kind="favor" if config.backbone == "performer" else "exact",
            kernel=a.kernel,
            nb_features=a.nb_features,
            orthogonal=a.orthogonal,
            norms=a.norms,
            seed=config.seed + n_encoder + n_decoder + layer,
        )
        self.feed_forward = FeedForward(d_model=config.d_model, d_ff=config.d_ff, dropout=config.dropout)
        self.norm_self = nn.LayerNorm(config.d_model)
        self.norm_cross = nn.LayerNorm(config.d_model)
        self.norm_feed_forward = nn.LayerNorm(config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def _rest(self, x: torch.Tensor, memory: SourceMemory) -> torch.Tensor:
        x = x + self.dropout(self.cross_attention(self.norm_cross(x), memory))
        return x + self.dropout(self.feed_forward(self.norm_feed_forward(x)))

    def forward(
        self, x: torch.Tensor, memory: SourceMemory, padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = x + self.dropout(self.self_attention(self.norm_self(x), padding_mask=padding_mask))
        return self._rest(x, memory)

    def step(
        self, x: torch.Tensor, cache: Any, memory: SourceMemory, *, offset: int
    ) -> tuple[torch.Tensor, Any]:
        attended, cache = self.self_attention.step(self.norm_self(x), cache, offset=offset)
        return self._rest(x + self.dropout(attended), memory), cache


class AttentionDecoder(nn.Module):
    """Performer (FAVOR+ self- and cross-attention) or Transformer (exact) decoder blocks + final LN."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(DecoderBlock(config, i) for i in range(config.n_decoder_layers))
        self.final_norm = nn.LayerNorm(config.d_model)

    def memories(self, source: torch.Tensor, padding_mask: torch.Tensor | None) -> list[SourceMemory]:
        return [block.cross_attention.memory(source, padding_mask) for block in self.blocks]

    def forward(
        self, x: torch.Tensor, memories: list[SourceMemory], padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        for block, memory in zip(self.blocks, memories, strict=True):
            x = block(x, memory, padding_mask)
        return self.final_norm(x)

    def init_state(self) -> list[Any]:
        return [None] * len(self.blocks)

    def step(
        self, x: torch.Tensor, state: list[Any], memories: list[SourceMemory], *, offset: int
    ) -> tuple[torch.Tensor, list[Any]]:
        new_state = []
        for block, cache, memory in zip(self.blocks, state, memories, strict=True):
            x, cache = block.step(x, cache, memory, offset=offset)
            new_state.append(cache)
        return self.final_norm(x), new_state


class RecurrentDecoder(nn.Module):
    """A unidirectional residual LSTM stack with Luong attention over the encoder states.

    ``decoder_attention="top"``: the stack, then attention over its last states. ``"bottom"``: the first
    layer, attention over its states, then the other layers over the attentional states (GNMT's layout).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.bottom_attention = config.decoder_attention == "bottom"
        stack = {
            "kind": config.backbone,
            "causal": True,
            "dropout": config.dropout,
            "d_model": config.d_model,
        }
        if self.bottom_attention:
            self.bottom = RecurrentBackbone(n_layers=1, **stack)
            self.rnn = RecurrentBackbone(n_layers=config.n_decoder_layers - 1, **stack)
        else:
            self.rnn = RecurrentBackbone(n_layers=config.n_decoder_layers, **stack)
        self.attention = LuongAttention(d_model=config.d_model)

    def memories(self, source: torch.Tensor, padding_mask: torch.Tensor | None) -> list[SourceMemory]:
        return [self.attention.memory(source, padding_mask)]

    def forward(
        self, x: torch.Tensor, memories: list[SourceMemory], padding_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        # Right padding of a unidirectional stack never reaches the real positions before it.
        if self.bottom_attention:
            attended = self.attention(self.bottom(x, padding_mask=padding_mask)[-1], memories[0])
            return self.rnn(attended, padding_mask=padding_mask)[-1]
        return self.attention(self.rnn(x, padding_mask=padding_mask)[-1], memories[0])

    def init_state(self) -> list[Any]:
        return (self.bottom.init_state(1) if self.bottom_attention else []) + self.rnn.init_state(1)

    def step(
        self, x: torch.Tensor, state: list[Any], memories: list[SourceMemory], *, offset: int
    ) -> tuple[torch.Tensor, list[Any]]:
        if self.bottom_attention:
            hidden, bottom_state = self.bottom.step(x, state[:1], offset=offset)
            out, top_state = self.rnn.step(self.attention(hidden, memories[0]), state[1:], offset=offset)
            return out, bottom_state + top_state
        hidden, state = self.rnn.step(x, state, offset=offset)
        return self.attention(hidden, memories[0]), state


def build_decoder(config: ModelConfig) -> nn.Module:
    return RecurrentDecoder(config) if config.backbone == "lstm" else AttentionDecoder(config)


def _select_cache(cache: Any, index: torch.Tensor) -> Any:
    """Rows ``index`` of one layer's decoding state (None: nothing decoded yet)."""
    if cache is None:
        return None
    if isinstance(cache, FavorState):
        return FavorState(
            context=cache.context.index_select(0, index),
            frame=cache.frame.index_select(0, index),
            length=cache.length,
        )
    if isinstance(cache, KVCache):
        keys, values = cache.keys.index_select(0, index), cache.values.index_select(0, index)
        return KVCache.start(keys, capacity=max(64, 2 * cache.length)).append(keys, values)
    if isinstance(cache, tuple):  # LSTM (h, c), each (1, batch, hidden)
        return tuple(t.index_select(1, index) for t in cache)
    if isinstance(cache, torch.Tensor):  # RNN / GRU hidden state (1, batch, hidden)
        return cache.index_select(1, index)
    raise TypeError(f"select_rows: unknown decoding state {type(cache).__name__}")


def select_rows(state: list[Any], index: torch.Tensor) -> list[Any]:
    """Per-layer decoder state of rows ``index`` ``(R,)`` (a new state; the given one is unchanged)."""
    return [_select_cache(cache, index) for cache in state]
