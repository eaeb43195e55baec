"""Recurrent backbones: RNN (tanh), LSTM and GRU, uni- or bidirectional, multi-layer.

Each layer is a pre-LayerNorm residual recurrent layer, ``x + dropout(rnn(LN(x)))``, one torch module per
layer so every layer's states can be returned. Bidirectional layers use ``d_model / 2`` units per
direction. Padding must be on the right: sequences are packed (`pack_padded_sequence`) so the backward
direction starts at each sequence's last real token and padding never changes real outputs. Causal
(unidirectional) backbones decode incrementally by carrying each layer's hidden state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from favor.models.base import Backbone

__all__ = ["RecurrentBackbone", "RecurrentLayer", "right_padded_lengths"]

_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def right_padded_lengths(padding_mask: torch.Tensor) -> torch.Tensor:
    """Real lengths ``(batch,)`` on CPU from a ``(batch, length)`` mask; raises unless right-padded."""
    lengths = (~padding_mask).sum(dim=1)
    positions = torch.arange(padding_mask.shape[1], device=padding_mask.device)
    if not torch.equal(padding_mask, positions[None, :] >= lengths[:, None]):
        raise ValueError("recurrent backbones need right padding: padding_mask must be True only at the end")
    return lengths.cpu()


class RecurrentLayer(nn.Module):
    def __init__(self, *, kind: str, d_model: int, bidirectional: bool, dropout: float = 0.0) -> None:
        super().__init__()
        if kind not in _CELLS:
            raise ValueError(f"kind must be one of {', '.join(_CELLS)}, got {kind!r}")
        hidden = d_model // 2 if bidirectional else d_model
        self.norm = nn.LayerNorm(d_model)
        self.rnn = _CELLS[kind](d_model, hidden, batch_first=True, bidirectional=bidirectional)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, *, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` ``(batch, length, d_model)``; ``lengths`` ``(batch,)`` real lengths (CPU) or None."""
        h = self.norm(x)
        if lengths is None:
            out, _ = self.rnn(h)  # (B, L, D)
        else:
            # Empty sequences are not packable; a length of 1 only touches a padded position's output.
            packed = pack_padded_sequence(h, lengths.clamp_min(1), batch_first=True, enforce_sorted=False)
            out, _ = self.rnn(packed)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, L, D)
        return x + self.dropout(out.to(x.dtype))

    def step(self, x: torch.Tensor, hidden: Any) -> tuple[torch.Tensor, Any]:
        out, hidden = self.rnn(self.norm(x), hidden)  # (B, T, D)
        return x + self.dropout(out.to(x.dtype)), hidden


class RecurrentBackbone(Backbone):
    def __init__(
        self,
        *,
        kind: str,
        d_model: int,
        n_layers: int,
        causal: bool,
        dropout: float = 0.0,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__(
            d_model=d_model, n_layers=n_layers, causal=causal, gradient_checkpointing=gradient_checkpointing
        )
        self.kind = kind
        self.layers = nn.ModuleList(
            RecurrentLayer(kind=kind, d_model=d_model, bidirectional=not causal, dropout=dropout)
            for _ in range(n_layers)
        )

    def forward(self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        lengths = None
        if padding_mask is not None and bool(padding_mask.any()):
            lengths = right_padded_lengths(padding_mask)
        return self.run_blocks(self.layers, x, lengths=lengths)

    def step(self, x: torch.Tensor, state: list[Any], *, offset: int) -> tuple[torch.Tensor, list[Any]]:
        self._require_causal()
        new_state = []
        for layer, hidden in zip(self.layers, state, strict=True):
            x, hidden = layer.step(x, hidden)
            new_state.append(hidden)
        return self.final_norm(x), new_state
