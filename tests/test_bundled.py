"""The model that ships with favor: favor-protein-small loads by name in every command that takes a model, is
what favor serve serves by default, and predicts held-out residues far better than the unigram baseline."""

import json

import numpy as np
import pytest

from favor import cli
from favor.data import sample_path
from favor.folders import BUNDLED_MODELS, DEFAULT_MODEL, load_served_model

NAME = "favor-protein-small"


def test_it_is_installed_small_and_loads_by_name():
    folder = BUNDLED_MODELS[NAME]
    assert (folder / "model.safetensors").stat().st_size <= 25 * 1024 * 1024
    served = load_served_model(NAME)
    assert served.config.task == "mlm" and served.config.backbone == "performer"
    assert DEFAULT_MODEL == NAME


def test_evaluate_by_name_beats_the_unigram_baseline(capsys):
    argv = ["evaluate", NAME, "--data", str(sample_path("test")), "--max-batches", "4", "--json"]
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["masked_accuracy"] > result["unigram_accuracy"] + 0.05
    assert result["perplexity"] < result["unigram_perplexity"] - 2.0


def test_embed_and_score_by_name(tmp_path, capsys):
    out = tmp_path / "emb.npz"
    assert cli.main(["embed", NAME, "--data", str(sample_path("test")), "--out", str(out)]) == 0
    with np.load(out) as stored:
        means = [stored[k] for k in stored.files if k.startswith("mean_layer")]
        assert means and np.isfinite(means[0]).all() and means[0].shape[0] == len(stored["names"])
    assert (
        cli.main(["score", NAME, "--sequence", "MKTAYIAKQRQISFVKSHFSRQ", "--mutations", "K2R", "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["scores"][0]["mutation"] == "K2R"


def test_serve_defaults_to_it():
    parser = cli.build_parser()
    args = parser.parse_args(["serve"])
    assert args.run_dir == NAME
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from favor.serve import create_app

    with TestClient(create_app(args.run_dir)) as client:
        assert client.get("/health").json()["model"] == NAME
