"""Finding the model in a run directory, and clear errors for broken model folders (naming the file)."""

import hashlib
import json
import re
import shutil

import pytest
import torch

from favor.data import Alphabet
from favor.folders import ModelLoadError, load_served_model, resolve_model_dir
from favor.models import ModelConfig, SequenceModel, save_pretrained


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model")
    config = ModelConfig(
        task="mlm", vocab_size=29, d_model=16, n_layers=1, n_heads=2, d_ff=32, max_length=32, dropout=0.0,
        attention={"nb_features": 8},
    )  # fmt: skip
    save_pretrained(SequenceModel(config), folder)
    return folder


@pytest.fixture
def model_dir(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "model_copy")


def _checkpoint_run(saved, root):
    """A run directory laid out like favor.train's checkpoints, with a manifest of the model files."""
    step = root / "checkpoints" / "step-00000010"
    shutil.copytree(saved, step / "model")
    manifest = {
        f"model/{p.name}": {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "bytes": p.stat().st_size}
        for p in (step / "model").iterdir()
    }
    (step / "manifest.json").write_text(json.dumps(manifest))
    (root / "checkpoints" / "latest").write_text("step-00000010\n")
    return step


def test_model_folder_loads_in_eval_mode(model_dir):
    served = load_served_model(model_dir)
    assert not served.model.training and served.alphabet == Alphabet.protein()
    assert all(not p.requires_grad for p in served.model.parameters())


def test_run_dir_resolves_final_model_then_latest_checkpoint(saved, tmp_path):
    step = _checkpoint_run(saved, tmp_path / "run")
    assert resolve_model_dir(tmp_path / "run") == step / "model"
    assert resolve_model_dir(step) == step / "model"
    shutil.copytree(saved, tmp_path / "run" / "model")
    assert resolve_model_dir(tmp_path / "run") == tmp_path / "run" / "model"


def test_missing_model_names_what_was_looked_for(tmp_path):
    with pytest.raises(ModelLoadError, match="no model found.*config.json"):
        resolve_model_dir(tmp_path)
    with pytest.raises(ModelLoadError, match="no such file"):
        resolve_model_dir(tmp_path / "absent")
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest").write_text("step-9\n")
    with pytest.raises(ModelLoadError, match="latest: names 'step-9'"):
        resolve_model_dir(tmp_path)


def test_truncated_weights_name_the_file(model_dir):
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match=r"model\.safetensors.*(corrupt|truncated)"):
        load_served_model(model_dir)


def test_tampered_weights_header_names_the_file(model_dir):
    weights = model_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:16] = b"{garbage"
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=r"model\.safetensors"):
        load_served_model(model_dir)


@pytest.mark.parametrize(
    ("edit", "pattern"),
    [
        (lambda text: text[: len(text) // 2], r"config\.json: not valid JSON"),
        (lambda text: text.replace('"d_model": 16', '"d_model": 24'), r"model\.safetensors: does not match"),
        (
            lambda text: text.replace('"n_heads": 2', '"n_heads": 0'),
            r"config\.json: invalid model config.*n_heads",
        ),
        (lambda text: text.replace('"vocab_size": 29', '"vocab_size": 33'), r"model\.safetensors|vocab_size"),
    ],
)
def test_tampered_config_names_the_file(model_dir, edit, pattern):
    config = model_dir / "config.json"
    config.write_text(edit(config.read_text()))
    with pytest.raises(ModelLoadError, match=pattern):
        load_served_model(model_dir)


def test_missing_weights_name_the_file(model_dir):
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match=r"model\.safetensors: no weights file"):
        load_served_model(model_dir)


def test_checkpoint_manifest_catches_modified_weights(saved, tmp_path):
    step = _checkpoint_run(saved, tmp_path / "run")
    weights = step / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    # Flip one byte of tensor data: the file still parses, only the hash can tell.
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=r"model\.safetensors: SHA-256 does not match"):
        load_served_model(tmp_path / "run")


def test_alphabet_must_fit_the_vocabulary(model_dir):
    alphabet = Alphabet(extra="XB")
    (model_dir / "alphabet.json").write_text(json.dumps(alphabet.to_dict()))
    with pytest.raises(ModelLoadError, match="vocab_size=29 does not match the alphabet's 26 tokens"):
        load_served_model(model_dir)
    (model_dir / "alphabet.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"alphabet\.json: not a valid alphabet"):
        load_served_model(model_dir)


def test_character_vocabulary_must_fit_the_model(model_dir):
    from favor.data.text import VOCAB_FILE, CharVocabulary

    CharVocabulary.ascii().save(model_dir / VOCAB_FILE)
    with pytest.raises(ModelLoadError, match=r"vocab_size=29 does not match .*vocab\.json's 98 tokens"):
        load_served_model(model_dir)
    (model_dir / VOCAB_FILE).write_text("{not json")
    with pytest.raises(ModelLoadError, match=r"vocab\.json"):
        load_served_model(model_dir)
    # An alphabet beside it says the model reads proteins: the vocabulary file is not consulted.
    (model_dir / "alphabet.json").write_text(json.dumps(Alphabet.protein().to_dict()))
    assert load_served_model(model_dir).vocabulary is None


def test_a_bundled_name_resolves_unless_a_path_of_that_name_exists(saved, tmp_path, monkeypatch):
    import favor.folders as folders

    monkeypatch.setitem(folders.BUNDLED_MODELS, "tiny-bundled", saved)
    assert resolve_model_dir("tiny-bundled") == saved
    assert load_served_model("tiny-bundled").model.config.d_model == 16
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny-bundled").mkdir()  # a local folder of that name wins (and holds no model here)
    with pytest.raises(ModelLoadError, match="no model found"):
        resolve_model_dir("tiny-bundled")
    monkeypatch.setitem(folders.BUNDLED_MODELS, "gone", tmp_path / "missing")
    with pytest.raises(ModelLoadError, match="gone: the bundled model's files are missing"):
        resolve_model_dir("gone")
    with pytest.raises(ModelLoadError, match="not a bundled model"):
        folders.bundled_model_dir("nope")


def test_non_finite_weights_are_refused(model_dir):
    from safetensors.torch import load_file, save_file

    weights = model_dir / "model.safetensors"
    tensors = load_file(str(weights))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] = float("nan")
    save_file(tensors, str(weights))
    with pytest.raises(ModelLoadError, match=rf"non-finite values .*{re.escape(name)}"):
        load_served_model(model_dir)


def test_a_config_asking_for_a_huge_model_fails_before_allocating(model_dir):
    config = model_dir / "config.json"
    data = json.loads(config.read_text())
    data.update(d_model=65536, d_ff=262144, n_layers=64, n_heads=2)  # ~4 TB of float32 if it were built
    config.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="does not match the model in config.json"):
        load_served_model(model_dir)


@pytest.mark.parametrize("name", ["../..", "/etc", "step-1/../../x", ""])
def test_latest_may_only_name_a_checkpoint_beside_it(saved, tmp_path, name):
    _checkpoint_run(saved, tmp_path / "run")
    (tmp_path / "run" / "checkpoints" / "latest").write_text(name + "\n")
    with pytest.raises(ModelLoadError, match="not a checkpoint folder beside it"):
        resolve_model_dir(tmp_path / "run")


def test_a_checkpoint_without_its_manifest_is_refused(saved, tmp_path):
    step = _checkpoint_run(saved, tmp_path / "run")
    (step / "manifest.json").unlink()
    with pytest.raises(ModelLoadError, match="manifest.json: missing"):
        load_served_model(tmp_path / "run")
