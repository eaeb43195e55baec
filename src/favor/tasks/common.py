"""What every downstream task shares: the data root, encoded examples, windows, batching and the `Task` base.

An example is tokenised the way pretraining saw proteins, ``<cls> residues <eos>`` (two chains:
``<cls> A <eos> B <eos>``), and carries its labels in the layout the model head's loss expects
(`favor.models.task_loss`), with -100 wherever nothing is scored:

    sequence_classification  ``()`` long class, or ``(num_labels,)`` float 0/1 when multi-label
    token_classification     ``(T,)`` long, -100 at ``<cls>``/``<eos>``
    contact                  ``(T, T)`` float 0/1, -100 on unscored pairs (near the diagonal, specials)

Sequences longer than the model's context (``max_tokens`` = the model's ``max_length``) are cut into a
window of ``max_tokens - 2`` residues: a random window for training, the N-terminal window for evaluation
(per-residue tasks tile the whole sequence instead, so every residue is scored).
"""

from __future__ import annotations

import csv
import gzip
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from favor.data import Alphabet, EncodingStats

__all__ = [
    "DATA_ROOT_ENV",
    "Encoded",
    "Task",
    "Baseline",
    "collate",
    "read_tsv",
    "require_file",
    "resolve_data_root",
    "select_subset",
    "window_start",
]

DATA_ROOT_ENV = "FAVOR_SHARED_DATA"
SPLITS = ("train", "valid", "test")


def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """The shared data folder: ``data_root``, else ``$FAVOR_SHARED_DATA``, else ``../shared/data``.

    ``../shared/data`` is looked up next to the repository (from the installed package) and next to the
    working directory. Raises `FileNotFoundError` naming every place tried.
    """
    if data_root is not None:
        candidates = [Path(data_root)]
    elif os.environ.get(DATA_ROOT_ENV):
        candidates = [Path(os.environ[DATA_ROOT_ENV])]
    else:
        repo = Path(__file__).resolve().parents[3]
        candidates = [repo.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"downstream data folder not found (tried {tried}); pass --data-root DIR or set {DATA_ROOT_ENV}"
    )


def require_file(root: Path, relative: str, task: str) -> Path:
    path = root / relative
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing; task {task!r} needs {relative} under the data root {root}")
    return path


def read_tsv(path: Path) -> Iterator[dict[str, str]]:
    """Rows of a (gzipped) tab-separated file with a header line, as dicts."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle, delimiter="\t")


def select_subset(n: int, limit: int | None, seed: int) -> np.ndarray:
    """Indices of a seeded random subset of ``limit`` of ``n`` items, in their original order."""
    if limit is None or limit >= n:
        return np.arange(n)
    if limit < 1:
        raise ValueError(f"a subset needs at least 1 item, got limit={limit}")
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def window_start(n: int, width: int, rng: np.random.Generator | None) -> int:
    """Start of a ``width``-residue window in ``n`` residues: random with ``rng``, else 0."""
    if n <= width or rng is None:
        return 0
    return int(rng.integers(0, n - width + 1))


def encode_residues(alphabet: Alphabet, sequence: str, name: str, stats: EncodingStats | None = None):
    """Residue ids (uint8, no specials); characters outside the alphabet become X (counted in ``stats``)."""
    return alphabet.encode_array(sequence, name=name, unknown="x", stats=stats)


def wrap(alphabet: Alphabet, *chains: np.ndarray) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """``<cls> c1 <eos> c2 <eos> ...`` as a LongTensor, and the token span ``(start, stop)`` of each chain."""
    ids, spans, position = [alphabet.cls_id], [], 1
    for chain in chains:
        ids.extend(int(t) for t in chain)
        spans.append((position, position + len(chain)))
        ids.append(alphabet.eos_id)
        position += len(chain) + 1
    return torch.tensor(ids, dtype=torch.long), spans


@dataclass
class Encoded:
    """One model input with its labels (layouts in the module docstring).

    ``spans`` are the token spans ``(start, stop)`` of the residues of each chain; ``name`` says which
    record (and window) it came from.
    """

    input_ids: torch.Tensor
    labels: torch.Tensor
    spans: list[tuple[int, int]]
    name: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.input_ids)


def collate(examples: list[Encoded], *, model_task: str, pad_id: int) -> dict[str, torch.Tensor]:
    """Pad examples into ``input_ids`` / ``padding_mask`` (True at padding) / ``labels`` (-100 padding)."""
    width = max(len(e) for e in examples)
    batch = len(examples)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    padding_mask = torch.ones((batch, width), dtype=torch.bool)
    for i, example in enumerate(examples):
        input_ids[i, : len(example)] = example.input_ids
        padding_mask[i, : len(example)] = False
    if model_task == "sequence_classification":
        labels = torch.stack([e.labels for e in examples])  # (B,) or (B, C)
    elif model_task == "token_classification":
        labels = torch.full((batch, width), -100, dtype=torch.long)
        for i, example in enumerate(examples):
            labels[i, : len(example)] = example.labels
    elif model_task == "contact":
        labels = torch.full((batch, width, width), -100.0)
        for i, example in enumerate(examples):
            n = len(example)
            labels[i, :n, :n] = example.labels
    else:
        raise ValueError(f"collate: no label layout for model task {model_task!r}")
    return {"input_ids": input_ids, "padding_mask": padding_mask, "labels": labels}


class Baseline:
    """A non-neural model: ``fit`` on training examples, then one score array per example.

    ``predict`` returns what the neural head would: ``(C,)`` class scores, ``(T, C)`` per-token scores or
    ``(T, T)`` pair scores, so the task's metrics score both the same way.
    """

    name = "baseline"
    description = ""

    def fit(self, examples: list[Encoded], valid: list[Encoded] | None = None) -> None:
        """Learn from training examples (``valid``: optional, for picking a hyperparameter)."""
        raise NotImplementedError

    def predict(self, examples: list[Encoded]) -> list[np.ndarray]:
        raise NotImplementedError


class Task:
    """A downstream task: how to load its records, encode them, score predictions, and its baseline.

    Subclasses set the class attributes and implement `load`, `encode` and `metrics`.
    """

    name: str = ""
    # The ModelConfig.task of the head that solves it, and its outputs.
    model_task: str = ""
    num_labels: int = 2
    multi_label: bool = False
    # The metrics.json key used for early stopping and the headline number (higher is better).
    primary_metric: str = ""
    description: str = ""

    def load(self, root: Path, split: str, *, limit: int | None = None, seed: int = 0) -> list[Any]:
        """Records of ``split`` (``limit``: a seeded random subset of that many)."""
        raise NotImplementedError

    def encode(
        self, record: Any, *, alphabet: Alphabet, max_tokens: int, rng: np.random.Generator | None
    ) -> list[Encoded]:
        """Model inputs of one record: one random window with ``rng`` (training), else the fixed ones."""
        raise NotImplementedError

    def metrics(self, scores: list[np.ndarray], examples: list[Encoded]) -> dict[str, float]:
        """Metrics of per-example score arrays (model logits or baseline scores) against the labels."""
        raise NotImplementedError

    def make_baseline(self, alphabet: Alphabet) -> Baseline:
        raise NotImplementedError

    def encode_all(
        self,
        records: list[Any],
        *,
        alphabet: Alphabet,
        max_tokens: int,
        rng: np.random.Generator | None = None,
    ) -> list[Encoded]:
        return [e for r in records for e in self.encode(r, alphabet=alphabet, max_tokens=max_tokens, rng=rng)]

    def check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"task {self.name!r}: split must be one of {', '.join(SPLITS)}, got {split!r}")
