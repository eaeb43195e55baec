"""Batch collation and resumable, shardable batch samplers.

Collation pads items into ``{"input_ids": LongTensor (B, L), "padding_mask": BoolTensor (B, L)}``
(True at padding, the PyTorch convention; packed rows add ``"segment_ids"``) and adds ``"labels"`` (B, L)
for the chosen objective: ``"mlm"`` (``mask_tokens``, -100 where not selected) or ``"clm"``
(``causal_lm_labels``, already shifted), plus ``"names"`` on request.

Batch samplers yield lists of dataset indices. Each epoch's global batch list is a pure function of
(seed, epoch); rank r of w takes batches r, r + w, r + 2w, ..., so ranks get disjoint shares. Position,
sharding and state are an ``EpochCursor``'s (``favor.data.cursor``), as in every resumable loader.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Sampler

from favor.data.alphabet import Alphabet
from favor.data.cursor import EpochCursor, Resumable
from favor.data.datasets import ProteinItem
from favor.data.masking import causal_lm_labels, mask_tokens
from favor.data.seeding import derive_seed, generator_for

__all__ = [
    "Objective",
    "collate_batch",
    "Collator",
    "ResumableBatchSampler",
    "TokenBudgetBatchSampler",
    "FixedSizeBatchSampler",
]

Objective = Literal["mlm", "clm"]


def _round_up(n: int, multiple: int | None) -> int:
    return n if not multiple else -(-n // multiple) * multiple


def collate_batch(
    items: Sequence[ProteinItem | torch.Tensor],
    *,
    alphabet: Alphabet,
    objective: Objective | None = None,
    probability: float = 0.15,
    mask_seed: int | None = None,
    generator: torch.Generator | None = None,
    pad_to_multiple_of: int | None = None,
    pad_to_length: int | None = None,
    include_names: bool = False,
) -> dict[str, Any]:
    """Pad items into a batch and add labels.

    Args:
        items: ``ProteinItem`` dicts or 1-D LongTensors.
        alphabet: gives the padding id (and mask/residue ids for MLM).
        objective: ``"mlm"``, ``"clm"`` or ``None`` (no ``labels`` key).
        probability: MLM selection rate.
        mask_seed: MLM masks of row i come from ``generator_for(mask_seed, index_i)`` (the item's
            dataset index): reproducible whatever the batch composition or worker. Takes precedence
            over ``generator``.
        generator: otherwise, one generator for the whole batch (``None``: torch's global RNG).
        pad_to_multiple_of: round the padded length up to a multiple of this.
        pad_to_length: pad to at least this length (fixed shapes).
        include_names: add ``"names"``: list of item names.

    Returns:
        dict with ``input_ids`` (B, L) long, ``padding_mask`` (B, L) bool, and ``labels`` (B, L) long
        and ``names`` when asked.
    """
    if not items:
        raise ValueError("collate_batch: empty batch")
    if objective not in ("mlm", "clm", None):
        raise ValueError(f"collate_batch: objective={objective!r}; choose 'mlm', 'clm' or None")
    rows = [item["input_ids"] if isinstance(item, dict) else item for item in items]
    lengths = [int(item["length"]) if isinstance(item, dict) else len(item) for item in items]
    indices = [int(item["index"]) if isinstance(item, dict) else i for i, item in enumerate(items)]
    width = _round_up(max(len(r) for r in rows), pad_to_multiple_of)
    if pad_to_length is not None:
        width = max(width, _round_up(pad_to_length, pad_to_multiple_of))
    # (B, L) padded ids and mask, True at padding.
    input_ids = torch.full((len(rows), width), alphabet.pad_id, dtype=torch.long)
    padding_mask = torch.ones((len(rows), width), dtype=torch.bool)
    for i, (row, n) in enumerate(zip(rows, lengths, strict=True)):
        if row.dim() != 1:
            raise ValueError(f"collate_batch: item {i} input_ids must be 1-D, got shape {tuple(row.shape)}")
        input_ids[i, : len(row)] = row
        padding_mask[i, :n] = False
    batch: dict[str, Any] = {"input_ids": input_ids, "padding_mask": padding_mask}
    if any(isinstance(item, dict) and "segment_ids" in item for item in items):
        # Packed rows: the protein of each token (padding gets -1, and belongs to no segment anyway).
        segment_ids = torch.full((len(rows), width), -1, dtype=torch.long)
        for i, item in enumerate(items):
            segments = item["segment_ids"]
            segment_ids[i, : len(segments)] = segments
        batch["segment_ids"] = segment_ids
    if objective == "mlm":
        batch["input_ids"], batch["labels"] = _mlm(
            input_ids, padding_mask, lengths, indices, alphabet, probability, mask_seed, generator
        )
    elif objective == "clm":
        batch["labels"] = causal_lm_labels(input_ids, alphabet, padding_mask=padding_mask)
        if "segment_ids" in batch:  # the last token of a packed protein does not predict the next protein
            ids = batch["segment_ids"]
            crossing = torch.zeros_like(padding_mask)
            crossing[:, :-1] = ids[:, 1:] != ids[:, :-1]
            batch["labels"] = batch["labels"].masked_fill(crossing, -100)
    if include_names:
        batch["names"] = [item.get("name") if isinstance(item, dict) else None for item in items]
    return batch


def _mlm(
    input_ids: torch.Tensor,
    padding_mask: torch.Tensor,
    lengths: list[int],
    indices: list[int],
    alphabet: Alphabet,
    probability: float,
    mask_seed: int | None,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    if mask_seed is None:
        return mask_tokens(
            input_ids, alphabet, probability=probability, generator=generator, special_mask=padding_mask
        )
    masked = input_ids.clone()
    labels = torch.full_like(input_ids, -100)
    for i, (n, index) in enumerate(zip(lengths, indices, strict=True)):
        row = mask_tokens(
            input_ids[i, :n], alphabet, probability=probability, generator=generator_for(mask_seed, index)
        )
        masked[i, :n] = row.input_ids
        labels[i, :n] = row.labels
    return masked, labels


class Collator:
    """``collate_batch`` with fixed options, for ``DataLoader(collate_fn=...)`` (picklable).

    With a plain fixed-size ``DataLoader(dataset, batch_size=B, collate_fn=Collator(...))``, pass
    ``mask_seed`` for reproducible masks; see ``collate_batch`` for the arguments.
    """

    def __init__(
        self,
        *,
        alphabet: Alphabet,
        objective: Objective | None = None,
        probability: float = 0.15,
        mask_seed: int | None = None,
        pad_to_multiple_of: int | None = None,
        pad_to_length: int | None = None,
        include_names: bool = False,
    ) -> None:
        self.alphabet = alphabet
        self.objective = objective
        self.probability = probability
        self.mask_seed = mask_seed
        self.pad_to_multiple_of = pad_to_multiple_of
        self.pad_to_length = pad_to_length
        self.include_names = include_names

    def __call__(self, items: Sequence[ProteinItem | torch.Tensor]) -> dict[str, Any]:
        return collate_batch(
            items,
            alphabet=self.alphabet,
            objective=self.objective,
            probability=self.probability,
            mask_seed=self.mask_seed,
            pad_to_multiple_of=self.pad_to_multiple_of,
            pad_to_length=self.pad_to_length,
            include_names=self.include_names,
        )


class ResumableBatchSampler(Resumable, Sampler[list[int]]):
    """Base class of the protein batch samplers: an ``EpochCursor`` over ``global_batches``.

    Subclasses define ``global_batches(epoch)``; the cursor (``favor.data.cursor``) owns the rest: epoch
    and position, this rank's share (batch ``i`` to rank ``i % world_size``; ``even_shards``, the
    default, cuts training shards to equal length, False keeps every batch for evaluation), ``set_epoch``,
    ``state_dict`` and ``load_state_dict``. Iterating yields this rank's remaining batches of the current
    epoch; running to the end moves to the next epoch.

    Note: ``ProteinBatchLoader`` moves this cursor as it hands batches out, so the state is exact however
    far its workers prefetch; a plain ``DataLoader`` with workers draws from the sampler ahead of the
    training step, and the state runs ahead with it.
    """

    def __init__(self, *, shuffle: bool, seed: int, rank: int, world_size: int, even_shards: bool) -> None:
        self.shuffle = shuffle
        self.cursor: EpochCursor[list[int]] = EpochCursor(
            self.global_batches,
            seed=seed,
            rank=rank,
            world_size=world_size,
            even_shards=even_shards,
            owner=type(self).__name__,
        )

    @property
    def even_shards(self) -> bool:
        return self.cursor.even_shards

    def global_batches(self, epoch: int) -> list[list[int]]:
        """All ranks' batches of ``epoch``, in order; subclasses define this."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        # Copies, so that a consumer cannot alter the cached batch lists.
        for batch in self.cursor.run():
            yield list(batch)

    def _rng(self, epoch: int, stream: int) -> np.random.Generator:
        return np.random.default_rng(derive_seed(self.seed, epoch, stream))


class TokenBudgetBatchSampler(ResumableBatchSampler):
    """Batches under a token budget: ``batch_size * padded_length <= max_tokens``.

    Each epoch: indices are shuffled (if ``shuffle``), cut into buffers of ``buffer_size`` items,
    sorted by length within each buffer (bucketing, so little padding is wasted), packed greedily in
    that order, and the resulting batches are shuffled. ``padded_length`` is the longest item of the
    batch rounded up to ``pad_to_multiple_of``; give the collate function the same value.

    Args:
        lengths: token count of each item (``dataset.item_lengths()``).
        max_tokens: token budget per batch (padding included).
        max_batch_size: optional cap on items per batch.
        buffer_size: items sorted together; ``None`` sorts the whole epoch at once.
        pad_to_multiple_of: padding granularity used by the collate function.
        shuffle, seed: randomness of item and batch order (ascending length order when False).
        rank, world_size, even_shards: distributed sharding (see ``ResumableBatchSampler``).
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        *,
        max_tokens: int,
        max_batch_size: int | None = None,
        buffer_size: int | None = None,
        pad_to_multiple_of: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        even_shards: bool = True,
    ) -> None:
        super().__init__(
            shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, even_shards=even_shards
        )
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1 or np.any(self.lengths < 1):
            raise ValueError("TokenBudgetBatchSampler: lengths must be a 1-D array of positive ints")
        padded = np.array([_round_up(int(n), pad_to_multiple_of) for n in self.lengths], dtype=np.int64)
        if len(padded) and padded.max() > max_tokens:
            worst = int(padded.argmax())
            raise ValueError(
                f"TokenBudgetBatchSampler: item {worst} has {int(self.lengths[worst])} tokens "
                f"(padded {int(padded[worst])}) > max_tokens={max_tokens}; crop items or raise the budget"
            )
        if buffer_size is not None and buffer_size < 1:
            raise ValueError(f"TokenBudgetBatchSampler: buffer_size must be >= 1, got {buffer_size}")
        self.max_tokens = max_tokens
        self.max_batch_size = max_batch_size
        self.buffer_size = buffer_size
        self.pad_to_multiple_of = pad_to_multiple_of

    def global_batches(self, epoch: int) -> list[list[int]]:
        n = len(self.lengths)
        order = self._rng(epoch, 0).permutation(n) if self.shuffle else np.arange(n)
        size = self.buffer_size or max(n, 1)
        batches: list[list[int]] = []
        for start in range(0, n, size):
            buffer = order[start : start + size]
            buffer = buffer[np.argsort(self.lengths[buffer], kind="stable")]
            batches.extend(self._pack(buffer.tolist()))
        if self.shuffle:
            perm = self._rng(epoch, 1).permutation(len(batches))
            batches = [batches[i] for i in perm]
        return batches

    def _pack(self, indices: list[int]) -> list[list[int]]:
        """Greedy packing of indices sorted by ascending length."""
        batches: list[list[int]] = []
        current: list[int] = []
        longest = 0
        for idx in indices:
            width = _round_up(max(longest, int(self.lengths[idx])), self.pad_to_multiple_of)
            full = self.max_batch_size is not None and len(current) >= self.max_batch_size
            if current and (full or (len(current) + 1) * width > self.max_tokens):
                batches.append(current)
                current, longest = [], 0
            current.append(idx)
            longest = max(longest, int(self.lengths[idx]))
        if current:
            batches.append(current)
        return batches


class FixedSizeBatchSampler(ResumableBatchSampler):
    """Batches of ``batch_size`` items in (optionally shuffled) index order.

    Args:
        num_items: dataset length.
        batch_size: items per batch.
        drop_last: drop the final short batch.
        shuffle, seed, rank, world_size, even_shards: see ``TokenBudgetBatchSampler``.
    """

    def __init__(
        self,
        num_items: int,
        *,
        batch_size: int,
        drop_last: bool = False,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        even_shards: bool = True,
    ) -> None:
        super().__init__(
            shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, even_shards=even_shards
        )
        if batch_size < 1:
            raise ValueError(f"FixedSizeBatchSampler: batch_size must be >= 1, got {batch_size}")
        self.num_items = num_items
        self.batch_size = batch_size
        self.drop_last = drop_last

    def global_batches(self, epoch: int) -> list[list[int]]:
        n = self.num_items
        order = self._rng(epoch, 0).permutation(n) if self.shuffle else np.arange(n)
        stop = n - n % self.batch_size if self.drop_last else n
        return [order[i : i + self.batch_size].tolist() for i in range(0, stop, self.batch_size)]
