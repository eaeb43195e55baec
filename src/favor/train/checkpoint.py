"""Resumable training checkpoints: folders of safetensors and JSON, written atomically. Never pickle.

Layout of ``RUN_DIR/checkpoints/``::

    step-00000500/
        model/config.json, model/model.safetensors   the model (favor.models.save_pretrained)
        optimizer.safetensors                         AdamW moments and step counts, "state.<param>.<key>"
        rng.safetensors                               torch generator states (CPU, CUDA) of every rank
        carry.safetensors                             the recurrent state carried between TBPTT windows
                                                      (only under train.tbptt; layout in trainer.json)
        trainer.json                                  scalars: step, optimizer groups, scheduler, data
                                                      position, early stopping
        manifest.json                                 SHA-256 and size of every file above
    latest                                            the name of the newest complete checkpoint

A checkpoint is written into a hidden temporary folder that is renamed into place only when complete,
then ``latest`` is replaced (write + ``os.replace``): a crash at any moment leaves the previous checkpoint
intact and ``latest`` pointing at a complete folder. (Rewriting an existing step sets the old folder aside
first; a crash between the two renames leaves it complete under ``.old-step-N-<pid>``, which
`latest_checkpoint` reads and the next save moves back.) Loading checks every file against the manifest, so
a truncated or modified file fails with `CheckpointError` naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from favor.folders import CHECKPOINT_NAME
from favor.models.pretrained import load_pretrained, save_pretrained

__all__ = [
    "CheckpointError",
    "Checkpoint",
    "checkpoint_dir",
    "latest_checkpoint",
    "save_checkpoint",
    "load_checkpoint",
    "capture_rng_state",
    "restore_rng_state",
]

FORMAT_VERSION = 1
LATEST = "latest"


CARRY_FILE = "carry.safetensors"


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or read; the message names the file."""


@dataclass
class Checkpoint:
    """What `load_checkpoint` returns (the model weights are loaded into the given model in place)."""

    path: Path
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    trainer: dict[str, Any]
    rng_tensors: dict[str, torch.Tensor]
    rng_meta: dict[str, Any]
    carry_tensors: dict[str, torch.Tensor] = field(default_factory=dict)


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "checkpoints"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _optimizer_to_files(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into tensors (safetensors) and plain scalars (JSON)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        _, index, key = name.split(".", 2)
        state.setdefault(int(index), {})[key] = tensor
    for index, entry in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(entry)
    groups = [dict(g) for g in meta["param_groups"]]
    for group in groups:
        if isinstance(group.get("betas"), list):
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": groups}


def capture_rng_state(device: torch.device | None = None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """This process's torch generator states (CPU, and ``device``'s if CUDA) as uint8 tensors.

    Python's ``random`` and numpy's global generator are not used by training (the data pipeline derives
    numpy generators from integer seeds), so they are not saved. Returns (tensors, JSON metadata).
    """
    tensors = {"torch_cpu": torch.get_rng_state()}
    if device is not None and device.type == "cuda":
        tensors["torch_cuda"] = torch.cuda.get_rng_state(device)
    return tensors, {"torch": torch.__version__}


def restore_rng_state(
    tensors: dict[str, torch.Tensor],
    *,
    prefix: str = "",
    device: torch.device | None = None,
) -> None:
    """Inverse of `capture_rng_state` (``prefix`` selects one rank's entries, e.g. ``"rank1."``)."""
    key = f"{prefix}torch_cpu"
    if key not in tensors:
        raise CheckpointError(
            f"rng.safetensors: no generator state {key!r} (saved by a different number of ranks?)"
        )
    torch.set_rng_state(tensors[key])
    cuda = tensors.get(f"{prefix}torch_cuda")
    if cuda is not None and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(cuda, device)


def _check_finite(model: nn.Module) -> None:
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all():
            raise CheckpointError(f"refusing to save a checkpoint: parameter {name} holds NaN or inf values")


def save_checkpoint(
    run_dir: str | os.PathLike,
    *,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    trainer: dict[str, Any],
    rng_tensors: dict[str, torch.Tensor],
    rng_meta: dict[str, Any],
    keep: int = 2,
    carry_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``checkpoints/step-<step>/`` atomically, point ``latest`` at it, keep the newest ``keep``.

    ``carry_tensors``: a TBPTT carried state (see `favor.train.tbptt.carry_to_tensors`), or None.
    """
    _check_finite(model)
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    _restore_interrupted_rewrites(root)
    name = f"step-{step:08d}"
    final = root / name
    tmp = root / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write_contents(
            tmp, model, optimizer, scheduler, {**trainer, "step": step}, rng_tensors, rng_meta, carry_tensors
        )
        if final.exists():
            # Rewriting the same step (e.g. a resumed run that stops where it started).
            old = root / f".old-{name}-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    pointer = root / LATEST
    pointer_tmp = root / f".{LATEST}.tmp"
    pointer_tmp.write_text(name + "\n", encoding="utf-8")
    os.replace(pointer_tmp, pointer)
    _prune(root, keep=keep, current=name)
    return final


def _write_contents(
    folder: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    trainer: dict[str, Any],
    rng_tensors: dict[str, torch.Tensor],
    rng_meta: dict[str, Any],
    carry_tensors: dict[str, torch.Tensor] | None = None,
) -> None:
    save_pretrained(model, folder / "model")
    opt_tensors, opt_meta = _optimizer_to_files(optimizer.state_dict())
    save_file(opt_tensors, str(folder / "optimizer.safetensors"))
    save_file({k: v.contiguous() for k, v in rng_tensors.items()}, str(folder / "rng.safetensors"))
    if carry_tensors:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in carry_tensors.items()}, str(folder / CARRY_FILE)
        )
    state = {
        "format_version": FORMAT_VERSION,
        "trainer": trainer,
        "optimizer": opt_meta,
        "scheduler": scheduler.state_dict(),
        "rng": rng_meta,
    }
    _write_json(folder / "trainer.json", state)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    manifest = {str(p.relative_to(folder)): {"sha256": _sha256(p), "bytes": p.stat().st_size} for p in files}
    _write_json(folder / "manifest.json", manifest)


def _set_aside(root: Path, name: str) -> Path | None:
    """The complete checkpoint ``name`` set aside by a same-step rewrite that stopped between its two
    renames (``step-N`` moved to ``.old-step-N-<pid>``, the new one not yet renamed into place), or None."""
    for old in sorted(root.glob(f".old-{name}-*")):
        if old.is_dir() and not old.is_symlink() and (old / "manifest.json").is_file():
            return old
    return None


def _restore_interrupted_rewrites(root: Path) -> None:
    """Move back every checkpoint a crashed same-step rewrite left set aside (the one writer of a run)."""
    for old in root.glob(".old-step-*"):
        name = old.name[len(".old-") :].rsplit("-", 1)[0]
        if CHECKPOINT_NAME.match(name) and not os.path.lexists(root / name) and _set_aside(root, name) == old:
            os.replace(old, root / name)


def _prune(root: Path, *, keep: int, current: str) -> None:
    steps = sorted(p for p in root.iterdir() if p.is_dir() and CHECKPOINT_NAME.match(p.name))
    for old in steps[: max(0, len(steps) - keep)]:
        if old.name != current:
            shutil.rmtree(old, ignore_errors=True)
    # Leftovers of writes that crashed before their rename (one writer per run: none is in progress now).
    for stale in root.iterdir():
        if stale.is_dir() and (stale.name.startswith(".tmp-step-") or stale.name.startswith(".old-step-")):
            shutil.rmtree(stale, ignore_errors=True)


def latest_checkpoint(run_dir: str | os.PathLike) -> Path:
    """The folder named by ``checkpoints/latest``; errors name the missing file or folder."""
    root = checkpoint_dir(run_dir)
    pointer = root / LATEST
    if not pointer.is_file():
        raise FileNotFoundError(
            f"{pointer}: no checkpoint to resume from (was {run_dir} written by favor train?)"
        )
    name = pointer.read_text(encoding="utf-8").strip()
    if not CHECKPOINT_NAME.match(name):
        raise CheckpointError(f"{pointer}: names {name[:100]!r}, not a checkpoint folder beside it (step-N)")
    folder = root / name
    if not folder.is_dir():
        # A same-step rewrite stopped between its renames: the previous complete checkpoint is set aside
        # (read here, moved back by the next save_checkpoint).
        set_aside = _set_aside(root, name)
        if set_aside is not None:
            return set_aside
        raise CheckpointError(f"{pointer}: names {name!r}, which is not a checkpoint folder in {root}")
    return folder


def _verify(folder: Path) -> None:
    manifest_path = folder / "manifest.json"
    manifest = _read_json(manifest_path)
    for rel, entry in sorted(manifest.items()):
        path = folder / rel
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from the checkpoint")
        if path.stat().st_size != entry["bytes"]:
            raise CheckpointError(
                f"{path}: size {path.stat().st_size} bytes, expected {entry['bytes']} (truncated or modified)"
            )
        if _sha256(path) != entry["sha256"]:
            raise CheckpointError(f"{path}: SHA-256 does not match the manifest (file was modified)")


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing from the checkpoint")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from None


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: corrupt or truncated safetensors file ({error})") from None


def load_checkpoint(folder: str | os.PathLike, *, model: nn.Module) -> Checkpoint:
    """Verify ``folder``, load its weights into ``model`` (in place) and return the rest of the state."""
    folder = Path(folder)
    _verify(folder)
    state = _read_json(folder / "trainer.json")
    if state.get("format_version") != FORMAT_VERSION:
        found = state.get("format_version")
        raise CheckpointError(
            f"{folder / 'trainer.json'}: format_version {found!r}, expected {FORMAT_VERSION}"
        )
    try:
        saved = load_pretrained(folder / "model")
    except (ValueError, FileNotFoundError) as error:
        raise CheckpointError(str(error)) from None
    try:
        model.load_state_dict(saved.state_dict(), strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{folder / 'model'}: does not fit the configured model ({error})") from None
    optimizer = _optimizer_from_files(_read_tensors(folder / "optimizer.safetensors"), state["optimizer"])
    return Checkpoint(
        path=folder,
        optimizer=optimizer,
        scheduler=state["scheduler"],
        trainer=state["trainer"],
        rng_tensors=_read_tensors(folder / "rng.safetensors"),
        rng_meta=state["rng"],
        carry_tensors=_read_tensors(folder / CARRY_FILE) if (folder / CARRY_FILE).exists() else {},
    )
