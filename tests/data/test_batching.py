"""Collation, token-budget and fixed-size batch samplers, sharding and sampler state."""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from favor.data import (
    IGNORE_INDEX,
    Alphabet,
    Collator,
    FixedSizeBatchSampler,
    ProteinCorpus,
    SingleProteinDataset,
    TokenBudgetBatchSampler,
    collate_batch,
)


@pytest.fixture
def alphabet() -> Alphabet:
    return Alphabet.protein()


@pytest.fixture
def lengths() -> np.ndarray:
    return np.random.default_rng(0).integers(5, 300, size=500)


def _items(alphabet: Alphabet, seqs: list[str]) -> list[dict]:
    return [
        {"input_ids": torch.tensor(alphabet.encode(s, add_cls=True, add_eos=True)), "length": len(s) + 2,
         "index": i, "name": f"p{i}"}
        for i, s in enumerate(seqs)
    ]  # fmt: skip


def test_collate_pads_and_masks(alphabet: Alphabet) -> None:
    batch = collate_batch(_items(alphabet, ["MKTAY", "AC"]), alphabet=alphabet, include_names=True)
    assert set(batch) == {"input_ids", "padding_mask", "names"}
    assert batch["input_ids"].shape == (2, 7) and batch["input_ids"].dtype == torch.long
    assert batch["padding_mask"].dtype == torch.bool
    assert batch["padding_mask"].tolist() == [[False] * 7, [False] * 4 + [True] * 3]
    assert (batch["input_ids"][1, 4:] == alphabet.pad_id).all()
    assert batch["names"] == ["p0", "p1"]
    padded = collate_batch(_items(alphabet, ["MKTAY"]), alphabet=alphabet, pad_to_multiple_of=8)
    assert padded["input_ids"].shape == (1, 8)
    fixed = collate_batch([torch.tensor([4, 5])], alphabet=alphabet, pad_to_length=6)
    assert fixed["padding_mask"].tolist() == [[False, False] + [True] * 4]


def test_collate_padding_mask_uses_item_length(alphabet: Alphabet) -> None:
    # A pre-padded item (the last concatenated window): its length is shorter than its tensor.
    item = {"input_ids": torch.tensor([4, 5, 3, 0, 0]), "length": 3, "index": 0, "name": "w0"}
    batch = collate_batch([item], alphabet=alphabet, objective="mlm", probability=1.0, mask_seed=0)
    assert batch["padding_mask"].tolist() == [[False] * 3 + [True] * 2]
    assert (batch["labels"][0, 3:] == IGNORE_INDEX).all()


def test_collate_mlm_and_clm_labels(alphabet: Alphabet) -> None:
    items = _items(alphabet, ["MKTAYIAKQR" * 5, "AC"])
    mlm = collate_batch(items, alphabet=alphabet, objective="mlm", mask_seed=1)
    assert mlm["labels"].shape == mlm["input_ids"].shape
    assert (mlm["labels"][mlm["padding_mask"]] == IGNORE_INDEX).all()
    # Keyed masks: row 0's masks do not depend on what else is in the batch.
    alone = collate_batch(items[:1], alphabet=alphabet, objective="mlm", mask_seed=1)
    assert torch.equal(alone["labels"][0], mlm["labels"][0])
    clm = collate_batch(items, alphabet=alphabet, objective="clm")
    assert clm["labels"][1].tolist() == items[1]["input_ids"][1:].tolist() + [IGNORE_INDEX] * 49
    with pytest.raises(ValueError, match="objective"):
        collate_batch(items, alphabet=alphabet, objective="mask")  # type: ignore[arg-type]


def test_token_budget_respected_and_complete(lengths: np.ndarray) -> None:
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=2000, buffer_size=100, pad_to_multiple_of=8)
    batches = sampler.batches()
    for batch in batches:
        padded = -(-int(lengths[batch].max()) // 8) * 8
        assert len(batch) * padded <= 2000
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    # Bucketing: sorting within buffers packs far tighter than the 300/5 worst case.
    waste = sum(len(b) * lengths[b].max() - lengths[b].sum() for b in batches) / lengths.sum()
    assert waste < 0.15


def test_token_budget_epochs_differ_and_repeat(lengths: np.ndarray) -> None:
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=2000, seed=4)
    assert sampler.batches(0) != sampler.batches(1)
    assert sampler.batches(1) == TokenBudgetBatchSampler(lengths, max_tokens=2000, seed=4).batches(1)
    fixed = TokenBudgetBatchSampler(lengths, max_tokens=2000, shuffle=False)
    assert fixed.batches(0) == fixed.batches(1)


def test_token_budget_limits(lengths: np.ndarray) -> None:
    with pytest.raises(ValueError, match="item .* > max_tokens=100"):
        TokenBudgetBatchSampler(lengths, max_tokens=100)
    capped = TokenBudgetBatchSampler(lengths, max_tokens=100_000, max_batch_size=7)
    assert max(len(b) for b in capped.batches()) == 7


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("even", [True, False])
def test_shards_disjoint_and_covering(lengths: np.ndarray, world_size: int, even: bool) -> None:
    def make(rank: int, cls: str):
        if cls == "budget":
            return TokenBudgetBatchSampler(
                lengths, max_tokens=3000, seed=2, rank=rank, world_size=world_size, even_shards=even
            )
        return FixedSizeBatchSampler(
            len(lengths), batch_size=16, seed=2, rank=rank, world_size=world_size, even_shards=even
        )

    for cls in ("budget", "fixed"):
        samplers = [make(rank, cls) for rank in range(world_size)]
        shards = [set(i for b in s.batches() for i in b) for s in samplers]
        for a in range(world_size):
            for b in range(a + 1, world_size):
                assert not shards[a] & shards[b]
        union = set().union(*shards)
        every = samplers[0].global_batches(0)
        if even:
            assert len({len(s) for s in samplers}) == 1
            dropped = every[len(every) - len(every) % world_size :]
            assert union == set(range(len(lengths))) - {i for b in dropped for i in b}
        else:
            assert union == set(range(len(lengths)))


def test_fixed_size_sampler() -> None:
    sampler = FixedSizeBatchSampler(10, batch_size=4, shuffle=False)
    assert sampler.batches() == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    dropped = FixedSizeBatchSampler(10, batch_size=4, drop_last=True, shuffle=False)
    assert dropped.batches()[-1] == [4, 5, 6, 7]


def test_sampler_state_resumes_and_is_json(lengths: np.ndarray) -> None:
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=2000, seed=5)
    it = iter(sampler)
    seen = [next(it) for _ in range(3)]
    state = json.loads(json.dumps(sampler.state_dict()))
    rest = list(it)
    assert sampler.epoch == 1 and sampler.position == 0
    resumed = TokenBudgetBatchSampler(lengths, max_tokens=2000, seed=5)
    resumed.load_state_dict(state)
    assert list(resumed) == rest
    assert seen + rest == sampler.batches(0)
    with pytest.raises(ValueError, match="seed"):
        TokenBudgetBatchSampler(lengths, max_tokens=2000, seed=6).load_state_dict(state)
    with pytest.raises(ValueError, match="rank"):
        TokenBudgetBatchSampler(lengths, max_tokens=2000, rank=2, world_size=2)


def test_works_with_dataloader(alphabet: Alphabet) -> None:
    corpus = ProteinCorpus.from_sequences(["MKTAYIAKQR", "ACD", "WY" * 30, "GG", "PPPPP"])
    ds = SingleProteinDataset(corpus, max_length=16, crop="start")
    sampler = TokenBudgetBatchSampler(ds.item_lengths(), max_tokens=32, seed=0)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=Collator(alphabet=alphabet, objective="mlm"))
    batches = list(loader)
    assert sum(b["input_ids"].shape[0] for b in batches) == len(ds)
    assert all(b["input_ids"].numel() <= 32 for b in batches)
    plain = DataLoader(ds, batch_size=2, collate_fn=Collator(alphabet=alphabet, objective="clm"))
    assert [b["input_ids"].shape[0] for b in plain] == [2, 2, 1]
