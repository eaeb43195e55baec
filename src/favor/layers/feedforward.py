"""Position-wise feed-forward network (GELU)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FeedForward"]


class FeedForward(nn.Module):
    """``Linear(d_model, d_ff) -> GELU -> dropout -> Linear(d_ff, d_model)``, position by position."""

    def __init__(self, *, d_model: int, d_ff: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc_in = nn.Linear(d_model, d_ff)
        self.fc_out = nn.Linear(d_ff, d_model)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc_out(self.dropout(self.activation(self.fc_in(x))))
