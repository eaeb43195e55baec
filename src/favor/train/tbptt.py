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

__all__ = ["carry_from_tensors", "carry_to_tensors", "detach_state", "tbptt_window"]


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


def carry_to_tensors(state: DecodingState) -> tuple[dict[str, torch.Tensor], list[int]]:
    """A carried state as named tensors plus its layout, for a checkpoint (safetensors + JSON).

    Each layer's entry is a tensor (rnn, gru: layout 0) or a tuple of tensors (lstm's ``(h, c)``: layout
    its length); tensors are named ``layer<i>`` or ``layer<i>.<j>``.
    """
    tensors: dict[str, torch.Tensor] = {}
    layout: list[int] = []
    for i, layer in enumerate(state.layers):
        if isinstance(layer, torch.Tensor):
            tensors[f"layer{i}"] = layer.detach().contiguous()
            layout.append(0)
        elif isinstance(layer, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in layer):
            tensors.update({f"layer{i}.{j}": t.detach().contiguous() for j, t in enumerate(layer)})
            layout.append(len(layer))
        else:
            raise TypeError(f"layer {i} of the carried state is a {type(layer).__name__}, not tensors")
    return tensors, layout


def carry_from_tensors(
    tensors: dict[str, torch.Tensor], layout: list[int], device: torch.device | str
) -> DecodingState:
    """The inverse of :func:`carry_to_tensors` (position 0, as every window starts)."""
    layers: list[Any] = []
    for i, size in enumerate(layout):
        names = [f"layer{i}"] if size == 0 else [f"layer{i}.{j}" for j in range(size)]
        missing = [name for name in names if name not in tensors]
        if missing:
            raise ValueError(f"carried state: no tensor {missing[0]!r} (layout {layout})")
        values = tuple(tensors[name].to(device) for name in names)
        layers.append(values[0] if size == 0 else values)
    return DecodingState(position=0, layers=layers)
