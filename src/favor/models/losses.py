"""Task losses. Label -100 is ignored everywhere; so are padded positions (and padded pairs).

Losses are computed in float32 whatever the logits' dtype (bf16 autocast), as a mean over the labels that
count; with no label counting the loss is 0 (still connected to the graph), never NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["IGNORE_INDEX", "task_loss"]

IGNORE_INDEX = -100


def _masked_mean(values: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    keep = keep.to(values.dtype)
    return (values * keep).sum() / keep.sum().clamp_min(1.0)


def _check_shape(labels: torch.Tensor, shape: tuple[int, ...], task: str) -> None:
    if tuple(labels.shape) != tuple(shape):
        raise ValueError(
            f"labels for task {task!r} must have shape {tuple(shape)}, got {tuple(labels.shape)}"
        )


def _cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``(N, C)`` logits against ``(N,)`` class labels, -100 ignored."""
    keep = labels != IGNORE_INDEX
    losses = F.cross_entropy(logits.float(), labels.long().masked_fill(~keep, 0), reduction="none")
    return _masked_mean(losses, keep)


def _binary(logits: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    keep = keep & (labels != IGNORE_INDEX)
    targets = labels.float().masked_fill(~keep, 0.0)
    losses = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
    return _masked_mean(losses, keep)


def _squared(predictions: torch.Tensor, labels: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    labels = labels.float()
    # -100 and NaN both mark a missing regression target.
    keep = keep & (labels != IGNORE_INDEX) & ~torch.isnan(labels)
    errors = (predictions.float() - labels.masked_fill(~keep, 0.0)).pow(2)
    return _masked_mean(errors, keep)


def task_loss(
    task: str,
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    padding_mask: torch.Tensor | None = None,
    multi_label: bool = False,
) -> torch.Tensor:
    """The loss of ``task`` (see `favor.models.config.TASKS`) for the head's ``logits`` and ``labels``.

    Label shapes: mlm/clm/token_classification ``(B, L)`` integers; clm labels are the input ids (the
    shift by one happens here); sequence_classification ``(B,)`` integers or ``(B, num_labels)`` 0/1 with
    ``multi_label``; sequence_regression ``(B,)`` or ``(B, num_labels)``; token_regression ``(B, L)`` or
    ``(B, L, num_labels)``; contact ``(B, L, L)`` 0/1.
    """
    real = None if padding_mask is None else ~padding_mask  # (B, L)
    if task in ("mlm", "clm", "token_classification"):
        _check_shape(labels, logits.shape[:2], task)
        if real is not None:
            labels = labels.masked_fill(~real, IGNORE_INDEX)
        if task == "clm":
            # Position t predicts token t + 1.
            logits, labels = logits[:, :-1], labels[:, 1:]
        return _cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
    if task == "sequence_classification":
        if multi_label:
            _check_shape(labels, logits.shape, task)
            return _binary(logits, labels, torch.ones_like(labels, dtype=torch.bool))
        _check_shape(labels, logits.shape[:1], task)
        return _cross_entropy(logits, labels)
    if task in ("sequence_regression", "token_regression"):
        if labels.dim() == logits.dim() - 1 and logits.shape[-1] == 1:
            labels = labels.unsqueeze(-1)
        _check_shape(labels, logits.shape, task)
        keep = torch.ones_like(labels, dtype=torch.bool)
        if task == "token_regression" and real is not None:
            keep = keep & real.unsqueeze(-1)
        return _squared(logits, labels, keep)
    if task == "contact":
        _check_shape(labels, logits.shape, task)
        keep = torch.ones_like(labels, dtype=torch.bool)
        if real is not None:
            keep = keep & real.unsqueeze(2) & real.unsqueeze(1)  # (B, L, L)
        return _binary(logits, labels, keep)
    raise ValueError(f"unknown task {task!r}")
