"""Protein function: enzyme class (6 classes), subcellular localisation (10 classes), GO molecular
function (100 terms, multi-label).

Labels come from ``function/{ec_class,localization,go_mf}.tsv.gz`` (accession, split, label(s)) and the
sequences from ``proteins/{split}.fasta.gz`` by accession. Metrics: accuracy and macro-F1 for the
single-label tasks; micro/macro AUPRC and protein-centric Fmax for GO.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from favor.data import Alphabet, read_fasta
from favor.tasks.common import (
    Baseline,
    Encoded,
    Task,
    encode_residues,
    read_tsv,
    require_file,
    select_subset,
    window_start,
    wrap,
)
from favor.tasks.metrics import accuracy, fmax, macro_f1, multilabel_auprc

__all__ = ["Protein", "EC_CLASSES", "LOCALIZATION_CLASSES", "SingleLabelTask", "GoTask"]

EC_CLASSES = ("oxidoreductase", "transferase", "hydrolase", "lyase", "isomerase", "ligase")
LOCALIZATION_CLASSES = (
    "nucleus",
    "mitochondrion",
    "chloroplast",
    "endoplasmic_reticulum",
    "golgi_apparatus",
    "extracellular_region",
    "plasma_membrane",
    "vacuole",
    "peroxisome",
    "ribosome",
)


@dataclass(frozen=True)
class Protein:
    """A sequence with its label: a class index, or a 0/1 float vector (multi-label)."""

    name: str
    sequence: str
    label: int | np.ndarray


def read_sequences(path: Path, wanted: set[str]) -> dict[str, str]:
    """The sequences of the ``wanted`` accessions in a (gzipped) FASTA file."""
    found = {}
    for record in read_fasta(path):
        if record.name in wanted:
            found[record.name] = record.sequence
    return found


class _FunctionTask(Task):
    """Shared loading: label table rows of the split -> subset -> sequences from the proteins FASTA."""

    model_task = "sequence_classification"
    table = ""

    def parse_label(self, row: dict[str, str], where: str) -> int | np.ndarray:
        raise NotImplementedError

    def load(self, root: Path, split: str, *, limit: int | None = None, seed: int = 0) -> list[Protein]:
        self.check_split(split)
        table = require_file(root, f"function/{self.table}", self.name)
        fasta = require_file(root, f"proteins/{split}.fasta.gz", self.name)
        rows = [row for row in read_tsv(table) if row["split"] == split]
        rows = [rows[i] for i in select_subset(len(rows), limit, seed)]
        sequences = read_sequences(fasta, {row["accession"] for row in rows})
        missing = [row["accession"] for row in rows if row["accession"] not in sequences]
        if missing:
            raise ValueError(
                f"{fasta}: no sequence for {len(missing)} labelled accession(s), e.g. {missing[0]}"
            )
        return [
            Protein(row["accession"], sequences[row["accession"]], self.parse_label(row, str(table)))
            for row in rows
        ]

    def encode(
        self, record: Protein, *, alphabet: Alphabet, max_tokens: int, rng: np.random.Generator | None
    ) -> list[Encoded]:
        residues = encode_residues(alphabet, record.sequence, record.name)
        width = max_tokens - 2
        start = window_start(len(residues), width, rng)
        input_ids, spans = wrap(alphabet, residues[start : start + width])
        if self.multi_label:
            labels = torch.from_numpy(np.asarray(record.label, dtype=np.float32))
        else:
            labels = torch.tensor(int(record.label), dtype=torch.long)
        return [Encoded(input_ids, labels, spans, record.name)]

    def make_baseline(self, alphabet: Alphabet) -> Baseline:
        from favor.tasks.baselines import KmerLogisticRegression

        return KmerLogisticRegression(
            alphabet=alphabet, multi_label=self.multi_label, num_labels=self.num_labels
        )


class SingleLabelTask(_FunctionTask):
    """One class per protein (enzyme class or localisation)."""

    primary_metric = "macro_f1"

    def __init__(self, *, name: str, table: str, classes: tuple[str, ...], description: str) -> None:
        self.name, self.table, self.classes, self.description = name, table, classes, description
        self.num_labels = len(classes)
        self._index = {c: i for i, c in enumerate(classes)}

    def parse_label(self, row: dict[str, str], where: str) -> int:
        label = row["label"]
        if label not in self._index:
            raise ValueError(f"{where}: accession {row['accession']}: unknown {self.name} class {label!r}")
        return self._index[label]

    def metrics(self, scores: list[np.ndarray], examples: list[Encoded]) -> dict[str, float]:
        y_pred = np.array([int(np.argmax(s)) for s in scores])
        y_true = np.array([int(e.labels) for e in examples])
        return {"accuracy": accuracy(y_true, y_pred), "macro_f1": macro_f1(y_true, y_pred), "n": len(y_true)}


class GoTask(_FunctionTask):
    """GO molecular function: 100 terms per protein, independent (sigmoid) outputs."""

    name = "go_mf"
    table = "go_mf.tsv.gz"
    multi_label = True
    primary_metric = "fmax"
    description = "GO molecular function, 100 terms, multi-label"

    def __init__(self) -> None:
        self.terms: tuple[str, ...] | None = None
        self.num_labels = 100

    def load(self, root: Path, split: str, *, limit: int | None = None, seed: int = 0) -> list[Protein]:
        path = require_file(root, "function/go_mf_terms.tsv", self.name)
        self.terms = tuple(row["term"] for row in read_tsv(path))
        self.num_labels = len(self.terms)
        self._index = {t: i for i, t in enumerate(self.terms)}
        return super().load(root, split, limit=limit, seed=seed)

    def parse_label(self, row: dict[str, str], where: str) -> np.ndarray:
        label = np.zeros(self.num_labels, dtype=np.float32)
        for term in row["labels"].split():
            if term not in self._index:
                raise ValueError(f"{where}: accession {row['accession']}: term {term} not in go_mf_terms.tsv")
            label[self._index[term]] = 1.0
        return label

    def metrics(self, scores: list[np.ndarray], examples: list[Encoded]) -> dict[str, float]:
        logits = np.stack(scores).astype(np.float64)
        y_true = np.stack([e.labels.numpy() for e in examples])
        probabilities = 1.0 / (1.0 + np.exp(-logits))
        micro, macro = multilabel_auprc(y_true, probabilities)
        best, threshold = fmax(y_true, probabilities)
        return {
            "fmax": best,
            "fmax_threshold": threshold,
            "auprc_micro": micro,
            "auprc_macro": macro,
            "n": len(y_true),
        }


def ec_task() -> SingleLabelTask:
    return SingleLabelTask(
        name="ec", table="ec_class.tsv.gz", classes=EC_CLASSES, description="enzyme class (EC 1-6), 6 classes"
    )


def localization_task() -> SingleLabelTask:
    return SingleLabelTask(
        name="localization",
        table="localization.tsv.gz",
        classes=LOCALIZATION_CLASSES,
        description="subcellular localisation, 10 classes",
    )
