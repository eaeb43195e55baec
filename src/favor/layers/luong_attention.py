"""Luong attention for recurrent encoder-decoders (Luong, Pham & Manning, *Effective Approaches to
Attention-based Neural Machine Translation*, EMNLP 2015: global attention, "general" score).

For a decoder state ``h_t`` and encoder states ``e_s``: ``score(h_t, e_s) = h_t^T W_a e_s``, ``a_t`` the
softmax of the scores over the real source positions, the context ``c_t = sum_s a_ts e_s``, and the
attentional state ``tanh(W_c [c_t; h_t])``. ``W_a e_s`` is computed once per source (`memory`). Without
input feeding (the attentional state is not fed back into the recurrence), so teacher forcing stays one
parallel pass and decoding carries only the LSTM state.
"""

from __future__ import annotations

import torch
from torch import nn

from favor.layers.cross_attention import SourceMemory

__all__ = ["LuongAttention"]


class LuongAttention(nn.Module):
    def __init__(self, *, d_model: int) -> None:
        super().__init__()
        self.score = nn.Linear(d_model, d_model, bias=False)  # W_a
        self.combine = nn.Linear(2 * d_model, d_model)  # W_c

    def memory(self, source: torch.Tensor, padding_mask: torch.Tensor | None = None) -> SourceMemory:
        """Encoder states ``(batch, S, d_model)`` -> keys ``W_a e_s``, values ``e_s``, real positions."""
        allowed = None if padding_mask is None else ~padding_mask[:, None, :]  # (B, 1, S)
        return SourceMemory(keys=self.score(source), values=source, allowed=allowed)

    def forward(self, h: torch.Tensor, memory: SourceMemory) -> torch.Tensor:
        """Decoder states ``(batch, T, d_model)`` -> attentional states ``(batch, T, d_model)``."""
        scores = h @ memory.keys.transpose(1, 2)  # (B, T, S)
        if memory.allowed is not None:
            scores = scores.masked_fill(~memory.allowed, float("-inf"))
        context = scores.softmax(dim=-1) @ memory.values  # (B, T, D)
        return torch.tanh(self.combine(torch.cat([context, h], dim=-1)))
