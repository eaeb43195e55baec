"""Task losses, the one loss of favor: the model's ``out.loss``, the trainer and the evaluators all use it.

Labels are aligned with the logits: ``labels[..., t]`` is what position t must predict. Causal LM labels
therefore arrive already shifted (``labels[t] = tokens[t + 1]``, see `favor.data.causal_lm_labels`); nothing
here shifts them. Label -100 (`IGNORE_INDEX`) is ignored everywhere; so are padded positions (and padded
pairs) and NaN regression targets.

`task_loss_sum` returns the sum of the per-target losses and the number of targets, so that a mean over
several batches (micro-batches, ranks, an evaluation set) weights every target alike; `task_loss` is that
sum over that count for one batch. Losses are computed in float32 whatever the logits' dtype (bf16
autocast); with no target counting the loss is 0 (still connected to the graph), never NaN.

``label_smoothing`` (epsilon in [0, 1), the tasks scored by one class id only) is the cross-entropy against
``(1 - epsilon) * one_hot + epsilon / C`` over the C classes, torch's definition: a training loss; the
evaluators always score the plain cross-entropy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["IGNORE_INDEX", "smoothable", "target_mask", "task_loss", "task_loss_sum"]

# Label value that scores nothing (also torch.nn.functional.cross_entropy's default ignore_index).
IGNORE_INDEX = -100

# Tasks scored by the cross-entropy of one class id per position.
_TOKEN_TASKS = ("mlm", "clm", "token_classification", "seq2seq")
# Tasks whose loss can be label-smoothed: one class id per target (not multi-label classification).
SMOOTHABLE_TASKS = (*_TOKEN_TASKS, "sequence_classification")
_REGRESSION_TASKS = ("sequence_regression", "token_regression")
_TASKS = (*_TOKEN_TASKS, *_REGRESSION_TASKS, "sequence_classification", "contact")


def smoothable(task: str, multi_label: bool = False) -> bool:
    """Whether ``task``'s loss can be label-smoothed: one class id per target (not multi-label)."""
    return task in SMOOTHABLE_TASKS and not (task == "sequence_classification" and multi_label)


def _check_task(task: str) -> None:
    if task not in _TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(_TASKS)}")


def _check_shape(labels: torch.Tensor, shape: tuple[int, ...], task: str) -> None:
    if tuple(labels.shape) != tuple(shape):
        raise ValueError(
            f"labels for task {task!r} must have shape {tuple(shape)}, got {tuple(labels.shape)}"
        )


def target_mask(task: str, labels: torch.Tensor, *, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Bool, shaped like ``labels``: True where a label counts (the targets `task_loss_sum` counts).

    A label counts unless it is -100, NaN (regression) or sits at padding (``padding_mask`` ``(B, L)``,
    True at padding; per-position and pair tasks only, a sequence-level label never sits at padding).
    """
    _check_task(task)
    keep = labels != IGNORE_INDEX
    if task in _REGRESSION_TASKS and labels.is_floating_point():
        keep = keep & ~torch.isnan(labels)
    if padding_mask is None or task in ("sequence_classification", "sequence_regression"):
        return keep
    real = ~padding_mask.to(device=labels.device, dtype=torch.bool)  # (B, L)
    if task == "contact":
        return keep & real.unsqueeze(2) & real.unsqueeze(1)  # (B, L, L)
    if labels.dim() == 3:  # token_regression with several outputs: (B, L, num_labels)
        return keep & real.unsqueeze(-1)
    return keep & real


def task_loss_sum(
    task: str,
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    padding_mask: torch.Tensor | None = None,
    multi_label: bool = False,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The float32 sum of ``task``'s per-target losses over the batch, and the number of targets.

    ``task`` is one of `favor.models.config.MODEL_TASKS`. Label shapes (aligned with ``logits``):
    mlm/clm/token_classification/seq2seq ``(B, L)`` class ids, ``labels[:, t]`` the target of position t
    (for clm the next token: use `favor.data.causal_lm_labels` on raw token ids); sequence_classification
    ``(B,)`` class ids, or ``(B, num_labels)`` 0/1 with ``multi_label``; sequence_regression ``(B,)`` or
    ``(B, num_labels)``; token_regression ``(B, L)`` or ``(B, L, num_labels)``; contact ``(B, L, L)`` 0/1.
    Cross-entropy for class ids, binary cross-entropy for multi-label and contact, squared error for
    regression. For seq2seq, ``padding_mask`` is the decoder's. ``label_smoothing`` (see the module
    docstring) applies to the cross-entropy tasks only; a nonzero value elsewhere is an error.
    """
    _check_task(task)
    if task in _REGRESSION_TASKS and labels.dim() == logits.dim() - 1 and logits.shape[-1] == 1:
        labels = labels.unsqueeze(-1)
    binary = task == "contact" or (task == "sequence_classification" and multi_label)
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing={label_smoothing!r}: expected a float in [0, 1)")
    if label_smoothing and not smoothable(task, multi_label):
        raise ValueError(
            f"label_smoothing={label_smoothing!r} applies to tasks scored by one class id "
            f"({', '.join(SMOOTHABLE_TASKS)}, not multi-label), not to {task!r}"
        )
    shape = logits.shape if binary or task in _REGRESSION_TASKS else logits.shape[:-1]
    _check_shape(labels, shape, task)
    keep = target_mask(task, labels, padding_mask=padding_mask)
    if binary:
        targets = labels.float().masked_fill(~keep, 0.0)
        losses = F.binary_cross_entropy_with_logits(logits.float(), targets, reduction="none")
    elif task in _REGRESSION_TASKS:
        losses = (logits.float() - labels.float().masked_fill(~keep, 0.0)).pow(2)
    else:
        targets = labels.long().masked_fill(~keep, 0).reshape(-1)
        flat = logits.float().reshape(-1, logits.shape[-1])  # (N, C)
        losses = F.cross_entropy(flat, targets, reduction="none", label_smoothing=label_smoothing)
        losses = losses.reshape(labels.shape)
    return losses.masked_fill(~keep, 0.0).sum(), keep.sum()


def task_loss(
    task: str,
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    padding_mask: torch.Tensor | None = None,
    multi_label: bool = False,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """The mean loss of ``task`` over the batch's targets: `task_loss_sum`'s sum over its count (0 if
    there is no target)."""
    total, count = task_loss_sum(
        task,
        logits,
        labels,
        padding_mask=padding_mask,
        multi_label=multi_label,
        label_smoothing=label_smoothing,
    )
    return total / count.clamp_min(1)
