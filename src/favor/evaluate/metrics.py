"""Language-model metrics on labelled batches: accuracy, cross-entropy and perplexity of the predicted tokens,
with the unigram baseline scored on exactly the same targets.

Labels follow `favor.data`: -100 is ignored; masked LM labels hold the original residue at masked positions;
causal LM labels are already shifted (``labels[t] = tokens[t + 1]``), so the logits at position t are scored
against ``labels[t]`` directly, never shifted again. The model is called without labels and the loss is
computed here, so the metrics do not depend on how a model computes its own loss.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from favor.data.masking import IGNORE_INDEX

__all__ = ["LMStats", "score_logits", "evaluate_lm", "token_cross_entropy"]


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of float32 cross-entropy over labelled positions, and their count.

    Args:
        logits: ``(B, L, V)``.
        labels: ``(B, L)``, -100 where nothing is predicted.
    """
    keep = labels != IGNORE_INDEX
    losses = F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        labels.masked_fill(~keep, 0).reshape(-1),
        reduction="none",
    )
    return (losses * keep.reshape(-1)).sum(), keep.sum()


@dataclass
class LMStats:
    """Sums over predicted tokens; `to_dict` turns them into the reported metrics."""

    n: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    unigram_loss_sum: float = 0.0
    unigram_correct: int = 0
    n_sequences: int = 0
    n_batches: int = 0

    def add(self, other: LMStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_list(self) -> list[float]:
        return [float(getattr(self, f.name)) for f in fields(self)]

    @classmethod
    def from_list(cls, values: list[float]) -> LMStats:
        kinds = {f.name: f.type for f in fields(cls)}
        return cls(
            **{
                name: (float(v) if kinds[name] == "float" else round(v))
                for name, v in zip(kinds, values, strict=True)
            }
        )

    @property
    def loss(self) -> float:
        return self.loss_sum / self.n if self.n else float("nan")

    @property
    def unigram_loss(self) -> float:
        return self.unigram_loss_sum / self.n if self.n else float("nan")

    def to_dict(self, objective: str) -> dict[str, Any]:
        """The reported metrics; for causal LM ``n_masked`` counts predicted next tokens."""

        def ratio(a: float) -> float:
            return a / self.n if self.n else float("nan")

        return {
            "objective": objective,
            "masked_accuracy": ratio(self.correct),
            "perplexity": _exp(self.loss),
            "loss": self.loss,
            "n_masked": self.n,
            "unigram_accuracy": ratio(self.unigram_correct),
            "unigram_perplexity": _exp(self.unigram_loss),
            "unigram_loss": self.unigram_loss,
            "n_sequences": self.n_sequences,
            "n_batches": self.n_batches,
        }


def _exp(x: float) -> float:
    if math.isnan(x):
        return float("nan")
    return math.exp(x) if x < 700 else float("inf")


def score_logits(logits: torch.Tensor, labels: torch.Tensor, unigram_log_probs: torch.Tensor) -> LMStats:
    """Stats of one batch: model ``logits`` ``(B, L, V)`` and the unigram baseline on the same ``labels``."""
    keep = labels != IGNORE_INDEX
    targets = labels[keep]  # (N,)
    loss_sum, count = token_cross_entropy(logits, labels)
    predicted = logits[keep].argmax(dim=-1)
    unigram = unigram_log_probs.to(device=labels.device, dtype=torch.float64)
    return LMStats(
        n=int(count),
        loss_sum=float(loss_sum),
        correct=int((predicted == targets).sum()),
        unigram_loss_sum=float(-unigram[targets].sum()),
        unigram_correct=int((targets == int(unigram.argmax())).sum()),
        n_sequences=int(labels.shape[0]),
        n_batches=1,
    )


@torch.no_grad()
def evaluate_lm(
    model: nn.Module,
    batches: Iterable[dict[str, Any]],
    *,
    unigram_log_probs: torch.Tensor,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    max_batches: int | None = None,
) -> LMStats:
    """Run ``model`` (eval mode, restored afterwards) over labelled ``batches`` and sum the metrics."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    stats = LMStats()
    try:
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            input_ids = batch["input_ids"].to(device)
            padding_mask = batch["padding_mask"].to(device)
            labels = batch["labels"].to(device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(input_ids, padding_mask=padding_mask).logits
            stats.add(score_logits(logits, labels, unigram_log_probs))
    finally:
        model.train(was_training)
    return stats
