"""The fine-tuning loop and batched prediction.

AdamW (weight decay on weight matrices only, as in pretraining), linear warmup then cosine decay over
``max_steps`` (or over ``max_minutes``, when time runs out first), gradient clipping, and early stopping
on the task's primary validation metric: the best weights seen are restored at the end. Training windows
are re-drawn every epoch (a random crop of long sequences); batches hold up to ``max_tokens`` padded
tokens (and, for pair tasks, ``max_pairs`` padded pairs), built from length-sorted pools of examples so
that little of a batch is padding. FAVOR+ projections stay fixed while fine-tuning (no redraw): the head
is trained against one feature map.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from favor.data import Alphabet
from favor.models import SequenceModel
from favor.tasks.common import Encoded, Task, collate
from favor.train.optim import WarmupDecay, parameter_groups

__all__ = ["TrainSettings", "make_batches", "predict", "train_model"]

# Examples encoded and sorted together before being cut into batches.
POOL_SIZE = 512


@dataclass
class TrainSettings:
    lr: float = 3e-4
    weight_decay: float = 0.01
    # None: 5% of max_steps, at most 100.
    warmup_steps: int | None = None
    max_steps: int = 1000
    max_minutes: float | None = None
    # Steps between validation passes; None: max_steps // 10 (at least 1).
    eval_interval: int | None = None
    # Validation passes without improvement before stopping.
    patience: int = 5
    grad_clip: float = 1.0
    max_tokens: int = 4096
    # Padded residue pairs per batch (batch * length^2) for the pair tasks.
    max_pairs: int = 1 << 20
    # Train only the head on frozen embedding + backbone features.
    probe: bool = False
    # LoRA adapters of this rank on lora_targets of every block (0: none); see favor.tasks.lora.
    lora_rank: int = 0
    lora_targets: tuple[str, ...] = ("qkv", "out")
    # Freeze the embedding and the first K backbone blocks.
    freeze_layers: int = 0
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_batches(lengths: list[int], *, max_tokens: int, max_pairs: int | None = None) -> list[list[int]]:
    """Indices grouped longest first so that ``rows * longest <= max_tokens`` (and ``rows * longest^2 <=
    max_pairs``); an example too long for the budget gets a batch of its own."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        if batches:
            width = lengths[batches[-1][0]]
            rows = len(batches[-1]) + 1
            fits = rows * width <= max_tokens and (max_pairs is None or rows * width * width <= max_pairs)
            if fits:
                batches[-1].append(i)
                continue
        batches.append([i])
    return batches


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


@torch.inference_mode()
def predict(
    model: SequenceModel,
    examples: list[Encoded],
    *,
    task: Task,
    pad_id: int,
    max_tokens: int = 8192,
    max_pairs: int = 1 << 22,
) -> list[np.ndarray]:
    """The head's outputs per example, trimmed to its length: ``(C,)``, ``(T, C)`` or ``(T, T)`` float32."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pairs = max_pairs if task.model_task == "contact" else None
    out: list[np.ndarray | None] = [None] * len(examples)
    for group in make_batches([len(e) for e in examples], max_tokens=max_tokens, max_pairs=pairs):
        batch = _to(collate([examples[i] for i in group], model_task=task.model_task, pad_id=pad_id), device)
        logits = model(batch["input_ids"], padding_mask=batch["padding_mask"]).logits.float().cpu().numpy()
        for row, i in enumerate(group):
            n = len(examples[i])
            if task.model_task == "sequence_classification":
                out[i] = logits[row]
            elif task.model_task == "contact":
                out[i] = logits[row, :n, :n]
            else:
                out[i] = logits[row, :n]
    model.train(was_training)
    return out


def _training_batches(
    task: Task, records: list[Any], alphabet: Alphabet, context: int, settings: TrainSettings
) -> Iterator[list[Encoded]]:
    """Endless batches: each epoch a new order and new random windows, batched per length-sorted pool."""
    rng = np.random.default_rng(settings.seed)
    pairs = settings.max_pairs if task.model_task == "contact" else None
    while True:
        order = rng.permutation(len(records))
        for start in range(0, len(order), POOL_SIZE):
            pool = [
                e
                for i in order[start : start + POOL_SIZE]
                for e in task.encode(records[i], alphabet=alphabet, max_tokens=context, rng=rng)
            ]
            batches = make_batches([len(e) for e in pool], max_tokens=settings.max_tokens, max_pairs=pairs)
            for b in rng.permutation(len(batches)):
                yield [pool[i] for i in batches[b]]


def _schedule_position(step: int, start: float, settings: TrainSettings) -> int:
    """Where the learning-rate schedule is: the steps done or, under ``max_minutes``, the same share of
    ``max_steps`` as the share of the time used, whichever is further (so the decay ends with the budget)."""
    if settings.max_minutes is None:
        return step
    used = (time.perf_counter() - start) / (60 * settings.max_minutes)
    return max(step, int(used * settings.max_steps))


def _set_mode(model: SequenceModel, probe: bool) -> None:
    model.train()
    if probe:
        # Frozen features: no dropout in the embedding and backbone.
        model.embedding.eval()
        model.backbone.eval()


def _optimizer(model: SequenceModel, settings: TrainSettings) -> torch.optim.AdamW:
    """AdamW over the trainable parameters, weight decay on weight matrices only."""
    if settings.probe:
        for module in (model.embedding, model.backbone):
            module.requires_grad_(False)
    decay, no_decay = parameter_groups(model)
    params = dict(model.named_parameters())
    groups = [
        {"params": [params[n] for n in decay], "weight_decay": settings.weight_decay},
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=settings.lr)


class _EarlyStopping:
    """Keeps a copy of the best weights by the validation metric (higher is better; NaN never wins)."""

    def __init__(self, patience: int) -> None:
        self.patience, self.stale = patience, 0
        self.best: tuple[float, int, dict[str, torch.Tensor]] | None = None

    def update(self, value: float, step: int, model: SequenceModel) -> bool:
        """Record a validation result; True when training should stop."""
        if self.best is None or (not np.isnan(value) and (np.isnan(self.best[0]) or value > self.best[0])):
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.best, self.stale = (value, step, state), 0
            return False
        self.stale += 1
        return self.stale >= self.patience


def _validate(
    model: SequenceModel,
    task: Task,
    examples: list[Encoded],
    pad_id: int,
    step: int,
    losses: list[float],
    minutes: float,
) -> dict[str, Any]:
    """One history entry: the step, mean training loss since the last entry, validation metrics, time."""
    metrics = task.metrics(predict(model, examples, task=task, pad_id=pad_id), examples)
    return {"step": step, "train_loss": float(np.mean(losses)), **metrics, "minutes": minutes}


def train_model(
    model: SequenceModel,
    task: Task,
    *,
    train_records: list[Any],
    valid_examples: list[Encoded],
    alphabet: Alphabet,
    context: int,
    settings: TrainSettings,
    echo: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``model`` in place; returns the training summary (steps, stop reason, validation history)."""
    device = next(model.parameters()).device
    optimizer = _optimizer(model, settings)
    warmup = settings.warmup_steps
    warmup = min(100, settings.max_steps // 20) if warmup is None else warmup
    schedule = WarmupDecay(warmup_steps=warmup, total_steps=settings.max_steps, decay="cosine", min_ratio=0.1)
    eval_interval = settings.eval_interval or max(1, settings.max_steps // 10)
    history: list[dict[str, Any]] = []
    stopping = _EarlyStopping(settings.patience)
    step, reason, losses = 0, "max_steps", []
    start = time.perf_counter()
    batches = _training_batches(task, train_records, alphabet, context, settings)
    _set_mode(model, settings.probe)
    while step < settings.max_steps:
        batch = _to(collate(next(batches), model_task=task.model_task, pad_id=alphabet.pad_id), device)
        loss = model(batch["input_ids"], padding_mask=batch["padding_mask"], labels=batch["labels"]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * schedule(_schedule_position(step, start, settings))
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], settings.grad_clip)
        optimizer.step()
        step += 1
        losses.append(loss.item())
        minutes = (time.perf_counter() - start) / 60
        out_of_time = settings.max_minutes is not None and minutes > settings.max_minutes
        if step % eval_interval == 0 or step == settings.max_steps or out_of_time:
            history.append(_validate(model, task, valid_examples, alphabet.pad_id, step, losses, minutes))
            losses.clear()
            value = history[-1][task.primary_metric]
            if echo is not None:
                loss_text = f"train loss {history[-1]['train_loss']:.4f}"
                echo(f"step {step}: {loss_text}, valid {task.primary_metric} {value:.4f}")
            if stopping.update(value, step, model):
                reason = "early_stopping"
                break
            _set_mode(model, settings.probe)
        if out_of_time:
            reason = "max_minutes"
            break
    best_value, best_step, best_state = stopping.best
    model.load_state_dict(best_state)
    model.eval()
    return {
        "steps": step,
        "stop_reason": reason,
        "best_step": best_step,
        "best_valid": best_value,
        "minutes": (time.perf_counter() - start) / 60,
        "warmup_steps": warmup,
        "eval_interval": eval_interval,
        "history": history,
    }
