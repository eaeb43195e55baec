"""Batch collation and resumable, shardable batch samplers.

Collation pads items into ``{"input_ids": LongTensor (B, L), "padding_mask": BoolTensor (B, L)}``
(True at padding, the PyTorch convention; packed rows add ``"segment_ids"``) and adds ``"labels"`` (B, L)
for the chosen objective: ``"mlm"`` (``mask_tokens``, -100 where not selected) or ``"clm"``
(``causal_lm_labels``, already shifted), plus ``"names"`` on request.

Batch samplers yield lists of dataset indices. Each epoch's global batch list is a pure function of
(seed, epoch); rank r of w takes batches r, r + w, r + 2w, ..., so ranks get disjoint shares. The state
to resume is three integers (epoch, position, seed): see ``ResumableBatchSampler.state_dict``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Sampler

from favor.data.alphabet import Alphabet
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


class ResumableBatchSampler(Sampler[list[int]]):
    """Base class: per-epoch batch lists, rank sharding, and a JSON-serialisable position.

    Iterating yields this rank's remaining batches of the current epoch, from ``position`` on; running
    to the end moves to the next epoch (``epoch += 1``, ``position = 0``). ``set_epoch`` jumps to the
    start of an epoch. With ``even_shards`` (default), the last ``len % world_size`` global batches of
    an epoch are dropped so that every rank runs the same number of steps (distributed training hangs
    otherwise); set it False (e.g. for evaluation) to cover every batch, ranks then differing by at
    most one batch.

    Note: a ``DataLoader`` with workers draws indices from the sampler ahead of the training step, so
    for a checkpoint use ``ProteinBatchLoader.state_dict`` (which counts the batches actually handed
    out); the sampler's own ``state_dict`` is exact only when nothing is prefetched.
    """

    def __init__(self, *, shuffle: bool, seed: int, rank: int, world_size: int, even_shards: bool) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"{type(self).__name__}: need 0 <= rank < world_size, got {rank=}, {world_size=}"
            )
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.even_shards = even_shards
        self.epoch = 0
        self.position = 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def global_batches(self, epoch: int) -> list[list[int]]:
        """All ranks' batches of ``epoch``, in order; subclasses define this."""
        raise NotImplementedError

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """This rank's batches of ``epoch`` (default: the current epoch)."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is None or self._cache[0] != epoch:
            every = self.global_batches(epoch)
            if self.even_shards:
                every = every[: len(every) - len(every) % self.world_size]
            self._cache = (epoch, every[self.rank :: self.world_size])
        return self._cache[1]

    def __len__(self) -> int:
        return len(self.batches())

    def __iter__(self):  # type: ignore[no-untyped-def]
        batches = self.batches(self.epoch)
        while self.position < len(batches):
            batch = batches[self.position]
            self.position += 1
            yield list(batch)
        self.epoch += 1
        self.position = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.position = 0

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position", "seed", "rank", "world_size"}``: plain ints, JSON-serialisable."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume at ``state``'s epoch and position; the seed and world size must match."""
        name = type(self).__name__
        for key in ("seed", "world_size"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"{name}.load_state_dict: saved {key}={state[key]} but this sampler has "
                    f"{key}={getattr(self, key)}; the data stream would differ"
                )
        epoch, position = int(state["epoch"]), int(state["position"])
        if not 0 <= position <= len(self.batches(epoch)):
            raise ValueError(
                f"{name}.load_state_dict: position {position} outside [0, {len(self.batches(epoch))}] "
                f"for epoch {epoch}"
            )
        self.epoch, self.position = epoch, position

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
