"""Every data source end to end: a few training steps through the CLI, then ``favor evaluate --json`` with
the task's own metrics; character generation; truncated BPTT; source-specific config errors."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from favor import cli
from favor.data.text import CharVocabulary
from favor.models import SequenceModel
from favor.runs.config import ConfigError, run_config_from_dict
from favor.train.distributed import DistContext
from favor.train.tbptt import tbptt_window
from favor.train.trainer import Trainer

SMALL = {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "attention": {"nb_features": 8}}
TRAIN = {"max_steps": 4, "eval_interval": 2, "warmup_steps": 1, "log_interval": 2, "cpu_threads": 1}

TASKS = {
    "timeseries": {
        "model": {**SMALL, "max_length": 16},
        "data": {
            "source": "timeseries",
            "max_length": 16,
            "max_tokens": 128,
            "valid_fraction": 0.15,
            "test_fraction": 0.15,
            "timeseries": {"dataset": "sunspots", "horizon": 3, "season": 11, "arima_order": [1, 0, 0]},
        },
        "train": {**TRAIN, "objective": "token_regression"},
    },
    "text": {
        "model": {**SMALL, "max_length": 32},
        "data": {
            "source": "text",
            "max_length": 32,
            "max_tokens": 256,
            "valid_fraction": 0.01,
            "test_fraction": 0.01,
        },
        "train": {**TRAIN, "objective": "clm", "eval_max_batches": 2},
    },
    "digits": {
        "model": {**SMALL, "max_length": 64},
        "data": {
            "source": "digits",
            "max_length": 64,
            "max_tokens": 512,
            "valid_fraction": 0.1,
            "test_fraction": 0.1,
        },
        "train": {**TRAIN, "objective": "sequence_classification"},
    },
}
# The optional dependency each source reads its data with (statsmodels: the series and ARIMA; scikit-learn:
# the digits).
NEEDS = {"timeseries": "statsmodels", "digits": "sklearn"}
EXPECTED_KEYS = {
    "timeseries": {"mae", "rmse", "mase", "baselines", "n_windows", "horizon"},
    "text": {"bits_per_char", "perplexity", "accuracy", "unigram_bits_per_char", "n_chars"},
    "digits": {"accuracy", "loss", "majority_accuracy", "n_sequences"},
}


def _train(tmp_path, name: str, config: dict, *extra: str) -> object:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / name
    assert cli.main(["train", str(path), "--out", str(run_dir), "--quiet", *extra]) == 0
    return run_dir


def _evaluate(run_dir, capsys, *extra: str) -> dict:
    capsys.readouterr()
    assert cli.main(["evaluate", str(run_dir), "--json", *extra]) == 0
    out = capsys.readouterr().out.strip()
    assert len(out.splitlines()) == 1
    return json.loads(out)


@pytest.mark.parametrize("source", list(TASKS))
def test_each_task_trains_and_reports_its_metrics(tmp_path, capsys, source):
    if source in NEEDS:
        pytest.importorskip(NEEDS[source])
    run_dir = _train(tmp_path, source, TASKS[source])
    assert "trained 4 steps" in capsys.readouterr().out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["source"] == source and summary["valid"]["loss"] is not None
    metrics = _evaluate(run_dir, capsys, "--max-batches", "3")
    assert metrics["source"] == source and metrics["split"] == "test"
    assert EXPECTED_KEYS[source] <= set(metrics)
    if source == "timeseries":
        assert set(metrics["baselines"]) == {"naive", "seasonal_naive", "arima"}
        assert json.loads((run_dir / "timeseries.json").read_text())["normalizer"]["std"] > 0
    if source == "digits":
        assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.05 < metrics["majority_accuracy"] < 0.2
    # Resuming continues from the checkpoint like any protein run.
    assert cli.main(["train", "--resume", str(run_dir), "--max-steps", "5", "--quiet"]) == 0
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 5


def test_many_to_one_forecasting(tmp_path, capsys):
    pytest.importorskip("statsmodels")
    config = json.loads(json.dumps(TASKS["timeseries"]))
    config["train"]["objective"] = "sequence_regression"
    run_dir = _train(tmp_path, "m2o", config, "--set", "model.backbone=gru", "--valid", "none")
    metrics = _evaluate(run_dir, capsys, "--split", "valid")
    assert metrics["task"] == "sequence_regression" and metrics["split"] == "valid"
    assert metrics["mase"] == pytest.approx(
        metrics["mae"] / json.loads((run_dir / "timeseries.json").read_text())["mase_scale"]
    )


def test_char_model_generates_with_its_saved_vocabulary(tmp_path, capsys):
    run_dir = _train(tmp_path, "char", TASKS["text"], "--valid", "none", "--max-steps", "1")
    assert (run_dir / "vocab.json").is_file() and (run_dir / "model" / "vocab.json").is_file()
    capsys.readouterr()
    argv = ["generate", str(run_dir), "--prompt", "The ", "--max-new-tokens", "12", "--json"]
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["sequence"].startswith("The ") and result["new_tokens"] == 12
    assert cli.main([*argv[:3], "caf\u00e9", *argv[4:]]) == 1
    assert "unknown character" in capsys.readouterr().err


def test_tbptt_carries_state_without_gradient_across_windows():
    torch.manual_seed(0)
    config = run_config_from_dict(
        {
            "model": {
                "backbone": "lstm",
                "d_model": 16,
                "n_layers": 2,
                "max_length": 8,
                "dropout": 0.0,
                "tie_embeddings": False,
            },
            "data": {"source": "text", "max_length": 8, "max_tokens": 32},
            "train": {"objective": "clm", "tbptt": 8},
        }
    )
    model = SequenceModel(config.model)
    first, second = torch.randint(2, 98, (2, 4, 8))
    _, state = tbptt_window(model, first, None)
    for h, c in state.layers:
        assert not h.requires_grad and not c.requires_grad and h.abs().sum() > 0
    carried, _ = tbptt_window(model, second, state)
    fresh, _ = tbptt_window(model, second, None)
    assert not torch.allclose(carried, fresh)
    # Gradients of the second window's loss reach its own inputs only, never the first window's.
    embedded = model.embedding.tokens.weight
    embedded.grad = None
    carried.sum().backward()
    used = set(second.unique().tolist())
    untouched = [t for t in first.unique().tolist() if t not in used]
    assert untouched and embedded.grad[untouched].abs().sum() == 0
    assert embedded.grad[list(used)].abs().sum() > 0


def test_trainer_with_tbptt_resets_at_each_epoch():
    config = run_config_from_dict(
        {
            "model": {"backbone": "gru", "d_model": 8, "n_layers": 1, "max_length": 16},
            "data": {"source": "text", "max_length": 16, "max_tokens": 64, "valid": "none"},
            "train": {"objective": "clm", "tbptt": 16, "max_steps": 3, "cpu_threads": 1},
        }
    )
    trainer = Trainer(config=config, dist=DistContext())
    assert trainer._carry is None
    trainer.train_step()
    assert trainer._carry is not None and not trainer._carry.layers[0].requires_grad
    assert trainer.train_step().loss > 0


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"data": {"source": "text"}}, "does not fit data.source='text'"),
        ({"data": {"source": "text"}, "train": {"objective": "clm", "tbptt": 8}}, "train.tbptt=8 needs"),
        (
            {
                "data": {"source": "digits", "max_length": 32},
                "train": {"objective": "sequence_classification"},
            },
            "64",
        ),
        ({"data": {"source": "protein", "text": {"vocabulary": "bytes"}}}, "data.text is set"),
        (
            {"data": {"source": "timeseries", "train": "x.fa"}, "train": {"objective": "token_regression"}},
            "FASTA",
        ),
        (
            {
                "data": {"source": "timeseries"},
                "train": {"objective": "token_regression"},
                "model": {"causal": False},
            },
            "model.causal=False conflicts",
        ),
        ({"tune": {"train.lr": {"low": 1, "high": 0.1}}}, "tune.train.lr"),
        ({"tune": {"lr": [1, 2]}}, "dotted key"),
    ],
)
def test_source_config_errors_name_the_key(data, needle):
    with pytest.raises(ConfigError) as info:
        run_config_from_dict(data, source="x.yaml")
    assert needle in str(info.value)


def test_text_config_fills_in_the_vocabulary_and_round_trips():
    run = run_config_from_dict(
        {"data": {"source": "text", "text": {"vocabulary": "bytes"}}, "train": {"objective": "clm"}}
    )
    assert run.model.vocab_size == CharVocabulary.bytes().vocab_size and run.model.causal
    assert run_config_from_dict(run.to_dict()) == run
    assert "timeseries" not in run.to_dict()["data"]


def test_carried_state_round_trips_through_named_tensors():
    from favor.models.outputs import DecodingState
    from favor.train.tbptt import carry_from_tensors, carry_to_tensors

    h, c, g = torch.randn(2, 3, 4), torch.randn(2, 3, 4), torch.randn(1, 3, 4)
    tensors, layout = carry_to_tensors(DecodingState(position=16, layers=[(h, c), g]))
    assert layout == [2, 0] and set(tensors) == {"layer0.0", "layer0.1", "layer1"}
    back = carry_from_tensors(tensors, layout, "cpu")
    assert back.position == 0 and torch.equal(back.layers[0][1], c) and torch.equal(back.layers[1], g)
    with pytest.raises(ValueError, match="layer1"):
        carry_from_tensors({"layer0.0": h, "layer0.1": c}, layout, "cpu")
    with pytest.raises(TypeError, match="layer 0"):
        carry_to_tensors(DecodingState(layers=[{"k": h}]))


def test_label_smoothing_needs_an_objective_scored_by_one_class_id():
    config = json.loads(json.dumps(TASKS["timeseries"]))
    config["train"]["label_smoothing"] = 0.1
    with pytest.raises(ConfigError, match=r"label_smoothing=0.1 needs an objective scored by one class id"):
        run_config_from_dict(config)
    config = json.loads(json.dumps(TASKS["digits"]))
    config["train"]["label_smoothing"] = 0.1
    assert run_config_from_dict(config).train.label_smoothing == 0.1
