"""ByteNet-like residual block with a dilated 1-D convolution.

After ByteNet (Kalchbrenner et al. 2016) and its protein use in CARP (Yang et al. 2022):

``x + dropout(W_out gelu(LN(conv_dilated(gelu(LN(W_in gelu(LN(x))))))))``. Convolution inputs at padded
positions are zeroed right before the convolution, exactly as the zero padding beyond the sequence end,
so padding never changes real positions. The causal variant pads on the left only; incremental decoding
keeps the last ``(kernel_size - 1) * dilation`` convolution inputs as its window.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DilatedConvBlock"]


class DilatedConvBlock(nn.Module):
    def __init__(
        self,
        *,
        d_model: int,
        d_hidden: int,
        kernel_size: int,
        dilation: int = 1,
        causal: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.causal = causal
        self.d_hidden = d_hidden
        # Positions of context the convolution needs beyond the current one.
        self.context = (kernel_size - 1) * dilation
        self.norm_in = nn.LayerNorm(d_model)
        self.reduce = nn.Linear(d_model, d_hidden)
        self.norm_conv = nn.LayerNorm(d_hidden)
        self.conv = nn.Conv1d(d_hidden, d_hidden, kernel_size, dilation=dilation)
        self.norm_out = nn.LayerNorm(d_hidden)
        self.expand = nn.Linear(d_hidden, d_model)
        self.dropout = nn.Dropout(dropout)

    def _conv_input(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        h = F.gelu(self.norm_conv(self.reduce(F.gelu(self.norm_in(x)))))  # (B, L, C)
        if padding_mask is not None:
            h = h.masked_fill(padding_mask.unsqueeze(-1), 0.0)
        return h.transpose(1, 2)  # (B, C, L)

    def _finish(self, x: torch.Tensor, conv_out: torch.Tensor) -> torch.Tensor:
        h = conv_out.transpose(1, 2)  # (B, L, C)
        return x + self.dropout(self.expand(F.gelu(self.norm_out(h))))

    def forward(self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``(batch, length, d_model)``; ``padding_mask``: ``(batch, length)``, True at padding."""
        h = self._conv_input(x, padding_mask)
        if self.causal:
            h = F.pad(h, (self.context, 0))
        else:
            left = self.context // 2
            h = F.pad(h, (left, self.context - left))
        return self._finish(x, self.conv(h))

    def init_window(self, batch_size: int, *, device=None, dtype=None) -> torch.Tensor:
        """Zeros ``(batch, d_hidden, context)``: the left padding a causal forward pass sees."""
        return torch.zeros(batch_size, self.d_hidden, self.context, device=device, dtype=dtype)

    def step(self, x: torch.Tensor, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal continuation for new positions ``x`` ``(batch, T, d_model)``; returns output, new window."""
        if not self.causal:
            raise ValueError("a bidirectional convolution cannot decode incrementally; use causal=True")
        new = self._conv_input(x, None)  # (B, C, T)
        h = torch.cat([window.to(new.dtype), new], dim=-1)  # (B, C, context + T)
        new_window = h[..., h.shape[-1] - self.context :]
        return self._finish(x, self.conv(h)), new_window
