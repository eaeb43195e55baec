"""AdamW with decoupled weight decay on weight matrices only, and a warmup-then-decay learning rate.

Weight decay is not applied to biases, normalisation parameters (every parameter with fewer than two
dimensions) or embedding tables (token and learned position embeddings): decaying them pulls rare tokens
and positions towards zero without regularising anything useful.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from favor.layers.positions import LearnedPositions
from favor.runs.config import TrainConfig

__all__ = ["WarmupDecay", "budget_decay", "build_optimizer", "build_scheduler", "parameter_groups"]


def parameter_groups(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the parameters with and without weight decay (each parameter once, tied ones included)."""
    no_decay_ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, (nn.Embedding, nn.LayerNorm, LearnedPositions)):
            no_decay_ids.update(id(p) for p in module.parameters(recurse=False))
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if param.dim() < 2 or id(param) in no_decay_ids:
            no_decay.append(name)
        else:
            decay.append(name)
    return decay, no_decay


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over two groups: decayed weight matrices, then everything else with weight_decay=0."""
    decay, no_decay = parameter_groups(model)
    params = dict(model.named_parameters())
    groups = [
        {"params": [params[n] for n in decay], "weight_decay": config.weight_decay},
        {"params": [params[n] for n in no_decay], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas, eps=config.eps)


class WarmupDecay:
    """Learning-rate multiplier: linear warmup from 0 to 1 over ``warmup_steps``, then decay to ``min_ratio``.

    ``decay`` is "cosine" (half cosine), "linear" or "constant" (stay at 1); the decay ends at ``total_steps``
    and the multiplier stays at ``min_ratio`` after it. A plain object of numbers, so the scheduler's state
    dict stays JSON-serialisable.
    """

    def __init__(self, *, warmup_steps: int, total_steps: int, decay: str = "cosine", min_ratio: float = 0.1):
        if decay not in ("cosine", "linear", "constant"):
            raise ValueError(f"WarmupDecay: decay={decay!r}; choose cosine, linear or constant")
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.decay = decay
        self.min_ratio = min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        span = max(1, self.total_steps - self.warmup_steps)
        return self.at(min(1.0, (step - self.warmup_steps) / span))

    def at(self, progress: float) -> float:
        """The decay multiplier at ``progress`` in [0, 1] of the decay (1 at 0, min_ratio at 1)."""
        if self.decay == "constant":
            return 1.0
        progress = min(1.0, max(0.0, progress))
        if self.decay == "cosine":
            shape = 0.5 * (1.0 + math.cos(math.pi * progress))
        else:
            shape = 1.0 - progress
        return self.min_ratio + (1.0 - self.min_ratio) * shape


def build_scheduler(
    optimizer: torch.optim.Optimizer, config: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` over `WarmupDecay`, stepped once per optimizer step.

    Under ``train.budget_minutes`` the ``LambdaLR`` only warms up; the decay follows the training time spent
    (`budget_decay`, applied by the trainer after every step).
    """
    schedule = WarmupDecay(
        warmup_steps=config.warmup_steps,
        total_steps=config.horizon,
        decay="constant" if config.budget_minutes is not None else config.schedule,
        min_ratio=config.min_lr_ratio,
    )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def budget_decay(config: TrainConfig, train_time_s: float) -> float:
    """The decay multiplier of a ``train.budget_minutes`` run after ``train_time_s`` seconds of training.

    The decay spans the whole budget, measured in training time (evaluations and checkpoints excluded) summed
    over every invocation that continued the run, so a run that is stopped and resumed anneals exactly as one
    that ran straight through, and a time-limited run really reaches ``min_lr_ratio``.
    """
    if config.budget_minutes is None:
        return 1.0
    shape = WarmupDecay(warmup_steps=0, total_steps=1, decay=config.schedule, min_ratio=config.min_lr_ratio)
    return shape.at(train_time_s / (60.0 * config.budget_minutes))
