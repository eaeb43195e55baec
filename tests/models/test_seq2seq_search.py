"""Beam search on distributions the tests construct: it returns the best hypothesis (checked against
exhaustive enumeration), it beats greedy where greedy is not optimal, and the length penalty works."""

import itertools
import math

import pytest
import torch

from favor.models.seq2seq_search import beam_search, sample_search

EOS = 0


class TableScorer:
    """Next-token distribution as a function of the prefix: ``table(prefix) -> probabilities (V,)``."""

    def __init__(self, table):
        self.table, self.rows = table, [()]

    def _log_probs(self):
        return torch.stack([torch.tensor(self.table(r), dtype=torch.float64).log() for r in self.rows])

    def start(self):
        return self._log_probs()

    def extend(self, parents, tokens):
        self.rows = [self.rows[p] + (t,) for p, t in zip(parents.tolist(), tokens.tolist(), strict=True)]
        return self._log_probs()


def random_table(vocab: int, seed: int):
    """A fixed random distribution per prefix (seeded by the prefix), end token included."""

    def table(prefix):
        g = torch.Generator().manual_seed(hash((seed, prefix)) % (2**31))
        logits = 2.0 * torch.randn(vocab, generator=g, dtype=torch.float64)
        return logits.softmax(-1).tolist()

    return table


def exhaustive_best(table, vocab: int, max_len: int, length_penalty: float):
    """The highest-scoring finished sequence, by enumerating every one."""
    best = (-math.inf, None)
    for n in range(0, max_len):
        for body in itertools.product(range(1, vocab), repeat=n):
            seq = (*body, EOS)
            log_prob = sum(math.log(table(seq[:i])[t]) for i, t in enumerate(seq))
            best = max(best, (log_prob / len(seq) ** length_penalty, body))
    return best


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_returns_the_highest_scoring_hypothesis(seed, length_penalty):
    vocab, max_len = 4, 4
    table = random_table(vocab, seed)
    score, body = exhaustive_best(table, vocab, max_len, length_penalty)
    # Wide enough to keep every prefix: then beam search is exact.
    hyps = beam_search(
        TableScorer(table), beam_width=vocab**max_len, eos_id=EOS, max_new_tokens=max_len,
        length_penalty=length_penalty,
    )  # fmt: skip
    assert hyps[0].finished and tuple(hyps[0].tokens) == body
    assert hyps[0].score == pytest.approx(score)
    done = [h.score for h in hyps if h.finished]
    assert done == sorted(done, reverse=True)


def test_beam_beats_greedy_when_greedy_is_not_optimal():
    # First token: A=1 (0.6) or B=2 (0.4). After A every continuation is flat; after B the end is certain.
    def table(prefix):
        if prefix == ():
            return [0.0, 0.6, 0.4]
        if prefix == (2,):
            return [1.0, 0.0, 0.0]
        return [0.34, 0.33, 0.33]

    greedy = sample_search(TableScorer(table), eos_id=EOS, max_new_tokens=5)[0]
    assert greedy == [1]  # A, then the end (0.6 * 0.34 = 0.204)
    best = beam_search(TableScorer(table), beam_width=2, eos_id=EOS, max_new_tokens=5)[0]
    assert best.tokens == [2] and best.log_prob == pytest.approx(math.log(0.4))  # 0.4 > 0.204
    # Width one keeps only A's branch: exactly greedy.
    assert beam_search(TableScorer(table), beam_width=1, eos_id=EOS, max_new_tokens=5)[0].tokens == greedy


@pytest.mark.parametrize("seed", range(5))
def test_beam_of_one_equals_greedy_on_random_tables(seed):
    table = random_table(5, seed)
    greedy = sample_search(TableScorer(table), eos_id=EOS, max_new_tokens=6)[0]
    assert beam_search(TableScorer(table), beam_width=1, eos_id=EOS, max_new_tokens=6)[0].tokens == greedy


def test_length_penalty_prefers_longer_hypotheses():
    # End now (0.5) or after one more certain-ish token (0.45 * 0.9 = 0.405): raw log-prob prefers the short
    # one, per-token normalisation (length_penalty=1) the long one.
    def table(prefix):
        if prefix == ():
            return [0.5, 0.45, 0.05]
        return [0.9, 0.05, 0.05]

    short = beam_search(TableScorer(table), beam_width=3, eos_id=EOS, max_new_tokens=4)[0]
    long = beam_search(TableScorer(table), beam_width=3, eos_id=EOS, max_new_tokens=4, length_penalty=1.0)[0]
    assert short.tokens == [] and long.tokens == [1]


def test_out_of_steps_returns_unfinished_hypotheses():
    def table(prefix):
        return [0.0, 0.5, 0.5]  # never ends

    hyps = beam_search(TableScorer(table), beam_width=2, eos_id=EOS, max_new_tokens=3)
    assert len(hyps) == 2 and all(not h.finished and len(h.tokens) == 3 for h in hyps)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="beam_width must be >= 1"):
        beam_search(TableScorer(random_table(3, 0)), beam_width=0, eos_id=EOS, max_new_tokens=3)
    with pytest.raises(ValueError, match="length_penalty"):
        beam_search(TableScorer(random_table(3, 0)), beam_width=2, eos_id=EOS, max_new_tokens=3,
                    length_penalty=-1.0)  # fmt: skip


def test_search_goes_on_while_a_live_hypothesis_can_still_win():
    # Width 1: the end token wins the first step (0.5 vs 0.45), but per-token normalisation makes
    # "1 <end>" (log(0.45 * 0.99) / 2) better than "<end>" (log 0.5), so the search must not stop there.
    def table(prefix):
        return [0.5, 0.45, 0.05] if prefix == () else [0.99, 0.005, 0.005]

    best = beam_search(TableScorer(table), beam_width=1, eos_id=EOS, max_new_tokens=4, length_penalty=1.0)
    assert best[0].tokens == [1] and best[0].finished
