"""Checkpoints: exact round trip, atomic writes, and clear errors for damaged files."""

from __future__ import annotations

import json

import pytest
import torch

import favor.train.checkpoint as ckpt_module
from favor.models import SequenceModel
from favor.runs.config import TrainConfig
from favor.train.checkpoint import (
    CheckpointError,
    capture_rng_state,
    latest_checkpoint,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from favor.train.optim import build_optimizer, build_scheduler
from tiny_models import tiny_config


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    config = tiny_config(vocab_size=29, n_layers=1, d_ff=32, dropout=0.1, attention={"nb_features": 8})
    model = SequenceModel(config)
    train = TrainConfig(lr=1e-2, warmup_steps=2, max_steps=10)
    optimizer = build_optimizer(model, train)
    scheduler = build_scheduler(optimizer, train)
    return model, optimizer, scheduler


def _train_steps(model, optimizer, scheduler, n: int) -> None:
    for _ in range(n):
        ids = torch.randint(4, 24, (2, 12))
        model(ids).logits.square().mean().backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()


def _save(run_dir, step, model, optimizer, scheduler, **kwargs):
    tensors, meta = capture_rng_state()
    return save_checkpoint(
        run_dir,
        step=step,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        trainer={"loader": {"epoch": 0, "position": step}},
        rng_tensors={f"rank0.{k}": v for k, v in tensors.items()},
        rng_meta=meta,
        **kwargs,
    )


def test_round_trip_restores_everything_exactly(tmp_path):
    model, optimizer, scheduler = _setup()
    _train_steps(model, optimizer, scheduler, 3)
    folder = _save(tmp_path, 3, model, optimizer, scheduler)
    expected_next = torch.rand(4)
    assert latest_checkpoint(tmp_path) == folder
    assert not list(folder.rglob("*.pt")) and not list(folder.rglob("*.pkl"))

    model2, optimizer2, scheduler2 = _setup(seed=1)
    loaded = load_checkpoint(folder, model=model2)
    optimizer2.load_state_dict(loaded.optimizer)
    scheduler2.load_state_dict(loaded.scheduler)
    restore_rng_state(loaded.rng_tensors, prefix="rank0.")
    assert torch.equal(torch.rand(4), expected_next)
    assert loaded.trainer["step"] == 3 and loaded.trainer["loader"] == {"epoch": 0, "position": 3}
    for (name, a), b in zip(model.state_dict().items(), model2.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # Both continue identically.
    torch.manual_seed(5)
    _train_steps(model, optimizer, scheduler, 2)
    torch.manual_seed(5)
    _train_steps(model2, optimizer2, scheduler2, 2)
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)
    assert scheduler.get_last_lr() == scheduler2.get_last_lr()


def test_crash_mid_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer, scheduler = _setup()
    first = _save(tmp_path, 1, model, optimizer, scheduler)
    _train_steps(model, optimizer, scheduler, 1)
    real_save_file = ckpt_module.save_file

    def crash_after_model(tensors, path, *args, **kwargs):
        real_save_file(tensors, path, *args, **kwargs)
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt_module, "save_file", crash_after_model)
    with pytest.raises(OSError, match="simulated"):
        _save(tmp_path, 2, model, optimizer, scheduler)
    monkeypatch.undo()
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-00000001"]
    assert latest_checkpoint(tmp_path) == first
    fresh, _, _ = _setup(seed=3)
    load_checkpoint(first, model=fresh)


def test_keeps_only_the_newest_checkpoints(tmp_path):
    model, optimizer, scheduler = _setup()
    for step in range(1, 5):
        _save(tmp_path, step, model, optimizer, scheduler, keep=2)
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir())
    assert names == ["step-00000003", "step-00000004"]


@pytest.mark.parametrize("target", ["model/model.safetensors", "optimizer.safetensors", "trainer.json"])
def test_truncated_file_fails_with_its_name(tmp_path, target):
    model, optimizer, scheduler = _setup()
    _train_steps(model, optimizer, scheduler, 1)
    folder = _save(tmp_path, 1, model, optimizer, scheduler)
    path = folder / target
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=target.split("/")[-1]) as info:
        load_checkpoint(folder, model=_setup()[0])
    assert "truncated" in str(info.value)


def test_tampered_file_fails_with_its_name(tmp_path):
    model, optimizer, scheduler = _setup()
    _train_steps(model, optimizer, scheduler, 1)
    folder = _save(tmp_path, 1, model, optimizer, scheduler)
    path = folder / "optimizer.safetensors"
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"optimizer\.safetensors: SHA-256"):
        load_checkpoint(folder, model=_setup()[0])


def test_damaged_manifest_or_pointer_is_reported(tmp_path):
    model, optimizer, scheduler = _setup()
    folder = _save(tmp_path, 1, model, optimizer, scheduler)
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"manifest\.json: not valid JSON"):
        load_checkpoint(folder, model=model)
    (tmp_path / "checkpoints" / "latest").write_text("step-00000099\n")
    with pytest.raises(CheckpointError, match="step-00000099"):
        latest_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        latest_checkpoint(tmp_path / "elsewhere")


def test_unsafe_pickle_is_never_used(tmp_path):
    model, optimizer, scheduler = _setup()
    _train_steps(model, optimizer, scheduler, 1)
    folder = _save(tmp_path, 1, model, optimizer, scheduler)
    state = json.loads((folder / "trainer.json").read_text())
    assert state["format_version"] == 1
    assert {p.suffix for p in folder.rglob("*") if p.is_file()} == {".json", ".safetensors"}


def test_non_finite_parameters_are_never_saved(tmp_path):
    model, optimizer, scheduler = _setup()
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    with pytest.raises(CheckpointError, match="NaN or inf"):
        _save(tmp_path, 1, model, optimizer, scheduler)
    assert not (tmp_path / "checkpoints" / "latest").exists()


def test_leftovers_of_a_killed_write_are_removed_by_the_next_save(tmp_path):
    model, optimizer, scheduler = _setup()
    _save(tmp_path, 1, model, optimizer, scheduler)
    root = tmp_path / "checkpoints"
    # What a process killed mid-write (SIGKILL: no cleanup ran) leaves behind.
    (root / ".tmp-step-00000002-4242" / "model").mkdir(parents=True)
    (root / ".old-step-00000001-4242").mkdir()
    _save(tmp_path, 2, model, optimizer, scheduler)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-00000001", "step-00000002"]


def test_latest_cannot_point_outside_the_run(tmp_path):
    model, optimizer, scheduler = _setup()
    _save(tmp_path, 1, model, optimizer, scheduler)
    (tmp_path / "checkpoints" / "latest").write_text("../../elsewhere\n")
    with pytest.raises(CheckpointError, match="not a checkpoint folder beside it"):
        latest_checkpoint(tmp_path)
