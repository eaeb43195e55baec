"""``evaluate_run`` on tiny trained runs: report keys, value ranges, the same masks for every model."""

from __future__ import annotations

import math

import pytest

from favor.data import sample_path
from favor.runs.config import run_config_from_dict
from favor.runs.evaluate import evaluate_run
from favor.train.run import train_run
from tiny_models import tiny_run


def _run(tmp_path, name: str, *, backbone: str = "performer", objective: str = "mlm"):
    config = tiny_run(
        model={"backbone": backbone},
        data={"max_tokens": 512, "valid": "none"},
        train={"objective": objective, "max_steps": 2, "cpu_threads": 1},
    )
    run_dir = tmp_path / name
    train_run(run_config_from_dict(config), out_dir=run_dir, quiet=True)
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return {
        "performer": _run(root, "performer"),
        "transformer": _run(root, "transformer", backbone="transformer"),
        "clm": _run(root, "clm", objective="clm"),
    }


def _check_ranges(metrics):
    for key in ("masked_accuracy", "perplexity", "n_masked", "unigram_accuracy", "objective"):
        assert key in metrics
    assert 0.0 <= metrics["masked_accuracy"] <= 1.0 and 0.0 <= metrics["unigram_accuracy"] <= 1.0
    assert metrics["perplexity"] >= 1.0 and metrics["unigram_perplexity"] >= 1.0
    assert metrics["perplexity"] == pytest.approx(math.exp(metrics["loss"]))
    assert metrics["n_masked"] > 0


def test_every_model_is_scored_on_the_same_masks(runs):
    test = sample_path("test")
    a = evaluate_run(runs["performer"], data=test, max_batches=3, device="cpu")
    b = evaluate_run(runs["transformer"], data=test, max_batches=3, device="cpu")
    for metrics in (a, b):
        _check_ranges(metrics)
        assert metrics["objective"] == "mlm"
    assert a["n_masked"] == b["n_masked"]
    # Same targets and same training data: identical unigram numbers.
    assert a["unigram_loss"] == b["unigram_loss"] and a["unigram_accuracy"] == b["unigram_accuracy"]
    assert a["loss"] != b["loss"]


def test_concatenated_windows(runs):
    metrics = evaluate_run(runs["performer"], data=sample_path("test"), concatenated=True, max_batches=2)
    _check_ranges(metrics)
    assert metrics["mode"] == "concatenated" and metrics["n_sequences"] > 0


def test_causal_runs_report_next_token_metrics(runs):
    metrics = evaluate_run(runs["clm"], data=sample_path("test"), max_batches=2, device="cpu")
    _check_ranges(metrics)
    assert metrics["objective"] == "clm"
    # Nearly every position predicts its successor: far more targets than 15% masking gives.
    mlm = evaluate_run(runs["performer"], data=sample_path("test"), max_batches=2, device="cpu")
    assert metrics["n_masked"] > 3 * mlm["n_masked"]


def test_errors_name_what_is_missing(tmp_path, runs):
    with pytest.raises(FileNotFoundError, match="run folder not found"):
        evaluate_run(tmp_path / "nothing", data=sample_path("test"))
    with pytest.raises(FileNotFoundError, match="nope.fasta"):
        evaluate_run(runs["performer"], data=tmp_path / "nope.fasta")
    with pytest.raises(ValueError, match="max_length=100 exceeds"):
        evaluate_run(runs["performer"], data=sample_path("test"), max_length=100)
