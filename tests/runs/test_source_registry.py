"""The data-source registry: a source defined in one place (here, in this file) is trained, validated,
recorded in the run config and evaluated through the same paths as the built-in ones, and nothing else
needs to know its name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from favor.folders import load_model
from favor.runs import evaluate_run, format_metrics, get_source, run_config_from_dict, source_names
from favor.runs.config import ConfigError, load_run_config
from favor.runs.sources import all_objectives, base
from favor.runs.sources.base import DataSource, RunData, index_loader
from favor.runs.validation import check_min
from favor.train.run import train_run

BUILT_IN = ("protein", "digits", "g2p", "text", "timeseries")


@dataclass
class ParityConfig:
    """``data.parity``: sequences of 0/1 values labelled by whether they hold an odd number of ones."""

    n_items: int = 64

    def __post_init__(self) -> None:
        check_min("data.parity", "n_items", self.n_items, 8)


def parity_loader(n_items: int, length: int, part: str, batch_size: int, seed: int, rank: int, world: int):
    rng = np.random.default_rng({"train": 0, "valid": 1, "test": 2}[part])
    values = rng.integers(0, 2, size=(n_items, length)).astype(np.float32)
    labels = torch.from_numpy(values.sum(axis=1).astype(np.int64) % 2)
    inputs = torch.from_numpy(values)[..., None]

    def make_batch(indices: np.ndarray, _epoch: int) -> dict[str, Any]:
        index = torch.from_numpy(indices)
        return {
            "input_values": inputs[index],
            "padding_mask": torch.zeros(len(indices), length, dtype=torch.bool),
            "labels": labels[index],
        }

    return index_loader(n_items, batch_size, make_batch, part == "train", seed, rank, world)


class ParitySource(DataSource):
    name = "parity"
    objectives = ("sequence_classification",)
    section = ParityConfig

    def model_fields(self, data: Any, objective: str) -> tuple[dict[str, Any], str]:
        return {"vocab_size": None, "input_dim": 1, "task": objective, "num_labels": 2}, "the parity source"

    def build(self, data, *, objective, seed, rank=0, world_size=1, tbptt=0) -> RunData:
        n, length, batch = data.parity.n_items, data.max_length, data.batch_size
        train = parity_loader(n, length, "train", batch, seed, rank, world_size)
        valid = parity_loader(n, length, "valid", batch, 0, rank, world_size) if data.has_valid else None
        return RunData(train_loader=train, valid_loader=valid)

    def evaluate(
        self,
        run_dir: Path,
        config,
        model_dir: Path,
        *,
        split,
        data: str | os.PathLike | None,
        device,
        max_batches,
        options,
    ) -> dict[str, Any]:
        model, _ = load_model(model_dir, device=device)
        batch = next(
            iter(parity_loader(config.data.parity.n_items, config.data.max_length, split, 1000, 0, 0, 1))
        )
        with torch.no_grad():
            logits = model(input_values=batch["input_values"], padding_mask=batch["padding_mask"]).logits
        return {"accuracy": float((logits.argmax(-1) == batch["labels"]).float().mean()), "n": len(logits)}

    def format_metrics(self, run_dir, metrics) -> list[str]:
        return [f"{run_dir}: parity accuracy {metrics['accuracy']:.3f} on {metrics['n']} {metrics['split']}"]


@pytest.fixture
def parity(monkeypatch):
    source_names()  # the built-in sources are registered first
    monkeypatch.setitem(base._REGISTRY, "parity", ParitySource())
    return base._REGISTRY["parity"]


def config_data(**data) -> dict[str, Any]:
    return {
        "model": {
            "backbone": "performer",
            "d_model": 16,
            "n_layers": 1,
            "n_heads": 2,
            "d_ff": 32,
            "max_length": 12,
            "attention": {"nb_features": 8},
        },
        "data": {"source": "parity", "max_length": 12, "max_tokens": 96, **data},
        "train": {
            "objective": "sequence_classification",
            "max_steps": 3,
            "eval_interval": 3,
            "warmup_steps": 1,
            "log_interval": 1,
            "cpu_threads": 1,
        },
    }


def test_built_in_sources_are_registered_with_their_objectives():
    assert set(BUILT_IN) <= set(source_names())
    assert source_names()[0] == "protein"  # the default leads every list in messages
    assert get_source("protein").objectives == ("mlm", "clm")
    assert {"mlm", "clm", "seq2seq", "token_regression", "sequence_classification"} <= set(all_objectives())
    with pytest.raises(ConfigError, match="data.source='nope': expected one of protein"):
        get_source("nope")


def test_a_registered_source_fills_the_model_and_keeps_its_own_section(parity):
    config = run_config_from_dict(config_data(parity={"n_items": 32}))
    assert (config.model.input_dim, config.model.num_labels, config.model.task) == (
        1,
        2,
        "sequence_classification",
    )
    assert config.data.parity.n_items == 32
    written = config.to_dict()["data"]
    assert written["parity"] == {"n_items": 32}
    assert "text" not in written and "timeseries" not in written and "sections" not in written
    assert run_config_from_dict(config.to_dict()).to_dict() == config.to_dict()


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"parity": {"n_items": 2}}, "data.parity.n_items=2: expected an integer >= 8"),
        ({"parity": {"n_tems": 9}}, "unknown key 'n_tems' in section 'data.parity'"),
        ({"train": "x.fasta"}, "data.train / data.valid name files (FASTA files for data.source=protein)"),
        ({"sections": {}}, "unknown key 'sections' in section 'data'"),
    ],
)
def test_a_registered_sources_config_errors_name_the_key(parity, data, needle):
    with pytest.raises(ConfigError) as info:
        run_config_from_dict(config_data(**data))
    assert needle in str(info.value)


def test_another_sources_section_is_refused(parity):
    with pytest.raises(
        ConfigError, match="data.parity is set but data.source='protein'; it is read by parity"
    ):
        run_config_from_dict({"data": {"source": "protein", "parity": {"n_items": 16}}})
    with pytest.raises(ConfigError, match="expected sequence_classification"):
        run_config_from_dict({**config_data(), "train": {"objective": "mlm"}})


def test_a_registered_source_trains_resumes_and_evaluates(parity, tmp_path):
    config = run_config_from_dict(config_data())
    summary = train_run(config, out_dir=tmp_path / "run", quiet=True)
    assert summary["steps"] == 3
    assert load_run_config(tmp_path / "run" / "config.yaml").data.source == "parity"
    metrics = evaluate_run(tmp_path / "run", split="valid", device="cpu")
    assert metrics["source"] == "parity" and metrics["split"] == "valid" and metrics["n"] == 64
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert format_metrics("run", metrics) == [f"run: parity accuracy {metrics['accuracy']:.3f} on 64 valid"]
    with pytest.raises(ValueError, match="--beam: not an option of a parity run"):
        evaluate_run(tmp_path / "run", device="cpu", beam=4)
    with pytest.raises(ValueError, match="--data is not for a parity run"):
        evaluate_run(tmp_path / "run", device="cpu", data="x.txt")


def test_a_source_from_an_installed_entry_point_is_registered(monkeypatch):
    import favor.runs.sources as sources

    class Point:
        def load(self):
            return ParitySource()

    seen = []
    monkeypatch.setattr(sources, "entry_points", lambda group: seen.append(group) or [Point()])
    monkeypatch.setattr(sources, "_discovered", False)
    monkeypatch.setattr(base, "_REGISTRY", {})
    assert source_names()[-1] == "parity" and seen == ["favor.sources"]
    assert set(BUILT_IN) <= set(source_names())
    with pytest.raises(ValueError, match="registered twice"):

        class Other(ParitySource):
            pass

        sources.register(Other())
