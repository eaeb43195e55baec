"""One loss for every task: on the same batch, the model's ``out.loss``, the trainer's per-batch mean and the
evaluators' loss are the same number (all three are `favor.models.task_loss_sum`)."""

from __future__ import annotations

import math
import types

import pytest
import torch

from favor.data import Alphabet, causal_lm_labels
from favor.evaluate.metrics import evaluate_lm
from favor.evaluate.task_metrics import evaluate_task, model_logits
from favor.models import IGNORE_INDEX, build_model
from favor.train.trainer import Trainer
from tiny_models import tiny_config

ALPHABET = Alphabet.protein()
B, L, N_LABELS = 3, 9, 3

CASES = [
    ("mlm", {}),
    ("clm", {"causal": True}),
    ("token_classification", {}),
    ("sequence_classification", {}),
    ("sequence_classification", {"multi_label": True}),
    ("sequence_regression", {}),
    ("token_regression", {}),
    ("contact", {"pair_dim": 8}),
    ("seq2seq", {"decoder_layers": 1}),
]


def _labels(task: str, multi_label: bool, ids: torch.Tensor, padding_mask: torch.Tensor, g) -> torch.Tensor:
    """Labels with -100 (or NaN) holes and, on purpose, real values at padding: only the mask drops them."""
    if task == "mlm":
        labels = ids.clone()
        labels[torch.rand(B, L, generator=g) < 0.5] = IGNORE_INDEX
        return labels
    if task == "clm":
        return causal_lm_labels(ids, ALPHABET, padding_mask=padding_mask)
    if task in ("token_classification", "seq2seq"):
        labels = torch.randint(0, N_LABELS if task != "seq2seq" else ALPHABET.vocab_size, (B, L), generator=g)
        labels[0, 1] = IGNORE_INDEX
        return labels
    if task == "sequence_classification" and multi_label:
        labels = torch.randint(0, 2, (B, N_LABELS), generator=g).float()
        labels[1, 2] = IGNORE_INDEX
        return labels
    if task == "sequence_classification":
        return torch.tensor([0, 2, IGNORE_INDEX])
    if task == "sequence_regression":
        labels = torch.randn(B, N_LABELS, generator=g)
        labels[2, 0] = math.nan
        return labels
    if task == "token_regression":
        labels = torch.randn(B, L, N_LABELS, generator=g)
        labels[0, 3, 1] = math.nan
        return labels
    labels = torch.randint(0, 2, (B, L, L), generator=g).float()
    labels[:, torch.arange(L), torch.arange(L)] = IGNORE_INDEX
    return labels


def _batch(task: str, multi_label: bool) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(4, ALPHABET.vocab_size, (B, L), generator=g)
    padding_mask = torch.zeros(B, L, dtype=torch.bool)
    padding_mask[1, 6:] = True
    padding_mask[2, 4:] = True
    ids[padding_mask] = ALPHABET.pad_id
    batch = {"input_ids": ids, "padding_mask": padding_mask}
    if task == "seq2seq":
        decoder_padding_mask = torch.zeros(B, L, dtype=torch.bool)
        decoder_padding_mask[0, 5:] = True
        batch["decoder_input_ids"] = torch.randint(4, ALPHABET.vocab_size, (B, L), generator=g)
        batch["decoder_padding_mask"] = decoder_padding_mask
        padding_mask = decoder_padding_mask
    batch["labels"] = _labels(task, multi_label, ids, padding_mask, g)
    return batch


def _trainer_mean(config, model, batch) -> float:
    """The loss `Trainer.train_step` reports for this one batch: its summed loss over its target count."""
    trainer = Trainer.__new__(Trainer)
    trainer.config = types.SimpleNamespace(model=config, train=types.SimpleNamespace(label_smoothing=0.0))
    trainer.device = torch.device("cpu")
    total, count = trainer._loss_sum(model_logits(model, batch, trainer.device), batch)
    assert int(count) == trainer._count_targets(batch) > 0
    return float(total) / trainer._count_targets(batch)


@pytest.mark.parametrize(
    ("task", "overrides"), CASES, ids=[f"{t}{'_multi' * ('multi_label' in o)}" for t, o in CASES]
)
def test_model_trainer_and_evaluator_give_one_loss(task, overrides):
    config = tiny_config(
        "performer",
        task=task,
        vocab_size=ALPHABET.vocab_size,
        num_labels=N_LABELS,
        **overrides,
    )
    batch = _batch(task, overrides.get("multi_label", False))
    torch.manual_seed(0)
    model = build_model(config).eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        model_loss = float(model(**inputs, labels=batch["labels"]).loss)
        trainer_loss = _trainer_mean(config, model, batch)
        if task in ("mlm", "clm"):
            uniform = torch.full((ALPHABET.vocab_size,), -math.log(ALPHABET.vocab_size), dtype=torch.float64)
            evaluate_loss = evaluate_lm(model, [batch], unigram_log_probs=uniform).loss
        else:
            evaluate_loss = evaluate_task(model, [batch], task=task).to_dict(task)["loss"]
    assert math.isfinite(model_loss) and model_loss > 0
    assert trainer_loss == pytest.approx(model_loss, rel=1e-6)
    assert evaluate_loss == pytest.approx(model_loss, rel=1e-6)
