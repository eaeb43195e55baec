"""Typed outputs of the models and the incremental decoding state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["ModelOutput", "DecodingState"]


@dataclass
class ModelOutput:
    """What `SequenceModel.forward` returns.

    loss: scalar, only when labels were given (label -100 ignored).
    logits: by task -- mlm/clm ``(B, L, vocab)``; sequence_* ``(B, num_labels)``;
        token_* ``(B, L, num_labels)``; contact ``(B, L, L)``.
    hidden_states: the selected per-layer states ``(B, L, d_model)``, in the order asked for (index 0 is the
        embedding output, index n_layers the final, normalized layer), or None.
    """

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


@dataclass
class DecodingState:
    """Per-backbone state of incremental decoding after ``position`` tokens.

    layers: one entry per layer -- a `favor.ops.FavorState` (performer), a ``(k, v)`` cache (transformer),
        the hidden state (rnn/gru; ``(h, c)`` for lstm), or a window of past convolution inputs (cnn).
    Treated as immutable: `SequenceModel.step` returns a new state, so a state can be reused to branch.
    """

    position: int = 0
    layers: list[Any] = field(default_factory=list)
