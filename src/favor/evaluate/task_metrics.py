"""Metrics of the non-LM tasks on labelled batches: regression (forecasting), classification, seq2seq.

The loss is `favor.models.task_loss_sum` (the model's own ``out.loss`` and the trainer's): labels aligned
with the logits, -100 and padding ignored; regression labels may hold NaN for a missing target (a
per-position forecast whose steps fall outside the split), skipped too. For regression it is the mean
squared error over every target, in the normalised units the model is trained in. The *forecast* metrics
use only the forecast made at the end of each window (the last position of a many-to-many model, the pooled
output of a many-to-one model), like a forecaster asked at that origin, and are reported in the data's
units (``value_scale`` undoes the normalisation): MAE, RMSE and MASE (MAE divided by the in-sample
seasonal-naive MAE of the training part).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from favor.models.losses import target_mask, task_loss_sum

__all__ = [
    "REGRESSION_TASKS",
    "TaskStats",
    "evaluate_task",
    "final_forecast",
    "loss_padding_mask",
    "model_logits",
    "score_task",
    "squared_error_sum",
]

REGRESSION_TASKS = ("token_regression", "sequence_regression")
# Tasks whose accuracy is over positions (one class id each), reported as ``token_accuracy``.
_TOKEN_TASKS = ("mlm", "clm", "token_classification", "seq2seq")


def squared_error_sum(predictions: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 sum of squared errors over the labels that count (not NaN, not -100), and their count
    (shapes must match): the regression `task_loss_sum`."""
    return task_loss_sum("sequence_regression", predictions, labels)


def final_forecast(
    task: str, logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The forecast made at each window's origin and its targets, both ``(B, horizon)``."""
    if task == "token_regression":
        return logits[:, -1], labels[:, -1]
    return logits, labels


@dataclass
class TaskStats:
    """Sums over a task's targets; `to_dict` turns them into the reported metrics."""

    n: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    forecasts: int = 0
    abs_error_sum: float = 0.0
    squared_error_sum: float = 0.0
    n_sequences: int = 0
    n_batches: int = 0

    def add(self, other: TaskStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_list(self) -> list[float]:
        return [float(getattr(self, f.name)) for f in fields(self)]

    @classmethod
    def from_list(cls, values: list[float]) -> TaskStats:
        kinds = {f.name: f.type for f in fields(cls)}
        return cls(
            **{
                name: (float(v) if kinds[name] == "float" else round(v))
                for name, v in zip(kinds, values, strict=True)
            }
        )

    def to_dict(
        self, task: str, *, value_scale: float = 1.0, mase_scale: float | None = None
    ) -> dict[str, Any]:
        loss = self.loss_sum / self.n if self.n else float("nan")
        out: dict[str, Any] = {"task": task, "loss": loss, "n_targets": self.n}
        if task == "sequence_classification":
            out["accuracy"] = self.correct / self.n if self.n else float("nan")
        if task in _TOKEN_TASKS:
            out["token_accuracy"] = self.correct / self.n if self.n else float("nan")
        if task in REGRESSION_TASKS:
            count = self.forecasts or 0
            mae = self.abs_error_sum / count * value_scale if count else float("nan")
            rmse = math.sqrt(self.squared_error_sum / count) * value_scale if count else float("nan")
            out.update(mae=mae, rmse=rmse, n_forecasts=count)
            if mase_scale is not None:
                out["mase"] = mae / mase_scale
        out.update(n_sequences=self.n_sequences, n_batches=self.n_batches)
        return out


def score_task(
    task: str,
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    padding_mask: torch.Tensor | None = None,
    multi_label: bool = False,
) -> TaskStats:
    """Stats of one batch of ``task``'s head outputs against its labels (any model task).

    ``padding_mask`` is the one of the labelled side (the decoder's for seq2seq), True at padding.
    Classification counts the right predictions over the targets: argmax for class ids (per position for
    token tasks, teacher-forced for seq2seq), ``logit > 0`` per label for multi-label.
    """
    loss_sum, count = task_loss_sum(task, logits, labels, padding_mask=padding_mask, multi_label=multi_label)
    stats = TaskStats(n=int(count), loss_sum=float(loss_sum), n_sequences=int(labels.shape[0]), n_batches=1)
    if task == "sequence_classification" or task in _TOKEN_TASKS:
        keep = target_mask(task, labels, padding_mask=padding_mask)
        if multi_label:
            right = (logits > 0) == (labels > 0.5)
        else:
            right = logits.argmax(dim=-1) == labels
        stats.correct = int((right & keep).sum())
    elif task in REGRESSION_TASKS:
        forecast, target = final_forecast(task, logits.float(), labels.float())
        keep = torch.isfinite(target)
        errors = (forecast - target.nan_to_num(0.0))[keep]
        stats.forecasts = int(keep.sum())
        stats.abs_error_sum = float(errors.abs().double().sum())
        stats.squared_error_sum = float(errors.double().pow(2).sum())
    return stats


@torch.no_grad()
def evaluate_task(
    model: nn.Module,
    batches: Iterable[dict[str, Any]],
    *,
    task: str,
    device: torch.device | str = "cpu",
    bf16: bool = False,
    max_batches: int | None = None,
    multi_label: bool | None = None,
) -> TaskStats:
    """Run ``model`` (eval mode, restored afterwards) over labelled ``batches`` and sum the stats.

    ``multi_label`` None reads it from ``model.config`` (False without one).
    """
    device = torch.device(device)
    if multi_label is None:
        multi_label = bool(getattr(getattr(model, "config", None), "multi_label", False))
    was_training = model.training
    model.eval()
    stats = TaskStats()
    try:
        for i, batch in enumerate(batches):
            if max_batches is not None and i >= max_batches:
                break
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model_logits(model, batch, device)
            padding_mask = loss_padding_mask(batch)
            stats.add(
                score_task(
                    task,
                    logits,
                    batch["labels"].to(device),
                    padding_mask=None if padding_mask is None else padding_mask.to(device),
                    multi_label=multi_label,
                )
            )
    finally:
        model.train(was_training)
    return stats


def model_logits(model: nn.Module, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
    """The head output for a batch with ``input_ids`` or ``input_values`` (and ``padding_mask``; a seq2seq
    batch adds ``decoder_input_ids`` and ``decoder_padding_mask``: teacher forcing)."""
    names = ("input_ids", "input_values", "segment_ids", "decoder_input_ids", "decoder_padding_mask")
    inputs = {k: batch[k].to(device) for k in names if k in batch}
    return model(**inputs, padding_mask=batch["padding_mask"].to(device)).logits


def loss_padding_mask(batch: dict[str, Any]) -> torch.Tensor | None:
    """The padding of the side the labels belong to (what the model's loss ignores): the decoder's in a
    seq2seq batch, else the input's."""
    return batch.get("decoder_padding_mask", batch.get("padding_mask"))
