"""Task heads on top of backbone states ``(batch, length, d_model)``.

LMHead        per-position token logits (masked or causal LM), output layer tieable to the embedding
SequenceHead  pooled (mean over real tokens, or the first/cls token) -> one vector per sequence
TokenHead     per-position labels or values
PairwiseHead  residue-residue logits ``(batch, length, length)``, symmetric (contacts); on two
              concatenated sequences the inter-sequence block ``[:, :len_a, len_a:]`` is the pair map
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LMHead", "SequenceHead", "TokenHead", "PairwiseHead", "pool"]


def pool(hidden: torch.Tensor, padding_mask: torch.Tensor | None, *, mode: str) -> torch.Tensor:
    """``(B, L, D)`` -> ``(B, D)``: mean over real positions (``mode="mean"``) or position 0 (``"cls"``)."""
    if mode == "cls":
        return hidden[:, 0]
    if mode != "mean":
        raise ValueError(f"pooling must be 'mean' or 'cls', got {mode!r}")
    if padding_mask is None:
        return hidden.mean(dim=1)
    real = (~padding_mask).unsqueeze(-1).to(hidden.dtype)  # (B, L, 1)
    # A sequence made only of padding pools to zeros rather than NaN.
    return (hidden * real).sum(dim=1) / real.sum(dim=1).clamp_min(1.0)


class LMHead(nn.Module):
    """``dense -> GELU -> LayerNorm -> decoder`` to vocabulary logits (the ESM/BERT LM head)."""

    def __init__(self, *, d_model: int, vocab_size: int) -> None:
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.decoder = nn.Linear(d_model, vocab_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(F.gelu(self.dense(hidden))))  # (B, L, V)


class SequenceHead(nn.Module):
    """Pool, then ``dense -> GELU -> dropout -> Linear(num_labels)``: ``(B, L, D)`` -> ``(B, num_labels)``."""

    def __init__(self, *, d_model: int, num_labels: int, pooling: str = "mean", dropout: float = 0.0) -> None:
        super().__init__()
        self.pooling = pooling
        self.dense = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(d_model, num_labels)

    def forward(self, hidden: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        pooled = pool(hidden, padding_mask, mode=self.pooling)  # (B, D)
        return self.out(self.dropout(F.gelu(self.dense(pooled))))


class TokenHead(nn.Module):
    """``dropout -> Linear(num_labels)`` at every position: ``(B, L, D)`` -> ``(B, L, num_labels)``."""

    def __init__(self, *, d_model: int, num_labels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(d_model, num_labels)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(hidden))


class PairwiseHead(nn.Module):
    """Symmetric pair logits ``(B, L, L)`` from per-position features.

    ``kind="bilinear"``: ``(a_i . b_j + a_j . b_i) / (2 sqrt(r)) + bias`` with ``a = A h``, ``b = B h``
    (memory O(B L r + B L^2)). ``kind="mlp"``: an MLP on the symmetric pair features
    ``[u_i + u_j, u_i * u_j]`` with ``u = U h`` (memory O(B L^2 r): short sequences).
    """

    def __init__(self, *, d_model: int, pair_dim: int = 64, kind: str = "bilinear") -> None:
        super().__init__()
        if kind not in ("bilinear", "mlp"):
            raise ValueError(f"kind must be 'bilinear' or 'mlp', got {kind!r}")
        self.kind, self.pair_dim = kind, pair_dim
        self.norm = nn.LayerNorm(d_model)
        if kind == "bilinear":
            self.left = nn.Linear(d_model, pair_dim)
            self.right = nn.Linear(d_model, pair_dim)
            self.bias = nn.Parameter(torch.zeros(()))
        else:
            self.features = nn.Linear(d_model, pair_dim)
            self.hidden = nn.Linear(2 * pair_dim, pair_dim)
            self.score = nn.Linear(pair_dim, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        h = self.norm(hidden)
        if self.kind == "bilinear":
            a, b = self.left(h), self.right(h)  # (B, L, r)
            scores = a @ b.transpose(1, 2)  # (B, L, L)
            return (scores + scores.transpose(1, 2)) * (0.5 * self.pair_dim**-0.5) + self.bias
        u = self.features(h)  # (B, L, r)
        pair_sum = u.unsqueeze(2) + u.unsqueeze(1)  # (B, L, L, r)
        pair_prod = u.unsqueeze(2) * u.unsqueeze(1)  # (B, L, L, r)
        pair = F.gelu(self.hidden(torch.cat([pair_sum, pair_prod], dim=-1)))  # (B, L, L, r)
        return self.score(pair).squeeze(-1)  # (B, L, L)
