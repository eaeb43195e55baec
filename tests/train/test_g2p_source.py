"""The g2p source end to end through the command line: train a tiny encoder-decoder, evaluate it with
phoneme and word error rates (greedy and beam), transcribe a word; and its config errors."""

from __future__ import annotations

import json

import pytest
import yaml

from favor import cli
from favor.models import Seq2SeqModel, load_pretrained
from favor.runs.config import ConfigError, run_config_from_dict

TINY = {
    "model": {"backbone": "performer", "d_model": 16, "n_layers": 1, "decoder_layers": 1, "n_heads": 2,
              "d_ff": 32, "max_length": 32, "attention": {"nb_features": 8}},
    "data": {"source": "g2p", "max_length": 32, "max_tokens": 512, "valid_max_sequences": 20},
    "train": {"objective": "seq2seq", "max_steps": 3, "eval_interval": 3, "log_interval": 1,
              "warmup_steps": 1, "cpu_threads": 1},
}  # fmt: skip


@pytest.mark.parametrize("backbone", ["performer", "lstm"])
def test_train_evaluate_generate(tmp_path, capsys, backbone):
    config = json.loads(json.dumps(TINY))
    config["model"]["backbone"] = backbone
    path = tmp_path / "g2p.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    assert cli.main(["train", str(path), "--out", str(run_dir), "--quiet"]) == 0
    assert isinstance(load_pretrained(run_dir / "model"), Seq2SeqModel)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["valid"]["token_accuracy"] >= 0.0
    for beam in ("1", "3"):
        capsys.readouterr()
        assert cli.main(["evaluate", str(run_dir), "--json", "--max-words", "7", "--beam", beam]) == 0
        metrics = json.loads(capsys.readouterr().out)
        assert metrics["n_words"] == 7 and metrics["beam"] == int(beam)
        assert metrics["word_error_rate"] >= 0.0 and metrics["phoneme_error_rate"] >= 0.0
        assert metrics["n_words_in_split"] > 10_000
        # A word right with stress is right without it: that WER can only be lower or equal.
        assert metrics["stress"] is True
        assert metrics["without_stress"]["word_error_rate"] <= metrics["word_error_rate"]
    capsys.readouterr()
    assert cli.main(["generate", str(run_dir), "--source", "hello", "--beam", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["source"] == "hello" and isinstance(result["phonemes"], list)
    assert cli.main(["generate", str(run_dir), "--source", "hello"]) == 0
    assert cli.main(["generate", str(run_dir), "--source", "h3llo"]) == 1
    assert "character '3' at position 1" in capsys.readouterr().err


def test_config_errors_are_clear():
    config = json.loads(json.dumps(TINY))
    config["train"]["objective"] = "clm"
    with pytest.raises(ConfigError, match="train.objective='clm' does not fit data.source='g2p'"):
        run_config_from_dict(config)
    config = json.loads(json.dumps(TINY))
    config["model"]["backbone"] = "cnn"
    with pytest.raises(ConfigError, match="backbone='cnn' is invalid"):
        run_config_from_dict(config)


def test_too_short_max_length_names_the_longest_word(tmp_path):
    from favor.runs.sources.g2p import g2p_words

    config = json.loads(json.dumps(TINY))
    config["data"]["max_length"] = 20
    run = run_config_from_dict(config)
    with pytest.raises(ValueError, match="data.max_length=20 is shorter than the g2p train part needs"):
        g2p_words(run.data, "train")


@pytest.mark.parametrize("backbone", ["performer", "transformer", "lstm"])
def test_shipped_config_builds_every_seq2seq_backbone(backbone):
    from pathlib import Path

    from favor.models import build_model
    from favor.runs.config import load_run_config

    path = Path(__file__).resolve().parents[2] / "configs" / "g2p_tiny.yaml"
    raw = yaml.safe_load(path.read_text())
    run = load_run_config(path, overrides=[f"model.backbone={backbone}"])
    assert (run.data.source, run.model.task, run.model.vocab_size) == ("g2p", "seq2seq", 117)
    values = run.to_dict()
    for section in ("data", "train"):
        for key, value in raw[section].items():
            assert values[section][key] == value, f"{section}.{key}"
    assert isinstance(build_model(run.model), Seq2SeqModel)


def test_without_stress_the_model_learns_and_is_scored_on_39_phonemes(tmp_path, capsys):
    from favor.data.g2p import PHONEMES, G2PVocabulary
    from favor.runs.sources.g2p import SOURCE

    config = json.loads(json.dumps(TINY))
    config["data"]["g2p"] = {"stress": False}
    run = run_config_from_dict(config)
    data = SOURCE.build(run.data, objective="seq2seq", seed=0)
    vocab = G2PVocabulary()
    stressed = {vocab.ids[p] for p in PHONEMES if p[-1] in "012"}
    labels = {
        t
        for _, batch in zip(range(20), data.train_loader, strict=False)
        for t in batch["labels"].flatten().tolist()
    }
    assert labels and not labels & stressed
    path = tmp_path / "g2p.yaml"
    path.write_text(yaml.safe_dump(config))
    assert cli.main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main(["evaluate", str(tmp_path / "run"), "--json", "--max-words", "5"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["stress"] is False and "without_stress" not in metrics
    config["data"]["g2p"] = {"stress": "no"}
    with pytest.raises(ConfigError, match=r"data.g2p.stress='no': wrong type str, expected bool"):
        run_config_from_dict(config)
