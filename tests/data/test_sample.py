"""The bundled sample, and smoke checks on the shared data (skipped when ../shared/data is absent)."""

import itertools
from pathlib import Path

import pytest

from favor.data import (
    SAMPLE_SPLITS,
    Alphabet,
    EncodingStats,
    ProteinCorpus,
    read_fasta,
    sample_path,
    unigram_frequencies,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "proteins"
needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(),
    reason=f"shared protein data not found at {SHARED} (only present in the dev checkout)",
)


@pytest.mark.parametrize(("split", "count"), [("train", 600), ("valid", 100), ("test", 100)])
def test_bundled_sample(split: str, count: int) -> None:
    path = sample_path(split)
    records = list(read_fasta(path))
    assert len(records) == count
    assert all(1 <= len(r) <= 1022 for r in records)
    corpus = ProteinCorpus.from_records(records)
    assert len(corpus) == count and corpus.stats.residues_mapped == 0


def test_bundled_splits_are_disjoint_and_total_size_small() -> None:
    names = [{r.name for r in read_fasta(sample_path(s))} for s in SAMPLE_SPLITS]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert sum(sample_path(s).stat().st_size for s in SAMPLE_SPLITS) < 700_000
    assert (sample_path("train").parent / "README.md").is_file()
    with pytest.raises(ValueError, match="split="):
        sample_path("holdout")


def test_unigram_frequencies_of_sample_look_like_proteins() -> None:
    alphabet = Alphabet.protein()
    freq = unigram_frequencies(ProteinCorpus.from_fasta(sample_path("train")))
    # Leucine is the most common residue in Swiss-Prot (about 9.7%), tryptophan among the rarest.
    assert int(freq.argmax()) == alphabet.token_to_id("L")
    assert 0.08 < float(freq[alphabet.token_to_id("L")]) < 0.12
    assert float(freq[alphabet.token_to_id("W")]) < 0.02


@needs_shared
def test_shared_sample_matches_bundled_train() -> None:
    shared = list(itertools.islice(read_fasta(SHARED / "sample.fasta"), 600))
    assert shared == list(read_fasta(sample_path("train")))


@needs_shared
@pytest.mark.parametrize("split", ["valid", "test"])
def test_shared_eval_splits_encode_with_x_policy(split: str) -> None:
    stats = EncodingStats()
    alphabet = Alphabet.protein()
    n = 0
    for record in read_fasta(SHARED / f"{split}.fasta.gz"):
        assert alphabet.encode(record.sequence, name=record.name, unknown="x", stats=stats) is not None
        n += 1
    assert n > 3000 and stats.residues_mapped == 0


@needs_shared
def test_first_record_of_large_gz_is_read_without_reading_the_file() -> None:
    path = SHARED / "train.fasta.gz"
    with open(path, "rb") as fh:
        first = next(read_fasta(fh))
        assert first.name and first.sequence
        assert fh.tell() < path.stat().st_size // 20
