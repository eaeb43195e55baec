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

from favor.data.seeding import derive_seed

__all__ = ["IndexBatchLoader"]

BatchBuilder = Callable[[np.ndarray, int], dict[str, Any]]


class IndexBatchLoader:
    """Iterate one epoch of batches per ``for`` loop, then move to the next epoch.

    Args:
        n_items: items per epoch (indices ``0 .. n_items - 1``).
        batch_size: items per batch.
        make_batch: ``(indices, epoch) -> batch dict`` (tensors ``(B, ...)``).
        shuffle: a fresh permutation every epoch (training); False keeps index order (evaluation).
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
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.position = 0
        if len(self) == 0:
            raise ValueError(
                f"IndexBatchLoader: {n_items} items give no full batch of {batch_size} for {world_size} "
                "rank(s); lower the batch size (data.max_tokens) or the window (data.max_length)"
            )

    def batches(self, epoch: int) -> list[np.ndarray]:
        """This rank's batches of item indices for ``epoch``."""
        if self.shuffle:
            order = np.random.default_rng(derive_seed(self.seed, epoch)).permutation(self.n_items)
        else:
            order = np.arange(self.n_items)
        stop = len(order) - len(order) % self.batch_size if self.drop_last else len(order)
        chunks = [order[i : i + self.batch_size] for i in range(0, stop, self.batch_size)]
        mine = chunks[self.rank :: self.world_size]
        if self.shuffle and self.world_size > 1:
            mine = mine[: len(chunks) // self.world_size]
        return mine

    def __len__(self) -> int:
        return len(self.batches(self.epoch))

    def __iter__(self) -> Iterator[dict[str, Any]]:
        epoch = self.epoch
        batches = self.batches(epoch)
        while self.position < len(batches):
            indices = batches[self.position]
            # Counted before the yield: a checkpoint taken after receiving this batch resumes after it.
            self.position += 1
            yield self.make_batch(indices, epoch)
        self.epoch = epoch + 1
        self.position = 0

    def set_epoch(self, epoch: int) -> None:
        """Jump to the start of ``epoch``."""
        self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict[str, int]:
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "world_size": self.world_size,
            "rank": self.rank,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume from `state_dict` (seed and world size must match)."""
        for key in ("seed", "world_size"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"IndexBatchLoader.load_state_dict: saved {key}={state[key]}, this loader has "
                    f"{key}={getattr(self, key)}; the batches would differ"
                )
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        if self.position > len(self.batches(self.epoch)):
            raise ValueError(f"IndexBatchLoader.load_state_dict: position {self.position} is past the epoch")
