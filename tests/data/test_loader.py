"""ProteinBatchLoader: exact resume from a JSON state, fixed evaluation masks, workers."""

import json

import pytest
import torch

from favor.data import (
    ConcatenatedProteinDataset,
    FixedSizeBatchSampler,
    ProteinBatchLoader,
    ProteinCorpus,
    SingleProteinDataset,
    TokenBudgetBatchSampler,
    sample_path,
)


@pytest.fixture(scope="module")
def corpus() -> ProteinCorpus:
    return ProteinCorpus.from_fasta(sample_path("valid"))


def _loader(corpus: ProteinCorpus, **kwargs) -> ProteinBatchLoader:
    ds = SingleProteinDataset(corpus, max_length=128, crop="random", seed=1)
    sampler = TokenBudgetBatchSampler(ds.item_lengths(), max_tokens=1024, seed=2, pad_to_multiple_of=8)
    return ProteinBatchLoader(
        ds, batch_sampler=sampler, objective="mlm", mask_seed=3, pad_to_multiple_of=8, **kwargs
    )


def _same(a: list[dict], b: list[dict]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in ("input_ids", "labels")
    )


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_gives_the_exact_next_batches(corpus: ProteinCorpus, num_workers: int) -> None:
    reference = _loader(corpus)
    epoch0 = list(reference)
    epoch1 = list(reference)
    assert not _same(epoch0, epoch1)

    run = _loader(corpus, num_workers=num_workers)
    it = iter(run)
    head = [next(it) for _ in range(5)]
    state = json.loads(json.dumps(run.state_dict()))
    assert state["epoch"] == 0 and state["position"] == 5
    assert _same(head, epoch0[:5])

    resumed = _loader(corpus, num_workers=num_workers)
    resumed.load_state_dict(state)
    assert _same(list(resumed), epoch0[5:])
    assert resumed.state_dict()["epoch"] == 1
    assert _same(list(resumed), epoch1)


def test_load_state_rejects_other_seeds(corpus: ProteinCorpus) -> None:
    state = _loader(corpus).state_dict()
    other = _loader(corpus)
    other.mask_seed = 99
    with pytest.raises(ValueError, match="mask_seed"):
        other.load_state_dict(state)


def test_evaluation_masks_fixed_across_epochs_and_batchings(corpus: ProteinCorpus) -> None:
    def labels_per_item(batch_size: int) -> list[torch.Tensor]:
        ds = SingleProteinDataset(corpus, max_length=128, crop="start")
        sampler = FixedSizeBatchSampler(len(ds), batch_size=batch_size, shuffle=False)
        loader = ProteinBatchLoader(
            ds, batch_sampler=sampler, objective="mlm", mask_seed=0, masks_per_epoch=False
        )
        epochs = []
        for _ in range(2):
            epochs.append(
                [
                    labels[~pad]
                    for batch in loader
                    for labels, pad in zip(batch["labels"], batch["padding_mask"], strict=True)
                ]
            )
        assert all(torch.equal(x, y) for x, y in zip(*epochs, strict=True))
        return epochs[0]

    a, b = labels_per_item(4), labels_per_item(7)
    assert len(a) == len(corpus)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_concatenated_windows_through_loader(corpus: ProteinCorpus) -> None:
    ds = ConcatenatedProteinDataset(corpus, window=512)
    sampler = FixedSizeBatchSampler(len(ds), batch_size=4, seed=0)
    loader = ProteinBatchLoader(ds, batch_sampler=sampler, objective="clm", include_names=True)
    batches = list(loader)
    assert sum(len(b["names"]) for b in batches) == len(ds)
    assert all(b["input_ids"].shape[1] == 512 for b in batches)
    n_real = sum(int((~b["padding_mask"]).sum()) for b in batches)
    assert n_real == ds.stream_length
