"""Corpus loading with errors that name the file, and deterministic evaluation loaders.

Evaluation masks are drawn per protein from ``(EVAL_MASK_SEED, item index)`` and never change between
epochs, batchings or ranks: every model evaluated on the same file with the same item length sees the
same masked positions, and the unigram baseline is scored on them too.
"""

from __future__ import annotations

import os
from pathlib import Path

from favor.data.alphabet import Alphabet, UnknownResidueError
from favor.data.batching import TokenBudgetBatchSampler
from favor.data.corpus import ProteinCorpus
from favor.data.datasets import ConcatenatedProteinDataset, PackedProteinDataset, SingleProteinDataset
from favor.data.loader import ProteinBatchLoader

__all__ = ["EVAL_MASK_SEED", "load_corpus", "build_dataset", "build_eval_loader", "padded_length"]

EVAL_MASK_SEED = 20_210_309


def padded_length(length: int, multiple: int | None) -> int:
    """``length`` rounded up to a multiple of ``multiple`` (the batch width of one full item)."""
    return length if not multiple else -(-length // multiple) * multiple


def load_corpus(
    path: str | os.PathLike,
    *,
    unknown: str = "error",
    max_records: int | None = None,
    what: str = "data",
    alphabet: Alphabet | None = None,
) -> ProteinCorpus:
    """Read and encode a FASTA file; a missing file, bad FASTA or unknown residue names the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} FASTA file not found")
    try:
        corpus = ProteinCorpus.from_fasta(
            path, alphabet=alphabet or Alphabet.protein(), unknown=unknown, max_records=max_records
        )
    except UnknownResidueError as error:
        record = f"record {error.name!r}" if error.name is not None else "a record"
        raise ValueError(
            f"{path}: {record}: unknown residue {error.char!r} at position {error.position} (1-based); "
            "set data.unknown=x to map it to X or data.unknown=skip to drop such records"
        ) from None
    if len(corpus) == 0:
        raise ValueError(f"{path}: {what} FASTA file holds no usable sequences")
    return corpus


def build_dataset(
    corpus: ProteinCorpus, *, mode: str, max_length: int, train: bool, seed: int = 0
) -> SingleProteinDataset | ConcatenatedProteinDataset | PackedProteinDataset:
    """Single proteins cropped to ``max_length`` (random crops for training, the start for evaluation),
    concatenated proteins cut into windows of ``max_length`` tokens, or (training) whole proteins packed
    several per row with ``segment_ids`` (evaluation of a packed run uses single proteins)."""
    if mode == "single":
        return SingleProteinDataset(
            corpus, max_length=max_length, crop="random" if train else "start", seed=seed
        )
    if mode == "concatenated":
        return ConcatenatedProteinDataset(corpus, window=max_length, drop_last=False)
    if mode == "packed":
        if not train:  # evaluation scores proteins one per row: the same numbers as single mode
            return build_dataset(corpus, mode="single", max_length=max_length, train=False)
        return PackedProteinDataset(
            build_dataset(corpus, mode="single", max_length=max_length, train=True, seed=seed)
        )
    raise ValueError(f"data mode {mode!r}: choose single, concatenated or packed")


def build_eval_loader(
    corpus: ProteinCorpus,
    *,
    objective: str,
    mode: str = "single",
    max_length: int,
    max_tokens: int,
    mask_probability: float = 0.15,
    mask_seed: int = EVAL_MASK_SEED,
    pad_to_multiple_of: int | None = 8,
    rank: int = 0,
    world_size: int = 1,
) -> ProteinBatchLoader:
    """Deterministic batches (sorted by length, no shuffling) with fixed masks, sharded over ranks."""
    dataset = build_dataset(corpus, mode=mode, max_length=max_length, train=False)
    sampler = TokenBudgetBatchSampler(
        dataset.item_lengths(),
        max_tokens=max(max_tokens, padded_length(max_length, pad_to_multiple_of)),
        pad_to_multiple_of=pad_to_multiple_of,
        shuffle=False,
        rank=rank,
        world_size=world_size,
        even_shards=False,
    )
    return ProteinBatchLoader(
        dataset,
        batch_sampler=sampler,
        objective=objective,
        probability=mask_probability,
        mask_seed=mask_seed,
        masks_per_epoch=False,
        pad_to_multiple_of=pad_to_multiple_of,
    )
