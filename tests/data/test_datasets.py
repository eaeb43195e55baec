"""Corpus, single-protein crops, concatenated windows, unigram frequencies."""

import numpy as np
import pytest
import torch

from favor.data import (
    Alphabet,
    ConcatenatedProteinDataset,
    PackedProteinDataset,
    ProteinCorpus,
    SingleProteinDataset,
    UnknownResidueError,
    unigram_frequencies,
)
from favor.data.batching import collate_batch
from favor.data.datasets import pack_lengths

SEQUENCES = ["MKTAYIAKQR", "ACD", "WYWYWYWYWYWYWYWYWYWY", "MKJ", "GG"]


@pytest.fixture
def corpus() -> ProteinCorpus:
    return ProteinCorpus.from_sequences(SEQUENCES, unknown="x")


def test_corpus_encoding_and_policies(corpus: ProteinCorpus) -> None:
    assert len(corpus) == 5 and corpus.lengths.tolist() == [10, 3, 20, 3, 2]
    assert corpus.sequence(3) == "MKX" and corpus.names[0] == "seq0"
    assert corpus.stats.residues_mapped == 1
    skipped = ProteinCorpus.from_sequences(SEQUENCES, unknown="skip")
    assert len(skipped) == 4 and skipped.stats.records_skipped == 1
    with pytest.raises(UnknownResidueError, match="'seq3'.*position 3"):
        ProteinCorpus.from_sequences(SEQUENCES)
    assert len(ProteinCorpus.from_sequences(SEQUENCES, unknown="x").sequence_ids(-1)) == 2


def test_single_protein_items_wrap_in_cls_eos(corpus: ProteinCorpus) -> None:
    alphabet = corpus.alphabet
    ds = SingleProteinDataset(corpus, max_length=64)
    item = ds[0]
    assert item["input_ids"].tolist() == alphabet.encode(SEQUENCES[0], add_cls=True, add_eos=True)
    assert item["length"] == 12 and item["index"] == 0 and item["name"] == "seq0"
    assert ds.item_lengths().tolist() == [12, 5, 22, 5, 4]


def test_crop_lengths_and_modes(corpus: ProteinCorpus) -> None:
    alphabet = corpus.alphabet
    full = alphabet.encode(SEQUENCES[2], add_cls=True, add_eos=True)
    start = SingleProteinDataset(corpus, max_length=8, crop="start")
    assert start[2]["input_ids"].tolist() == full[:8]
    center = SingleProteinDataset(corpus, max_length=8, crop="center")
    assert center[2]["input_ids"].tolist() == full[7:15]
    random = SingleProteinDataset(corpus, max_length=8, crop="random", seed=0)
    assert random.item_lengths().tolist() == [8, 5, 8, 5, 4]
    for i in range(len(random)):
        assert len(random[i]["input_ids"]) == random.item_lengths()[i]
    starts = set()
    for epoch in range(30):
        random.set_epoch(epoch)
        window = random[2]["input_ids"].tolist()
        first = random.crop_start(2)
        assert window == full[first : first + 8]
        starts.add(first)
    assert len(starts) > 5 and max(starts) <= len(full) - 8


def test_random_crop_is_a_function_of_seed_epoch_index(corpus: ProteinCorpus) -> None:
    a = SingleProteinDataset(corpus, max_length=6, seed=3)
    b = SingleProteinDataset(corpus, max_length=6, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert all(torch.equal(a[i]["input_ids"], b[i]["input_ids"]) for i in range(len(a)))


def test_concatenated_windows_cover_stream_without_overlap(corpus: ProteinCorpus) -> None:
    alphabet = corpus.alphabet
    expected = []
    for seq in SEQUENCES:
        expected += alphabet.encode(seq, unknown="x") + [alphabet.eos_id]
    for window in (7, 13, len(expected)):
        ds = ConcatenatedProteinDataset(corpus, window=window)
        items = [ds[i] for i in range(len(ds))]
        assert all(len(item["input_ids"]) == window for item in items)
        joined = torch.cat([item["input_ids"][: item["length"]] for item in items]).tolist()
        assert joined == expected
        pad = items[-1]["input_ids"][items[-1]["length"] :]
        assert (pad == alphabet.pad_id).all()
        assert sum(int((item["input_ids"] == alphabet.eos_id).sum()) for item in items) == len(SEQUENCES)
        dropped = ConcatenatedProteinDataset(corpus, window=window, drop_last=True)
        assert len(dropped) == len(expected) // window
        assert all(dropped[i]["length"] == window for i in range(len(dropped)))
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_concatenated_order_seed(corpus: ProteinCorpus) -> None:
    ds = ConcatenatedProteinDataset(corpus, window=8, order_seed=1)
    assert sorted(ds.order.tolist()) == list(range(len(corpus)))
    assert ds.stream_length == corpus.total_residues + len(corpus)


def test_unigram_frequencies(corpus: ProteinCorpus) -> None:
    alphabet = corpus.alphabet
    freq = unigram_frequencies(corpus)
    assert freq.shape == (alphabet.vocab_size,) and freq.dtype == torch.float64
    assert torch.isclose(freq.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert (freq[list(alphabet.special_ids)] == 0).all()
    assert freq[alphabet.token_to_id("W")] == pytest.approx(10 / corpus.total_residues)
    from_dataset = unigram_frequencies(SingleProteinDataset(corpus, max_length=8))
    assert torch.equal(freq, from_dataset)
    from_strings = unigram_frequencies(["MKX"], alphabet=Alphabet.protein())
    assert from_strings[alphabet.token_to_id("M")] == pytest.approx(1 / 3)
    ids = [torch.tensor(alphabet.encode("AC", add_cls=True, add_eos=True))]
    assert unigram_frequencies(ids)[alphabet.token_to_id("A")] == pytest.approx(0.5)
    smoothed = unigram_frequencies(corpus, pseudocount=1.0)
    assert (smoothed[list(alphabet.residue_ids)] > 0).all()
    with pytest.raises(ValueError, match="no residues"):
        unigram_frequencies([np.array([0, 1, 2])])


def test_pack_lengths_places_every_item_once_within_capacity() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 100, size=500)
    rows = pack_lengths(lengths, 128)
    flat = sorted(i for row in rows for i in row)
    assert flat == list(range(500))
    assert all(lengths[row].sum() <= 128 for row in rows)
    # Best-fit decreasing is near the bound: no more than 2% more rows than total / capacity.
    assert len(rows) <= 1.02 * np.ceil(lengths.sum() / 128)
    with pytest.raises(ValueError, match="lengths must be in"):
        pack_lengths(np.array([129]), 128)


def test_packed_rows_hold_whole_proteins_with_segment_ids(corpus: ProteinCorpus) -> None:
    single = SingleProteinDataset(corpus, max_length=16, crop="start")
    packed = PackedProteinDataset(single)
    seen = []
    for row in range(len(packed)):
        item = packed[row]
        assert item["length"] == len(item["input_ids"]) <= 16
        segments = item["segment_ids"]
        for segment, index in enumerate(packed.rows[row]):
            assert item["input_ids"][segments == segment].tolist() == single[index]["input_ids"].tolist()
            seen.append(index)
    assert sorted(seen) == list(range(len(corpus)))
    batch = collate_batch([packed[0], packed[1]], alphabet=corpus.alphabet, objective="clm")
    ids, labels = batch["segment_ids"], batch["labels"]
    assert (ids[batch["padding_mask"]] == -1).all()
    # The last token of a protein has no next-token label inside a packed row.
    last = torch.zeros_like(batch["padding_mask"])
    last[:, :-1] = (ids[:, 1:] != ids[:, :-1]) & (ids[:, :-1] >= 0)
    assert last.any() and (labels[last] == -100).all()
