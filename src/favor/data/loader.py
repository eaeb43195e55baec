"""``ProteinBatchLoader``: a torch ``DataLoader`` wrapper whose position can be saved and restored.

Everything random in the stream is derived from integers (see ``favor.data.seeding``): the batch
lists from (sampler seed, epoch), random crops from (dataset seed, epoch, index), MLM masks from
(mask seed, epoch, index). The loader counts the batches it has handed to the caller, so its
``state_dict`` is exact even when DataLoader workers prefetch ahead, and ``load_state_dict`` makes the
next batch the one that would have come next. The state is a dict of plain ints (JSON, no pickle).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader, Dataset

from favor.data.batching import Collator, Objective, ResumableBatchSampler
from favor.data.seeding import derive_seed

__all__ = ["ProteinBatchLoader"]


class ProteinBatchLoader:
    """Iterate one epoch of padded, labelled batches per ``for`` loop, resumably.

    Each ``iter()`` runs the rest of the current epoch (from the saved position), then moves to the
    next epoch. A new ``DataLoader`` is built per epoch, so workers see the dataset's current epoch.

    Args:
        dataset: a ``SingleProteinDataset`` or ``ConcatenatedProteinDataset`` (anything with
            ``alphabet``, ``set_epoch`` and items as ``ProteinItem``).
        batch_sampler: a ``ResumableBatchSampler`` over ``dataset`` (it carries rank and world size).
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
        self.epoch = batch_sampler.epoch
        self.position = batch_sampler.position

    def __len__(self) -> int:
        """Batches in the current epoch for this rank (including those already handed out)."""
        return len(self.batch_sampler.batches(self.epoch))

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
        epoch = self.epoch
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        self.batch_sampler.load_state_dict({"epoch": epoch, "position": self.position})
        loader = DataLoader(
            self.dataset,
            batch_sampler=self.batch_sampler,
            collate_fn=self._collator(epoch),
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )
        for batch in loader:
            # Counted before the yield: a checkpoint taken after receiving this batch resumes after it.
            self.position += 1
            yield batch
        self.epoch = epoch + 1
        self.position = 0

    def set_epoch(self, epoch: int) -> None:
        """Jump to the start of ``epoch``."""
        self.epoch = epoch
        self.position = 0

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position", "seed", "mask_seed", "world_size", "rank"}`` as plain ints.

        ``position`` counts batches of ``epoch`` already handed to the caller on this rank.
        """
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.batch_sampler.seed,
            "mask_seed": self.mask_seed,
            "world_size": self.batch_sampler.world_size,
            "rank": self.batch_sampler.rank,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume from ``state_dict()``; seeds and world size must match this loader's."""
        if "mask_seed" in state and state["mask_seed"] != self.mask_seed:
            raise ValueError(
                f"ProteinBatchLoader.load_state_dict: saved mask_seed={state['mask_seed']} but this loader "
                f"has mask_seed={self.mask_seed}; the masks would differ"
            )
        # Validates seed, world size and position against the sampler.
        self.batch_sampler.load_state_dict(state)
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
