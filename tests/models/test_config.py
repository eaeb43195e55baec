import json

import pytest

from favor.models import ConvConfig, LinformerConfig, ModelConfig, PerformerConfig


def test_defaults_are_valid_and_round_trip_through_json():
    config = ModelConfig(
        backbone="cnn", conv=ConvConfig(kernel_size=3, dilations=(1, 2)), attention={"nb_features": 16}
    )
    data = json.loads(json.dumps(config.to_dict()))
    assert data["conv"]["dilations"] == [1, 2]
    assert ModelConfig.from_dict(data) == config
    assert isinstance(ModelConfig.from_dict(data).attention, PerformerConfig)


@pytest.mark.parametrize(
    ("kwargs", "field", "value"),
    [
        ({"backbone": "mamba"}, "backbone", "mamba"),
        ({"task": "translation"}, "task", "translation"),
        ({"d_model": 30, "n_heads": 4}, "d_model", "30"),
        ({"backbone": "linformer", "causal": True}, "causal", "True"),
        ({"dropout": -0.1}, "dropout", "-0.1"),
        ({"dropout": 1.0}, "dropout", "1.0"),
        ({"n_layers": 0}, "n_layers", "0"),
        ({"position": "rotary", "backbone": "lstm"}, "position", "rotary"),
        ({"position": "sinusoidal"}, "position", "sinusoidal"),
        ({"task": "clm", "causal": False}, "causal", "False"),
        ({"vocab_size": None, "input_dim": None}, "vocab_size", "None"),
        ({"task": "mlm", "vocab_size": None, "input_dim": 3}, "vocab_size", "None"),
        ({"backbone": "gru", "d_model": 15, "n_heads": 1}, "d_model", "15"),
        ({"pooling": "max"}, "pooling", "max"),
        ({"causal": "yes"}, "causal", "yes"),
    ],
)
def test_invalid_model_config_names_field_and_value(kwargs, field, value):
    with pytest.raises(ValueError, match=f"ModelConfig.{field}") as info:
        ModelConfig(**kwargs)
    assert value in str(info.value)


@pytest.mark.parametrize(
    ("factory", "kwargs", "field"),
    [
        (PerformerConfig, {"kernel": "cosine"}, "PerformerConfig.kernel"),
        (PerformerConfig, {"nb_features": 0}, "PerformerConfig.nb_features"),
        (PerformerConfig, {"norms": "unit"}, "PerformerConfig.norms"),
        (PerformerConfig, {"chunk_size": -1}, "PerformerConfig.chunk_size"),
        (LinformerConfig, {"proj_dim": 0}, "LinformerConfig.proj_dim"),
        (ConvConfig, {"dilations": ()}, "ConvConfig.dilations"),
        (ConvConfig, {"dilations": (1, 0)}, "ConvConfig.dilations"),
    ],
)
def test_invalid_sub_config(factory, kwargs, field):
    with pytest.raises(ValueError, match=field):
        factory(**kwargs)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown field.*d_hidden"):
        ModelConfig.from_dict({"d_hidden": 3})
    with pytest.raises(ValueError, match=r"ModelConfig.attention got unknown field.*features"):
        ModelConfig.from_dict({"attention": {"features": 3}})


def test_nested_dicts_are_validated():
    with pytest.raises(ValueError, match="PerformerConfig.kernel"):
        ModelConfig(attention={"kernel": "nope"})
