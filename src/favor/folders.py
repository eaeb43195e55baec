"""Model folders, run folders and bundled model names: how a path or a name becomes a model and its
vocabulary.

Every command that takes a model (embed, score, evaluate, finetune, serve, export, generate, blosum) resolves
it here. Accepted, tried in this order:

    NAME                                             a model that ships with favor (`BUNDLED_MODELS`,
                                                     e.g. favor-protein-small), unless a path of that
                                                     name exists
    MODEL_DIR/config.json + model.safetensors       a folder written by `favor.models.save_pretrained`
    RUN_DIR/model/                                   a final model folder inside a run directory
    RUN_DIR/checkpoints/latest -> step-N/model/      the newest complete training checkpoint
    CHECKPOINT_DIR/model/                            one checkpoint folder (``.../checkpoints/step-N``)

When the model folder sits inside a training checkpoint whose ``manifest.json`` lists it, its files are
checked against the recorded size and SHA-256 first, so a truncated or modified file is named before any
tensor is read. The alphabet comes from ``alphabet.json`` next to ``config.json`` (or in the run directory)
when there is one (`favor.data.Alphabet.to_dict` format); a character model trained on text carries the
``vocab.json`` its run saved (`favor.data.text.CharVocabulary`) and serves ``POST /generate`` only; any
other model reads proteins with `Alphabet.protein()`. Either way the vocabulary's size must equal the
model's ``vocab_size``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from favor.data import Alphabet
from favor.data.text import VOCAB_FILE, CharVocabulary
from favor.models import SequenceModel, load_pretrained
from favor.models.pretrained import CONFIG_NAME, WEIGHTS_NAME

__all__ = [
    "ALPHABET_NAME",
    "BUNDLED_MODELS",
    "DEFAULT_MODEL",
    "ModelLoadError",
    "ServedModel",
    "bundled_model_dir",
    "load_model",
    "load_served_model",
    "resolve_model_dir",
]

ALPHABET_NAME = "alphabet.json"
# Models installed with the package: name -> folder (config.json + model.safetensors + README.md, the card).
_BUNDLED_ROOT = Path(__file__).resolve().parent / "bundled_models"
BUNDLED_MODELS = {"favor-protein-small": _BUNDLED_ROOT / "favor-protein-small"}
# What `favor serve` serves when no model is named.
DEFAULT_MODEL = "favor-protein-small"


class ModelLoadError(ValueError):
    """A model folder that cannot be found or loaded; the message names the path or file."""


@dataclass
class ServedModel:
    """A loaded model in eval mode with the vocabulary its token ids come from.

    alphabet: the protein alphabet, or None for a character model (then ``vocabulary`` is its
        `CharVocabulary`, and the model serves text generation only).
    """

    model: SequenceModel
    alphabet: Alphabet | None
    path: Path
    vocabulary: CharVocabulary | None = None

    @property
    def config(self):
        return self.model.config


# What ``checkpoints/latest`` may name: a checkpoint folder beside it, never a path elsewhere.
CHECKPOINT_NAME = re.compile(r"^step-[0-9]+$")


def checkpoint_name(pointer: Path) -> str:
    """The checkpoint ``pointer`` (a ``latest`` file) names, refusing anything but ``step-N`` beside it."""
    name = pointer.read_text(encoding="utf-8").strip()
    if not CHECKPOINT_NAME.match(name):
        raise ModelLoadError(
            f"{pointer}: names {name[:100]!r}, not a checkpoint folder beside it (expected step-N)"
        )
    return name


def _in_checkpoint(model_dir: Path) -> bool:
    return model_dir.name == "model" and bool(CHECKPOINT_NAME.match(model_dir.parent.name))


def _is_model_dir(path: Path) -> bool:
    return (path / CONFIG_NAME).is_file()


def bundled_model_dir(name: str) -> Path:
    """The installed folder of a bundled model; errors name the known models."""
    if name not in BUNDLED_MODELS:
        raise ModelLoadError(f"{name!r} is not a bundled model; bundled: {', '.join(sorted(BUNDLED_MODELS))}")
    folder = BUNDLED_MODELS[name]
    if not _is_model_dir(folder) or not (folder / WEIGHTS_NAME).is_file():
        raise ModelLoadError(f"{name}: the bundled model's files are missing from {folder} (reinstall favor)")
    return folder


def resolve_model_dir(path: str | os.PathLike) -> Path:
    """The model folder for ``path`` (a bundled model's name, a model folder, a run directory or a
    checkpoint folder)."""
    if isinstance(path, (str, Path)) and str(path) in BUNDLED_MODELS and not Path(path).exists():
        return bundled_model_dir(str(path))
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file or directory")
    if not path.is_dir():
        raise ModelLoadError(f"{path}: expected a model folder or a run directory, got a file")
    if _is_model_dir(path):
        return path
    if _is_model_dir(path / "model"):
        return path / "model"
    pointer = path / "checkpoints" / "latest"
    if pointer.is_file():
        name = checkpoint_name(pointer)
        candidate = path / "checkpoints" / name / "model"
        if name and _is_model_dir(candidate):
            return candidate
        raise ModelLoadError(f"{pointer}: names {name!r}, which holds no model folder ({candidate})")
    raise ModelLoadError(
        f"{path}: no model found; expected {CONFIG_NAME} + {WEIGHTS_NAME} in it, in {path / 'model'}, "
        f"or a training run with {pointer}"
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify_manifest(model_dir: Path) -> None:
    """Check the model files against the enclosing checkpoint's manifest, when there is one."""
    manifest_path = model_dir.parent / "manifest.json"
    if not manifest_path.is_file():
        if _in_checkpoint(model_dir):  # every checkpoint is written with one: its absence means damage
            raise ModelLoadError(f"{manifest_path}: missing; the checkpoint cannot be verified")
        return
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{manifest_path}: not valid JSON ({error})") from None
    if not isinstance(manifest, dict):
        raise ModelLoadError(f"{manifest_path}: expected a JSON object of file entries")
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        entry = manifest.get(f"{model_dir.name}/{name}")
        path = model_dir / name
        if not isinstance(entry, dict) or not path.is_file():
            continue
        size = path.stat().st_size
        if size != entry.get("bytes", size):
            raise ModelLoadError(
                f"{path}: {size} bytes, the checkpoint manifest says {entry['bytes']} (truncated or modified)"
            )
        if "sha256" in entry and _sha256(path) != entry["sha256"]:
            raise ModelLoadError(f"{path}: SHA-256 does not match {manifest_path} (file was modified)")


def _beside(model_dir: Path, name: str) -> Path | None:
    """``name`` next to ``config.json``, else in the folder above (the run directory), or None."""
    return next((c for c in (model_dir / name, model_dir.parent / name) if c.is_file()), None)


def _load_vocabulary(path: Path, model_dir: Path, vocab_size: int | None) -> CharVocabulary:
    """A character model's vocabulary from ``path`` (its ``vocab.json``), checked against the model."""
    try:
        vocabulary = CharVocabulary.load(path)
    except (UnicodeDecodeError, ValueError, TypeError, KeyError) as error:
        raise ModelLoadError(str(error) if str(path) in str(error) else f"{path}: {error}") from None
    if vocab_size != vocabulary.vocab_size:
        raise ModelLoadError(
            f"{model_dir / CONFIG_NAME}: vocab_size={vocab_size} does not match {path}'s "
            f"{vocabulary.vocab_size} tokens"
        )
    return vocabulary


def _load_alphabet(path: Path | None, model_dir: Path, vocab_size: int | None) -> Alphabet:
    """The alphabet stored at ``path`` (``alphabet.json``), or the protein alphabet when None."""
    alphabet = Alphabet.protein()
    if path is not None:
        try:
            alphabet = Alphabet.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError, TypeError) as error:
            raise ModelLoadError(f"{path}: not a valid alphabet ({error})") from None
    if vocab_size != alphabet.vocab_size:
        raise ModelLoadError(
            f"{model_dir / CONFIG_NAME}: vocab_size={vocab_size} does not match the alphabet's "
            f"{alphabet.vocab_size} tokens; store the training alphabet as {model_dir / ALPHABET_NAME}"
        )
    return alphabet


def load_model(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> tuple[SequenceModel, Path]:
    """Resolve ``path`` (see the module docstring), verify it against its checkpoint manifest and load the
    model (any task, with or without a vocabulary): ``(model in eval mode, its folder)``.

    Raises `ModelLoadError` naming the folder or file for anything missing, truncated, modified or
    inconsistent.
    """
    model_dir = resolve_model_dir(path)
    _verify_manifest(model_dir)
    try:
        return load_pretrained(model_dir, device=device), model_dir
    except (ValueError, FileNotFoundError) as error:
        raise ModelLoadError(str(error)) from None


def load_served_model(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> ServedModel:
    """`load_model` plus the vocabulary its token ids come from, parameters frozen.

    Raises `ModelLoadError` as `load_model` does, and for models without a token embedding (which cannot
    read sequences).
    """
    model, model_dir = load_model(path, device=device)
    if model.config.vocab_size is None:
        raise ModelLoadError(f"{model_dir / CONFIG_NAME}: the model has no token embedding (vocab_size=null)")
    vocab_size = model.config.vocab_size
    alphabet_path, vocabulary_path = _beside(model_dir, ALPHABET_NAME), _beside(model_dir, VOCAB_FILE)
    if alphabet_path is None and vocabulary_path is not None:  # a character model
        alphabet, vocabulary = None, _load_vocabulary(vocabulary_path, model_dir, vocab_size)
    else:
        alphabet, vocabulary = _load_alphabet(alphabet_path, model_dir, vocab_size), None
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    return ServedModel(model=model, alphabet=alphabet, path=model_dir, vocabulary=vocabulary)
