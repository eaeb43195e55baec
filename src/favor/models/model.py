"""`SequenceModel`: input embedding + backbone + task head, for every backbone and task of `ModelConfig`.

    model = SequenceModel(ModelConfig(backbone="performer", task="mlm", ...))
    out = model(input_ids, padding_mask=padding_mask, labels=labels, repr_layers=[0, -1])
    out.loss, out.logits, out.hidden_states

Causal models with a per-position head also decode incrementally:

    state = model.init_state(batch_size)
    logits, state = model.step(prompt_ids, state)      # any number of new positions per call

FAVOR+ projections are redrawn only by `redraw_projections`, never by `forward`.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from favor.layers import FavorSelfAttention, InputEmbedding, SequenceHead
from favor.models.config import PER_POSITION_TASKS, SEQ2SEQ_TASK, ModelConfig
from favor.models.factory import build_backbone, build_head
from favor.models.losses import task_loss
from favor.models.outputs import DecodingState, ModelOutput
from favor.ops.segments import check_segment_ids, segment_positions

__all__ = ["SequenceModel"]


class SequenceModel(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        if not isinstance(config, ModelConfig):
            raise ValueError(f"SequenceModel needs a ModelConfig, got {type(config).__name__}")
        if config.task == SEQ2SEQ_TASK:
            raise ValueError(
                "task 'seq2seq' is an encoder-decoder: build it with favor.models.build_model (Seq2SeqModel)"
            )
        self.config = config
        self.embedding = InputEmbedding(
            d_model=config.d_model,
            vocab_size=config.vocab_size,
            input_dim=config.input_dim,
            max_length=config.max_length if config.position == "learned" else None,
            dropout=config.dropout,
            token_dropout_id=config.mask_token_id if config.token_dropout else None,
        )
        self.backbone = build_backbone(config)
        self.head = build_head(config)
        if self.ties_embeddings:
            self.head.decoder.weight = self.embedding.tokens.weight

    @property
    def ties_embeddings(self) -> bool:
        """Whether the LM output layer shares the token embedding (config asks and both exist)."""
        return (
            self.config.tie_embeddings
            and self.config.task in ("mlm", "clm")
            and self.config.vocab_size is not None
        )

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        input_values: torch.Tensor | None = None,
        padding_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        repr_layers: list[int] | tuple[int, ...] | None = None,
        segment_ids: torch.Tensor | None = None,
    ) -> ModelOutput:
        """Run the model on a batch.

        Args:
            input_ids: ``(B, L)`` token ids (or `input_values` ``(B, L, input_dim)`` for real-valued inputs).
            padding_mask: ``(B, L)`` bool, True at padding, or None. Padding never changes real positions.
            labels: aligned with the logits, ``labels[:, t]`` the target of position t; for clm that is the
                next token, so build them with `favor.data.causal_lm_labels` (the model does not shift).
                Shapes per task: `favor.models.losses.task_loss_sum`; -100 and padding are ignored.
            output_hidden_states: return all ``n_layers + 1`` states.
            repr_layers: return only these states (0 = embeddings, n_layers = final; negative counts back).
            segment_ids: ``(B, L)`` integers for packed rows (several proteins per row): tokens attend only
                within their segment and positions restart at each segment, so every segment gets exactly
                the outputs it would get alone (performer and transformer backbones, per-position tasks).
        """
        packing = self._packing(
            segment_ids, input_ids if input_ids is not None else input_values, padding_mask
        )
        x = self.embedding(
            input_ids, input_values, positions=packing.get("positions"), padding_mask=padding_mask
        )  # (B, L, D)
        if padding_mask is not None:
            _check_padding_mask(padding_mask, x)
        states = self.backbone(x, padding_mask=padding_mask, **packing)
        logits = self._head(states[-1], padding_mask)
        loss = None
        if labels is not None:
            loss = task_loss(
                self.config.task,
                logits,
                labels,
                padding_mask=padding_mask,
                multi_label=self.config.multi_label,
            )
        return ModelOutput(
            logits=logits, loss=loss, hidden_states=self._select(states, output_hidden_states, repr_layers)
        )

    def _packing(
        self, segment_ids: torch.Tensor | None, inputs: torch.Tensor | None, padding_mask: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """``segment_ids`` and the positions within segments, checked; empty without packing."""
        if segment_ids is None:
            return {}
        config = self.config
        if config.backbone not in ("performer", "transformer"):
            raise ValueError(
                f"segment_ids (packed rows) need a performer or transformer backbone; backbone "
                f"{config.backbone!r} would mix the segments of a row"
            )
        if config.task not in PER_POSITION_TASKS:
            raise ValueError(f"segment_ids (packed rows) need a per-position task, not {config.task!r}")
        if inputs is not None:
            check_segment_ids(segment_ids, inputs.unsqueeze(-1) if inputs.dim() == 2 else inputs)
        return {"segment_ids": segment_ids, "positions": segment_positions(segment_ids, padding_mask)}

    def _head(self, hidden: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        if isinstance(self.head, SequenceHead):
            return self.head(hidden, padding_mask)
        return self.head(hidden)

    def _select(
        self, states: list[torch.Tensor], output_all: bool, repr_layers: list[int] | tuple[int, ...] | None
    ) -> tuple[torch.Tensor, ...] | None:
        if repr_layers is None:
            return tuple(states) if output_all else None
        n = len(states)
        chosen = []
        for layer in repr_layers:
            if isinstance(layer, bool) or not isinstance(layer, int) or not -n <= layer < n:
                raise ValueError(
                    f"repr_layers entry {layer!r} is out of range for {n - 1} layers (0..{n - 1})"
                )
            chosen.append(states[layer])
        return tuple(chosen)

    @torch.no_grad()
    def redraw_projections(self, generator: torch.Generator | None = None) -> int:
        """Redraw every FAVOR+ projection from ``generator`` (CPU); returns how many modules were redrawn.

        Call it from the training loop (e.g. every N steps); keep projections fixed for evaluation.
        """
        modules = [m for m in self.modules() if isinstance(m, FavorSelfAttention)]
        for module in modules:
            module.redraw_projections(generator)
        return len(modules)

    def init_state(self, batch_size: int, *, device=None, dtype=None) -> DecodingState:
        """The decoding state before any token (causal models only)."""
        self._check_decodable()
        param = next(self.parameters())
        device = device if device is not None else param.device
        dtype = dtype if dtype is not None else param.dtype
        return DecodingState(
            position=0, layers=self.backbone.init_state(batch_size, device=device, dtype=dtype)
        )

    def step(
        self,
        input_ids: torch.Tensor | None = None,
        state: DecodingState | None = None,
        *,
        input_values: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, DecodingState]:
        """Consume ``T >= 1`` new positions ``(B, T)``; return their logits ``(B, T, ...)`` and the new state.

        Gives the same logits as `forward` on the whole sequence (no padding inside decoded batches).
        ``state=None`` starts a new sequence. The given state is not modified.
        """
        self._check_decodable()
        x = self.embedding(input_ids, input_values, offset=0 if state is None else state.position)
        if state is None:
            state = self.init_state(x.shape[0], device=x.device, dtype=x.dtype)
        hidden, layers = self.backbone.step(x, state.layers, offset=state.position)
        return self.head(hidden), DecodingState(position=state.position + x.shape[1], layers=layers)

    def _check_decodable(self) -> None:
        if not self.config.causal:
            raise ValueError("incremental decoding needs a causal model (ModelConfig.causal=True)")
        if self.config.task not in PER_POSITION_TASKS:
            raise ValueError(
                f"incremental decoding needs a per-position head ({', '.join(PER_POSITION_TASKS)}), "
                f"not task {self.config.task!r}"
            )

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        """Write ``config.json`` + ``model.safetensors`` to ``folder`` (see `favor.models.pretrained`)."""
        from favor.models.pretrained import save_pretrained

        save_pretrained(self, folder)

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike, *, device: str | torch.device = "cpu"
    ) -> SequenceModel:
        """Load a model written by `save_pretrained`; outputs are bit-identical."""
        from favor.models.pretrained import load_pretrained

        return load_pretrained(folder, device=device)


def _check_padding_mask(padding_mask: torch.Tensor, x: torch.Tensor) -> None:
    if padding_mask.dtype != torch.bool:
        raise ValueError(f"padding_mask must be bool (True at padding), got {padding_mask.dtype}")
    if tuple(padding_mask.shape) != tuple(x.shape[:2]):
        raise ValueError(
            f"padding_mask must have shape (batch, length) = {tuple(x.shape[:2])}, "
            f"got {tuple(padding_mask.shape)}"
        )
