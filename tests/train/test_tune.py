"""``favor tune``: trials from the tune: search space, results table, best config, resumable SQLite study."""

from __future__ import annotations

import pytest
import yaml

from favor import cli
from favor.runs.config import load_run_config
from favor.runs.search_space import Param, apply_params, parse_space

CONFIG = {
    "model": {"backbone": "gru", "d_model": 8, "n_layers": 1, "max_length": 16},
    "data": {
        "source": "timeseries",
        "max_length": 16,
        "max_tokens": 128,
        "valid_fraction": 0.15,
        "test_fraction": 0.15,
        "timeseries": {"horizon": 2},
    },
    "train": {"objective": "token_regression", "max_steps": 3, "eval_interval": 1, "cpu_threads": 1},
    "tune": {"train.lr": {"low": 1.0e-4, "high": 1.0e-2, "log": True}, "model.d_model": [8, 16]},
}


def test_search_space_parsing():
    space = {p.name: p for p in parse_space(CONFIG["tune"])}
    assert space["train.lr"] == Param(name="train.lr", low=1e-4, high=1e-2, log=True)
    assert space["model.d_model"].choices == (8, 16)
    assert parse_space({"model.n_layers": {"low": 1, "high": 3}})[0].is_int
    assert apply_params({"train": {"lr": 1.0}}, {"train.lr": 0.5, "model.attention.nb_features": 4}) == {
        "train": {"lr": 0.5},
        "model": {"attention": {"nb_features": 4}},
    }


def test_two_trials_then_resume_adds_one(tmp_path, capsys):
    optuna = pytest.importorskip("optuna")
    pytest.importorskip("statsmodels")

    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    study_dir = tmp_path / "study"
    assert cli.main(["tune", str(path), "--trials", "2", "--study-dir", str(study_dir)]) == 0
    out = capsys.readouterr().out
    assert "| trial | state | loss |" in out and "best trial" in out
    storage = f"sqlite:///{study_dir / 'study.db'}"
    assert len(optuna.load_study(study_name="tune", storage=storage).trials) == 2
    assert cli.main(["tune", str(path), "--trials", "3", "--study-dir", str(study_dir)]) == 0
    study = optuna.load_study(study_name="tune", storage=storage)
    assert [t.number for t in study.trials] == [0, 1, 2]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in study.trials)
    # The best config is an ordinary run config with the best trial's values.
    best = load_run_config(study_dir / "best.yaml")
    assert best.tune == {} and best.model.d_model == study.best_trial.params["model.d_model"]
    assert best.train.lr == pytest.approx(study.best_trial.params["train.lr"])
    assert (study_dir / "trials.md").read_text().count("\n") == 5
    assert "optimises 'loss'" in _error(
        ["tune", str(path), "--trials", "4", "--study-dir", str(study_dir), "--metric", "mae"], capsys
    )


def _error(argv, capsys) -> str:
    capsys.readouterr()
    assert cli.main(argv) == 1
    return capsys.readouterr().err
