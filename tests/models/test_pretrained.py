"""Checkpoint folders: bit-identical round trips and clear errors on bad folders."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from favor.models import (
    SequenceModel,
    load_pretrained,
    save_pretrained,
)
from tiny_models import VOCAB as V
from tiny_models import tiny_config


def build(backbone: str = "performer", **overrides) -> SequenceModel:
    torch.manual_seed(0)
    return SequenceModel(tiny_config(backbone, **{"dropout": 0.1, **overrides}))


@pytest.mark.parametrize(
    ("backbone", "overrides"),
    [
        ("performer", {}),
        ("performer", {"causal": True, "task": "clm", "position": "rotary", "seed": 7}),
        ("transformer", {"tie_embeddings": False}),
        ("lstm", {"task": "sequence_classification"}),
        ("cnn", {"task": "contact", "pair_head": "mlp"}),
    ],
)
def test_round_trip_is_bit_identical(tmp_path, backbone, overrides):
    model = build(backbone, **overrides)
    model.redraw_projections(torch.Generator().manual_seed(123))
    model.eval()
    ids = torch.randint(0, V, (2, 9))
    expected = model(ids).logits
    model.save_pretrained(tmp_path / "ckpt")
    loaded = SequenceModel.from_pretrained(tmp_path / "ckpt")
    assert not loaded.training
    assert loaded.config == model.config
    assert torch.equal(loaded(ids).logits, expected)
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]


def test_tied_weights_are_stored_once_and_stay_tied(tmp_path):
    model = build("performer")
    save_pretrained(model, tmp_path)
    stored = load_file(str(tmp_path / "model.safetensors"))
    assert "embedding.tokens.weight" in stored and "head.decoder.weight" not in stored
    loaded = load_pretrained(tmp_path)
    assert loaded.head.decoder.weight is loaded.embedding.tokens.weight


def test_float64_model_loads_as_float64(tmp_path):
    model = build("gru").double().eval()
    save_pretrained(model, tmp_path)
    loaded = load_pretrained(tmp_path)
    ids = torch.randint(0, V, (1, 5))
    assert loaded.embedding.tokens.weight.dtype == torch.float64
    assert torch.equal(loaded(ids).logits, model(ids).logits)


def test_missing_unexpected_and_mismatched_tensors_are_named(tmp_path):
    save_pretrained(build("performer"), tmp_path)
    weights = tmp_path / "model.safetensors"
    tensors = load_file(str(weights))
    del tensors["backbone.blocks.1.attention.projection"]
    tensors["extra.weight"] = torch.zeros(2)
    tensors["backbone.final_norm.weight"] = torch.zeros(5)
    save_file(tensors, str(weights))
    with pytest.raises(ValueError) as info:
        load_pretrained(tmp_path)
    message = str(info.value)
    assert "model.safetensors" in message
    assert "missing tensors: backbone.blocks.1.attention.projection" in message
    assert "unexpected tensors: extra.weight" in message
    assert "backbone.final_norm.weight (file (5,), model (16,))" in message


def test_truncated_weights_file(tmp_path):
    save_pretrained(build("transformer"), tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"model\.safetensors: corrupt or truncated"):
        load_pretrained(tmp_path)


def test_bad_or_missing_config(tmp_path):
    save_pretrained(build("cnn"), tmp_path)
    config_path = tmp_path / "config.json"
    data = json.loads(config_path.read_text())
    data["backbone"] = "mamba"
    config_path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"config\.json: invalid model config.*backbone='mamba'"):
        load_pretrained(tmp_path)
    config_path.write_text("{not json")
    with pytest.raises(ValueError, match=r"config\.json: not valid JSON"):
        load_pretrained(tmp_path)
    config_path.unlink()
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_pretrained(tmp_path)


def test_missing_weights_file(tmp_path):
    save_pretrained(build("rnn"), tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        load_pretrained(tmp_path)


def test_saving_over_an_existing_checkpoint_leaves_no_temporary_files(tmp_path):
    save_pretrained(build("performer"), tmp_path)
    save_pretrained(build("performer", seed=3), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert load_pretrained(tmp_path).config.seed == 3
