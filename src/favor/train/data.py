"""Training and validation data of a run, from the ``data:`` section of its config.

Every source (``data.source``) gives a `RunData`: a resumable training loader (its position is part of every
checkpoint), a validation loader or None, and what the run folder and the metrics need (the unigram baseline
of language models, the vocabulary, the scale of time-series errors). Protein data is built here: the
training stream is a resumable `ProteinBatchLoader` over a token-budget sampler sharded by rank (each rank
gets disjoint batches), and validation uses the fixed evaluation masks of `favor.evaluate.data`, so
validation losses of different runs are comparable. The other sources live in `favor.train.sources`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from favor.data.batching import TokenBudgetBatchSampler
from favor.data.bundled import sample_path
from favor.data.corpus import ProteinCorpus
from favor.data.loader import ProteinBatchLoader
from favor.evaluate.baseline import UnigramBaseline
from favor.evaluate.data import build_dataset, build_eval_loader, load_corpus, padded_length
from favor.train.config import DataConfig

__all__ = ["RunData", "build_run_data", "resolve_path"]


@dataclass
class RunData:
    """What a run trains and validates on.

    train_loader: iterable of batch dicts with ``state_dict`` / ``load_state_dict`` (resumable).
    valid_loader: iterable of batch dicts with ``set_epoch``, or None.
    train_corpus: the training proteins (protein source only).
    unigram, unigram_log_probs: the unigram baseline of language models (protein, text).
    tokenizer: the alphabet or vocabulary of token inputs.
    files: ``{name: text}`` written into the run folder (``vocab.json``, ``timeseries.json``).
    value_scale: multiplies errors of normalised regression targets back into the data's units.
    mase_scale: the denominator of MASE (time series), in the data's units.
    """

    train_loader: Any
    valid_loader: Any | None
    train_corpus: ProteinCorpus | None = None
    unigram: UnigramBaseline | None = None
    unigram_log_probs: torch.Tensor | None = None
    tokenizer: Any = None
    files: dict[str, str] = field(default_factory=dict)
    value_scale: float = 1.0
    mase_scale: float | None = None


def resolve_path(value: str | None, split: str) -> str | None:
    """A configured path; None means the bundled sample split, ``"none"`` no file at all."""
    if value is None:
        return str(sample_path(split))
    if value.strip().lower() == "none":
        return None
    return value


def build_run_data(
    config: DataConfig, *, objective: str, seed: int, rank: int = 0, world_size: int = 1, tbptt: int = 0
) -> RunData:
    """This rank's training loader and validation loader of the configured source."""
    if config.source != "protein":
        from favor.train.sources import build_source_data

        return build_source_data(
            config, objective=objective, seed=seed, rank=rank, world_size=world_size, tbptt=tbptt
        )
    train_path = resolve_path(config.train, "train")
    if train_path is None:
        raise ValueError("data.train: a training FASTA file is required")
    corpus = load_corpus(train_path, unknown=config.unknown, what="training")
    dataset = build_dataset(corpus, mode=config.mode, max_length=config.max_length, train=True, seed=seed)
    multiple = config.pad_to_multiple_of
    sampler = TokenBudgetBatchSampler(
        dataset.item_lengths(),
        max_tokens=max(config.max_tokens, padded_length(config.max_length, multiple)),
        max_batch_size=config.max_batch_size,
        buffer_size=config.buffer_size,
        pad_to_multiple_of=multiple,
        shuffle=True,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )
    if len(sampler) == 0:
        raise ValueError(
            f"{train_path}: too few batches ({len(sampler.global_batches(0))}) for {world_size} ranks; "
            "lower data.max_tokens or use fewer processes"
        )
    loader = ProteinBatchLoader(
        dataset,
        batch_sampler=sampler,
        objective=objective,
        probability=config.mask_probability,
        mask_seed=seed,
        pad_to_multiple_of=multiple,
        num_workers=config.num_workers,
    )
    valid_loader = None
    valid_path = resolve_path(config.valid, "valid")
    if valid_path is not None:
        valid = load_corpus(
            valid_path, unknown=config.unknown, max_records=config.valid_max_sequences, what="validation"
        )
        valid_loader = build_eval_loader(
            valid,
            objective=objective,
            mode=config.mode,
            max_length=config.max_length,
            max_tokens=config.max_tokens,
            mask_probability=config.mask_probability,
            pad_to_multiple_of=multiple,
            rank=rank,
            world_size=world_size,
        )
    unigram = UnigramBaseline.from_corpus(corpus)
    return RunData(
        train_loader=loader,
        valid_loader=valid_loader,
        train_corpus=corpus,
        unigram=unigram,
        unigram_log_probs=unigram.log_probs(objective, corpus.alphabet),
        tokenizer=corpus.alphabet,
    )
