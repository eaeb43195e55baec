"""``EpochCursor``: where a resumable batch stream stands, and which batches of an epoch are this rank's.

Every resumable loader of ``favor.data`` (the protein batch samplers behind ``ProteinBatchLoader``,
``IndexBatchLoader``, ``StreamBatchLoader``) is an epoch cursor over a batch list: each epoch's global
batch list is a pure function of (seed, epoch) that the loader supplies, and the cursor owns everything
else, so the loaders share one sharding rule and one resume format:

* sharding (``shard_batches``): batch ``i`` of an epoch goes to rank ``i % world_size``. Training shards
  (``even_shards=True``) drop the last ``len % world_size`` batches so every rank runs the same number of
  steps (distributed training hangs otherwise); evaluation shards (``even_shards=False``) keep them, so
  ranks differ by at most one batch (a rank may get none) and together cover every batch exactly once.
* position: ``epoch`` and ``position`` (batches of this rank's epoch already handed out). Iterating
  (``run``) counts a batch before yielding it and, run to the end, moves to the next epoch.
* state: ``{"epoch", "position", "seed", "rank", "world_size"}``, plain ints (JSON). Loading refuses a
  state saved with another seed or world size (the stream would differ), naming the key and both values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["EpochCursor", "Resumable", "check_saved", "shard_batches"]

T = TypeVar("T")


def shard_batches(batches: Sequence[T], *, rank: int, world_size: int, even: bool) -> list[T]:
    """Rank ``rank``'s batches of one epoch: ``batches[rank], batches[rank + world_size], ...``.

    ``even`` (training) first drops the last ``len(batches) % world_size`` batches, so every rank gets
    ``len(batches) // world_size``; otherwise (evaluation) the ranks together get every batch once.
    """
    if even:
        batches = batches[: len(batches) - len(batches) % world_size]
    return list(batches[rank::world_size])


def check_saved(owner: str, state: Mapping[str, Any], expected: Mapping[str, int]) -> None:
    """Refuse ``state`` when it saved another value for a key of ``expected`` (absent keys pass)."""
    for key, value in expected.items():
        if key in state and state[key] != value:
            raise ValueError(
                f"{owner}.load_state_dict: the saved state has {key}={state[key]} but this loader has "
                f"{key}={value}; the data stream would differ"
            )


class EpochCursor(Generic[T]):
    """Epoch, position and rank shard of a stream of batches whose epochs are pure functions of integers.

    Args:
        global_batches: ``epoch -> every rank's batches of that epoch``, in order (deterministic).
        seed: the seed ``global_batches`` draws from; saved and checked, never used here.
        rank, world_size: this process's share (see ``shard_batches``).
        even_shards: True for training (equal shards), False for evaluation (cover every batch).
        owner: the loader's name, for error messages.
    """

    def __init__(
        self,
        global_batches: Callable[[int], Sequence[T]],
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        even_shards: bool = True,
        owner: str,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"{owner}: need 0 <= rank < world_size, got {rank=}, {world_size=}")
        self.global_batches = global_batches
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.even_shards, self.owner = even_shards, owner
        self.epoch = 0
        self.position = 0
        self._cache: tuple[int, list[T]] | None = None

    def batches(self, epoch: int | None = None) -> list[T]:
        """This rank's batches of ``epoch`` (default: the current epoch), including those handed out."""
        epoch = self.epoch if epoch is None else epoch
        if self._cache is None or self._cache[0] != epoch:
            every = self.global_batches(epoch)
            shard = shard_batches(every, rank=self.rank, world_size=self.world_size, even=self.even_shards)
            self._cache = (epoch, shard)
        return self._cache[1]

    def __len__(self) -> int:
        return len(self.batches())

    def run(self) -> Iterator[T]:
        """This rank's batches of the current epoch from ``position`` on; at the end, the next epoch."""
        epoch = self.epoch
        batches = self.batches(epoch)
        while self.position < len(batches):
            batch = batches[self.position]
            # Counted before the yield: a checkpoint taken after receiving this batch resumes after it.
            self.position += 1
            yield batch
        self.epoch, self.position = epoch + 1, 0

    def set_epoch(self, epoch: int) -> None:
        """Jump to the start of ``epoch``."""
        self.epoch, self.position = epoch, 0

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position", "seed", "rank", "world_size"}``: plain ints, JSON-serialisable."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "rank": self.rank,
            "world_size": self.world_size,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume at ``state``'s epoch and position.

        ``seed`` and ``world_size``, where saved, must match. ``rank`` is not checked: training shards
        have equal lengths, so the state of rank 0 (the one a checkpoint keeps) restores every rank.
        """
        missing = [key for key in ("epoch", "position") if key not in state]
        if missing:
            raise ValueError(f"{self.owner}.load_state_dict: the saved state lacks {', '.join(missing)}")
        check_saved(self.owner, state, {"seed": self.seed, "world_size": self.world_size})
        epoch, position = int(state["epoch"]), int(state["position"])
        size = len(self.batches(epoch))
        if not 0 <= position <= size:
            raise ValueError(
                f"{self.owner}.load_state_dict: position={position} outside [0, {size}] (this rank's "
                f"batches of epoch {epoch})"
            )
        self.epoch, self.position = epoch, position


class Resumable:
    """The public face of an ``EpochCursor`` on a loader that sets (or defines) ``self.cursor``.

    ``epoch``, ``position``, ``seed``, ``rank``, ``world_size`` (read-only), ``batches``, ``len``,
    ``set_epoch``, ``state_dict`` and ``load_state_dict`` all come from the cursor.
    """

    cursor: EpochCursor[Any]

    @property
    def epoch(self) -> int:
        return self.cursor.epoch

    @property
    def position(self) -> int:
        return self.cursor.position

    @property
    def seed(self) -> int:
        return self.cursor.seed

    @property
    def rank(self) -> int:
        return self.cursor.rank

    @property
    def world_size(self) -> int:
        return self.cursor.world_size

    def batches(self, epoch: int | None = None) -> list[Any]:
        """This rank's batches of ``epoch`` (default: the current epoch)."""
        return self.cursor.batches(epoch)

    def __len__(self) -> int:
        """Batches in the current epoch for this rank (including those already handed out)."""
        return len(self.cursor)

    def set_epoch(self, epoch: int) -> None:
        """Jump to the start of ``epoch``."""
        self.cursor.set_epoch(epoch)

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position", "seed", "rank", "world_size"}``: see ``EpochCursor.state_dict``."""
        return self.cursor.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from ``state_dict()``: see ``EpochCursor.load_state_dict``."""
        self.cursor.load_state_dict(state)
