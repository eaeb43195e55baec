"""A BERT-compatible encoder built from favor's layers, so pretrained BERT weights load and attention swaps.

BERT differs from favor's own attention backbones (pre-LayerNorm, no token types, final LayerNorm):

- embeddings = LayerNorm(word + absolute learned position + token type), then dropout;
- each layer is post-LayerNorm: ``x = LN(x + attention(x))`` then ``x = LN(x + feed_forward(x))``;
- the feed-forward uses exact (erf) GELU; LayerNorm eps is 1e-12.

The attention modules are favor's own `ExactSelfAttention` / `FavorSelfAttention` (fused q/k/v projection,
``(batch, heads, length, head_dim)`` inside), so `use_favor_attention` swaps exact softmax attention for
FAVOR+ while keeping every trained weight. The feed-forward is favor's `FeedForward`.

A favor `ModelConfig` option such as ``norm_position="post"`` with token-type embeddings and an embedding
LayerNorm would let the main model family load BERT weights directly; until then this module is the path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from favor.layers import ExactSelfAttention, FavorSelfAttention, FeedForward, SelfAttention

__all__ = ["BertConfig", "BertEncoder", "BertLayer", "mean_pool"]


@dataclass(frozen=True)
class BertConfig:
    """The fields of a Hugging Face ``BertConfig`` (``config.json``) that the encoder needs."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    pad_token_id: int = 0

    def __post_init__(self) -> None:
        for name in (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"BertConfig.{name}={value!r} is invalid: expected an integer >= 1")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"BertConfig.hidden_size={self.hidden_size} must be a multiple of "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if not 0.0 <= self.hidden_dropout_prob < 1.0:
            raise ValueError(f"BertConfig.hidden_dropout_prob={self.hidden_dropout_prob!r} must be in [0, 1)")

    @classmethod
    def from_hf(cls, data: dict[str, Any]) -> BertConfig:
        """From a Hugging Face ``config.json`` dictionary; checks it describes a plain BERT encoder."""
        if data.get("model_type", "bert") != "bert":
            raise ValueError(f"config.json has model_type={data.get('model_type')!r}, expected 'bert'")
        if data.get("hidden_act", "gelu") != "gelu":
            raise ValueError(
                f"config.json has hidden_act={data.get('hidden_act')!r}; only 'gelu' is supported"
            )
        if data.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(
                f"config.json has position_embedding_type={data.get('position_embedding_type')!r}; "
                "only 'absolute' is supported"
            )
        fields = cls.__dataclass_fields__
        return cls(**{name: data[name] for name in fields if name in data})

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


class BertEmbeddings(nn.Module):
    """``LayerNorm(word + position + token_type)`` then dropout: ``(B, L)`` ids to ``(B, L, D)``."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.words = nn.Embedding(config.vocab_size, d, padding_idx=config.pad_token_id)
        self.positions = nn.Embedding(config.max_position_embeddings, d)
        self.token_types = nn.Embedding(config.type_vocab_size, d)
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        length = input_ids.shape[1]
        if length > self.positions.num_embeddings:
            raise ValueError(
                f"sequence length {length} exceeds max_position_embeddings={self.positions.num_embeddings}"
            )
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        positions = torch.arange(length, device=input_ids.device)
        x = self.words(input_ids) + self.positions(positions)[None] + self.token_types(token_type_ids)
        return self.dropout(self.norm(x))


class BertLayer(nn.Module):
    """Post-LayerNorm block: ``x = LN(x + attn(x)); x = LN(x + ffn(x))``, ``(B, L, D)`` to ``(B, L, D)``."""

    def __init__(self, config: BertConfig, attention: SelfAttention) -> None:
        super().__init__()
        d = config.hidden_size
        self.attention = attention
        self.norm_attention = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(d_model=d, d_ff=config.intermediate_size)
        self.norm_feed_forward = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor, *, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm_attention(x + self.dropout(self.attention(x, padding_mask=padding_mask)))
        return self.norm_feed_forward(x + self.dropout(self.feed_forward(x)))


def mean_pool(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``states`` ``(B, L, D)`` over real positions (``attention_mask`` ``(B, L)``, 1 = real)."""
    weights = attention_mask.to(states.dtype).unsqueeze(-1)  # (B, L, 1)
    return (states * weights).sum(1) / weights.sum(1).clamp_min(1e-9)


class BertEncoder(nn.Module):
    """BERT encoder (no pooler, no heads) whose attention is exact softmax or FAVOR+.

    ``forward(input_ids, attention_mask)`` returns the last hidden states ``(B, L, D)``;
    `sentence_embedding` returns mean-pooled, L2-normalized embeddings ``(B, D)`` (sentence-transformers).
    ``attention_mask`` follows the Hugging Face convention: ``(B, L)``, 1 at real tokens, 0 at padding.
    """

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList(
            BertLayer(config, self._exact_attention()) for _ in range(config.num_hidden_layers)
        )

    def _exact_attention(self) -> ExactSelfAttention:
        return ExactSelfAttention(d_model=self.config.hidden_size, n_heads=self.config.num_attention_heads)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, length), got shape {tuple(input_ids.shape)}")
        padding_mask = None
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError(
                    f"attention_mask shape {tuple(attention_mask.shape)} != input_ids shape "
                    f"{tuple(input_ids.shape)}"
                )
            padding_mask = attention_mask == 0
        x = self.embeddings(input_ids, token_type_ids)
        for layer in self.layers:
            x = layer(x, padding_mask=padding_mask)
        return x

    def sentence_embedding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean-pooled, L2-normalized sentence embeddings ``(B, D)``."""
        pooled = mean_pool(self(input_ids, attention_mask), attention_mask)
        return nn.functional.normalize(pooled, dim=-1)

    @property
    def attention_kind(self) -> str:
        first = self.layers[0].attention
        return (
            f"favor:{first.kernel}:{first.nb_features}" if isinstance(first, FavorSelfAttention) else "exact"
        )

    def use_favor_attention(
        self,
        *,
        nb_features: int = 256,
        kernel: str = "softmax",
        orthogonal: bool = True,
        norms: str = "chi",
        seed: int = 0,
    ) -> BertEncoder:
        """Replace every layer's attention by FAVOR+ in place, keeping the trained q/k/v/output weights.

        Layer i draws its projection from ``seed + i``. Returns ``self``.
        """
        for i, layer in enumerate(self.layers):
            favor = FavorSelfAttention(
                d_model=self.config.hidden_size,
                n_heads=self.config.num_attention_heads,
                kernel=kernel,
                nb_features=nb_features,
                orthogonal=orthogonal,
                norms=norms,
                seed=seed + i,
            )
            self._swap(layer, favor)
        return self

    def use_exact_attention(self) -> BertEncoder:
        """Replace every layer's attention by exact softmax attention in place. Returns ``self``."""
        for layer in self.layers:
            self._swap(layer, self._exact_attention())
        return self

    @staticmethod
    def _swap(layer: BertLayer, new: SelfAttention) -> None:
        old = layer.attention
        # Projections are buffers of the new module and stay as drawn; only learned weights move over.
        learned = {name: p for name, p in old.state_dict().items() if name != "projection"}
        result = new.load_state_dict(learned, strict=False)
        if result.unexpected_keys or set(result.missing_keys) - {"projection"}:
            raise ValueError(f"cannot move attention weights: {result}")
        weight = old.qkv.weight
        layer.attention = new.to(device=weight.device, dtype=weight.dtype)

    @torch.no_grad()
    def redraw_projections(self, generator: torch.Generator | None = None) -> None:
        """Redraw every FAVOR+ projection (a no-op for exact attention)."""
        for layer in self.layers:
            if isinstance(layer.attention, FavorSelfAttention):
                layer.attention.redraw_projections(generator)
