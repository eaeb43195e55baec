"""Position information: learned absolute embeddings and rotary embeddings (RoFormer, Su et al. 2021).

Rotary embeddings rotate pairs of channels of q and k by an angle proportional to the position, so that
``q_i . k_j`` depends on ``i - j`` only. They act on q and k before attention or before the FAVOR+ feature
map, so they work with every attention module here. Both take a position ``offset`` so incremental
decoding sees the same positions as a full forward pass.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LearnedPositions", "RotaryEmbedding"]


class LearnedPositions(nn.Module):
    """A table of ``max_length`` learned position vectors added to the input embeddings."""

    def __init__(self, *, max_length: int, d_model: int) -> None:
        super().__init__()
        self.max_length = max_length
        self.weight = nn.Parameter(torch.randn(max_length, d_model) * 0.02)

    def forward(self, length: int, *, offset: int = 0, positions: torch.Tensor | None = None) -> torch.Tensor:
        """Position vectors for positions ``offset .. offset + length - 1``: ``(length, d_model)``.

        ``positions`` ``(batch, length)`` (packed rows: indices within each segment) gives
        ``(batch, length, d_model)`` instead.
        """
        if positions is not None:
            if positions.numel() and int(positions.max()) >= self.max_length:
                raise ValueError(
                    f"position {int(positions.max())} exceeds max_length={self.max_length} of the learned "
                    "position table; raise ModelConfig.max_length or use position='rotary'"
                )
            return self.weight[positions]
        if offset + length > self.max_length:
            raise ValueError(
                f"positions up to {offset + length} exceed max_length={self.max_length} of the learned "
                "position table; raise ModelConfig.max_length or use position='rotary'"
            )
        return self.weight[offset : offset + length]


class RotaryEmbedding(nn.Module):
    """Rotate channel pairs ``(x[2i], x[2i+1])`` of q and k by ``position * base^(-2i/d)``."""

    def __init__(self, *, head_dim: int, base: float = 10000.0) -> None:
        super().__init__()
        if head_dim % 2 != 0:
            raise ValueError(f"rotary embeddings need an even head_dim, got {head_dim}")
        inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
        # Deterministic from head_dim: not saved with the weights.
        self.register_buffer("inv_freq", inv_freq.float(), persistent=False)

    def forward(
        self, x: torch.Tensor, *, offset: int = 0, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Rotate ``x`` ``(batch, heads, length, head_dim)`` at positions ``offset + arange(length)``.

        ``positions`` ``(batch, length)`` gives each row its own positions instead (packed rows: the index
        within each segment, so positions restart at every segment).
        """
        length = x.shape[-2]
        # Angles in at least float32 whatever the activations' dtype (bf16 angles are far too coarse).
        angle_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        if positions is None:
            positions = torch.arange(offset, offset + length, device=x.device, dtype=angle_dtype)
        else:
            positions = positions.to(angle_dtype)[:, None, :]  # (B, 1, L): broadcast over heads
        angles = positions[..., None] * self.inv_freq.to(angle_dtype)  # (L, d/2) or (B, 1, L, d/2)
        cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
        pairs = x.unflatten(-1, (-1, 2))  # (B, H, L, d/2, 2)
        even, odd = pairs[..., 0], pairs[..., 1]
        rotated = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)
        return rotated.flatten(-2)  # (B, H, L, d)
