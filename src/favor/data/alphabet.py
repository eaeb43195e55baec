"""Protein alphabet: the single owner of every token id.

Layout of ``Alphabet.protein()`` (29 tokens)::

    0 <pad>   1 <mask>   2 <cls>   3 <eos>
    4..23     the 20 standard amino acids  A C D E F G H I K L M N P Q R S T V W Y
    24..28    the rare residues           X B Z U O

Other layouts name every token in id order (``order``): ``Alphabet.esm()`` is ESM's 33-token vocabulary
(``<cls> <pad> <eos> <unk> L A G V S E R T I D P K Q N F Y M H W C X B U Z O . - <null_1> <mask>``), so a
model converted from ESM reads ESM's token ids. Tokens that are neither one of the four roles nor a residue
(``<unk>``, ``.``, ``-``, ``<null_1>``) are never produced by encoding and count as special.

There is no ``<unk>`` token: an unknown character is an error that names the record, the 1-based
position and the character, unless the caller picks an explicit policy (``unknown="x"`` maps it to
``X``; ``unknown="skip"`` drops the whole record). With a policy, an ``EncodingStats`` counter reports
how many residues were mapped and how many records were skipped.

Encoding runs through a 256-entry byte lookup table (numpy), so a 35,000-residue protein encodes in
microseconds rather than one dict lookup per character.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

__all__ = [
    "Alphabet",
    "EncodingStats",
    "UnknownPolicy",
    "UnknownResidueError",
    "PROTEIN_SPECIAL_TOKENS",
    "STANDARD_AMINO_ACIDS",
    "EXTRA_RESIDUES",
]

UnknownPolicy = Literal["error", "x", "skip"]

PROTEIN_SPECIAL_TOKENS: tuple[str, ...] = ("<pad>", "<mask>", "<cls>", "<eos>")
STANDARD_AMINO_ACIDS = "ACDEFGHIKLMNPQRSTVWY"
# X unknown, B Asx (D/N), Z Glx (E/Q), U selenocysteine, O pyrrolysine.
EXTRA_RESIDUES = "XBZUO"
# ESM's vocabulary in id order (facebookresearch/esm Alphabet "ESM-1b", the Hugging Face EsmTokenizer).
ESM_TOKENS: tuple[str, ...] = (
    "<cls>", "<pad>", "<eos>", "<unk>",
    *"LAGVSERTIDPKQNFYMHWC", *"XBUZO",
    ".", "-", "<null_1>", "<mask>",
)  # fmt: skip

_POLICIES = ("error", "x", "skip")
# Marks a byte with no token in the lookup table.
_NO_TOKEN = -1


class UnknownResidueError(ValueError):
    """A sequence character that the alphabet has no token for.

    Attributes name the record (``None`` if the caller gave no name), the 1-based position in the
    sequence, and the offending character.
    """

    def __init__(self, *, name: str | None, position: int, char: str) -> None:
        self.name = name
        self.position = position
        self.char = char
        where = f"record {name!r}" if name is not None else "sequence"
        super().__init__(
            f"{where}: unknown residue {char!r} at position {position} (1-based); "
            'pass unknown="x" to map it to X or unknown="skip" to drop the record'
        )


@dataclass
class EncodingStats:
    """Counters filled by ``Alphabet.encode`` when an ``unknown`` policy is in use."""

    records_seen: int = 0
    records_skipped: int = 0
    residues_encoded: int = 0
    # Residues replaced by X under unknown="x".
    residues_mapped: int = 0

    def to_dict(self) -> dict[str, int]:
        return {
            "records_seen": self.records_seen,
            "records_skipped": self.records_skipped,
            "residues_encoded": self.residues_encoded,
            "residues_mapped": self.residues_mapped,
        }


class Alphabet:
    """Token vocabulary: special tokens first, then single-character residues.

    Args:
        special_tokens: exactly four strings, in the order padding, mask, class/start, end/separator.
        standard: the standard residues (one character each), the pool for random MLM replacements.
        extra: further residues (one character each), e.g. ``"XBZUO"``; must contain ``unknown_residue``
            for the ``unknown="x"`` policy to be available.
        unknown_residue: the residue that ``unknown="x"`` maps unknown characters to.
        order: every token in id order, when the layout is not "specials, then residues" (e.g. ESM's);
            it must hold the four special tokens and every residue, and may hold other tokens.
    """

    def __init__(
        self,
        *,
        special_tokens: Sequence[str] = PROTEIN_SPECIAL_TOKENS,
        standard: str = STANDARD_AMINO_ACIDS,
        extra: str = EXTRA_RESIDUES,
        unknown_residue: str = "X",
        order: Sequence[str] | None = None,
    ) -> None:
        if len(special_tokens) != 4:
            raise ValueError(
                f"Alphabet: special_tokens must be (pad, mask, cls, eos), got {len(special_tokens)} tokens"
            )
        residues = standard + extra
        for ch in residues:
            if len(ch.encode("utf-8")) != 1 or not ch.isupper():
                raise ValueError(f"Alphabet: residue {ch!r} must be one uppercase ASCII letter")
        tokens = [*special_tokens, *residues]
        if len(set(tokens)) != len(tokens):
            raise ValueError(f"Alphabet: duplicate tokens in {tokens}")
        if order is not None:
            order = list(order)
            missing = [t for t in tokens if t not in order]
            if missing or len(set(order)) != len(order):
                raise ValueError(
                    f"Alphabet: order must list each token once, including {missing or 'no duplicate'}"
                )
            tokens = order
        if unknown_residue not in residues:
            raise ValueError(f"Alphabet: unknown_residue {unknown_residue!r} is not one of {residues!r}")
        self._special_tokens = tuple(special_tokens)
        self._standard = standard
        self._extra = extra
        self._unknown_residue = unknown_residue
        self._tokens: tuple[str, ...] = tuple(tokens)
        self._order = None if order is None else tuple(order)
        self._token_to_id = {tok: i for i, tok in enumerate(tokens)}
        self._roles = tuple(self._token_to_id[t] for t in special_tokens)  # pad, mask, cls, eos
        self._residue_ids = tuple(self._token_to_id[ch] for ch in residues)
        self._standard_ids = self._residue_ids[: len(standard)]
        residue_set = set(self._residue_ids)
        self._special_ids = tuple(i for i in range(len(tokens)) if i not in residue_set)
        # Byte -> token id; lowercase letters map like their uppercase residue.
        table = np.full(256, _NO_TOKEN, dtype=np.int16)
        for ch in residues:
            table[ord(ch)] = self._token_to_id[ch]
            table[ord(ch.lower())] = self._token_to_id[ch]
        self._table = table

    @classmethod
    def protein(cls) -> Alphabet:
        """The default 29-token protein alphabet (see the module docstring for the id layout)."""
        return cls()

    @classmethod
    def esm(cls) -> Alphabet:
        """ESM's 33-token vocabulary in ESM's order (ESM-1b, ESM-2; Hugging Face ``EsmTokenizer``)."""
        return cls(
            special_tokens=("<pad>", "<mask>", "<cls>", "<eos>"),
            standard="LAGVSERTIDPKQNFYMHWC",
            extra="XBUZO",
            order=ESM_TOKENS,
        )

    @property
    def tokens(self) -> tuple[str, ...]:
        return self._tokens

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    def __len__(self) -> int:
        return len(self._tokens)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Alphabet) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self._tokens)

    def __repr__(self) -> str:
        residues = "".join(self._tokens[i] for i in self._residue_ids)
        return f"Alphabet(vocab_size={self.vocab_size}, residues={residues!r})"

    @property
    def pad_id(self) -> int:
        return self._roles[0]

    @property
    def mask_id(self) -> int:
        return self._roles[1]

    @property
    def cls_id(self) -> int:
        return self._roles[2]

    @property
    def eos_id(self) -> int:
        return self._roles[3]

    @property
    def unknown_residue_id(self) -> int:
        """Id of the residue that ``unknown="x"`` maps to (``X``)."""
        return self._token_to_id[self._unknown_residue]

    @property
    def special_ids(self) -> tuple[int, ...]:
        """Ids of every token that is not a residue (the four roles and any other token), ascending."""
        return self._special_ids

    @property
    def residue_ids(self) -> tuple[int, ...]:
        """Ids of every residue token (standard, then extra), i.e. every non-special id."""
        return self._residue_ids

    @property
    def standard_ids(self) -> tuple[int, ...]:
        """Ids of the standard residues: the pool that MLM random replacements are drawn from."""
        return self._standard_ids

    def token_to_id(self, token: str) -> int:
        """Id of a token (a special token string or a residue letter, either case)."""
        tid = self._token_to_id.get(token)
        if tid is None and len(token) == 1:
            tid = self._token_to_id.get(token.upper())
        if tid is None:
            raise KeyError(f"Alphabet: no token {token!r}")
        return tid

    def id_to_token(self, token_id: int) -> str:
        if not 0 <= token_id < self.vocab_size:
            raise IndexError(f"Alphabet: token id {token_id} outside [0, {self.vocab_size})")
        return self._tokens[token_id]

    def encode_array(
        self,
        seq: str,
        *,
        name: str | None = None,
        unknown: UnknownPolicy = "error",
        stats: EncodingStats | None = None,
    ) -> np.ndarray | None:
        """Encode residues only (no special tokens) as a uint8 numpy array.

        Returns ``None`` when ``unknown="skip"`` and the sequence holds an unknown character.
        """
        if unknown not in _POLICIES:
            raise ValueError(f"Alphabet.encode: unknown={unknown!r}; choose one of {_POLICIES}")
        if seq.isascii():
            ids = self._table[np.frombuffer(seq.encode("ascii"), dtype=np.uint8)]
        else:
            # Rare path: one id per character, so positions stay character positions.
            ids = np.array(
                [self._table[ord(ch)] if ch.isascii() else _NO_TOKEN for ch in seq], dtype=np.int16
            )
        if stats is not None:
            stats.records_seen += 1
        bad = np.flatnonzero(ids == _NO_TOKEN)
        if bad.size:
            if unknown == "error":
                pos = int(bad[0])
                raise UnknownResidueError(name=name, position=pos + 1, char=seq[pos])
            if unknown == "skip":
                if stats is not None:
                    stats.records_skipped += 1
                return None
            ids = ids.copy()
            ids[bad] = self.unknown_residue_id
            if stats is not None:
                stats.residues_mapped += int(bad.size)
        if stats is not None:
            stats.residues_encoded += len(ids)
        return ids.astype(np.uint8)

    def encode(
        self,
        seq: str,
        *,
        name: str | None = None,
        add_cls: bool = False,
        add_eos: bool = False,
        unknown: UnknownPolicy = "error",
        stats: EncodingStats | None = None,
        as_tensor: bool = False,
    ) -> list[int] | torch.Tensor | None:
        """Encode a sequence into token ids.

        Args:
            seq: residue letters (either case).
            name: record name, used in error messages.
            add_cls / add_eos: prepend ``<cls>`` / append ``<eos>``.
            unknown: ``"error"`` raises ``UnknownResidueError``; ``"x"`` maps unknown characters to X;
                ``"skip"`` returns ``None`` for a sequence holding any unknown character.
            stats: counters updated in place (records seen/skipped, residues mapped).
            as_tensor: return a 1-D LongTensor instead of a list.

        Returns:
            ``list[int]`` (or LongTensor of shape (n,) with ``as_tensor``), or ``None`` if skipped.
        """
        arr = self.encode_array(seq, name=name, unknown=unknown, stats=stats)
        if arr is None:
            return None
        ids = arr.astype(np.int64)
        if add_cls or add_eos:
            ids = np.concatenate(
                [[self.cls_id] * add_cls, ids, [self.eos_id] * add_eos],
            ).astype(np.int64)
        if as_tensor:
            return torch.from_numpy(ids)
        return ids.tolist()

    def decode(self, ids: Iterable[int] | torch.Tensor | np.ndarray, *, skip_special: bool = True) -> str:
        """Turn ids back into a string; special tokens are dropped unless ``skip_special=False``."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"Alphabet.decode: expected a 1-D tensor, got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        elif isinstance(ids, np.ndarray):
            ids = ids.tolist()
        special = set(self._special_ids)
        out = []
        for i in ids:
            tok = self.id_to_token(int(i))
            if skip_special and int(i) in special:
                continue
            out.append(tok)
        return "".join(out)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description (for a model's ``config.json``)."""
        return {
            "special_tokens": list(self._special_tokens),
            "standard": self._standard,
            "extra": self._extra,
            "unknown_residue": self._unknown_residue,
            "tokens": list(self._tokens),
            **({"order": list(self._order)} if self._order is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alphabet:
        """Rebuild from ``to_dict()``; checks that the stored token list matches the rebuilt one."""
        try:
            alphabet = cls(
                special_tokens=tuple(data["special_tokens"]),
                standard=data["standard"],
                extra=data["extra"],
                unknown_residue=data.get("unknown_residue", "X"),
                order=data.get("order"),
            )
        except KeyError as exc:
            raise ValueError(f"Alphabet.from_dict: missing key {exc.args[0]!r} in {sorted(data)}") from None
        stored = data.get("tokens")
        if stored is not None and tuple(stored) != alphabet.tokens:
            raise ValueError(
                f"Alphabet.from_dict: stored tokens {stored} do not match the rebuilt {list(alphabet.tokens)}"
            )
        return alphabet
