"""The unigram baseline: predict every token from the training data's residue frequencies alone.

Its accuracy is the share of targets equal to the most frequent residue and its perplexity
``exp(-mean log p(target))``; a language model has learned something beyond composition only when it
beats both on the same targets. Counts are add-one smoothed so a residue absent from training (a rare
``U`` or ``O``) costs a finite amount. For masked LM the candidates are the residues (special tokens are
never masked); for causal LM ``<eos>`` is a target too, counted once per training protein.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from favor.data.alphabet import Alphabet
from favor.data.corpus import ProteinCorpus

__all__ = ["UnigramBaseline", "UNIGRAM_FILE"]

UNIGRAM_FILE = "unigram.json"


@dataclass
class UnigramBaseline:
    """Token counts of the training data over the alphabet's vocabulary (``counts[i]`` for token id i)."""

    tokens: list[str]
    counts: list[int]

    @classmethod
    def from_corpus(cls, corpus: ProteinCorpus) -> UnigramBaseline:
        """Residue counts of ``corpus`` plus one ``<eos>`` per protein."""
        alphabet = corpus.alphabet
        counts = corpus.residue_counts().tolist()
        counts[alphabet.eos_id] = len(corpus)
        return cls(tokens=list(alphabet.tokens), counts=[int(c) for c in counts])

    def candidate_ids(self, objective: str, alphabet: Alphabet) -> list[int]:
        ids = list(alphabet.residue_ids)
        return ids + [alphabet.eos_id] if objective == "clm" else ids

    def log_probs(self, objective: str, alphabet: Alphabet) -> torch.Tensor:
        """float64 ``(vocab_size,)`` add-one smoothed log-probabilities; ``-inf`` outside the candidates."""
        if list(alphabet.tokens) != self.tokens:
            raise ValueError(
                f"unigram baseline tokens {self.tokens} do not match the alphabet {alphabet.tokens}"
            )
        counts = torch.tensor(self.counts, dtype=torch.float64)
        allowed = torch.zeros(len(counts), dtype=torch.bool)
        allowed[self.candidate_ids(objective, alphabet)] = True
        smoothed = torch.where(allowed, counts + 1.0, torch.zeros_like(counts))
        return (smoothed / smoothed.sum()).log()

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(
            json.dumps({"tokens": self.tokens, "counts": self.counts}) + "\n", encoding="utf-8"
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> UnigramBaseline:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: unigram baseline not found (written by favor train into the run dir)"
            )
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(tokens=list(data["tokens"]), counts=[int(c) for c in data["counts"]])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: not a unigram baseline file ({error})") from None
