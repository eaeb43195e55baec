"""Input embeddings: tokens (an embedding table) or real-valued features (a linear input projection)."""

from __future__ import annotations

import torch
from torch import nn

from favor.layers.positions import LearnedPositions

__all__ = ["InputEmbedding"]


class InputEmbedding(nn.Module):
    """Token ids ``(B, L)`` and/or real-valued inputs ``(B, L, input_dim)`` to ``(B, L, d_model)``.

    Exactly one of the two inputs is given per call. Learned absolute positions are added when
    ``max_length`` is given; rotary positions live in the attention modules instead.
    """

    def __init__(
        self,
        *,
        d_model: int,
        vocab_size: int | None = None,
        input_dim: int | None = None,
        max_length: int | None = None,
        dropout: float = 0.0,
        token_dropout_id: int | None = None,
    ) -> None:
        super().__init__()
        # ESM's token dropout (see ModelConfig.token_dropout): the id whose embedding is zeroed, or None.
        self.token_dropout_id = token_dropout_id
        if vocab_size is None and input_dim is None:
            raise ValueError("InputEmbedding needs vocab_size or input_dim")
        self.tokens = nn.Embedding(vocab_size, d_model) if vocab_size is not None else None
        self.values = nn.Linear(input_dim, d_model) if input_dim is not None else None
        self.positions = (
            LearnedPositions(max_length=max_length, d_model=d_model) if max_length is not None else None
        )
        self.dropout = nn.Dropout(dropout)
        if self.tokens is not None:
            nn.init.normal_(self.tokens.weight, std=0.02)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        input_values: torch.Tensor | None = None,
        *,
        offset: int = 0,
        positions: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``positions`` ``(B, L)``: each token's learned position (packed rows restart at each segment);
        ``padding_mask`` (True at padding) counts the real tokens of a row for token dropout."""
        if (input_ids is None) == (input_values is None):
            raise ValueError("pass exactly one of input_ids (B, L) and input_values (B, L, input_dim)")
        if input_ids is not None:
            if self.tokens is None:
                raise ValueError("this model has no token embedding (vocab_size=None); pass input_values")
            if input_ids.dim() != 2:
                raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
            x = self.tokens(input_ids)  # (B, L, D)
            if self.token_dropout_id is not None:
                x = self._token_dropout(x, input_ids, padding_mask)
        else:
            if self.values is None:
                raise ValueError("this model has no input projection (input_dim=None); pass input_ids")
            if input_values.dim() != 3 or input_values.shape[-1] != self.values.in_features:
                raise ValueError(
                    f"input_values must be (batch, length, {self.values.in_features}), "
                    f"got shape {tuple(input_values.shape)}"
                )
            x = self.values(input_values)  # (B, L, D)
        if self.positions is not None:
            x = x + self.positions(x.shape[1], offset=offset, positions=positions)
        return self.dropout(x)

    def _token_dropout(
        self, x: torch.Tensor, input_ids: torch.Tensor, padding_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """ESM: zero the mask token's embedding, rescale by the share of unmasked tokens, zero padding."""
        masked = input_ids == self.token_dropout_id
        x = x.masked_fill(masked.unsqueeze(-1), 0.0)
        real = torch.ones_like(masked) if padding_mask is None else ~padding_mask
        observed = masked.sum(-1).float() / real.sum(-1).clamp(min=1).float()
        x = (x * (1 - 0.15 * 0.8) / (1 - observed)[:, None, None]).to(x.dtype)
        return x * real.unsqueeze(-1).to(x.dtype)
