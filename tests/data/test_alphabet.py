"""Alphabet: id layout, round trips, unknown-residue errors and policies, serialisation."""

import json

import numpy as np
import pytest
import torch

from favor.data import Alphabet, EncodingStats, UnknownResidueError


@pytest.fixture
def alphabet() -> Alphabet:
    return Alphabet.protein()


def test_layout(alphabet: Alphabet) -> None:
    assert alphabet.vocab_size == len(alphabet) == 29
    assert (alphabet.pad_id, alphabet.mask_id, alphabet.cls_id, alphabet.eos_id) == (0, 1, 2, 3)
    assert alphabet.tokens[:4] == ("<pad>", "<mask>", "<cls>", "<eos>")
    assert alphabet.special_ids == (0, 1, 2, 3)
    assert "".join(alphabet.id_to_token(i) for i in alphabet.standard_ids) == "ACDEFGHIKLMNPQRSTVWY"
    assert "".join(alphabet.id_to_token(i) for i in alphabet.residue_ids) == "ACDEFGHIKLMNPQRSTVWYXBZUO"
    assert "<unk>" not in alphabet.tokens
    assert alphabet.id_to_token(alphabet.unknown_residue_id) == "X"


def test_round_trip_and_specials(alphabet: Alphabet) -> None:
    seq = "MKTAYIAKQRQISFVKSHFSRQXBZUO"
    ids = alphabet.encode(seq, add_cls=True, add_eos=True)
    assert ids[0] == alphabet.cls_id and ids[-1] == alphabet.eos_id and len(ids) == len(seq) + 2
    assert alphabet.decode(ids) == seq
    assert alphabet.decode(ids, skip_special=False) == f"<cls>{seq}<eos>"
    tensor = alphabet.encode(seq, as_tensor=True)
    assert tensor.dtype == torch.long and tensor.shape == (len(seq),)
    assert alphabet.decode(tensor) == seq


def test_lowercase_is_accepted(alphabet: Alphabet) -> None:
    assert alphabet.encode("mktay") == alphabet.encode("MKTAY")
    assert alphabet.token_to_id("k") == alphabet.token_to_id("K")


@pytest.mark.parametrize(("seq", "position", "char"), [("MKJA", 3, "J"), ("*MK", 1, "*"), ("MKé", 3, "é")])
def test_unknown_error_names_record_position_and_char(
    alphabet: Alphabet, seq: str, position: int, char: str
) -> None:
    with pytest.raises(UnknownResidueError) as info:
        alphabet.encode(seq, name="P12345")
    message = str(info.value)
    assert "P12345" in message and f"position {position}" in message and repr(char) in message
    assert (info.value.name, info.value.position, info.value.char) == ("P12345", position, char)
    assert isinstance(info.value, ValueError)


def test_policy_x_maps_and_counts(alphabet: Alphabet) -> None:
    stats = EncodingStats()
    ids = alphabet.encode("MJK*", unknown="x", stats=stats)
    assert alphabet.decode(ids) == "MXKX"
    assert alphabet.encode("AC", unknown="x", stats=stats) == alphabet.encode("AC")
    assert stats.residues_mapped == 2 and stats.records_seen == 2 and stats.records_skipped == 0
    assert stats.residues_encoded == 6


def test_policy_skip_skips_and_counts(alphabet: Alphabet) -> None:
    stats = EncodingStats()
    assert alphabet.encode("MJK", unknown="skip", stats=stats) is None
    assert alphabet.encode("MK", unknown="skip", stats=stats) == alphabet.encode("MK")
    assert stats.records_skipped == 1 and stats.records_seen == 2 and stats.residues_mapped == 0


def test_bad_policy(alphabet: Alphabet) -> None:
    with pytest.raises(ValueError, match="unknown="):
        alphabet.encode("MK", unknown="drop")  # type: ignore[arg-type]


def test_dict_round_trip_through_json(alphabet: Alphabet) -> None:
    restored = Alphabet.from_dict(json.loads(json.dumps(alphabet.to_dict())))
    assert restored == alphabet and restored.tokens == alphabet.tokens


def test_from_dict_rejects_mismatched_tokens(alphabet: Alphabet) -> None:
    data = alphabet.to_dict()
    data["tokens"] = data["tokens"][::-1]
    with pytest.raises(ValueError, match="do not match"):
        Alphabet.from_dict(data)
    with pytest.raises(ValueError, match="missing key"):
        Alphabet.from_dict({"standard": "AC"})


def test_decode_rejects_out_of_range(alphabet: Alphabet) -> None:
    with pytest.raises(IndexError, match="token id 99"):
        alphabet.decode([4, 99])


# ESM-2's published vocabulary, in id order.
ESM_ORDER = (
    "<cls>",
    "<pad>",
    "<eos>",
    "<unk>",
    *"LAGVSERTIDPKQNFYMHWC",
    *"XBUZO",
    ".",
    "-",
    "<null_1>",
    "<mask>",
)


# Alphabet.esm() gives ESM's token ids and special-token roles.
def test_esm_layout_matches_published_vocabulary() -> None:
    esm = Alphabet.esm()
    assert esm.vocab_size == 33 and esm.tokens == ESM_ORDER
    assert (esm.cls_id, esm.pad_id, esm.eos_id, esm.mask_id) == (0, 1, 2, 32)
    assert esm.special_ids == (0, 1, 2, 3, 29, 30, 31, 32)
    assert esm.standard_ids == tuple(range(4, 24)) and esm.residue_ids == tuple(range(4, 29))
    assert esm.unknown_residue_id == 24
    assert esm.encode("MKx", add_cls=True, add_eos=True) == [0, 20, 15, 24, 2]
    assert esm.decode([0, 3, 20, 29, 30, 31, 32, 2]) == "M"
    assert repr(esm) == "Alphabet(vocab_size=33, residues='LAGVSERTIDPKQNFYMHWCXBUZO')"


# Alphabet.esm() survives to_dict/from_dict through JSON, order included.
def test_esm_dict_round_trip() -> None:
    esm = Alphabet.esm()
    data = esm.to_dict()
    assert data["order"] == list(ESM_ORDER)
    restored = Alphabet.from_dict(json.loads(json.dumps(data)))
    assert restored == esm and restored.tokens == ESM_ORDER and restored.standard_ids == esm.standard_ids


# A non-default alphabet (specials, residues, unknown residue) survives to_dict/from_dict.
def test_custom_dict_round_trip() -> None:
    custom = Alphabet(
        special_tokens=("[PAD]", "[MASK]", "[CLS]", "[SEP]"), standard="ACGT", extra="NX", unknown_residue="N"
    )
    restored = Alphabet.from_dict(json.loads(json.dumps(custom.to_dict())))
    assert restored == custom and restored.tokens == ("[PAD]", "[MASK]", "[CLS]", "[SEP]", *"ACGTNX")
    assert restored.unknown_residue_id == custom.unknown_residue_id == 8
    assert restored.encode("ACJ", unknown="x") == [4, 5, 8]


# A stored config without "unknown_residue" defaults to X.
def test_from_dict_defaults_unknown_residue(alphabet: Alphabet) -> None:
    data = alphabet.to_dict()
    del data["unknown_residue"]
    assert Alphabet.from_dict(data) == alphabet


# Equality compares configurations, hash agrees with it, and non-alphabets compare unequal.
def test_equality_and_hash(alphabet: Alphabet) -> None:
    assert alphabet == Alphabet() and hash(alphabet) == hash(Alphabet())
    restored = Alphabet.from_dict(alphabet.to_dict())
    assert hash(restored) == hash(alphabet)
    esm = Alphabet.esm()
    assert alphabet != esm and hash(alphabet) != hash(esm)
    assert alphabet != "protein"


# repr names the vocabulary size and the residues in id order.
def test_repr(alphabet: Alphabet) -> None:
    assert repr(alphabet) == "Alphabet(vocab_size=29, residues='ACDEFGHIKLMNPQRSTVWYXBZUO')"


# Bad constructor arguments raise errors naming the offending value.
def test_constructor_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="special_tokens .* got 1 tokens"):
        Alphabet(special_tokens=("<pad>",))
    with pytest.raises(ValueError, match="residue '1'"):
        Alphabet(standard="AC1")
    with pytest.raises(ValueError, match="residue 'a'"):
        Alphabet(standard="ACa")
    with pytest.raises(ValueError, match="duplicate tokens"):
        Alphabet(standard="ACA")
    with pytest.raises(ValueError, match="unknown_residue 'J'"):
        Alphabet(unknown_residue="J")


# An order that misses a token or repeats one is rejected, naming what is wrong.
def test_order_must_list_each_token_once() -> None:
    specials = ["<pad>", "<mask>", "<cls>", "<eos>"]
    with pytest.raises(ValueError, match="'X'"):
        Alphabet(standard="AC", extra="X", order=[*specials, "A", "C"])
    with pytest.raises(ValueError, match="including no duplicate"):
        Alphabet(standard="AC", extra="X", order=[*specials, "A", "C", "X", "A"])


# token_to_id finds special tokens exactly and names a missing token.
def test_token_to_id(alphabet: Alphabet) -> None:
    assert (alphabet.token_to_id("<mask>"), alphabet.token_to_id("<eos>")) == (1, 3)
    with pytest.raises(KeyError, match="no token 'J'"):
        alphabet.token_to_id("J")
    # An extra one-character token from ``order`` is looked up as written, not upper-cased.
    extra_token = Alphabet(
        standard="AC", extra="X", order=["<pad>", "<mask>", "<cls>", "<eos>", "A", "C", "X", "j"]
    )
    assert extra_token.token_to_id("j") == 7


# id_to_token accepts exactly [0, vocab_size) and names a bad id.
def test_id_to_token_bounds(alphabet: Alphabet) -> None:
    assert (alphabet.id_to_token(0), alphabet.id_to_token(28)) == ("<pad>", "O")
    with pytest.raises(IndexError, match="token id 29"):
        alphabet.id_to_token(29)
    with pytest.raises(IndexError, match="token id -1"):
        alphabet.id_to_token(-1)


# decode takes numpy arrays and rejects a non-1-D tensor, naming its shape.
def test_decode_numpy_and_bad_tensor(alphabet: Alphabet) -> None:
    assert alphabet.decode(np.array([2, 4, 5, 3])) == "AC"
    with pytest.raises(ValueError, match=r"1-D tensor, got shape \(2, 2\)"):
        alphabet.decode(torch.zeros((2, 2), dtype=torch.long))


# add_cls and add_eos each work on their own.
def test_cls_or_eos_alone(alphabet: Alphabet) -> None:
    ids = alphabet.encode("MK")
    assert alphabet.encode("MK", add_cls=True) == [alphabet.cls_id, *ids]
    assert alphabet.encode("MK", add_eos=True) == [*ids, alphabet.eos_id]


# encode_array returns uint8 residue ids and by default raises on an unknown residue.
def test_encode_array_default_policy(alphabet: Alphabet) -> None:
    arr = alphabet.encode_array("MK")
    assert arr.dtype == np.uint8 and arr.tolist() == alphabet.encode("MK")
    with pytest.raises(UnknownResidueError, match="position 2"):
        alphabet.encode_array("MJ")


# A character beyond the byte table (code point > 255) is an unknown residue, not a crash.
def test_unknown_wide_character(alphabet: Alphabet) -> None:
    with pytest.raises(UnknownResidueError, match="'α' at position 3"):
        alphabet.encode("MKα", name="P1")


# Without a record name the error says "sequence" and still hints at the policies.
def test_unknown_error_without_name(alphabet: Alphabet) -> None:
    with pytest.raises(UnknownResidueError, match="^sequence: unknown residue 'J' at position 2") as info:
        alphabet.encode("MJ")
    assert str(info.value).endswith('pass unknown="x" to map it to X or unknown="skip" to drop the record')


# Stats accumulate over records: skipped and mapped counts add up, and to_dict names every counter.
def test_stats_accumulate_and_to_dict(alphabet: Alphabet) -> None:
    stats = EncodingStats()
    assert alphabet.encode("MJ", unknown="skip", stats=stats) is None
    assert alphabet.encode("*K", unknown="skip", stats=stats) is None
    alphabet.encode("MJ*", unknown="x", stats=stats)
    alphabet.encode("JK", unknown="x", stats=stats)
    assert stats.to_dict() == {
        "records_seen": 4,
        "records_skipped": 2,
        "residues_encoded": 5,
        "residues_mapped": 3,
    }
