"""Pretraining datasets over a ``ProteinCorpus``: single proteins and concatenated windows.

Both are map-style ``torch.utils.data.Dataset``s rather than ``IterableDataset``s, because random
access is what the rest of the pipeline needs: the batch samplers sort items by length for token-budget
bucketing, shard batches disjointly across ranks by index, and resume mid-epoch by skipping batch
indices without reading any data. The corpus is already encoded in memory (about 1 byte per residue),
so random access costs nothing.

Items are ``ProteinItem`` dicts::

    {"input_ids": LongTensor (n,), "length": int, "index": int, "name": str}

``length`` counts real tokens; it is less than n only for the padded last concatenated window. Packed rows
add ``"segment_ids": LongTensor (n,)``, the protein of each token within the row.
"""

from __future__ import annotations

from typing import Literal, TypedDict

import numpy as np
import torch
from torch.utils.data import Dataset

from favor.data.corpus import ProteinCorpus
from favor.data.seeding import derive_seed

__all__ = [
    "ProteinItem",
    "CropMode",
    "SingleProteinDataset",
    "ConcatenatedProteinDataset",
    "PackedProteinDataset",
    "pack_lengths",
]

CropMode = Literal["random", "start", "center"]
_CROP_MODES = ("random", "start", "center")


class ProteinItem(TypedDict):
    input_ids: torch.Tensor
    length: int
    index: int
    name: str


class SingleProteinDataset(Dataset):
    """One protein per item, encoded ``<cls> residues <eos>`` and cropped to ``max_length`` tokens.

    Cropping cuts a window of ``max_length`` tokens out of the full ``<cls> ... <eos>`` token sequence,
    so a window keeps ``<cls>`` only when it starts at the beginning and ``<eos>`` only when it reaches
    the true end (a causal model is never taught that a protein ends mid-chain). ``crop="random"``
    draws the window start uniformly from a generator seeded with ``(seed, epoch, index)``: the
    crop of an item is the same wherever and whenever it is loaded, and changes between epochs (call
    ``set_epoch``). ``"start"`` and ``"center"`` are deterministic, for evaluation.

    Args:
        corpus: encoded sequences.
        max_length: maximum tokens per item, special tokens included (>= 3).
        crop: "random" (training), "start" or "center" (evaluation).
        seed: base seed for random crops.
        add_cls / add_eos: wrap each protein in ``<cls>`` / ``<eos>``.
    """

    def __init__(
        self,
        corpus: ProteinCorpus,
        *,
        max_length: int = 1024,
        crop: CropMode = "random",
        seed: int = 0,
        add_cls: bool = True,
        add_eos: bool = True,
    ) -> None:
        if max_length < 3:
            raise ValueError(f"SingleProteinDataset: max_length must be >= 3, got {max_length}")
        if crop not in _CROP_MODES:
            raise ValueError(f"SingleProteinDataset: crop={crop!r}; choose one of {_CROP_MODES}")
        self.corpus = corpus
        self.alphabet = corpus.alphabet
        self.max_length = max_length
        self.crop = crop
        self.seed = seed
        self.add_cls = add_cls
        self.add_eos = add_eos
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random crops ``__getitem__`` returns."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.corpus)

    def full_lengths(self) -> np.ndarray:
        """int64 (n,): token count of each protein before cropping, special tokens included."""
        return self.corpus.lengths + int(self.add_cls) + int(self.add_eos)

    def item_lengths(self) -> np.ndarray:
        """int64 (n,): token count of each item after cropping (what batch samplers budget with)."""
        return np.minimum(self.full_lengths(), self.max_length)

    def _full_length(self, index: int) -> int:
        n_residues = int(self.corpus.offsets[index + 1] - self.corpus.offsets[index])
        return n_residues + int(self.add_cls) + int(self.add_eos)

    def crop_start(self, index: int) -> int:
        """First token (in the full ``<cls> ... <eos>`` sequence) of the window for item ``index``."""
        excess = self._full_length(index) - self.max_length
        if excess <= 0 or self.crop == "start":
            return 0
        if self.crop == "center":
            return excess // 2
        # Uniform in [0, excess], reproducible from (seed, epoch, index) alone.
        return derive_seed(self.seed, self.epoch, index) % (excess + 1)

    def __getitem__(self, index: int) -> ProteinItem:
        if not 0 <= index < len(self):
            raise IndexError(f"SingleProteinDataset: index {index} out of range for {len(self)} proteins")
        residues = self.corpus.sequence_ids(index)
        n_full = self._full_length(index)
        start = self.crop_start(index)
        stop = min(n_full, start + self.max_length)
        tokens = np.empty(n_full, dtype=np.int64)
        offset = int(self.add_cls)
        if self.add_cls:
            tokens[0] = self.alphabet.cls_id
        tokens[offset : offset + len(residues)] = residues
        if self.add_eos:
            tokens[-1] = self.alphabet.eos_id
        window = torch.from_numpy(tokens[start:stop].copy())
        return ProteinItem(input_ids=window, length=len(window), index=index, name=self.corpus.names[index])


class ConcatenatedProteinDataset(Dataset):
    """Proteins joined into one stream and cut into non-overlapping windows of ``window`` tokens.

    As in the Performer paper's concatenated-protein setup, the stream is
    ``seq_0 <eos> seq_1 <eos> seq_2 <eos> ...``: every protein is followed by ``<eos>``, which thus also
    separates consecutive proteins. Window i holds stream tokens ``[i*window, (i+1)*window)``; the
    windows cover the stream exactly once. The last, partial window is padded with ``<pad>`` to full
    length (``length`` gives its real tokens) or dropped with ``drop_last=True``.

    Args:
        corpus: encoded sequences.
        window: tokens per window (e.g. 8192).
        drop_last: drop the final partial window instead of padding it.
        order_seed: if given, shuffle protein order (once, deterministically) before concatenating;
            ``None`` keeps corpus order.
    """

    def __init__(
        self,
        corpus: ProteinCorpus,
        *,
        window: int = 8192,
        drop_last: bool = False,
        order_seed: int | None = None,
    ) -> None:
        if window < 2:
            raise ValueError(f"ConcatenatedProteinDataset: window must be >= 2, got {window}")
        self.corpus = corpus
        self.alphabet = corpus.alphabet
        self.window = window
        self.drop_last = drop_last
        order = np.arange(len(corpus))
        if order_seed is not None:
            order = np.random.default_rng(derive_seed(order_seed)).permutation(len(corpus))
        self.order = order
        self.stream = self._build_stream(order)
        n_full, rest = divmod(len(self.stream), window)
        self._num_windows = n_full + (1 if rest and not drop_last else 0)

    def _build_stream(self, order: np.ndarray) -> np.ndarray:
        """uint8 (total_residues + n,): proteins in ``order``, each followed by ``<eos>``."""
        lengths = self.corpus.lengths[order]
        # Start of each protein in the stream: previous proteins plus one <eos> each.
        starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]]).astype(np.int64)
        stream = np.full(int(lengths.sum()) + len(order), self.alphabet.eos_id, dtype=np.uint8)
        for start, idx, n in zip(starts.tolist(), order.tolist(), lengths.tolist(), strict=True):
            stream[start : start + n] = self.corpus.sequence_ids(idx)
        return stream

    def set_epoch(self, epoch: int) -> None:
        """Windows do not depend on the epoch; present so every dataset takes the same calls."""

    def __len__(self) -> int:
        return self._num_windows

    @property
    def stream_length(self) -> int:
        return len(self.stream)

    def item_lengths(self) -> np.ndarray:
        """int64 (n_windows,): every item is ``window`` tokens long (the last one padded)."""
        return np.full(len(self), self.window, dtype=np.int64)

    def __getitem__(self, index: int) -> ProteinItem:
        if not 0 <= index < len(self):
            raise IndexError(
                f"ConcatenatedProteinDataset: index {index} out of range for {len(self)} windows"
            )
        chunk = self.stream[index * self.window : (index + 1) * self.window]
        tokens = torch.full((self.window,), self.alphabet.pad_id, dtype=torch.long)
        tokens[: len(chunk)] = torch.from_numpy(chunk.astype(np.int64))
        return ProteinItem(input_ids=tokens, length=len(chunk), index=index, name=f"window{index}")


def pack_lengths(lengths: np.ndarray, capacity: int) -> list[list[int]]:
    """Best-fit decreasing: item indices grouped into rows of at most ``capacity`` tokens.

    Items are taken longest first; each goes into the open row with the least room that still fits it
    (a new row when none does). Rows come out in the order they were opened.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) and (lengths.min() < 1 or lengths.max() > capacity):
        raise ValueError(f"pack_lengths: item lengths must be in [1, {capacity}]")
    rows: list[list[int]] = []
    # rows_with_room[r]: the rows with exactly r tokens of room left; count[r] how many there are.
    rows_with_room: list[list[int]] = [[] for _ in range(capacity + 1)]
    count = np.zeros(capacity + 1, dtype=np.int64)
    for index in np.argsort(-lengths, kind="stable").tolist():
        n = int(lengths[index])
        fits = np.flatnonzero(count[n:])
        if len(fits):
            room = n + int(fits[0])
            row = rows_with_room[room].pop()
            count[room] -= 1
        else:
            room, row = capacity, len(rows)
            rows.append([])
        rows[row].append(index)
        left = room - n
        rows_with_room[left].append(row)
        count[left] += 1
    return rows


class PackedProteinDataset(Dataset):
    """Several whole proteins per row: single-protein items (`SingleProteinDataset`, cropped to
    ``max_length``) packed into rows of at most ``max_length`` tokens by `pack_lengths`, with
    ``segment_ids`` saying which protein each token belongs to.

    The model keeps the proteins of a row apart (``SequenceModel(..., segment_ids=...)``: attention within
    a protein only, positions restarting at each), so a packed row trains exactly as its proteins would one
    per row, without the padding. The rows are fixed once (cropped lengths do not change between epochs);
    random crops of long proteins still change with ``set_epoch``.
    """

    def __init__(self, proteins: SingleProteinDataset) -> None:
        self.proteins = proteins
        self.alphabet = proteins.alphabet
        self.max_length = proteins.max_length
        self.rows = pack_lengths(proteins.item_lengths(), self.max_length)
        lengths = proteins.item_lengths()
        self._row_lengths = np.array([int(lengths[r].sum()) for r in self.rows], dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.proteins.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.rows)

    def item_lengths(self) -> np.ndarray:
        """int64 (n_rows,): tokens in each row."""
        return self._row_lengths

    def __getitem__(self, index: int) -> ProteinItem:
        if not 0 <= index < len(self):
            raise IndexError(f"PackedProteinDataset: index {index} out of range for {len(self)} rows")
        items = [self.proteins[i] for i in self.rows[index]]
        input_ids = torch.cat([item["input_ids"] for item in items])
        segment_ids = torch.cat(
            [torch.full((item["length"],), i, dtype=torch.long) for i, item in enumerate(items)]
        )
        item = ProteinItem(input_ids=input_ids, length=len(input_ids), index=index, name=f"row{index}")
        item["segment_ids"] = segment_ids  # type: ignore[typeddict-unknown-key]
        return item
