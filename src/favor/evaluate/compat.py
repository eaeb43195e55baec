"""Backward compatibility (Performer, Sec. 4.3): a pretrained softmax model with its attention swapped for
FAVOR+, measured against the original, then recovered by fine-tuning.

The measure is the cosine similarity between the sentence embeddings of the swapped model (the student)
and of the original exact-attention model (the teacher) on held-out sentences. Fine-tuning is distillation:
the student's embeddings are pulled toward the teacher's with ``1 - cosine`` (or MSE) as the loss, AdamW,
linear warm-up then linear decay. Dropout stays off in both models (the teacher is deterministic and the
student should match it, not a noised version). The FAVOR+ projections stay fixed during fine-tuning
unless ``redraw_every`` is set; evaluation always uses the projections the student holds.

Encoders are anything with ``sentence_embedding(input_ids, attention_mask) -> (B, D)`` (unit norm),
e.g. `favor.bert.BertEncoder`. Batches are ``(input_ids, attention_mask)`` pairs.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = [
    "Batch",
    "DistillConfig",
    "DistillHistory",
    "cosine_to_reference",
    "distill",
    "make_batches",
    "sentence_embeddings",
]

Batch = tuple[torch.Tensor, torch.Tensor]


def make_batches(
    sentences: Sequence[str],
    tokenize: Callable[[Sequence[str]], Batch],
    *,
    batch_size: int,
    by_length: bool = False,
) -> list[Batch]:
    """Tokenize ``sentences`` into batches of ``batch_size`` (the last one may be smaller).

    In order by default; with ``by_length`` the sentences are first sorted by character length (stable), so
    each batch pads little: several times less compute on short, varied sentences.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if by_length:
        sentences = sorted(sentences, key=len)
    return [tokenize(sentences[i : i + batch_size]) for i in range(0, len(sentences), batch_size)]


@torch.no_grad()
def sentence_embeddings(encoder: nn.Module, batches: Sequence[Batch]) -> torch.Tensor:
    """Embeddings of every sentence of ``batches``, in order: ``(N, D)``; the encoder is left in eval mode."""
    encoder.eval()
    return torch.cat([encoder.sentence_embedding(ids, mask) for ids, mask in batches])


def cosine_to_reference(
    encoder: nn.Module, batches: Sequence[Batch], reference: torch.Tensor
) -> torch.Tensor:
    """Per-sentence cosine similarity ``(N,)`` of ``encoder``'s embeddings to ``reference`` ``(N, D)``."""
    embeddings = sentence_embeddings(encoder, batches)
    if embeddings.shape != reference.shape:
        raise ValueError(
            f"reference has shape {tuple(reference.shape)}, embeddings {tuple(embeddings.shape)}"
        )
    return nn.functional.cosine_similarity(embeddings, reference, dim=-1)


@dataclass(frozen=True)
class DistillConfig:
    """Fine-tuning by distillation; every default is the one the benchmark in docs/backward_compat.md used."""

    steps: int = 1000
    lr: float = 1e-4
    weight_decay: float = 0.01
    # Linear warm-up over this many steps, then linear decay to 0 at `steps`.
    warmup: int = 50
    # "cosine": 1 - cos(student, teacher); "mse": squared distance of the (unit-norm) embeddings.
    loss: str = "cosine"
    # Evaluate on the held-out batches every this many steps (and at steps 0 and `steps`).
    eval_every: int = 50
    # 0 keeps the FAVOR+ projections fixed; n > 0 redraws them every n steps (Performer Fig. 15).
    redraw_every: int = 0
    # The word-embedding table (30k x 384 for MiniLM) is most of the parameters and the attention swap
    # does not touch it: freezing it keeps the optimizer cheap.
    freeze_word_embeddings: bool = True
    max_grad_norm: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"DistillConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0 or self.redraw_every < 0:
            raise ValueError("DistillConfig.warmup and redraw_every must be >= 0")
        if self.loss not in ("cosine", "mse"):
            raise ValueError(f"DistillConfig.loss must be 'cosine' or 'mse', got {self.loss!r}")
        if self.lr <= 0:
            raise ValueError(f"DistillConfig.lr must be > 0, got {self.lr}")


@dataclass
class DistillHistory:
    """What a distillation run measured: train loss per step, held-out cosine at the evaluation steps."""

    train_loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    # Mean held-out cosine similarity to the teacher, and its minimum over sentences.
    eval_mean: list[float] = field(default_factory=list)
    eval_min: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _loss(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "cosine":
        return 1.0 - nn.functional.cosine_similarity(student, teacher, dim=-1).mean()
    return (student - teacher).pow(2).sum(-1).mean()


def _schedule(config: DistillConfig) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < config.warmup:
            return (step + 1) / config.warmup
        return max(0.0, (config.steps - step) / max(1, config.steps - config.warmup))

    return factor


def _evaluate(student: nn.Module, batches: Sequence[Batch], reference: torch.Tensor, history, step) -> None:
    cosines = cosine_to_reference(student, batches, reference)
    history.eval_steps.append(step)
    history.eval_mean.append(cosines.mean().item())
    history.eval_min.append(cosines.min().item())


def distill(
    student: nn.Module,
    teacher: nn.Module,
    train_batches: Sequence[Batch],
    eval_batches: Sequence[Batch],
    *,
    config: DistillConfig | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> DistillHistory:
    """Fine-tune ``student`` in place toward ``teacher``'s sentence embeddings.

    Training batches are drawn in a shuffled order (reshuffled every epoch, seeded by ``config.seed``).
    ``progress(step, loss)`` is called after every step when given. With ``redraw_every`` the student
    needs a ``redraw_projections(generator)`` method. Returns the `DistillHistory`.
    """
    config = config or DistillConfig()
    if not train_batches or not eval_batches:
        raise ValueError("distill needs at least one training batch and one evaluation batch")
    start = time.perf_counter()
    reference = sentence_embeddings(teacher, eval_batches)
    if config.freeze_word_embeddings:
        words = getattr(getattr(student, "embeddings", None), "words", None)
        if words is None:
            raise ValueError("freeze_word_embeddings needs student.embeddings.words (as in BertEncoder)")
        words.weight.requires_grad_(False)
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config))
    rng = random.Random(config.seed)
    redraw = torch.Generator().manual_seed(config.seed + 1)
    history = DistillHistory()
    _evaluate(student, eval_batches, reference, history, 0)
    order: list[int] = []
    for step in range(1, config.steps + 1):
        if not order:
            order = list(range(len(train_batches)))
            rng.shuffle(order)
        ids, mask = train_batches[order.pop()]
        with torch.no_grad():
            target = teacher.sentence_embedding(ids, mask)
        # eval(): dropout off; gradients flow all the same.
        student.eval()
        loss = _loss(student.sentence_embedding(ids, mask), target, config.loss)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"distillation loss is {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        history.train_loss.append(loss.item())
        if config.redraw_every and step % config.redraw_every == 0:
            student.redraw_projections(redraw)
        if progress is not None:
            progress(step, loss.item())
        if step % config.eval_every == 0 or step == config.steps:
            _evaluate(student, eval_batches, reference, history, step)
    history.seconds = time.perf_counter() - start
    return history
