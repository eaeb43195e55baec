"""Checkpoint folders: ``config.json`` + ``model.safetensors``. Never pickle.

Both files are written atomically (a temporary file in the same folder, then `os.replace`). Tied weights
(the LM output layer sharing the token embedding) are stored once, under the first name in the state dict;
loading restores the tie. Loading checks the folder completely and fails with a `ValueError` (or
`FileNotFoundError`) naming the file and every missing, unexpected or mis-shaped tensor.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from favor.models.build import Model, build_model
from favor.models.config import ModelConfig

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "load_config", "load_pretrained", "save_pretrained"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` on a temporary file next to ``path``, then move it into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _aliases(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """Names that share memory with an earlier entry (tied weights) -> that entry's name."""
    seen: dict[tuple, str] = {}
    aliases = {}
    for name, tensor in state.items():
        key = (tensor.device, tensor.data_ptr(), tensor.dtype, tuple(tensor.shape), tensor.stride())
        if tensor.numel() > 0 and key in seen:
            aliases[name] = seen[key]
        else:
            seen[key] = name
    return aliases


def save_pretrained(model: Model, folder: str | os.PathLike) -> Path:
    """Write ``model`` to ``folder`` (created if needed); returns the folder path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    aliases = _aliases(state)
    tensors = {name: t.detach().contiguous() for name, t in state.items() if name not in aliases}
    metadata = {"format": "pt", "tied": json.dumps(aliases)}
    _atomic_write(folder / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    text = json.dumps(model.config.to_dict(), indent=2, sort_keys=True) + "\n"
    _atomic_write(folder / CONFIG_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    return folder


def load_config(folder: str | os.PathLike) -> ModelConfig:
    """Read and validate ``folder/config.json``."""
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no model config (expected a folder written by save_pretrained)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    try:
        return ModelConfig.from_dict(data)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: invalid model config: {error}") from error


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no weights file (expected a folder written by save_pretrained)")
    try:
        return load_file(str(path))
    except Exception as error:
        raise ValueError(f"{path}: corrupt or truncated safetensors file ({error})") from error


def _check_tensors(path: Path, found: dict[str, torch.Tensor], expected: dict[str, tuple[int, ...]]) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    mismatched = [
        f"{name} (file {tuple(found[name].shape)}, model {expected[name]})"
        for name in sorted(set(found) & set(expected))
        if tuple(found[name].shape) != expected[name]
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors: {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors: {', '.join(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatch: {', '.join(mismatched)}")
    if problems:
        raise ValueError(f"{path}: does not match the model in config.json; " + "; ".join(problems))


def _expected_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of the model ``config`` describes, without allocating it (meta device)."""
    with torch.device("meta"):
        skeleton = build_model(config)
    shapes, seen = {}, set()
    for name, tensor in skeleton.state_dict(keep_vars=True).items():
        if id(tensor) in seen:  # a tied weight: stored once, under its first name
            continue
        seen.add(id(tensor))
        shapes[name] = tuple(tensor.shape)
    return shapes


def _check_finite(path: Path, found: dict[str, torch.Tensor]) -> None:
    bad = [name for name, t in found.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise ValueError(f"{path}: non-finite values (NaN or inf) in {', '.join(sorted(bad)[:5])}")


def load_pretrained(folder: str | os.PathLike, *, device: str | torch.device = "cpu") -> Model:
    """Build the model of ``folder/config.json`` and load ``folder/model.safetensors`` into it (eval mode).

    Outputs are bit-identical to the saved model's, FAVOR+ projections included. The model takes the
    floating dtype of the stored weights. Before anything is allocated, the file's tensors are checked
    against the shapes the config implies (so a config that asks for a huge model fails fast) and for
    non-finite values.
    """
    folder = Path(folder)
    config = load_config(folder)
    path = folder / WEIGHTS_NAME
    found = _read_weights(path)
    _check_tensors(path, found, _expected_shapes(config))
    _check_finite(path, found)
    model = build_model(config)
    state = model.state_dict()
    aliases = _aliases(state)
    dtypes = {t.dtype for t in found.values() if t.is_floating_point()}
    if len(dtypes) == 1:
        model.to(dtypes.pop())
    full = dict(found)
    for alias, name in aliases.items():
        full[alias] = found[name]
    model.load_state_dict(full, strict=True)
    return model.to(device).eval()
