"""``ProteinBatchLoader``: a torch ``DataLoader`` wrapper whose position can be saved and restored.

Everything random in the stream is derived from integers (see ``favor.data.seeding``): the batch
lists from (sampler seed, epoch), random crops from (dataset seed, epoch, index), MLM masks from
(mask seed, epoch, index). The loader and its sampler share one ``EpochCursor`` (``favor.data.cursor``),
moved as batches are handed to the caller, so ``state_dict`` is exact even when DataLoader workers
prefetch ahead, and ``load_state_dict`` makes the next batch the one that would have come next. The state
is a dict of plain ints (JSON, no pickle).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from torch.utils.data import DataLoader, Dataset

from favor.data.batching import Collator, Objective, ResumableBatchSampler
from favor.data.cursor import EpochCursor, Resumable, check_saved
from favor.data.seeding import derive_seed

__all__ = ["ProteinBatchLoader"]


class ProteinBatchLoader(Resumable):
    """Iterate one epoch of padded, labelled batches per ``for`` loop, resumably.

    Each ``iter()`` runs the rest of the current epoch (from the saved position), then moves to the
    next epoch. A new ``DataLoader`` is built per epoch, so workers see the dataset's current epoch.

    Args:
        dataset: a ``SingleProteinDataset`` or ``ConcatenatedProteinDataset`` (anything with
            ``alphabet``, ``set_epoch`` and items as ``ProteinItem``).
        batch_sampler: a ``ResumableBatchSampler`` over ``dataset``; its cursor is the loader's (rank,
            world size, sharding, epoch and position).
        objective: ``"mlm"``, ``"clm"`` or ``None`` (no labels).
        probability: MLM selection rate.
        mask_seed: base seed of MLM masks.
        masks_per_epoch: draw new masks every epoch; False keeps them fixed for evaluation, so every
            model (and every batching) sees the same masked positions.
        pad_to_multiple_of: padded-length granularity (give the token-budget sampler the same).
        include_names: add ``"names"`` to each batch.
        num_workers, pin_memory: passed to ``DataLoader``.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        batch_sampler: ResumableBatchSampler,
        objective: Objective | None = None,
        probability: float = 0.15,
        mask_seed: int = 0,
        masks_per_epoch: bool = True,
        pad_to_multiple_of: int | None = None,
        include_names: bool = False,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        alphabet = getattr(dataset, "alphabet", None)
        if alphabet is None:
            raise TypeError(
                f"ProteinBatchLoader: dataset {type(dataset).__name__} has no 'alphabet' attribute"
            )
        self.dataset = dataset
        self.batch_sampler = batch_sampler
        self.alphabet = alphabet
        self.objective = objective
        self.probability = probability
        self.mask_seed = mask_seed
        self.masks_per_epoch = masks_per_epoch
        self.pad_to_multiple_of = pad_to_multiple_of
        self.include_names = include_names
        self.num_workers = num_workers
        self.pin_memory = pin_memory

    @property
    def cursor(self) -> EpochCursor[list[int]]:
        """The sampler's cursor: the loader's position is the sampler's, counted as batches are handed out."""
        return self.batch_sampler.cursor

    def _collator(self, epoch: int) -> Collator:
        seed = derive_seed(self.mask_seed, epoch) if self.masks_per_epoch else derive_seed(self.mask_seed)
        return Collator(
            alphabet=self.alphabet,
            objective=self.objective,
            probability=self.probability,
            mask_seed=seed,
            pad_to_multiple_of=self.pad_to_multiple_of,
            include_names=self.include_names,
        )

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch, position = self.epoch, self.position
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        # Workers prefetch from a copy of the remaining batch list; the cursor advances in step with the
        # batches handed to the caller, not with the prefetching.
        loader = DataLoader(
            self.dataset,
            batch_sampler=self.cursor.batches(epoch)[position:],
            collate_fn=self._collator(epoch),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )
        for _, batch in zip(self.cursor.run(), loader, strict=True):
            yield batch

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position", "seed", "mask_seed", "world_size", "rank"}`` as plain ints.

        ``position`` counts batches of ``epoch`` already handed to the caller on this rank.
        """
        return {**self.cursor.state_dict(), "mask_seed": self.mask_seed}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from ``state_dict()``; seeds and world size must match this loader's."""
        check_saved("ProteinBatchLoader", state, {"mask_seed": self.mask_seed})
        self.cursor.load_state_dict(state)
