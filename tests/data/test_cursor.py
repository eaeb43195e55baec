"""Every resumable loader on one ``EpochCursor``: exact resume, one sharding rule, one state validation.

Each test runs over every loader: the two protein batch samplers, ``ProteinBatchLoader``,
``IndexBatchLoader`` and (where it applies: it runs in one process) ``StreamBatchLoader``.
"""

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from favor.data import (
    FixedSizeBatchSampler,
    ProteinBatchLoader,
    ProteinCorpus,
    SingleProteinDataset,
    TokenBudgetBatchSampler,
)
from favor.data.arrays import IndexBatchLoader
from favor.data.cursor import shard_batches
from favor.data.text import StreamBatchLoader

# 11 batches an epoch for every sharded kind: a ragged tail for 2 and for 3 ranks.
LENGTHS = np.random.default_rng(4).integers(3, 40, size=60)
SEQUENCES = ["".join(np.random.default_rng(i).choice(list("ACDEFGHIKLMNPQRSTVWY"), 5 + i)) for i in range(41)]


def budget(
    *, seed: int = 3, rank: int = 0, world_size: int = 1, train: bool = True
) -> TokenBudgetBatchSampler:
    shard = {"seed": seed, "rank": rank, "world_size": world_size}
    return TokenBudgetBatchSampler(LENGTHS, max_tokens=160, shuffle=train, even_shards=train, **shard)


def fixed(*, seed: int = 3, rank: int = 0, world_size: int = 1, train: bool = True) -> FixedSizeBatchSampler:
    shard = {"seed": seed, "rank": rank, "world_size": world_size}
    return FixedSizeBatchSampler(41, batch_size=4, shuffle=train, even_shards=train, **shard)


def protein(*, seed: int = 3, rank: int = 0, world_size: int = 1, train: bool = True) -> ProteinBatchLoader:
    corpus = ProteinCorpus.from_sequences(SEQUENCES)
    ds = SingleProteinDataset(corpus, max_length=24, crop="random" if train else "start", seed=1)
    sampler = FixedSizeBatchSampler(
        len(ds), batch_size=4, shuffle=train, even_shards=train, seed=seed, rank=rank, world_size=world_size
    )
    return ProteinBatchLoader(
        ds, batch_sampler=sampler, objective="mlm", mask_seed=5, masks_per_epoch=train, include_names=True
    )


def index(*, seed: int = 3, rank: int = 0, world_size: int = 1, train: bool = True) -> IndexBatchLoader:
    def make_batch(indices: np.ndarray, epoch: int) -> dict[str, Any]:
        return {"items": indices.tolist(), "epoch": epoch}

    return IndexBatchLoader(
        n_items=53,
        batch_size=5,
        make_batch=make_batch,
        shuffle=train,
        seed=seed,
        rank=rank,
        world_size=world_size,
    )


def stream(*, seed: int = 3, rank: int = 0, world_size: int = 1, train: bool = True) -> StreamBatchLoader:
    assert (rank, world_size) == (0, 1), "StreamBatchLoader runs in one process"
    return StreamBatchLoader(np.arange(400), batch_size=3, window=8, seed=seed)


Make = Callable[..., Any]
SHARDED = [budget, fixed, protein, index]
ALL = [*SHARDED, stream]


def _key(batch: Any) -> Any:
    """A comparable copy of a batch (index list or dict of tensors)."""
    if isinstance(batch, list):
        return list(batch)
    return {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _items(batch: Any) -> list[int]:
    """The dataset indices in a batch."""
    if isinstance(batch, list):
        return list(batch)
    if "names" in batch:
        return [int(name.removeprefix("seq")) for name in batch["names"]]
    return list(batch["items"])


def _take(loader: Any, n: int) -> list[Any]:
    """The next ``n`` batches, epoch after epoch, stopping right after the n-th (as a training loop does)."""
    out: list[Any] = []
    while len(out) < n:
        for batch in loader:
            out.append(_key(batch))
            if len(out) == n:
                break
    return out


@pytest.mark.parametrize("where", ["mid", "end", "next"])
@pytest.mark.parametrize("make", ALL, ids=lambda m: m.__name__)
def test_resume_yields_exactly_the_remaining_batches(make: Make, where: str) -> None:
    n = len(make())
    epoch, position = {"mid": (0, 3), "end": (0, n), "next": (1, 2)}[where]
    k = epoch * n + position
    reference = _take(make(), 3 * n)
    assert reference[:n] != reference[n : 2 * n], "epochs should differ"
    run = make()
    assert _take(run, k) == reference[:k]
    state = json.loads(json.dumps(run.state_dict()))
    assert (state["epoch"], state["position"]) == (epoch, position)
    resumed = make()
    resumed.load_state_dict(state)
    assert _take(resumed, 3 * n - k) == reference[k:]


@pytest.mark.parametrize("make", SHARDED, ids=lambda m: m.__name__)
def test_every_rank_resumes_from_rank_zeros_state(make: Make) -> None:
    # A checkpoint keeps rank 0's loader state (without "rank"); every rank resumes from it.
    first = make(rank=0, world_size=2)
    _take(first, 3)
    state = {k: v for k, v in first.state_dict().items() if k != "rank"}
    resumed = make(rank=1, world_size=2)
    resumed.load_state_dict(state)
    n = len(resumed)
    assert _take(resumed, 2 * n - 3) == _take(make(rank=1, world_size=2), 2 * n)[3:]


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("make", SHARDED, ids=lambda m: m.__name__)
def test_batch_i_goes_to_rank_i_mod_world_size(make: Make, world_size: int, train: bool) -> None:
    for epoch in (0, 1):
        single = make(train=train)
        single.set_epoch(epoch)
        every = [_key(b) for b in single]
        assert len(every) % world_size, "the test needs a ragged tail"
        shards = []
        for rank in range(world_size):
            loader = make(rank=rank, world_size=world_size, train=train)
            loader.set_epoch(epoch)
            shards.append([_key(b) for b in loader])
        kept = len(every) - len(every) % world_size if train else len(every)
        for rank, shard in enumerate(shards):
            assert shard == every[rank:kept:world_size]
        items = [i for shard in shards for batch in shard for i in _items(batch)]
        assert len(items) == len(set(items)), "ranks' shards overlap"
        if train:
            assert len({len(shard) for shard in shards}) == 1, "training shards of unequal length"
        else:
            assert sorted(items) == sorted(i for batch in every for i in _items(batch)), "a batch is missing"


def test_shard_rule_on_a_ragged_list() -> None:
    batches = list(range(7))
    assert [shard_batches(batches, rank=r, world_size=3, even=True) for r in range(3)] == [
        [0, 3],
        [1, 4],
        [2, 5],
    ]
    assert [shard_batches(batches, rank=r, world_size=3, even=False) for r in range(3)] == [
        [0, 3, 6],
        [1, 4],
        [2, 5],
    ]


def test_evaluation_rank_may_get_no_batch() -> None:
    # 3 batches over 4 ranks: the last evaluation rank has nothing to do, the others cover everything.
    def make_batch(indices: np.ndarray, _epoch: int) -> dict[str, Any]:
        return {"items": indices.tolist()}

    loaders = [
        IndexBatchLoader(n_items=15, batch_size=5, make_batch=make_batch, rank=r, world_size=4)
        for r in range(4)
    ]
    assert [len(loader) for loader in loaders] == [1, 1, 1, 0]
    assert sorted(i for loader in loaders for b in loader for i in b["items"]) == list(range(15))
    with pytest.raises(ValueError, match="no full batch"):
        IndexBatchLoader(n_items=15, batch_size=5, make_batch=make_batch, shuffle=True, rank=3, world_size=4)


@pytest.mark.parametrize("key", ["seed", "world_size"])
@pytest.mark.parametrize("make", ALL, ids=lambda m: m.__name__)
def test_refuses_a_state_of_another_seed_or_world_size(make: Make, key: str) -> None:
    loader = make()
    state = loader.state_dict()
    saved = state[key] + 1
    with pytest.raises(ValueError, match=rf"{key}={saved} but this loader has {key}={state[key]}"):
        make().load_state_dict({**state, key: saved})
    with pytest.raises(ValueError, match="position"):
        make().load_state_dict({**state, "position": len(loader) + 1})


# State dicts as the loaders wrote them before they shared a cursor (epoch 1, two batches handed out),
# and the items of the batch that came next then (taken from that code): checkpoints resume the same stream.
OLD_STATES = {
    "budget": ({"epoch": 1, "position": 2, "seed": 3, "rank": 0, "world_size": 1}, [9, 39, 12, 45, 16]),
    "fixed": ({"epoch": 1, "position": 2, "seed": 3, "rank": 0, "world_size": 1}, [13, 3, 25, 29]),
    "protein": (
        {"epoch": 1, "position": 2, "seed": 3, "mask_seed": 5, "world_size": 1, "rank": 0},
        [13, 3, 25, 29],
    ),
    "index": ({"epoch": 1, "position": 2, "seed": 3, "world_size": 1, "rank": 0}, [4, 17, 10, 38, 50]),
    "stream": ({"epoch": 1, "position": 2, "seed": 3, "world_size": 1}, [16, 149, 282]),
}


def _first_column(batch: Any) -> list[int]:
    return batch["input_ids"][:, 0].tolist() if "reset" in batch else _items(batch)


@pytest.mark.parametrize("make", ALL, ids=lambda m: m.__name__)
def test_loads_a_state_saved_before_the_shared_cursor(make: Make) -> None:
    old, following = OLD_STATES[make.__name__]
    assert set(make().state_dict()) == set(old)
    for state in (old, {k: v for k, v in old.items() if k != "rank"}):  # the trainer drops "rank"
        loader = make()
        loader.load_state_dict(state)
        assert _first_column(next(iter(loader))) == following
        assert loader.state_dict() == {**old, "position": 3}
