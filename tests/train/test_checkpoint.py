"""Checkpoints: exact round trip, atomic writes, and clear errors for damaged files."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil

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


def _save(run_dir, step, model, optimizer, scheduler, trainer=None, **kwargs):
    tensors, meta = capture_rng_state()
    return save_checkpoint(
        run_dir,
        step=step,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        trainer={"loader": {"epoch": 0, "position": step}} if trainer is None else trainer,
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


def _assert_identical(a, b, where="") -> None:
    """``a`` and ``b`` hold the same values of the same types (tensors bit for bit, tuples as tuples)."""
    assert type(a) is type(b), f"{where}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


class _CountingSGD(torch.optim.SGD):
    """SGD that also keeps plain-Python state (a step count) and a tensor under a dotted key."""

    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                state["count"] = state.get("count", 0) + 1
                if group["momentum"]:
                    state["ema.slow"] = p.detach().clone()
        return loss


def _adamw(model):
    return build_optimizer(model, TrainConfig(lr=1e-2, warmup_steps=2, max_steps=10))


def _counting_sgd(model):
    params = list(model.parameters())
    # The second group has no momentum, so its parameters hold only plain scalars.
    return _CountingSGD([{"params": params[:2], "momentum": 0.9}, {"params": params[2:]}], lr=1e-2)


# Optimizer state round-trips exactly: tensors, plain scalars, int indices, param groups (betas a tuple).
@pytest.mark.parametrize("make_optimizer", [_adamw, _counting_sgd])
def test_optimizer_state_round_trips_exactly(tmp_path, make_optimizer):
    model, _, _ = _setup()
    optimizer = make_optimizer(model)
    scheduler = build_scheduler(optimizer, TrainConfig(lr=1e-2, warmup_steps=2, max_steps=10))
    _train_steps(model, optimizer, scheduler, 2)
    folder = _save(tmp_path, 2, model, optimizer, scheduler)
    loaded = load_checkpoint(folder, model=_setup(seed=1)[0])
    _assert_identical(loaded.optimizer, optimizer.state_dict(), "optimizer")


# The carried TBPTT state, the RNG metadata and the folder come back from load_checkpoint.
def test_carry_rng_metadata_and_path_round_trip(tmp_path):
    model, optimizer, scheduler = _setup()
    carry = {"layer0.s": torch.arange(6.0).reshape(2, 3), "layer0.z": torch.ones(2, dtype=torch.float64)}
    folder = _save(tmp_path, 1, model, optimizer, scheduler, carry_tensors=carry)
    loaded = load_checkpoint(folder, model=_setup(seed=1)[0])
    assert loaded.path == folder
    assert loaded.rng_meta == {"torch": torch.__version__}
    _assert_identical(loaded.carry_tensors, carry, "carry")
    without = load_checkpoint(_save(tmp_path, 2, model, optimizer, scheduler), model=model)
    assert without.carry_tensors == {}


# RNG state captured without a device restores with the default (empty) prefix, and records torch's version.
def test_rng_state_round_trip_without_prefix():
    tensors, meta = capture_rng_state()
    assert meta == {"torch": torch.__version__}
    expected = torch.rand(5)
    restore_rng_state(tensors)
    assert torch.equal(torch.rand(5), expected)
    with pytest.raises(CheckpointError, match=r"rng\.safetensors: no generator state 'rank1\.torch_cpu'"):
        restore_rng_state({f"rank0.{k}": v for k, v in tensors.items()}, prefix="rank1.")


class _FakeCudaGenerators:
    """Stand-in for torch.cuda's per-device generator states, so CPU-only machines test the CUDA path."""

    def __init__(self):
        self.states = {i: torch.full((4,), 10 + i, dtype=torch.uint8) for i in range(2)}

    @staticmethod
    def _index(device) -> int:
        device = torch.device(device)
        if device.type != "cuda":
            raise RuntimeError(f"not a CUDA device: {device}")
        return 0 if device.index is None else device.index

    def get_rng_state(self, device="cuda"):
        return self.states[self._index(device)].clone()

    def set_rng_state(self, new_state, device="cuda"):
        self.states[self._index(device)] = new_state.clone()


# The CUDA generator of the given device is captured and restored; CPU runs neither save nor touch one.
def test_cuda_generator_state_follows_the_device(monkeypatch):
    fake = _FakeCudaGenerators()
    monkeypatch.setattr(torch.cuda, "get_rng_state", fake.get_rng_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state", fake.set_rng_state)
    device = torch.device("cuda", 1)
    tensors, _ = capture_rng_state(device)
    assert sorted(tensors) == ["torch_cpu", "torch_cuda"]
    assert torch.equal(tensors["torch_cuda"], torch.full((4,), 11, dtype=torch.uint8))
    assert sorted(capture_rng_state(torch.device("cpu"))[0]) == ["torch_cpu"]
    saved = {f"rank0.{k}": v for k, v in tensors.items()}
    fake.states[1] = torch.zeros(4, dtype=torch.uint8)
    restore_rng_state(saved, prefix="rank0.", device=device)
    assert torch.equal(fake.states[1], torch.full((4,), 11, dtype=torch.uint8))
    assert torch.equal(fake.states[0], torch.full((4,), 10, dtype=torch.uint8))
    # A CPU run ignores a saved CUDA state; a CUDA run restoring a CPU-only save keeps its own.
    fake.states[1] = torch.zeros(4, dtype=torch.uint8)
    restore_rng_state(saved, prefix="rank0.")
    restore_rng_state(saved, prefix="rank0.", device=torch.device("cpu"))
    restore_rng_state({"rank0.torch_cpu": tensors["torch_cpu"]}, prefix="rank0.", device=device)
    assert torch.equal(fake.states[1], torch.zeros(4, dtype=torch.uint8))
    assert torch.equal(fake.states[0], torch.full((4,), 10, dtype=torch.uint8))


# Pruning keeps two checkpoints by default and never touches other folders in checkpoints/.
def test_pruning_keeps_two_by_default_and_only_checkpoint_folders(tmp_path):
    model, optimizer, scheduler = _setup()
    root = tmp_path / "checkpoints"
    (root / "notes").mkdir(parents=True)
    for step in range(1, 5):
        _save(tmp_path, step, model, optimizer, scheduler)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "notes", "step-00000003", "step-00000004"]


# Saving an older step than those on disk (a rewound run) never prunes the checkpoint just written.
def test_pruning_never_removes_the_checkpoint_just_written(tmp_path):
    model, optimizer, scheduler = _setup()
    for step in (5, 6, 1):
        folder = _save(tmp_path, step, model, optimizer, scheduler, keep=2)
    assert latest_checkpoint(tmp_path) == folder
    load_checkpoint(folder, model=_setup(seed=1)[0])


# The first save creates the run folder and its parents.
def test_save_creates_a_missing_run_folder(tmp_path):
    model, optimizer, scheduler = _setup()
    folder = _save(tmp_path / "runs" / "new", 1, model, optimizer, scheduler)
    assert latest_checkpoint(tmp_path / "runs" / "new") == folder


# Rewriting the same step replaces the checkpoint completely and leaves nothing else behind.
def test_rewriting_a_step_replaces_it(tmp_path):
    model, optimizer, scheduler = _setup()
    _save(tmp_path, 1, model, optimizer, scheduler)
    _train_steps(model, optimizer, scheduler, 1)
    folder = _save(tmp_path, 1, model, optimizer, scheduler)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step-00000001"]
    fresh = _setup(seed=1)[0]
    load_checkpoint(folder, model=fresh)
    for a, b in zip(model.state_dict().values(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b)


# A leftover of a killed write by a process with our pid (pid reuse, e.g. in containers) doesn't block a save.
def test_leftover_with_the_same_pid_does_not_block_the_save(tmp_path):
    model, optimizer, scheduler = _setup()
    stale = tmp_path / "checkpoints" / f".tmp-step-00000001-{os.getpid()}"
    (stale / "model").mkdir(parents=True)
    (stale / "model" / "model.safetensors").write_bytes(b"partial")
    folder = _save(tmp_path, 1, model, optimizer, scheduler)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step-00000001"]
    load_checkpoint(folder, model=_setup(seed=1)[0])


# Symlinks in checkpoints/ are never followed when pruning or rewriting, and cannot make a save fail.
def test_symlinked_folders_are_never_followed_nor_fail_a_save(tmp_path):
    model, optimizer, scheduler = _setup()
    run = tmp_path / "run"
    root = run / "checkpoints"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep me")
    root.mkdir(parents=True)
    (root / "step-00000000").symlink_to(outside, target_is_directory=True)
    (root / ".tmp-step-00000009-1").symlink_to(outside, target_is_directory=True)
    _save(run, 1, model, optimizer, scheduler, keep=1)
    assert (outside / "precious.txt").read_text() == "keep me"
    # A checkpoint moved to another disk and linked back: rewriting it replaces the link, not the target.
    moved = tmp_path / "moved"
    os.replace(root / "step-00000001", moved)
    (root / "step-00000001").symlink_to(moved, target_is_directory=True)
    folder = _save(run, 1, model, optimizer, scheduler, keep=1)
    assert latest_checkpoint(run) == folder and not folder.is_symlink()
    assert (moved / "manifest.json").is_file() and (outside / "precious.txt").is_file()
    load_checkpoint(folder, model=_setup(seed=1)[0])


class _Interrupted(BaseException):
    pass


# An interrupt right after the final rename propagates as is (not masked by a cleanup error).
def test_interrupt_after_the_rename_propagates_unmasked(tmp_path, monkeypatch):
    model, optimizer, scheduler = _setup()
    first = _save(tmp_path, 1, model, optimizer, scheduler)
    real_replace = os.replace

    def rename_then_interrupt(src, dst):
        real_replace(src, dst)
        if os.path.basename(dst) == "step-00000002":
            raise _Interrupted

    monkeypatch.setattr(ckpt_module.os, "replace", rename_then_interrupt)
    with pytest.raises(_Interrupted):
        _save(tmp_path, 2, model, optimizer, scheduler)
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path) == first


# trainer.json is canonical: the same state gives the same bytes whatever the order of its keys.
def test_trainer_json_is_canonical(tmp_path):
    model, optimizer, scheduler = _setup()
    a = _save(
        tmp_path / "a", 1, model, optimizer, scheduler, trainer={"x": 1, "loader": {"epoch": 0, "p": 2}}
    )
    b = _save(
        tmp_path / "b", 1, model, optimizer, scheduler, trainer={"loader": {"p": 2, "epoch": 0}, "x": 1}
    )
    assert (a / "trainer.json").read_bytes() == (b / "trainer.json").read_bytes()


# A file named in the manifest, or the manifest itself, missing: the error names it.
@pytest.mark.parametrize("target", ["manifest.json", "rng.safetensors"])
def test_missing_file_fails_with_its_name(tmp_path, target):
    model, optimizer, scheduler = _setup()
    folder = _save(tmp_path, 1, model, optimizer, scheduler)
    (folder / target).unlink()
    with pytest.raises(
        CheckpointError, match=re.escape(str(folder / target)) + ": missing from the checkpoint"
    ):
        load_checkpoint(folder, model=model)


def _set_trainer_format(raw: bytes) -> bytes:
    return json.dumps({**json.loads(raw), "format_version": 99}).encode()


# Bad content that matches the manifest (a writer bug, another format): the error names the file and why.
@pytest.mark.parametrize(
    ("target", "edit", "reason"),
    [
        ("optimizer.safetensors", lambda raw: b"garbage", "corrupt or truncated safetensors"),
        ("model/config.json", lambda raw: b"{not json", "not valid JSON"),
        ("trainer.json", _set_trainer_format, "format_version 99, expected 1"),
    ],
)
def test_bad_content_matching_the_manifest_is_reported(tmp_path, target, edit, reason):
    model, optimizer, scheduler = _setup()
    folder = _save(tmp_path, 1, model, optimizer, scheduler)
    data = edit((folder / target).read_bytes())
    (folder / target).write_bytes(data)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest[target] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=re.escape(f"{folder / target}: {reason}")):
        load_checkpoint(folder, model=_setup(seed=1)[0])


# Weights that do not fit the configured model (here: one layer fewer) are refused, naming the folder.
def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    model, optimizer, scheduler = _setup()
    folder = _save(tmp_path, 1, model, optimizer, scheduler)
    config = tiny_config(vocab_size=29, n_layers=2, d_ff=32, dropout=0.1, attention={"nb_features": 8})
    with pytest.raises(CheckpointError, match=re.escape(f"{folder / 'model'}: does not fit the configured")):
        load_checkpoint(folder, model=SequenceModel(config))


# A garbage pointer is quoted in the error, cut to its first 100 characters.
def test_garbage_pointer_is_quoted_briefly(tmp_path):
    model, optimizer, scheduler = _setup()
    _save(tmp_path, 1, model, optimizer, scheduler)
    (tmp_path / "checkpoints" / "latest").write_text("x" * 300)
    with pytest.raises(CheckpointError, match="not a checkpoint folder beside it") as info:
        latest_checkpoint(tmp_path)
    assert f"'{'x' * 100}'" in str(info.value)


# A same-step rewrite killed between its two renames loses nothing: the previous checkpoint, set aside,
# is what latest_checkpoint gives and what the next save moves back into place.
def test_rewrite_killed_between_its_renames_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model, optimizer, scheduler = _setup()
    _save(tmp_path, 1, model, optimizer, scheduler)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _train_steps(model, optimizer, scheduler, 1)
    real_replace = os.replace

    def killed_after_setting_aside(src, dst):
        real_replace(src, dst)
        if os.path.basename(dst).startswith(".old-step-00000001-"):
            raise _Interrupted

    monkeypatch.setattr(ckpt_module.os, "replace", killed_after_setting_aside)
    with pytest.raises(_Interrupted):
        _save(tmp_path, 1, model, optimizer, scheduler)
    monkeypatch.undo()
    root = tmp_path / "checkpoints"
    assert not (root / "step-00000001").exists()
    fresh = _setup(seed=1)[0]
    load_checkpoint(latest_checkpoint(tmp_path), model=fresh)
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, before[name])
    # The next save (another step) moves it back; pruning keeps it as one of the newest two.
    _save(tmp_path, 2, model, optimizer, scheduler)
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-00000001", "step-00000002"]
    load_checkpoint(root / "step-00000001", model=fresh)
    for name, value in fresh.state_dict().items():
        assert torch.equal(value, before[name])


# Only a complete, real folder set aside for the named step stands in for it: not an incomplete one, not a
# symlink, not one whose name is no checkpoint's; a stale one beside its step is pruned, never moved over it.
def test_only_a_complete_set_aside_checkpoint_is_recovered(tmp_path):
    model, optimizer, scheduler = _setup()
    first = _save(tmp_path, 1, model, optimizer, scheduler)
    root = tmp_path / "checkpoints"
    stale = root / ".old-step-00000001-7"
    shutil.copytree(first, stale)  # complete, but step-1 is in place: pruned by the next save
    _save(tmp_path, 2, model, optimizer, scheduler)
    assert not stale.exists()
    (root / "latest").write_text("step-00000003\n")
    incomplete = root / ".old-step-00000003-7"
    (incomplete / "model").mkdir(parents=True)
    outside = tmp_path / "outside"
    shutil.copytree(first, outside)
    (root / ".old-step-00000003-8").symlink_to(outside, target_is_directory=True)
    with pytest.raises(CheckpointError, match="names 'step-00000003', which is not a checkpoint folder"):
        latest_checkpoint(tmp_path)
    odd = root / ".old-step-x-7"
    shutil.copytree(first, odd)
    _save(tmp_path, 4, model, optimizer, scheduler)
    assert not (root / "step-00000003").exists() and not (root / "step-x").exists()
    assert (outside / "manifest.json").is_file()
