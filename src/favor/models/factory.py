"""Build a backbone and a task head from a `ModelConfig`: the only place that dispatches on names."""

from __future__ import annotations

from torch import nn

from favor.layers import LMHead, PairwiseHead, SequenceHead, TokenHead
from favor.models.attention_backbone import AttentionBackbone
from favor.models.base import Backbone
from favor.models.config import ATTENTION_BACKBONES, RECURRENT_BACKBONES, ModelConfig
from favor.models.convolutional import ConvBackbone
from favor.models.recurrent import RecurrentBackbone

__all__ = ["build_backbone", "build_head"]


def build_backbone(config: ModelConfig) -> Backbone:
    if config.backbone in ATTENTION_BACKBONES:
        return AttentionBackbone(config=config)
    if config.backbone in RECURRENT_BACKBONES:
        return RecurrentBackbone(
            kind=config.backbone,
            d_model=config.d_model,
            n_layers=config.n_layers,
            causal=config.causal,
            dropout=config.dropout,
            gradient_checkpointing=config.gradient_checkpointing,
        )
    if config.backbone == "cnn":
        return ConvBackbone(
            d_model=config.d_model,
            d_hidden=config.d_ff,
            n_layers=config.n_layers,
            kernel_size=config.conv.kernel_size,
            dilations=config.conv.dilations,
            causal=config.causal,
            dropout=config.dropout,
            gradient_checkpointing=config.gradient_checkpointing,
        )
    raise ValueError(f"ModelConfig.backbone={config.backbone!r} is invalid")


def build_head(config: ModelConfig) -> nn.Module:
    if config.task in ("mlm", "clm"):
        return LMHead(d_model=config.d_model, vocab_size=config.vocab_size)
    if config.task in ("sequence_classification", "sequence_regression"):
        return SequenceHead(
            d_model=config.d_model,
            num_labels=config.num_labels,
            pooling=config.pooling,
            dropout=config.dropout,
        )
    if config.task in ("token_classification", "token_regression"):
        return TokenHead(d_model=config.d_model, num_labels=config.num_labels, dropout=config.dropout)
    if config.task == "contact":
        return PairwiseHead(d_model=config.d_model, pair_dim=config.pair_dim, kind=config.pair_head)
    raise ValueError(f"ModelConfig.task={config.task!r} is invalid")
