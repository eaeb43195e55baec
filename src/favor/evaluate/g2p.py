"""Grapheme-to-phoneme transcription and its scores: phoneme error rate (PER) and word error rate (WER).

A word may have several pronunciations in the CMU dictionary. The prediction is scored against the closest
one: for each word, ``d = min_r edit_distance(prediction, r)`` (Levenshtein over phonemes, stress marks
included) and ``n`` the length of that closest reference (the shortest among ties). Then

    PER = sum d / sum n              (phoneme edits per reference phoneme, over all words)
    WER = share of words with d > 0  (a word is right when it equals *any* of its pronunciations)

`transcribe` decodes words with a seq2seq model: greedy in batches (``beam=1``) or beam search one word at
a time (``beam > 1``), both through the model's incremental decoding state.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from favor.data.g2p import G2PVocabulary
from favor.models.seq2seq import Seq2SeqModel
from favor.models.seq2seq_search import beam_search, make_scorer, sample_search

__all__ = ["G2PScores", "edit_distance", "score_g2p", "transcribe"]


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance (insertions, deletions, substitutions each cost 1)."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


@dataclass
class G2PScores:
    words: int
    wrong_words: int
    phoneme_errors: int
    reference_phonemes: int

    @property
    def phoneme_error_rate(self) -> float:
        return self.phoneme_errors / self.reference_phonemes if self.reference_phonemes else float("nan")

    @property
    def word_error_rate(self) -> float:
        return self.wrong_words / self.words if self.words else float("nan")

    def to_dict(self) -> dict[str, float | int]:
        return {
            "phoneme_error_rate": self.phoneme_error_rate,
            "word_error_rate": self.word_error_rate,
            "n_words": self.words,
            "n_reference_phonemes": self.reference_phonemes,
        }


def score_g2p(
    predictions: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]]
) -> G2PScores:
    """Scores of one prediction per word against that word's pronunciations (see module doc)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} words")
    scores = G2PScores(0, 0, 0, 0)
    for prediction, options in zip(predictions, references, strict=True):
        if not options:
            raise ValueError("a word without any reference pronunciation cannot be scored")
        distance, length = min((edit_distance(prediction, r), len(r)) for r in options)
        scores.words += 1
        scores.wrong_words += int(distance > 0)
        scores.phoneme_errors += distance
        scores.reference_phonemes += length
    return scores


@dataclass
class Transcription:
    phonemes: list[list[str]]
    seconds: float
    tokens: int  # decoded target tokens (end tokens included)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")


@torch.no_grad()
def transcribe(
    model: Seq2SeqModel,
    vocab: G2PVocabulary,
    words: Sequence[str],
    *,
    beam: int = 1,
    length_penalty: float = 0.0,
    max_new_tokens: int | None = None,
    batch_size: int = 256,
) -> Transcription:
    """Phonemes of each word (greedy for ``beam=1``, else the best beam-search hypothesis)."""
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    limit = max_new_tokens if max_new_tokens is not None else model.config.max_length
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    outputs: list[list[int]] = [[] for _ in words]
    start = time.perf_counter()
    try:
        order = sorted(range(len(words)), key=lambda i: len(words[i]))
        chunk = batch_size if beam == 1 else 1
        for first in range(0, len(order), chunk):
            rows = order[first : first + chunk]
            ids = [vocab.encode_word(words[i]) for i in rows]
            width = max(len(r) for r in ids)
            source = torch.tensor([r + [vocab.pad_id] * (width - len(r)) for r in ids], device=device)
            scorer = make_scorer(model, source, source == vocab.pad_id, bos_id=vocab.bos_id)
            if beam == 1:
                decoded = sample_search(scorer, eos_id=vocab.eos_id, max_new_tokens=limit)
            else:
                best = beam_search(
                    scorer,
                    beam_width=beam,
                    eos_id=vocab.eos_id,
                    max_new_tokens=limit,
                    length_penalty=length_penalty,
                )[0]
                decoded = [best.tokens]
            for i, tokens in zip(rows, decoded, strict=True):
                outputs[i] = tokens
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start
    tokens = sum(len(t) + 1 for t in outputs)
    return Transcription([vocab.decode_phonemes(t) for t in outputs], seconds, tokens)
