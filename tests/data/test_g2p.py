"""The g2p data: a deterministic split by word that keeps every homograph in one part, the vocabulary's
errors, and batches aligned for teacher forcing."""

import pytest

from favor.data.g2p import (
    G2PVocabulary,
    g2p_batch,
    g2p_part,
    load_cmudict,
    split_dictionary,
    strip_stress,
)
from favor.data.masking import IGNORE_INDEX

FRACTIONS = {"valid_fraction": 0.02, "test_fraction": 0.1}


def test_the_part_is_a_function_of_the_word_alone():
    words = ["read", "live", "pronunciation", "zebra", "a", "o'clock"]
    first = [g2p_part(w, **FRACTIONS) for w in words]
    assert first == [g2p_part(w, **FRACTIONS) for w in reversed(words)][::-1]
    # Growing the test share only moves words into test, never between train and valid.
    bigger = {"valid_fraction": 0.02, "test_fraction": 0.2}
    for word in load_cmudict():
        before, after = g2p_part(word, **FRACTIONS), g2p_part(word, **bigger)
        assert after == before or after == "test"


def test_split_partitions_the_dictionary_and_keeps_homographs_together():
    dictionary = load_cmudict()
    parts = {p: split_dictionary(dictionary, p, **FRACTIONS) for p in ("train", "valid", "test")}
    words = {p: {w for w, _ in items} for p, items in parts.items()}
    assert not words["train"] & words["test"] and not words["train"] & words["valid"]
    assert not words["valid"] & words["test"]
    assert sum(map(len, words.values())) == len(dictionary) > 120_000
    # Every pronunciation of a word travels with it (homographs such as "read" never cross a part).
    for items in parts.values():
        for word, prons in items:
            assert prons == dictionary[word]
    homographs = [w for w, p in dictionary.items() if len(p) > 1]
    assert len(homographs) > 5_000 and len(dictionary["read"]) == 2
    assert 0.08 < len(words["test"]) / len(dictionary) < 0.12
    assert parts["test"] == split_dictionary(dictionary, "test", **FRACTIONS)


def test_vocabulary_names_bad_characters():
    vocab = G2PVocabulary()
    assert vocab.vocab_size == 4 + 29 + 84
    with pytest.raises(ValueError, match=r"character '7' at position 2"):
        vocab.encode_word("ab7")
    with pytest.raises(ValueError, match="empty"):
        vocab.encode_word("")
    assert vocab.decode_phonemes(vocab.encode_phonemes(["R", "EH1", "D"]) + [vocab.eos_id]) == [
        "R",
        "EH1",
        "D",
    ]


def test_batch_is_right_padded_and_labels_are_shifted():
    vocab = G2PVocabulary()
    batch = g2p_batch(vocab, [("read", ("R", "EH1", "D")), ("a", ("AH0",))])
    assert batch["input_ids"].shape == (2, 4) and batch["padding_mask"][1].tolist() == [
        False,
        True,
        True,
        True,
    ]
    assert batch["decoder_input_ids"][0].tolist() == [vocab.bos_id, *vocab.encode_phonemes(["R", "EH1", "D"])]
    assert batch["labels"][0].tolist() == [*vocab.encode_phonemes(["R", "EH1", "D"]), vocab.eos_id]
    assert batch["labels"][1].tolist() == [vocab.ids["AH0"], vocab.eos_id, IGNORE_INDEX, IGNORE_INDEX]
    assert batch["decoder_padding_mask"][1].tolist() == [False, False, True, True]


def test_the_dictionary_without_stress_drops_the_digits_and_merges_what_then_coincides():
    assert strip_stress(["R", "EH1", "K", "ER0", "D"]) == ("R", "EH", "K", "ER", "D")
    stressed, plain = load_cmudict(), load_cmudict(stress=False)
    assert plain.keys() == stressed.keys()
    merged = 0
    for word, prons in stressed.items():
        expected = []
        for pron in prons:
            bare = tuple(p.rstrip("012") for p in pron)
            if bare not in expected:
                expected.append(bare)
        assert plain[word] == tuple(expected), word
        merged += len(prons) - len(expected)
    assert merged > 100  # pronunciations that differ only in stress become one
    assert not any(ch in "012" for prons in plain.values() for pron in prons for p in pron for ch in p)
    assert load_cmudict()["read"] == (("R", "EH1", "D"), ("R", "IY1", "D"))  # the cache keeps both
