"""The ``g2p`` source: (word, pronunciation) pairs of the CMU Pronouncing Dictionary, for seq2seq models.

Every pronunciation of a training word is one item (a homograph gives several); the parts are cut by
`favor.data.g2p.g2p_part` from ``data.valid_fraction`` and ``data.test_fraction``, so training, validation
and `favor evaluate` agree on which words each holds. A batch holds ``data.max_tokens // data.max_length``
items, padded to its longest word and pronunciation. ``favor evaluate`` decodes the words of a part
(greedy or beam search) and reports phoneme and word error rates against the closest pronunciation.

``data.g2p.stress`` (default true) keeps the dictionary's lexical stress; false trains and scores on the
39 phonemes without it, the convention of most published CMUdict results. A run trained with stress also
reports its scores with the stress of prediction and references removed (``without_stress``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from favor.data.arrays import IndexBatchLoader
from favor.data.g2p import (
    G2PVocabulary,
    g2p_batch,
    load_cmudict,
    split_dictionary,
    strip_stress,
    unstressed_pronunciations,
)
from favor.evaluate.g2p import score_g2p, transcribe
from favor.folders import load_model
from favor.runs.sources.base import DataSource, RunData, index_loader, register

__all__ = ["G2PConfig", "G2PSource", "g2p_loader", "g2p_words"]


@dataclass
class G2PConfig:
    """``data.g2p``: which transcription of the CMU dictionary the model learns."""

    # true: ARPAbet with lexical stress (AH0, EH1, ...); false: stress digits removed (39 phonemes).
    stress: bool = True


def g2p_words(config: Any, part: str) -> list[tuple[str, tuple[tuple[str, ...], ...]]]:
    """``(word, pronunciations)`` of ``part``, sorted by word; checked against ``data.max_length``."""
    words = split_dictionary(
        load_cmudict(stress=config.g2p.stress),
        part,
        valid_fraction=config.valid_fraction,
        test_fraction=config.test_fraction,
    )
    if not words:
        raise ValueError(f"the g2p {part} part is empty; change data.valid_fraction/test_fraction")
    word, prons = max(words, key=lambda wp: max(len(wp[0]), *(len(p) + 1 for p in wp[1])))
    longest = max(len(word), *(len(p) + 1 for p in prons))
    if longest > config.max_length:
        raise ValueError(
            f"data.max_length={config.max_length} is shorter than the g2p {part} part needs: {word!r} takes "
            f"{longest} positions (letters, or phonemes + <bos>/<eos>); set data.max_length >= {longest}"
        )
    return words


def g2p_loader(
    pairs: list[tuple[str, tuple[str, ...]]],
    config: Any,
    *,
    train: bool,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> IndexBatchLoader:
    vocab = G2PVocabulary()

    def make_batch(indices: np.ndarray, _epoch: int) -> dict[str, Any]:
        return g2p_batch(vocab, [pairs[i] for i in indices.tolist()])

    return index_loader(len(pairs), config.batch_size, make_batch, train, seed, rank, world_size)


def _pairs(words: list[tuple[str, tuple[tuple[str, ...], ...]]]) -> list[tuple[str, tuple[str, ...]]]:
    return [(word, pron) for word, prons in words for pron in prons]


class G2PSource(DataSource):
    name = "g2p"
    objectives = ("seq2seq",)
    section = G2PConfig
    evaluate_options = ("beam", "max_words")

    def model_fields(self, data: Any, objective: str) -> tuple[dict[str, Any], str]:
        fields = {"vocab_size": G2PVocabulary().vocab_size, "input_dim": None, "task": "seq2seq"}
        return fields, "the grapheme-to-phoneme vocabulary"

    def build(
        self, data: Any, *, objective: str, seed: int, rank: int = 0, world_size: int = 1, tbptt: int = 0
    ) -> RunData:
        shard = {"rank": rank, "world_size": world_size}
        train = g2p_loader(_pairs(g2p_words(data, "train")), data, train=True, seed=seed, **shard)
        valid = None
        if data.has_valid:
            words = g2p_words(data, "valid")[: data.valid_max_sequences]
            valid = g2p_loader(_pairs(words), data, train=False, **shard)
        return RunData(train_loader=train, valid_loader=valid, tokenizer=G2PVocabulary())

    def evaluate(
        self,
        run_dir: Path,
        config: Any,
        model_dir: Path,
        *,
        split: str,
        data: str | os.PathLike | None,
        device: torch.device,
        max_batches: int | None,
        options: dict[str, Any],
    ) -> dict[str, Any]:
        """``options``: ``beam`` (width; 1 or None: greedy) and ``max_words`` (a cap on the words decoded,
        evenly spaced over the part in alphabetical order: word i * n // max_words for i < max_words)."""
        beam, max_words = options.get("beam") or 1, options.get("max_words")
        model, _ = load_model(model_dir, device=device)
        words = g2p_words(config.data, split)
        total = len(words)
        if max_words is not None:
            if max_words < 1:
                raise ValueError(f"--max-words must be >= 1, got {max_words}")
            words = [words[i * total // max_words] for i in range(min(max_words, total))]
        result = transcribe(model, G2PVocabulary(), [w for w, _ in words], beam=beam)
        references = [prons for _, prons in words]
        scores = score_g2p(result.phonemes, references)
        extra: dict[str, Any] = {}
        if config.data.g2p.stress:
            # The same predictions scored on the 39 phonemes (published results' convention).
            unstressed = score_g2p(
                [strip_stress(p) for p in result.phonemes],
                [unstressed_pronunciations(prons) for prons in references],
            )
            extra["without_stress"] = {
                "phoneme_error_rate": unstressed.phoneme_error_rate,
                "word_error_rate": unstressed.word_error_rate,
            }
        return {
            **scores.to_dict(),
            **extra,
            "stress": config.data.g2p.stress,
            "n_words_in_split": total,
            "beam": beam,
            "convention": "closest pronunciation: a word is right if it matches any of its pronunciations; "
            "PER = edits to the closest one / its length, summed over words",
            "decode_seconds": result.seconds,
            "tokens_per_second": result.tokens_per_second,
        }

    def format_metrics(self, run_dir: Any, metrics: dict[str, Any]) -> list[str]:
        decoding = "greedy" if metrics["beam"] == 1 else f"beam {metrics['beam']}"
        convention = "" if metrics.get("stress", True) else "  (without stress)"
        lines = [
            f"{run_dir} on CMUdict ({metrics['split']}: {metrics['n_words']:,} of "
            f"{metrics['n_words_in_split']:,} words, {decoding})",
            f"  PER {metrics['phoneme_error_rate']:.4f}  WER {metrics['word_error_rate']:.4f}  "
            f"{metrics['tokens_per_second']:.0f} tokens/s{convention}",
        ]
        if plain := metrics.get("without_stress"):
            lines.append(
                f"  without stress: PER {plain['phoneme_error_rate']:.4f}  WER {plain['word_error_rate']:.4f}"
            )
        return lines


SOURCE = register(G2PSource())
