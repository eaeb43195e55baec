"""Phoneme and word error rates: Levenshtein distance, and the any-pronunciation convention."""

import pytest

from favor.evaluate.g2p import edit_distance, score_g2p


def test_edit_distance():
    assert edit_distance([], []) == 0
    assert edit_distance(["A"], []) == 1
    assert edit_distance(["K", "AE1", "T"], ["K", "AA1", "T"]) == 1
    assert edit_distance(["K", "AE1", "T"], ["AE1", "T", "S"]) == 2
    assert edit_distance(list("kitten"), list("sitting")) == 3


def test_a_word_is_right_when_it_matches_any_pronunciation():
    read = (("R", "EH1", "D"), ("R", "IY1", "D"))
    scores = score_g2p([["R", "IY1", "D"], ["R", "IY1"]], [read, (("AH0",),)])
    assert scores.word_error_rate == 0.5
    # "R IY1 D" matches the second pronunciation (0 edits / 3); "R IY1" vs "AH0": 2 edits / 1 phoneme.
    assert scores.phoneme_error_rate == pytest.approx(2 / 4)


def test_the_closest_pronunciation_sets_the_denominator():
    scores = score_g2p([["A", "B"]], [(("A", "B", "C", "D"), ("A", "X"))])
    # distance 1 to "A X" (length 2) beats distance 2 to "A B C D".
    assert (scores.phoneme_errors, scores.reference_phonemes, scores.wrong_words) == (1, 2, 1)


def test_mismatched_lengths_are_an_error():
    with pytest.raises(ValueError, match="2 predictions for 1 words"):
        score_g2p([[], []], [(("A",),)])
