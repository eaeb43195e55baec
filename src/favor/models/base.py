"""The one interface every backbone implements.

A backbone maps embedded inputs ``(batch, length, d_model)`` to states of the same shape:

    forward(x, padding_mask=None) -> list of n_layers + 1 states
        [input, after block 1, ..., after block n_layers (final LayerNorm applied)]
    init_state(batch_size) -> per-layer decoding state (causal backbones)
    step(x, state, offset=...) -> (last states (batch, T, d_model), new state); never mutates `state`

``padding_mask`` is ``(batch, length)`` bool, True at padding; padded positions never change the states of
real positions (right padding for the recurrent backbones). Activation checkpointing wraps each block
when ``gradient_checkpointing`` is set and the module is training.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["Backbone"]


class Backbone(nn.Module):
    def __init__(self, *, d_model: int, n_layers: int, causal: bool, gradient_checkpointing: bool = False):
        super().__init__()
        self.d_model, self.n_layers, self.causal = d_model, n_layers, causal
        self.gradient_checkpointing = gradient_checkpointing
        self.final_norm = nn.LayerNorm(d_model)

    def run_block(self, block: nn.Module, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """``block(x, **kwargs)``, through activation checkpointing when enabled and training."""
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, use_reentrant=False, **kwargs)
        return block(x, **kwargs)

    def run_blocks(self, blocks: nn.ModuleList, x: torch.Tensor, **kwargs: Any) -> list[torch.Tensor]:
        """Every block in turn; returns the ``n_layers + 1`` states, the last one through the final norm."""
        states = [x]
        for block in blocks:
            x = self.run_block(block, x, **kwargs)
            states.append(x)
        states[-1] = self.final_norm(x)
        return states

    def forward(self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        raise NotImplementedError

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> list[Any]:
        """Per-layer state before any position was seen."""
        self._require_causal()
        return [None] * self.n_layers

    def step(self, x: torch.Tensor, state: list[Any], *, offset: int) -> tuple[torch.Tensor, list[Any]]:
        raise NotImplementedError(f"{type(self).__name__} does not support incremental decoding")

    def _require_causal(self) -> None:
        if not self.causal:
            raise ValueError(
                f"{type(self).__name__} is bidirectional: incremental decoding needs ModelConfig.causal=True"
            )
