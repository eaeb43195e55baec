"""The one loss (`favor.models.losses`): labels aligned with the logits (causal ones are never shifted here),
the sum form and the mean agree, and -100, padding and NaN targets count nowhere."""

import math

import pytest
import torch
import torch.nn.functional as F

from favor.data import Alphabet, causal_lm_labels
from favor.models import IGNORE_INDEX, SequenceModel, target_mask, task_loss, task_loss_sum
from tiny_models import tiny_config

ALPHABET = Alphabet.protein()
V = ALPHABET.vocab_size


def _tokens() -> tuple[torch.Tensor, torch.Tensor]:
    items = [ALPHABET.encode(s, add_cls=True, add_eos=True, as_tensor=True) for s in ("MKTAYIAKQR", "MEEPQ")]
    tokens = torch.full((2, 12), ALPHABET.pad_id)
    for row, item in enumerate(items):
        tokens[row, : len(item)] = item
    return tokens, tokens == ALPHABET.pad_id


def test_clm_labels_are_scored_where_they_stand_never_shifted():
    tokens, padding_mask = _tokens()
    labels = causal_lm_labels(tokens, ALPHABET, padding_mask=padding_mask)
    logits = torch.randn(2, 12, V, generator=torch.Generator().manual_seed(0))
    keep = labels != IGNORE_INDEX
    # Position t is scored against labels[:, t] = tokens[:, t + 1], at every labelled position.
    expected = F.cross_entropy(logits[keep], labels[keep])
    torch.testing.assert_close(task_loss("clm", logits, labels, padding_mask=padding_mask), expected)
    assert torch.equal(labels[0, :11], tokens[0, 1:]) and int(keep.sum()) == 11 + 6


def test_a_causal_models_loss_scores_each_position_against_its_own_label():
    torch.manual_seed(0)
    model = SequenceModel(tiny_config("performer", task="clm", causal=True, vocab_size=V)).eval()
    tokens, padding_mask = _tokens()
    labels = causal_lm_labels(tokens, ALPHABET, padding_mask=padding_mask)
    out = model(tokens, padding_mask=padding_mask, labels=labels)
    keep = labels != IGNORE_INDEX
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits[keep], labels[keep]))


def test_the_mean_is_the_sum_over_the_count_and_padding_never_counts():
    tokens, padding_mask = _tokens()
    # Labels at padding that are not -100: the padding mask alone keeps them out.
    labels = torch.randint(0, 5, (2, 12), generator=torch.Generator().manual_seed(1))
    labels[0, 3] = IGNORE_INDEX
    logits = torch.randn(2, 12, 5, generator=torch.Generator().manual_seed(2))
    total, count = task_loss_sum("token_classification", logits, labels, padding_mask=padding_mask)
    keep = (labels != IGNORE_INDEX) & ~padding_mask
    assert int(count) == int(keep.sum()) == 11 + 7
    torch.testing.assert_close(total, F.cross_entropy(logits[keep], labels[keep], reduction="sum"))
    mean = task_loss("token_classification", logits, labels, padding_mask=padding_mask)
    torch.testing.assert_close(mean, total / count)
    assert torch.equal(target_mask("token_classification", labels, padding_mask=padding_mask), keep)


def test_regression_skips_nan_and_minus_100_targets():
    predictions = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    labels = torch.tensor([[0.0, math.nan, 3.0], [IGNORE_INDEX, 4.0, 4.0]])
    total, count = task_loss_sum("sequence_regression", predictions, labels)
    assert int(count) == 4 and float(total) == pytest.approx(1.0 + 0.0 + 1.0 + 4.0)


def test_contact_ignores_padded_pairs_and_no_target_gives_a_connected_zero():
    logits = torch.randn(1, 4, 4, requires_grad=True)
    labels = torch.ones(1, 4, 4)
    padding_mask = torch.tensor([[False, False, False, True]])
    total, count = task_loss_sum("contact", logits, labels, padding_mask=padding_mask)
    expected = F.binary_cross_entropy_with_logits(logits[0, :3, :3], labels[0, :3, :3], reduction="sum")
    assert int(count) == 9
    torch.testing.assert_close(total, expected)
    empty = task_loss("contact", logits, torch.full((1, 4, 4), float(IGNORE_INDEX)))
    assert float(empty.detach()) == 0.0
    empty.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_wrong_shapes_and_unknown_tasks_are_named():
    with pytest.raises(ValueError, match="'clm' must have shape"):
        task_loss("clm", torch.zeros(2, 5, V), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="unknown task 'lm'"):
        task_loss_sum("lm", torch.zeros(2, 5, V), torch.zeros(2, 5, dtype=torch.long))


@pytest.mark.parametrize("task", ["seq2seq", "mlm"])
def test_label_smoothing_is_the_cross_entropy_against_the_smoothed_one_hot(task):
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11, requires_grad=True)
    labels = torch.randint(0, 11, (2, 6))
    labels[0, 1] = IGNORE_INDEX
    padding = torch.zeros(2, 6, dtype=torch.bool)
    padding[1, 4:] = True
    eps = 0.2
    logp = logits.log_softmax(-1)
    keep = (labels != IGNORE_INDEX) & ~padding
    picked = logp.gather(-1, labels.clamp_min(0).unsqueeze(-1)).squeeze(-1)
    per_target = -(1 - eps) * picked - eps * logp.mean(-1)
    expected = per_target[keep].mean()
    got = task_loss(task, logits, labels, padding_mask=padding, label_smoothing=eps)
    assert float(got.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    (grad,) = torch.autograd.grad(got, logits)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(grad, expected_grad)
    plain = task_loss(task, logits, labels, padding_mask=padding)
    assert torch.equal(task_loss(task, logits, labels, padding_mask=padding, label_smoothing=0.0), plain)
    assert float(got.detach()) != pytest.approx(float(plain.detach()), rel=1e-3)


def test_label_smoothing_out_of_range_or_on_a_task_without_one_class_id_is_refused():
    logits, labels = torch.randn(2, 5, V), torch.zeros(2, 5, dtype=torch.long)
    for eps in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"label_smoothing=.*\[0, 1\)"):
            task_loss("clm", logits, labels, label_smoothing=eps)
    with pytest.raises(ValueError, match="not to 'contact'"):
        task_loss("contact", torch.randn(2, 5, 5), torch.zeros(2, 5, 5), label_smoothing=0.1)
    with pytest.raises(ValueError, match="not to 'token_regression'"):
        task_loss("token_regression", torch.randn(2, 5, 1), torch.zeros(2, 5), label_smoothing=0.1)
    with pytest.raises(ValueError, match="not multi-label"):
        task_loss(
            "sequence_classification",
            torch.randn(2, 3),
            torch.zeros(2, 3),
            multi_label=True,
            label_smoothing=0.1,
        )
    single = task_loss(
        "sequence_classification", torch.randn(2, 3), torch.tensor([0, 2]), label_smoothing=0.1
    )
    assert torch.isfinite(single)
