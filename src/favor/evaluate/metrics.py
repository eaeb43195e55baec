"""Language-model metrics on labelled batches: accuracy, cross-entropy and perplexity of the predicted tokens,
with the unigram baseline scored on exactly the same targets.

Labels follow the one convention of `favor.models.losses`: aligned with the logits, -100 (and padding)
ignored; masked LM labels hold the original residue at masked positions; causal LM labels are already
shifted (``labels[t] = tokens[t + 1]``), so the logits at position t are scored against ``labels[t]``. The
loss is `favor.models.task_loss_sum`, the same number as the model's own ``out.loss`` and the trainer's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from favor.models.losses import target_mask, task_loss_sum

__all__ = ["LMStats", "score_logits", "evaluate_lm", "token_cross_entropy"]

# mlm and clm score their (aligned) labels by one rule; either name selects it.
_LM_TASK = "mlm"


def token_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, *, padding_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of float32 cross-entropy over labelled positions, and their count (`task_loss_sum` of an LM).

    Args:
        logits: ``(B, L, V)``.
        labels: ``(B, L)``, -100 where nothing is predicted.
        padding_mask: ``(B, L)``, True at padding (never scored), or None.
    """
    return task_loss_sum(_LM_TASK, logits, labels, padding_mask=padding_mask)


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


def score_logits(
    logits: torch.Tensor,
    labels: torch.Tensor,
    unigram_log_probs: torch.Tensor,
    *,
    padding_mask: torch.Tensor | None = None,
) -> LMStats:
    """Stats of one batch: model ``logits`` ``(B, L, V)`` and the unigram baseline on the same ``labels``."""
    keep = target_mask(_LM_TASK, labels, padding_mask=padding_mask)
    targets = labels[keep]  # (N,)
    loss_sum, count = token_cross_entropy(logits, labels, padding_mask=padding_mask)
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
            stats.add(score_logits(logits, labels, unigram_log_probs, padding_mask=padding_mask))
    finally:
        model.train(was_training)
    return stats
