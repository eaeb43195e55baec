"""Alphabet: id layout, round trips, unknown-residue errors and policies, serialisation."""

import json

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
