"""Run config validation: every key checked, clear errors, YAML-typed overrides."""

from __future__ import annotations

import dataclasses

import pytest

from favor.data import Alphabet
from favor.runs.config import (
    ConfigError,
    DataConfig,
    TrainConfig,
    apply_overrides,
    load_run_config,
    run_config_from_dict,
)


def test_empty_config_gets_defaults_and_derived_model_fields():
    run = run_config_from_dict({})
    assert run.data == DataConfig()
    assert run.train == TrainConfig()
    assert run.model.vocab_size == Alphabet.protein().vocab_size
    assert run.model.task == "mlm" and run.model.causal is False


def test_clm_objective_makes_a_causal_model():
    run = run_config_from_dict({"train": {"objective": "clm"}})
    assert run.model.task == "clm" and run.model.causal is True


def test_round_trip_through_to_dict():
    run = run_config_from_dict({"model": {"d_model": 32, "n_heads": 2}, "train": {"betas": [0.8, 0.9]}})
    again = run_config_from_dict(run.to_dict())
    assert again == run
    assert again.train.betas == (0.8, 0.9)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"train": {"lrr": 1.0}}, "unknown key 'lrr' in section 'train'"),
        ({"data": {"windw": 5}}, "unknown key 'windw' in section 'data'"),
        ({"optim": {}}, "unknown section 'optim'"),
        ({"model": {"d_modl": 8}}, "d_modl"),
        ({"train": {"lr": "fast"}}, "train.lr='fast': wrong type str, expected float"),
        ({"train": {"bf16": 1}}, "train.bf16=1: wrong type int"),
        ({"data": {"max_tokens": 1.5}}, "data.max_tokens=1.5: wrong type float"),
        ({"train": {"schedule": "step"}}, "train.schedule='step'"),
        ({"data": {"mode": "windows"}}, "data.mode='windows'"),
        ({"train": {"warmup_steps": -1}}, "train.warmup_steps=-1"),
        ({"model": {"task": "clm"}}, "model.task='clm' conflicts with train.objective='mlm'"),
        ({"model": {"vocab_size": 33}}, "model.vocab_size=33"),
        ({"model": {"max_length": 64}, "data": {"max_length": 128}}, "model.max_length=64"),
        ({"data": {"max_length": 512, "max_tokens": 100}}, "data.max_tokens=100"),
        ({"train": []}, "section 'train'"),
    ],
)
def test_bad_configs_name_the_key(data, needle):
    with pytest.raises(ConfigError, match=None) as info:
        run_config_from_dict(data, source="my.yaml")
    message = str(info.value)
    assert message.startswith("my.yaml: ")
    assert needle in message


def test_int_is_accepted_where_a_float_is_expected():
    run = run_config_from_dict({"train": {"lr": 1, "max_minutes": 2}})
    assert isinstance(run.train.lr, float) and run.train.lr == 1.0
    assert isinstance(run.train.max_minutes, float)


def test_overrides_are_yaml_typed_and_nested():
    data = apply_overrides(
        {"train": {"lr": 1.0}},
        ["train.lr=3e-4", "data.valid=null", "model.attention.nb_features=16", "train.bf16=true"],
    )
    assert data["train"]["lr"] == pytest.approx(3e-4)
    assert data["data"]["valid"] is None
    assert data["model"]["attention"]["nb_features"] == 16
    assert data["train"]["bf16"] is True
    run = run_config_from_dict(data)
    assert run.model.attention.nb_features == 16


@pytest.mark.parametrize("item", ["lr=3", "train.lr", ".lr=3", "train..lr=1"])
def test_malformed_overrides_are_errors(item):
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, [item])


def test_override_into_a_scalar_is_an_error():
    with pytest.raises(ConfigError, match="'lr' is not a section"):
        apply_overrides({"train": {"lr": 1.0}}, ["train.lr.x=2"])


def test_activation_checkpointing_sets_the_model_flag():
    run = run_config_from_dict({"train": {"activation_checkpointing": True}})
    assert run.model.gradient_checkpointing is True


def test_load_run_config_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_run_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_run_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="scalar.yaml"):
        load_run_config(scalar)


def test_every_train_and_data_field_has_a_default():
    for cls in (DataConfig, TrainConfig):
        for f in dataclasses.fields(cls):
            assert f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
