"""The ``text`` source: characters (or UTF-8 bytes) of an English corpus for causal language models.

Training windows of ``data.max_length`` characters start at a random offset inside each window-sized slot
(drawn per epoch); validation, test and ``favor evaluate`` windows tile their part without overlap. With
``train.tbptt`` a recurrent model reads parallel streams instead. Labels are aligned with the inputs'
positions (``labels[t]`` is character t + 1). ``favor evaluate`` reports bits per character against the
unigram baseline of the training characters.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from favor.data.seeding import derive_seed
from favor.data.text import VOCAB_FILE, CharVocabulary, StreamBatchLoader, load_text, split_text, window_batch
from favor.evaluate.baseline import UNIGRAM_FILE, UnigramBaseline
from favor.evaluate.metrics import evaluate_lm
from favor.folders import load_model
from favor.runs.sources.base import DataSource, RunData, index_loader, register
from favor.runs.validation import check_choice

__all__ = ["TextConfig", "TextSource", "text_loader", "text_parts", "text_unigram_log_probs"]


@dataclass
class TextConfig:
    """``data.text``: the corpus and its vocabulary (window: data.max_length characters)."""

    # A UTF-8 text file; None: the bundled corpus (Python reference documentation, 465k characters).
    corpus: str | None = None
    # ascii: newline + printable ASCII (98 tokens); bytes: UTF-8 bytes (258 tokens, nothing unknown).
    vocabulary: str = "ascii"

    def __post_init__(self) -> None:
        check_choice("data.text", "vocabulary", self.vocabulary, ("ascii", "bytes"))


def text_parts(config: Any) -> tuple[CharVocabulary, dict[str, np.ndarray]]:
    """The vocabulary and the token ids of the train, valid and test parts of the configured corpus."""
    vocab = CharVocabulary(kind=config.text.vocabulary)
    texts = split_text(
        load_text(config.text.corpus),
        valid_fraction=config.valid_fraction,
        test_fraction=config.test_fraction,
    )
    ids = {
        part: vocab.encode(text, unknown=config.unknown, name=f"{part} text")
        for part, text in zip(("train", "valid", "test"), texts, strict=True)
    }
    return vocab, ids


def text_loader(
    tokens: np.ndarray, config: Any, *, train: bool, seed: int = 0, rank: int = 0, world_size: int = 1
) -> Any:
    """Windows of ``data.max_length`` characters: training windows start at a random offset inside each
    window-sized slot (drawn per epoch), evaluation windows tile the text without overlap."""
    window = config.max_length
    if len(tokens) < 2:
        raise ValueError(
            "the text part is too short for one window; change data.valid_fraction/test_fraction"
        )
    if train:
        n = max(1, (len(tokens) - window - 1) // window + 1)
        limit = max(0, len(tokens) - window - 1)

        def starts(indices: np.ndarray, epoch: int) -> np.ndarray:
            jitter = np.random.default_rng(derive_seed(seed, epoch)).integers(0, window, size=n)
            return np.minimum(indices * window + jitter[indices], limit)
    else:
        n = -(-(len(tokens) - 1) // window)

        def starts(indices: np.ndarray, _epoch: int) -> np.ndarray:
            return indices * window

    def make_batch(indices: np.ndarray, epoch: int) -> dict[str, Any]:
        return window_batch(tokens, starts(indices, epoch), window=window)

    return index_loader(n, config.batch_size, make_batch, train, seed, rank, world_size)


def text_unigram_log_probs(counts: list[int], vocab: CharVocabulary) -> torch.Tensor:
    """Add-one smoothed float64 log-probabilities over the vocabulary's symbols (``-inf`` at specials)."""
    counts_t = torch.tensor(counts, dtype=torch.float64)
    allowed = torch.zeros(vocab.vocab_size, dtype=torch.bool)
    allowed[list(vocab.symbol_ids)] = True
    smoothed = torch.where(allowed, counts_t + 1.0, torch.zeros_like(counts_t))
    return (smoothed / smoothed.sum()).log()


class TextSource(DataSource):
    takes_data_file = True
    name = "text"
    objectives = ("clm",)
    section = TextConfig
    unknown_choices = ("error", "unk")
    streams = True

    def model_fields(self, data: Any, objective: str) -> tuple[dict[str, Any], str]:
        vocab = CharVocabulary(kind=data.text.vocabulary)
        fields = {"vocab_size": vocab.vocab_size, "input_dim": None, "task": "clm", "causal": True}
        return fields, f"the {vocab.kind} vocabulary"

    def build(
        self, data: Any, *, objective: str, seed: int, rank: int = 0, world_size: int = 1, tbptt: int = 0
    ) -> RunData:
        shard = {"rank": rank, "world_size": world_size}
        vocab, ids = text_parts(data)
        if tbptt:
            if world_size > 1:
                raise ValueError("train.tbptt runs in one process (its streams are not sharded over ranks)")
            batch = max(1, data.max_tokens // tbptt)
            train = StreamBatchLoader(ids["train"], batch_size=batch, window=tbptt, seed=seed)
        else:
            train = text_loader(ids["train"], data, train=True, seed=seed, **shard)
        valid = text_loader(ids["valid"], data, train=False, **shard) if data.has_valid else None
        counts = np.bincount(ids["train"], minlength=vocab.vocab_size).tolist()
        return RunData(
            train_loader=train,
            valid_loader=valid,
            unigram=UnigramBaseline(tokens=list(vocab.tokens), counts=[int(c) for c in counts]),
            unigram_log_probs=text_unigram_log_probs(counts, vocab),
            tokenizer=vocab,
            files={VOCAB_FILE: json.dumps(vocab.to_dict()) + "\n"},
        )

    def validation_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        metrics["bits_per_char"] = metrics["loss"] / math.log(2)
        metrics["unigram_bits_per_char"] = metrics["unigram_loss"] / math.log(2)
        return metrics

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
        model, _ = load_model(model_dir, device=device)
        vocab = CharVocabulary.load(run_dir / VOCAB_FILE)
        if data is not None:
            tokens = vocab.encode(load_text(data), unknown=config.data.unknown, name=str(data))
        else:
            _, parts = text_parts(config.data)
            tokens = parts[split]
        unigram = UnigramBaseline.load(run_dir / UNIGRAM_FILE)
        loader = text_loader(tokens, config.data, train=False)
        stats = evaluate_lm(
            model,
            loader,
            unigram_log_probs=text_unigram_log_probs(unigram.counts, vocab),
            device=device,
            max_batches=max_batches,
        )
        metrics = stats.to_dict("clm")
        corpus = config.data.text.corpus or "bundled corpus"
        return {
            "bits_per_char": metrics["loss"] / math.log(2),
            "perplexity": metrics["perplexity"],
            "accuracy": metrics["masked_accuracy"],
            "loss": metrics["loss"],
            "n_chars": metrics["n_masked"],
            "unigram_bits_per_char": metrics["unigram_loss"] / math.log(2),
            "unigram_accuracy": metrics["unigram_accuracy"],
            "vocabulary": vocab.kind,
            "data": str(data) if data is not None else f"{corpus} ({split})",
        }

    def format_metrics(self, run_dir: Any, metrics: dict[str, Any]) -> list[str]:
        return [
            f"{run_dir} on {metrics['data']} ({metrics['n_chars']:,} characters)",
            f"  model    bits/char {metrics['bits_per_char']:.4f}  accuracy {metrics['accuracy']:.4f}",
            f"  unigram  bits/char {metrics['unigram_bits_per_char']:.4f}  "
            f"accuracy {metrics['unigram_accuracy']:.4f}",
        ]


SOURCE = register(TextSource())
