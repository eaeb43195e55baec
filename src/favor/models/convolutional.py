"""Convolutional backbone: residual dilated 1-D convolutions (ByteNet-like), bidirectional or causal.

Block i uses ``dilations[i % len(dilations)]``; causal blocks pad on the left only and decode
incrementally from a window of their last ``(kernel_size - 1) * dilation`` convolution inputs.
"""

from __future__ import annotations

import torch
from torch import nn

from favor.layers import DilatedConvBlock
from favor.models.base import Backbone

__all__ = ["ConvBackbone"]


class ConvBackbone(Backbone):
    def __init__(
        self,
        *,
        d_model: int,
        d_hidden: int,
        n_layers: int,
        kernel_size: int,
        dilations: tuple[int, ...],
        causal: bool,
        dropout: float = 0.0,
        gradient_checkpointing: bool = False,
    ) -> None:
        super().__init__(
            d_model=d_model, n_layers=n_layers, causal=causal, gradient_checkpointing=gradient_checkpointing
        )
        self.blocks = nn.ModuleList(
            DilatedConvBlock(
                d_model=d_model,
                d_hidden=d_hidden,
                kernel_size=kernel_size,
                dilation=dilations[i % len(dilations)],
                causal=causal,
                dropout=dropout,
            )
            for i in range(n_layers)
        )

    @property
    def receptive_field(self) -> int:
        """Width of the input span one output position depends on (all on the left when causal)."""
        return 1 + sum(block.context for block in self.blocks)

    def forward(self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        return self.run_blocks(self.blocks, x, padding_mask=padding_mask)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> list[torch.Tensor]:
        self._require_causal()
        return [block.init_window(batch_size, device=device, dtype=dtype) for block in self.blocks]

    def step(
        self, x: torch.Tensor, state: list[torch.Tensor], *, offset: int
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self._require_causal()
        new_state = []
        for block, window in zip(self.blocks, state, strict=True):
            x, window = block.step(x, window)
            new_state.append(window)
        return self.final_norm(x), new_state
