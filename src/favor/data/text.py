"""Character- and byte-level text: a vocabulary that owns every id, the bundled English corpus, contiguous
splits, windows for causal LM, and parallel streams for truncated backpropagation through time.

    vocab = CharVocabulary.ascii()                       # <pad> <unk> "\\n" " " ... "~"  (98 tokens)
    ids = vocab.encode("Hello", unknown="error")         # int64 numpy array
    vocab.decode(ids) == "Hello"
    train, valid, test = split_text(load_text(), valid_fraction=0.05, test_fraction=0.05)

``ascii`` covers newline and printable ASCII; any other character is an error naming it and its 1-based
position, or ``<unk>`` with ``unknown="unk"``. ``bytes`` encodes UTF-8 bytes (256 tokens), so nothing is
unknown. A run saves its vocabulary as ``vocab.json`` (run folder and model folder); ``favor generate``
decodes with it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from favor.data.cursor import EpochCursor, Resumable
from favor.data.masking import IGNORE_INDEX
from favor.data.seeding import derive_seed

__all__ = [
    "VOCAB_FILE",
    "CharVocabulary",
    "StreamBatchLoader",
    "UnknownCharacterError",
    "bundled_corpus_path",
    "load_text",
    "split_text",
    "window_batch",
]

VOCAB_FILE = "vocab.json"
SPECIAL_TOKENS = ("<pad>", "<unk>")
KINDS = ("ascii", "bytes")


class UnknownCharacterError(ValueError):
    """A character the vocabulary has no token for; names the text, the 1-based position and the character."""

    def __init__(self, *, name: str | None, position: int, char: str) -> None:
        self.name, self.position, self.char = name, position, char
        where = f"{name}: " if name else ""
        super().__init__(
            f"{where}unknown character {char!r} (U+{ord(char):04X}) at position {position} (1-based); "
            "use unknown='unk' (data.unknown=unk) to map it to <unk>, or the bytes vocabulary"
        )


class CharVocabulary:
    """Special tokens ``<pad>`` (0) and ``<unk>`` (1), then one token per character (``ascii``) or byte."""

    def __init__(self, *, kind: str = "ascii") -> None:
        if kind not in KINDS:
            raise ValueError(f"CharVocabulary: kind={kind!r}; choose one of {', '.join(KINDS)}")
        self.kind = kind
        if kind == "ascii":
            symbols = ["\n", *(chr(c) for c in range(32, 127))]
        else:
            symbols = [f"<0x{b:02X}>" for b in range(256)]
        self._tokens = (*SPECIAL_TOKENS, *symbols)
        self._char_to_id = {ch: i for i, ch in enumerate(self._tokens) if i >= len(SPECIAL_TOKENS)}

    @classmethod
    def ascii(cls) -> CharVocabulary:
        return cls(kind="ascii")

    @classmethod
    def bytes(cls) -> CharVocabulary:
        return cls(kind="bytes")

    @property
    def tokens(self) -> tuple[str, ...]:
        return self._tokens

    @property
    def vocab_size(self) -> int:
        return len(self._tokens)

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def unk_id(self) -> int:
        return 1

    @property
    def symbol_ids(self) -> tuple[int, ...]:
        """Ids of every character (or byte) token: the candidates of the unigram baseline."""
        return tuple(range(len(SPECIAL_TOKENS), self.vocab_size))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharVocabulary) and other.kind == self.kind

    def __hash__(self) -> int:
        return hash(self.kind)

    def __repr__(self) -> str:
        return f"CharVocabulary(kind={self.kind!r}, vocab_size={self.vocab_size})"

    def encode(self, text: str, *, unknown: str = "error", name: str | None = None) -> np.ndarray:
        """Token ids (int64) of ``text``; ``unknown`` is ``"error"`` or ``"unk"`` (ascii only)."""
        if unknown not in ("error", "unk"):
            raise ValueError(f"CharVocabulary.encode: unknown={unknown!r}; choose error or unk")
        if self.kind == "bytes":
            return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64) + len(SPECIAL_TOKENS)
        if text.isascii():
            codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int64)
        else:
            codes = np.array([ord(ch) for ch in text], dtype=np.int64)
        # "\n" -> 2, " " (32) .. "~" (126) -> 3 .. 97; everything else has no token.
        ids = np.where(codes == 10, 2, codes - 32 + 3)
        bad = ~((codes == 10) | ((codes >= 32) & (codes < 127)))
        if bad.any():
            if unknown == "error":
                position = int(np.flatnonzero(bad)[0])
                raise UnknownCharacterError(name=name, position=position + 1, char=text[position])
            ids[bad] = self.unk_id
        return ids

    def decode(self, ids: Iterable[int] | np.ndarray | torch.Tensor) -> str:
        """Text of ``ids``: padding is dropped, ``<unk>`` (and invalid UTF-8) becomes U+FFFD."""
        if isinstance(ids, (torch.Tensor, np.ndarray)):
            ids = ids.tolist()
        out: list[int] = []
        for token_id in ids:
            token_id = int(token_id)
            if not 0 <= token_id < self.vocab_size:
                raise IndexError(f"CharVocabulary: token id {token_id} outside [0, {self.vocab_size})")
            if token_id == self.pad_id:
                continue
            out.append(token_id)
        if self.kind == "bytes":
            raw = bytes(i - len(SPECIAL_TOKENS) for i in out if i != self.unk_id)
            return raw.decode("utf-8", errors="replace")
        return "".join("\ufffd" if i == self.unk_id else self._tokens[i] for i in out)

    def to_dict(self) -> dict[str, Any]:
        return {"type": "char", "kind": self.kind, "tokens": list(self._tokens)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CharVocabulary:
        vocab = cls(kind=data.get("kind", "ascii"))
        if "tokens" in data and tuple(data["tokens"]) != vocab.tokens:
            raise ValueError(
                "CharVocabulary.from_dict: the stored tokens do not match the rebuilt vocabulary"
            )
        return vocab

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict()) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike) -> CharVocabulary:
        path = Path(path)
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, ValueError, AttributeError) as error:
            raise ValueError(f"{path}: not a favor vocabulary file ({error})") from None


def bundled_corpus_path() -> Path:
    """The bundled English corpus (see ``favor/data/corpora/README.md``)."""
    return Path(__file__).resolve().parent / "corpora" / "python_reference.txt"


def load_text(path: str | os.PathLike | None = None) -> str:
    """A UTF-8 text file (None: the bundled corpus); errors name the file."""
    path = Path(path) if path is not None else bundled_corpus_path()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: text corpus not found")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not UTF-8 text ({error})") from None


def split_text(text: str, *, valid_fraction: float, test_fraction: float) -> tuple[str, str, str]:
    """Contiguous train / valid / test parts by character position (the end of the text is test)."""
    n = len(text)
    valid_start = n - round(n * test_fraction) - round(n * valid_fraction)
    test_start = n - round(n * test_fraction)
    if valid_start < 2:
        raise ValueError(f"a text of {n} characters leaves no training part for these split fractions")
    return text[:valid_start], text[valid_start:test_start], text[test_start:]


def window_batch(
    tokens: np.ndarray, starts: np.ndarray, *, window: int, pad_id: int = 0
) -> dict[str, torch.Tensor]:
    """Causal-LM windows ``tokens[s : s+W]`` with labels ``tokens[s+1 : s+W+1]`` (already shifted).

    A window cut short by the end of ``tokens`` is right-padded (labels -100, padding_mask True).
    """
    batch = len(starts)
    inputs = np.full((batch, window), pad_id, dtype=np.int64)
    labels = np.full((batch, window), IGNORE_INDEX, dtype=np.int64)
    padding = np.ones((batch, window), dtype=bool)
    for row, start in enumerate(starts):
        length = min(window, len(tokens) - 1 - int(start))
        inputs[row, :length] = tokens[start : start + length]
        labels[row, :length] = tokens[start + 1 : start + 1 + length]
        padding[row, :length] = False
    return {
        "input_ids": torch.from_numpy(inputs),
        "padding_mask": torch.from_numpy(padding),
        "labels": torch.from_numpy(labels),
    }


class StreamBatchLoader(Resumable):
    """``batch_size`` parallel streams read in order, ``window`` tokens per batch: the data of truncated
    backpropagation through time.

    The text is cut into ``batch_size`` contiguous streams (row b is the b-th slice of the text); batch k
    holds positions ``k*W .. (k+1)*W - 1`` of every stream, so row b of batch k+1 continues row b of batch k
    and a recurrent model can carry its state across batches. Each epoch starts the streams at an offset in
    ``[0, W)`` drawn from ``(seed, epoch)``, so window boundaries move between epochs. The first batch of an
    epoch has ``reset=True`` (start from a fresh state). One process (the streams are not sharded); position
    and state are an ``EpochCursor``'s (``favor.data.cursor``) over the window numbers ``k``.
    """

    def __init__(self, tokens: np.ndarray, *, batch_size: int, window: int, seed: int = 0) -> None:
        self.tokens, self.batch_size, self.window = tokens, batch_size, window
        # Every epoch has the same number of windows: enough stream for any offset in [0, W).
        n_windows = max(0, ((len(tokens) - window - 1) // batch_size) // window)
        self.cursor: EpochCursor[int] = EpochCursor(
            lambda _epoch: range(n_windows), seed=seed, owner="StreamBatchLoader"
        )
        if len(self) == 0:
            raise ValueError(
                f"{len(tokens)} training tokens give no window of {window} for {batch_size} streams; "
                "lower data.max_tokens or train.tbptt"
            )

    def _offset(self, epoch: int) -> int:
        return int(derive_seed(self.seed, epoch) % self.window)

    def _streams(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        tokens = self.tokens[self._offset(epoch) :]
        length = (len(tokens) - 1) // self.batch_size
        inputs = tokens[: self.batch_size * length].reshape(self.batch_size, length)
        labels = tokens[1 : self.batch_size * length + 1].reshape(self.batch_size, length)
        return inputs, labels

    def __iter__(self) -> Iterator[dict[str, Any]]:
        inputs, labels = self._streams(self.epoch)
        w = self.window
        for k in self.cursor.run():
            yield {
                "input_ids": torch.from_numpy(np.ascontiguousarray(inputs[:, k * w : (k + 1) * w])),
                "padding_mask": torch.zeros(self.batch_size, w, dtype=torch.bool),
                "labels": torch.from_numpy(np.ascontiguousarray(labels[:, k * w : (k + 1) * w])),
                "reset": k == 0,
            }

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "position", "seed", "world_size"}``: one process, so no rank (as ever)."""
        state = super().state_dict()
        del state["rank"]
        return state
