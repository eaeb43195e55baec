"""``IndexBatchLoader``: resumable batches of fixed-size items addressed by index (windows, images).

The protein pipeline batches variable-length proteins by token budget (`favor.data.loader`); the time-series,
text and digits sources have items of one length, so a batch is simply ``batch_size`` item indices. The
order of an epoch is a permutation drawn from ``(seed, epoch)`` and a batch is built by a function of
``(indices, epoch)``, so everything random is derived from integers and the position (epoch, batches
handed out) restores the stream exactly, as `ProteinBatchLoader.state_dict` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from favor.data.cursor import EpochCursor, Resumable
from favor.data.seeding import derive_seed

__all__ = ["IndexBatchLoader"]

BatchBuilder = Callable[[np.ndarray, int], dict[str, Any]]


class IndexBatchLoader(Resumable):
    """Iterate one epoch of batches per ``for`` loop, then move to the next epoch.

    Position, sharding and state are an ``EpochCursor``'s (``favor.data.cursor``).

    Args:
        n_items: items per epoch (indices ``0 .. n_items - 1``).
        batch_size: items per batch.
        make_batch: ``(indices, epoch) -> batch dict`` (tensors ``(B, ...)``).
        shuffle: training: a fresh permutation every epoch and equal shards; False (evaluation) keeps
            index order and shards that together cover every batch.
        drop_last: drop a last short batch (training: every step sees ``batch_size`` items).
        seed: base seed of the permutations.
        rank, world_size: this process's share: batch ``i`` of an epoch goes to rank ``i % world_size``;
            training shards are cut to equal length so every rank takes the same number of steps.
    """

    def __init__(
        self,
        *,
        n_items: int,
        batch_size: int,
        make_batch: BatchBuilder,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if n_items < 1:
            raise ValueError(f"IndexBatchLoader: no items to batch (n_items={n_items})")
        if batch_size < 1:
            raise ValueError(f"IndexBatchLoader: batch_size must be >= 1, got {batch_size}")
        self.n_items, self.batch_size, self.make_batch = n_items, batch_size, make_batch
        self.shuffle, self.drop_last = shuffle, drop_last
        self.cursor: EpochCursor[np.ndarray] = EpochCursor(
            self.global_batches,
            seed=seed,
            rank=rank,
            world_size=world_size,
            even_shards=shuffle,
            owner="IndexBatchLoader",
        )
        # Training needs a batch on every rank; an evaluation rank may have none (the others cover all).
        if len(self) == 0 and (shuffle or not self.global_batches(0)):
            raise ValueError(
                f"IndexBatchLoader: {n_items} items give no full batch of {batch_size} for {world_size} "
                "rank(s); lower the batch size (data.max_tokens) or the window (data.max_length)"
            )

    def global_batches(self, epoch: int) -> list[np.ndarray]:
        """Every rank's batches of item indices for ``epoch``, in order."""
        if self.shuffle:
            order = np.random.default_rng(derive_seed(self.seed, epoch)).permutation(self.n_items)
        else:
            order = np.arange(self.n_items)
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        return [order[i : i + self.batch_size] for i in range(0, stop, self.batch_size)]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self.epoch
        for indices in self.cursor.run():
            yield self.make_batch(indices, epoch)
