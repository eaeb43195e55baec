"""Truncated backpropagation through time: carry a recurrent model's state across windows of a long stream.

A window is run with `SequenceModel.step` from the state the previous window ended in; the state handed to
the next window is detached, so gradients flow through at most one window (the truncation) while the
hidden state still summarises everything read before. Positions restart at 0 in every window: learned
position embeddings (if any) see the same offsets as in training without carry.
"""

from __future__ import annotations

from typing import Any

import torch

from favor.models.model import SequenceModel
from favor.models.outputs import DecodingState

__all__ = ["detach_state", "tbptt_window"]


def _detach(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, (tuple, list)):
        return type(value)(_detach(v) for v in value)
    return value


def detach_state(state: DecodingState) -> DecodingState:
    """The same state cut from the autograd graph, with the position reset to 0."""
    return DecodingState(position=0, layers=[_detach(layer) for layer in state.layers])


def tbptt_window(
    model: SequenceModel, input_ids: torch.Tensor, state: DecodingState | None
) -> tuple[torch.Tensor, DecodingState]:
    """Logits ``(B, W, V)`` of one window ``(B, W)`` continued from ``state`` (None: a fresh start), and the
    detached state to continue the next window from."""
    logits, new_state = model.step(input_ids, state)
    return logits, detach_state(new_state)
