"""The ``digits`` source: 8x8 digit images read pixel by pixel (64 steps of one value), classified
many-to-one (``sequence_classification``, 10 classes); a stratified shuffle holds out validation and test.
``favor evaluate`` reports accuracy and cross-entropy against the majority class's accuracy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from favor.data.arrays import IndexBatchLoader
from favor.data.digits import DIGITS_CLASSES, load_digits_split
from favor.evaluate.task_metrics import evaluate_task
from favor.folders import load_model
from favor.runs.sources.base import DataSource, RunData, index_loader, register
from favor.runs.validation import ConfigError

__all__ = ["DigitsSource", "digits_loader"]

PIXELS = 64


def digits_loader(
    config: Any, part: str, *, seed: int = 0, rank: int = 0, world_size: int = 1
) -> IndexBatchLoader:
    values, labels = load_digits_split(
        part, valid_fraction=config.valid_fraction, test_fraction=config.test_fraction
    )
    inputs, targets = torch.from_numpy(values), torch.from_numpy(labels)

    def make_batch(indices: np.ndarray, _epoch: int) -> dict[str, Any]:
        index = torch.from_numpy(indices)
        return {
            "input_values": inputs[index],
            "padding_mask": torch.zeros(len(indices), values.shape[1], dtype=torch.bool),
            "labels": targets[index],
        }

    return index_loader(len(values), config.batch_size, make_batch, part == "train", seed, rank, world_size)


class DigitsSource(DataSource):
    name = "digits"
    objectives = ("sequence_classification",)

    def check(self, data: Any) -> None:
        if data.max_length != PIXELS:
            raise ConfigError(f"data.max_length={data.max_length}: data.source=digits has 64 pixels per item")

    def model_fields(self, data: Any, objective: str) -> tuple[dict[str, Any], str]:
        fields = {"vocab_size": None, "input_dim": 1, "task": objective, "num_labels": DIGITS_CLASSES}
        return fields, "the digits source"

    def build(
        self, data: Any, *, objective: str, seed: int, rank: int = 0, world_size: int = 1, tbptt: int = 0
    ) -> RunData:
        shard = {"rank": rank, "world_size": world_size}
        train = digits_loader(data, "train", seed=seed, **shard)
        valid = digits_loader(data, "valid", **shard) if data.has_valid else None
        return RunData(train_loader=train, valid_loader=valid)

    def evaluate(
        self,
        run_dir: Path,
        config: Any,
        model_dir: Path,
        *,
        split: str,
        data: str | os.PathLike | None,
        device: torch.device,
        max_batches: int | None,
        options: dict[str, Any],
    ) -> dict[str, Any]:
        model, _ = load_model(model_dir, device=device)
        stats = evaluate_task(
            model,
            digits_loader(config.data, split),
            task="sequence_classification",
            device=device,
            max_batches=max_batches,
        )
        metrics = stats.to_dict("sequence_classification")
        return {
            "accuracy": metrics["accuracy"],
            "loss": metrics["loss"],
            "n_sequences": metrics["n_sequences"],
            "majority_accuracy": _majority_accuracy(config.data, split),
        }

    def format_metrics(self, run_dir: Any, metrics: dict[str, Any]) -> list[str]:
        return [
            f"{run_dir} on digits ({metrics['split']}: {metrics['n_sequences']} sequences)",
            f"  model     accuracy {metrics['accuracy']:.4f}  loss {metrics['loss']:.4f}",
            f"  majority  accuracy {metrics['majority_accuracy']:.4f}",
        ]


def _majority_accuracy(data: Any, split: str) -> float:
    """Accuracy of always predicting the most frequent training class."""
    fractions = {"valid_fraction": data.valid_fraction, "test_fraction": data.test_fraction}
    _, train = load_digits_split("train", **fractions)
    _, labels = load_digits_split(split, **fractions)
    return float(np.mean(labels == np.bincount(train).argmax()))


SOURCE = register(DigitsSource())
