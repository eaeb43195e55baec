"""`Seq2SeqModel`: an encoder-decoder of the model family, selected by ``ModelConfig(task="seq2seq")``.

    model = build_model(ModelConfig(backbone="performer", task="seq2seq", vocab_size=V, ...))
    out = model(source_ids, padding_mask=source_padding, decoder_input_ids=target_in,
                decoder_padding_mask=target_padding, labels=target_out)       # teacher forcing
    memory = model.encode(source_ids, padding_mask=source_padding)             # once per source
    logits, state = model.step(bos_ids, model.init_state(memory))              # then one token per step

The encoder is the bidirectional backbone of ``backbone`` (performer: FAVOR+, transformer: exact softmax,
lstm: a bidirectional LSTM stack). The decoder (`favor.models.seq2seq_decoder`) is causal, with
cross-attention over the encoder's output (FAVOR+ for performer, exact for transformer, Luong attention
for lstm). Sources and targets share one vocabulary but have their own embeddings; the output layer shares
the decoder's embedding when ``tie_embeddings``. Labels are aligned with the logits (the target shifted by
the data pipeline: decoder input ``<bos> y_1 .. y_n``, labels ``y_1 .. y_n <eos>``); -100 and decoder
padding are ignored. Checkpoints are the family's ``config.json`` + ``model.safetensors``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from favor.layers import CrossAttention, FavorSelfAttention, InputEmbedding, LMHead, SourceMemory
from favor.models.attention_backbone import AttentionBackbone
from favor.models.config import SEQ2SEQ_TASK, ModelConfig
from favor.models.losses import task_loss
from favor.models.outputs import DecodingState, ModelOutput
from favor.models.recurrent import RecurrentBackbone
from favor.models.seq2seq_decoder import build_decoder, select_rows

__all__ = ["Seq2SeqModel", "EncodedSource", "Seq2SeqState"]


@dataclass(frozen=True)
class EncodedSource:
    """A batch of encoded sources: the decoder layers' memories (computed once) and the encoder output."""

    memories: list[SourceMemory]
    states: torch.Tensor  # (B, S, d_model), the encoder's final states
    padding_mask: torch.Tensor | None  # (B, S), True at padding

    def select(self, index: torch.Tensor) -> EncodedSource:
        return EncodedSource(
            memories=[m.select(index) for m in self.memories],
            states=self.states.index_select(0, index),
            padding_mask=None if self.padding_mask is None else self.padding_mask.index_select(0, index),
        )


@dataclass(frozen=True)
class Seq2SeqState:
    """Incremental decoding state: the encoded sources and the decoder's state after ``position`` tokens."""

    source: EncodedSource
    decoding: DecodingState

    def select(self, index: torch.Tensor) -> Seq2SeqState:
        """The state of rows ``index`` ``(R,)`` (reordered or repeated; beam search)."""
        layers = select_rows(self.decoding.layers, index)
        return Seq2SeqState(self.source.select(index), DecodingState(self.decoding.position, layers))


class Seq2SeqModel(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig) or config.task != SEQ2SEQ_TASK:
            raise ValueError(f"Seq2SeqModel needs a ModelConfig with task {SEQ2SEQ_TASK!r}")
        self.config = config
        embedding = {
            "d_model": config.d_model,
            "vocab_size": config.vocab_size,
            "max_length": config.max_length if config.position == "learned" else None,
            "dropout": config.dropout,
        }
        self.encoder_embedding = InputEmbedding(**embedding)
        self.decoder_embedding = InputEmbedding(**embedding)
        self.encoder = _build_encoder(config)
        self.decoder = build_decoder(config)
        self.head = LMHead(d_model=config.d_model, vocab_size=config.vocab_size)
        if config.tie_embeddings:
            self.head.decoder.weight = self.decoder_embedding.tokens.weight

    def encode(self, input_ids: torch.Tensor, *, padding_mask: torch.Tensor | None = None) -> EncodedSource:
        """Sources ``(B, S)`` (right-padded for lstm) -> what every decoding step reads."""
        if padding_mask is not None and tuple(padding_mask.shape) != tuple(input_ids.shape):
            raise ValueError(
                f"padding_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
                f"got {tuple(padding_mask.shape)}"
            )
        x = self.encoder_embedding(input_ids, padding_mask=padding_mask)  # (B, S, D)
        states = self.encoder(x, padding_mask=padding_mask)[-1]
        return EncodedSource(self.decoder.memories(states, padding_mask), states, padding_mask)

    def decode(
        self,
        source: EncodedSource,
        decoder_input_ids: torch.Tensor,
        *,
        decoder_padding_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Teacher forcing: logits ``(B, T, vocab)`` of every target position at once."""
        x = self.decoder_embedding(decoder_input_ids, padding_mask=decoder_padding_mask)
        return self.head(self.decoder(x, source.memories, padding_mask=decoder_padding_mask))

    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        decoder_input_ids: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        decoder_padding_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> ModelOutput:
        """Sources ``(B, S)``, decoder inputs ``(B, T)``, labels ``(B, T)`` aligned with the logits."""
        logits = self.decode(
            self.encode(input_ids, padding_mask=padding_mask),
            decoder_input_ids,
            decoder_padding_mask=decoder_padding_mask,
        )
        loss = None
        if labels is not None:
            loss = task_loss(SEQ2SEQ_TASK, logits, labels, padding_mask=decoder_padding_mask)
        return ModelOutput(logits=logits, loss=loss)

    def init_state(self, source: EncodedSource) -> Seq2SeqState:
        """The state before the first target token."""
        return Seq2SeqState(source, DecodingState(position=0, layers=self.decoder.init_state()))

    def step(self, input_ids: torch.Tensor, state: Seq2SeqState) -> tuple[torch.Tensor, Seq2SeqState]:
        """Consume ``T >= 1`` new target tokens ``(B, T)``: their logits ``(B, T, vocab)`` and the new state.

        Equal to `decode` on the whole target so far; the given state is not modified.
        """
        offset = state.decoding.position
        x = self.decoder_embedding(input_ids, offset=offset)
        hidden, layers = self.decoder.step(x, state.decoding.layers, state.source.memories, offset=offset)
        decoding = DecodingState(position=offset + input_ids.shape[1], layers=layers)
        return self.head(hidden), Seq2SeqState(state.source, decoding)

    @torch.no_grad()
    def redraw_projections(self, generator: torch.Generator | None = None) -> int:
        """Redraw every FAVOR+ projection (self- and cross-attention); returns how many were redrawn."""
        modules = [
            m
            for m in self.modules()
            if isinstance(m, FavorSelfAttention) or (isinstance(m, CrossAttention) and m.kind == "favor")
        ]
        for module in modules:
            module.redraw_projections(generator)
        return len(modules)

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        from favor.models.pretrained import save_pretrained

        save_pretrained(self, folder)


def _build_encoder(config: ModelConfig) -> nn.Module:
    if config.backbone == "lstm":
        return RecurrentBackbone(
            kind="lstm",
            d_model=config.d_model,
            n_layers=config.n_layers,
            causal=False,
            dropout=config.dropout,
            gradient_checkpointing=config.gradient_checkpointing,
        )
    encoder: Any = dataclasses.replace(config, task="mlm", causal=False, decoder_layers=None)
    return AttentionBackbone(config=encoder)
