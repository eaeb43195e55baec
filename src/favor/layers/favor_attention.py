"""FAVOR+ self-attention (Performer): linear-time attention through random features.

The module owns its random projection W ``(nb_features, head_dim)`` as a persistent buffer: it is drawn
once at construction from a seeded generator, saved with the weights, and changed only by an explicit
`redraw_projections` call from the training loop (never inside `forward`). All heads share W.
"""

from __future__ import annotations

import torch

from favor.layers.attention import SelfAttention
from favor.ops import (
    FavorState,
    favor_attention,
    favor_attention_matrix,
    favor_attention_step,
    random_projection,
)

__all__ = ["FavorSelfAttention"]


class RandomProjection:
    """The random projection of a FAVOR+ module (a mixin for `nn.Module`): an ``(nb_features, head_dim)``
    buffer drawn from ``seed`` at construction and redrawn in place by `redraw_projections`. The module sets
    ``nb_features``, ``head_dim``, ``orthogonal`` and ``norms`` before `_init_projection`."""

    nb_features: int
    head_dim: int
    orthogonal: bool
    norms: str
    projection: torch.Tensor

    def _init_projection(self, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("projection", self._draw(generator, dtype=torch.get_default_dtype()))

    def _draw(self, generator: torch.Generator | None, *, dtype: torch.dtype) -> torch.Tensor:
        return random_projection(
            self.nb_features,
            self.head_dim,
            orthogonal=self.orthogonal,
            norms=self.norms,
            generator=generator,
            dtype=dtype,
        )

    @torch.no_grad()
    def redraw_projections(self, generator: torch.Generator | None = None) -> None:
        """Draw a fresh projection in place (same device and dtype). ``generator`` must be a CPU generator."""
        new = self._draw(generator, dtype=self.projection.dtype)
        self.projection.copy_(new.to(self.projection.device))


class FavorSelfAttention(RandomProjection, SelfAttention):
    """Multi-head FAVOR+ attention, bidirectional or causal; decoding keeps a `FavorState` per layer."""

    def __init__(
        self,
        *,
        d_model: int,
        n_heads: int,
        causal: bool = False,
        rotary: bool = False,
        kernel: str = "softmax",
        nb_features: int = 256,
        orthogonal: bool = True,
        norms: str = "chi",
        chunk_size: int = 64,
        seed: int = 0,
    ) -> None:
        super().__init__(d_model=d_model, n_heads=n_heads, causal=causal, rotary=rotary)
        self.kernel, self.nb_features, self.chunk_size = kernel, nb_features, chunk_size
        self.orthogonal, self.norms = orthogonal, norms
        self._init_projection(seed)

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        padding_mask: torch.Tensor | None,
        segment_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return favor_attention(
            q,
            k,
            v,
            self.projection,
            causal=self.causal,
            kernel=self.kernel,
            key_padding_mask=padding_mask,
            chunk_size=self.chunk_size,
            segment_ids=segment_ids,
        )

    def weights(self, q: torch.Tensor, k: torch.Tensor, *, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """The implicit FAVOR+ matrix ``D^-1 Q' K'^T`` (`favor.ops.favor_attention_matrix`)."""
        return favor_attention_matrix(
            q, k, self.projection, kernel=self.kernel, causal=self.causal, key_padding_mask=padding_mask
        )

    def attend_step(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: FavorState | None
    ) -> tuple[torch.Tensor, FavorState]:
        return favor_attention_step(
            q, k, v, self.projection, cache, kernel=self.kernel, chunk_size=self.chunk_size
        )

    def extra_repr(self) -> str:
        return (
            f"kernel={self.kernel!r}, nb_features={self.nb_features}, orthogonal={self.orthogonal}, "
            f"norms={self.norms!r}, causal={self.causal}"
        )
