"""Metrics and the unigram baseline: hand-checked values, fixed evaluation masks, consistent ranges."""

from __future__ import annotations

import math

import pytest
import torch

from favor.data import Alphabet, ProteinCorpus, sample_path
from favor.evaluate.baseline import UnigramBaseline
from favor.evaluate.data import build_eval_loader, load_corpus
from favor.evaluate.metrics import LMStats, evaluate_lm, score_logits, token_cross_entropy

ALPHABET = Alphabet.protein()


def test_score_logits_by_hand():
    # Two predicted positions: the first right (class 5), the second wrong (predicts 6, target 7).
    logits = torch.full((1, 3, ALPHABET.vocab_size), -10.0)
    logits[0, 0, 5] = 5.0
    logits[0, 2, 6] = 5.0
    labels = torch.tensor([[5, -100, 7]])
    unigram = torch.full((ALPHABET.vocab_size,), math.log(1 / 25), dtype=torch.float64)
    unigram[7] = math.log(0.2)
    stats = score_logits(logits, labels, unigram)
    assert stats.n == 2 and stats.correct == 1
    expected = torch.nn.functional.cross_entropy(logits[0, [0, 2]], torch.tensor([5, 7]), reduction="sum")
    assert stats.loss_sum == pytest.approx(float(expected), rel=1e-6)
    assert stats.unigram_correct == 1  # the unigram argmax is token 7
    assert stats.unigram_loss_sum == pytest.approx(-(math.log(1 / 25) + math.log(0.2)))


def test_token_cross_entropy_ignores_unlabelled_positions():
    logits = torch.randn(2, 4, 9)
    labels = torch.tensor([[1, -100, 2, -100], [-100, -100, -100, 3]])
    total, count = token_cross_entropy(logits, labels)
    keep = labels != -100
    expected = torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum")
    assert int(count) == 3 and float(total) == pytest.approx(float(expected), rel=1e-6)


def test_stats_report_consistent_numbers():
    stats = LMStats(n=4, loss_sum=4.0, correct=3, unigram_loss_sum=12.0, unigram_correct=1, n_sequences=2)
    report = stats.to_dict("mlm")
    for key in ("masked_accuracy", "perplexity", "n_masked", "unigram_accuracy", "objective"):
        assert key in report
    assert report["masked_accuracy"] == 0.75 and report["perplexity"] == pytest.approx(math.e)
    assert report["unigram_perplexity"] == pytest.approx(math.exp(3.0))
    assert LMStats.from_list(stats.as_list()) == stats
    empty = LMStats().to_dict("clm")
    assert empty["n_masked"] == 0 and math.isnan(empty["perplexity"])


def test_unigram_baseline_counts_and_candidates(tmp_path):
    corpus = ProteinCorpus.from_sequences(["AAAC", "AD"])
    baseline = UnigramBaseline.from_corpus(corpus)
    a, c, d = (ALPHABET.token_to_id(x) for x in "ACD")
    assert baseline.counts[a] == 4 and baseline.counts[c] == 1 and baseline.counts[d] == 1
    assert baseline.counts[ALPHABET.eos_id] == 2
    mlm = baseline.log_probs("mlm", ALPHABET).exp()
    clm = baseline.log_probs("clm", ALPHABET).exp()
    assert float(mlm.sum()) == pytest.approx(1.0) and float(clm.sum()) == pytest.approx(1.0)
    assert mlm[ALPHABET.eos_id] == 0 and clm[ALPHABET.eos_id] > 0
    assert all(mlm[i] == 0 for i in ALPHABET.special_ids)
    # Add-one smoothing: an unseen residue has a small, finite probability.
    assert 0 < mlm[ALPHABET.token_to_id("W")] < mlm[c]
    assert int(mlm.argmax()) == a
    baseline.save(tmp_path / "u.json")
    assert UnigramBaseline.load(tmp_path / "u.json") == baseline
    (tmp_path / "bad.json").write_text("[]")
    with pytest.raises(ValueError, match="bad.json"):
        UnigramBaseline.load(tmp_path / "bad.json")


def test_evaluation_masks_do_not_depend_on_batching():
    corpus = load_corpus(sample_path("valid"), max_records=12)
    kwargs = {"objective": "mlm", "max_length": 64}
    small = build_eval_loader(corpus, max_tokens=128, **kwargs)
    large = build_eval_loader(corpus, max_tokens=1024, **kwargs)
    masked_small = sorted(int((b["labels"] != -100).sum()) for b in small)
    masked_large = sorted(int((b["labels"] != -100).sum()) for b in large)
    assert sum(masked_small) == sum(masked_large) > 0
    # Per item: the same positions, padding aside.
    rows_small = {
        tuple(r[r != 0].tolist()): lab
        for b in small
        for r, lab in zip(b["input_ids"], b["labels"], strict=True)
    }
    rows_large = {
        tuple(r[r != 0].tolist()): lab
        for b in large
        for r, lab in zip(b["input_ids"], b["labels"], strict=True)
    }
    assert rows_small.keys() == rows_large.keys()
    for key, labels in rows_small.items():
        other = rows_large[key]
        n = len(key)
        assert torch.equal(labels[:n], other[:n])


def test_unigram_is_scored_on_the_same_targets_as_the_model():
    corpus = load_corpus(sample_path("valid"), max_records=10)
    loader = build_eval_loader(corpus, objective="mlm", max_length=64, max_tokens=512)
    baseline = UnigramBaseline.from_corpus(load_corpus(sample_path("train"), max_records=50))
    log_probs = baseline.log_probs("mlm", ALPHABET)

    class Uniform(torch.nn.Module):
        def forward(self, input_ids, padding_mask=None):
            return type("Out", (), {"logits": torch.zeros(*input_ids.shape, ALPHABET.vocab_size)})()

    stats = evaluate_lm(Uniform(), loader, unigram_log_probs=log_probs)
    targets = torch.cat([b["labels"][b["labels"] != -100] for b in loader])
    assert stats.n == len(targets) > 0
    assert stats.unigram_loss_sum == pytest.approx(float(-log_probs[targets].sum()))
    assert stats.loss == pytest.approx(math.log(ALPHABET.vocab_size), rel=1e-6)
    report = stats.to_dict("mlm")
    assert report["perplexity"] >= 1 and 0 <= report["masked_accuracy"] <= 1


def test_load_corpus_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.fasta"):
        load_corpus(tmp_path / "missing.fasta")
    bad = tmp_path / "bad.fasta"
    bad.write_text(">p1\nMKJL\n")
    with pytest.raises(ValueError, match=r"bad\.fasta: record 'p1': unknown residue 'J' at position 3"):
        load_corpus(bad)
    assert len(load_corpus(bad, unknown="x")) == 1
    empty = tmp_path / "empty.fasta"
    empty.write_text("")
    with pytest.raises(ValueError, match="no usable sequences"):
        load_corpus(empty)


def test_score_task_counts_right_predictions_over_the_same_targets_as_the_loss():
    from favor.evaluate.task_metrics import score_task

    # Multi-label: one label ignored; right where (logit > 0) matches the 0/1 label.
    logits = torch.tensor([[2.0, -1.0, 3.0], [-2.0, 1.0, -1.0]])
    labels = torch.tensor([[1.0, 1.0, -100.0], [0.0, 1.0, 1.0]])
    stats = score_task("sequence_classification", logits, labels, multi_label=True)
    assert stats.n == 5 and stats.correct == 3
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[labels != -100], labels[labels != -100], reduction="sum"
    )
    assert stats.loss_sum == pytest.approx(float(expected), rel=1e-6)
    # Token tasks: the padded position neither counts as a target nor as right.
    logits = torch.zeros(1, 3, 4)
    logits[0, :, 2] = 1.0
    padding_mask = torch.tensor([[False, False, True]])
    stats = score_task("seq2seq", logits, torch.tensor([[2, 1, 2]]), padding_mask=padding_mask)
    assert stats.n == 2 and stats.correct == 1
    assert stats.to_dict("seq2seq")["token_accuracy"] == 0.5
